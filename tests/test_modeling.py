"""StellarForObservationPrediction: shapes, gradients, loss, invariances, dtypes, save/reload."""

import math

import pytest
import torch

from modeling_stellar import StellarForObservationPrediction, gaussian_nll
from tests.conftest import create_test_model, create_test_stars


def _batch(tokenizer, n_stars=4, requests=("teff", "logg", "jh")):
    return tokenizer(create_test_stars(n_stars), requests=list(requests), return_labels=True)


def test_output_shapes(tiny_model, tokenizer):
    batch = _batch(tokenizer)
    output = tiny_model(**batch)
    assert output.mean.shape == output.log_variance.shape == (4, 3)
    assert output.decoder_hidden_state.shape == (4, 3, 16)
    assert output.encoder_last_hidden_state.shape == (*batch["input_ids"].shape, 16)
    assert output.loss.shape == () and torch.isfinite(output.loss)


def test_every_parameter_gets_a_finite_gradient(tokenizer):
    model = create_test_model().train()
    model(**_batch(tokenizer)).loss.backward()
    for name, parameter in model.named_parameters():
        assert parameter.grad is not None, name
        assert torch.isfinite(parameter.grad).all(), name
        if "embeddings" not in name:  # token vectors of names absent from the batch stay at zero gradient
            assert parameter.grad.abs().sum() > 0, name


def test_loss_is_gaussian_nll_with_label_error_in_quadrature():
    mean = torch.tensor([[0.0, 1.0]])
    log_variance = torch.tensor([[0.0, math.log(0.5)]])
    labels = torch.tensor([[1.0, float("nan")]])
    errors = torch.tensor([[1.0, 0.0]])
    variance = 1.0 + 1.0**2
    expected = 0.5 * (1.0 / variance + math.log(variance))  # only the labelled request counts
    assert gaussian_nll(mean, log_variance, labels, errors).item() == pytest.approx(expected)


def test_loss_ignores_padded_requests(tiny_model, tokenizer):
    batch = _batch(tokenizer, requests=("teff",))
    padded = dict(batch)
    padded["request_ids"] = torch.cat([batch["request_ids"], torch.zeros_like(batch["request_ids"])], dim=1)
    padded["labels"] = torch.cat([batch["labels"], torch.ones_like(batch["labels"])], dim=1)
    padded["label_errors"] = torch.cat([batch["label_errors"], batch["label_errors"]], dim=1)
    assert tiny_model(**padded).loss.item() == pytest.approx(tiny_model(**batch).loss.item(), rel=1e-6)


def test_permutation_of_inputs_gives_the_same_outputs(tiny_model, tokenizer):
    batch = _batch(tokenizer)
    permutation = torch.randperm(batch["input_ids"].shape[1], generator=torch.Generator().manual_seed(1))
    shuffled = dict(batch)
    for key in ("input_ids", "input_values", "input_errors", "attention_mask"):
        shuffled[key] = batch[key][:, permutation]
    torch.testing.assert_close(tiny_model(**shuffled).mean, tiny_model(**batch).mean, rtol=0, atol=1e-6)


def test_answers_do_not_depend_on_other_requests_or_stars(tiny_model, tokenizer):
    stars = create_test_stars(5)
    alone = tiny_model(**tokenizer(stars[2:3], requests=["teff"]))
    with_others = tiny_model(**tokenizer(stars, requests=["logg", "teff", "bp1"]))
    # teff of star 2 asked alone equals teff of star 2 asked in a batch of 5 stars beside two other requests
    torch.testing.assert_close(with_others.mean[2, 1], alone.mean[0, 0], rtol=0, atol=1e-6)
    torch.testing.assert_close(with_others.log_variance[2, 1], alone.log_variance[0, 0], rtol=0, atol=1e-6)


def test_encode_once_predict_many_equals_forward(tiny_model, tokenizer):
    batch = _batch(tokenizer)
    encoded = tiny_model.encode(batch["input_ids"], batch["input_values"], batch["attention_mask"])
    mean, log_variance, _ = tiny_model.predict(encoded, batch["request_ids"])
    torch.testing.assert_close(mean, tiny_model(**batch).mean, rtol=0, atol=0)
    assert tiny_model.embed(batch["input_ids"], batch["input_values"], batch["attention_mask"]).shape == (
        4,
        16,
    )


def test_bfloat16_on_cpu(tokenizer):
    model = create_test_model().to(torch.bfloat16)
    batch = _batch(tokenizer)
    output = model(**batch)
    assert output.mean.dtype == torch.bfloat16
    reference = create_test_model()(**batch).mean
    torch.testing.assert_close(output.mean.float(), reference, rtol=0.1, atol=0.1)


def test_too_long_input_is_refused(tokenizer):
    model = create_test_model(context_length=2)
    with pytest.raises(ValueError, match="exceed context_length=2"):
        model(**_batch(tokenizer))


def test_save_reload_has_no_missing_keys_and_equal_outputs(tmp_path, tiny_model, tokenizer):
    tiny_model.save_pretrained(tmp_path)
    reloaded, info = StellarForObservationPrediction.from_pretrained(tmp_path, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"]
    batch = _batch(tokenizer)
    torch.testing.assert_close(reloaded.eval()(**batch).mean, tiny_model(**batch).mean, rtol=0, atol=0)
    # the custom parameters (token vectors, extra key/value slot) survive meta-device loading
    for name in (
        "stellar.embeddings.weight",
        "stellar.embeddings.bias",
        "stellar.encoder.0.attention.bias_k",
    ):
        assert torch.equal(reloaded.state_dict()[name], tiny_model.state_dict()[name]), name
