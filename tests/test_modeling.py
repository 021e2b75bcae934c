"""StellarForObservationPrediction: shapes, gradients, loss, invariances, dtypes, save/reload.

An invariance or a dtype check is only evidence when the model's answers visibly depend on what the check varies, so
those tests use a model with large weights and assert that dependence too; the mutation tests break the code or the
outputs (``tests/mutations.py``) and assert that the check reports it.
"""

import math

import pytest
import torch

from modeling_stellar import (
    StarTokenizer,
    StellarForObservationPrediction,
    StellarPredictionOutput,
    gaussian_nll,
)
from tests.conftest import create_test_model, create_test_stars
from tests.mutations import attention_sees_padding
from tests.test_pipeline import lively_model


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


INDEPENDENCE_ATOL = 1e-5
"""How far float32 arithmetic may move an answer between batch layouts (seen: 1.2e-7 on answers of about 1)."""


def padding_and_input_effects(
    model: StellarForObservationPrediction, tokenizer: StarTokenizer
) -> tuple[float, float]:
    """How far one star's Teff answer (largest change of mean or log-variance, standardised) moves

    1. when it is asked beside four stars with more observations (so its tokens are padded) and two other
       requests, rather than alone: 0 for a model whose attention ignores padding and other requests;
    2. when it is asked alone with another star's values of the same observations: how visibly the model reads
       its inputs, hence how large a leak of padding or other stars into the answer would be.
    """
    stars = create_test_stars(5)
    star = {name: value for name, value in stars[2].items() if name not in ("rp0", "rp1", "rp2")}
    stars[2] = star
    batch = tokenizer(stars, requests=["logg", "teff", "bp1"])
    assert not batch["attention_mask"][2].all(), "the star must be padded in the batch"
    # a requested name is never an input, so the star asked alone lacks the names the batch requests
    alone = {name: value for name, value in star.items() if name not in ("logg", "logg_err", "bp1")}
    other_values = {name: stars[3][name] for name in alone}
    with torch.no_grad():
        in_batch = model(**batch)
        by_itself = model(**tokenizer([alone], requests=["teff"]))
        other = model(**tokenizer([other_values], requests=["teff"]))

    def moved(output: StellarPredictionOutput, index: tuple[int, int]) -> float:
        return max(
            (output.mean[index] - by_itself.mean[0, 0]).abs().item(),
            (output.log_variance[index] - by_itself.log_variance[0, 0]).abs().item(),
        )

    return moved(in_batch, (2, 1)), moved(other, (0, 0))


def test_answers_do_not_depend_on_other_requests_or_stars(tokenizer):
    padding_effect, input_effect = padding_and_input_effects(lively_model(), tokenizer)
    assert input_effect > 100 * INDEPENDENCE_ATOL, "the model barely reads its inputs: no leak could show"
    assert padding_effect <= INDEPENDENCE_ATOL


def test_independence_check_reports_attention_to_padding(tokenizer, monkeypatch):
    attention_sees_padding(monkeypatch)
    padding_effect, _ = padding_and_input_effects(lively_model(), tokenizer)
    assert padding_effect > INDEPENDENCE_ATOL


def test_encode_once_predict_many_equals_forward(tiny_model, tokenizer):
    batch = _batch(tokenizer)
    encoded = tiny_model.encode(batch["input_ids"], batch["input_values"], batch["attention_mask"])
    mean, log_variance, _ = tiny_model.predict(encoded, batch["request_ids"])
    torch.testing.assert_close(mean, tiny_model(**batch).mean, rtol=0, atol=0)
    assert tiny_model.embed(batch["input_ids"], batch["input_values"], batch["attention_mask"]).shape == (
        4,
        16,
    )


BFLOAT16_TOLERANCE = 0.1
"""Largest RMS difference of bfloat16 answers from float32 ones, in units of the float32 answers' spread (seen:
0.03 for the mean, 0.024 for the log-variance; answers that are all zero or all equal give 1 or more)."""


def bfloat16_error_in_spread(low: torch.Tensor, reference: torch.Tensor) -> float:
    """RMS of ``low - reference`` over the standard deviation of ``reference`` (over stars and requests): a
    tolerance that scales with the answers, so that small answers cannot pass it by being small."""
    difference = low.detach().float() - reference.detach()
    return (difference.pow(2).mean().sqrt() / reference.detach().std()).item()


def bfloat16_and_float32_answers(
    tokenizer: StarTokenizer,
) -> tuple[StellarPredictionOutput, StellarPredictionOutput]:
    """The outputs of one model in bfloat16 and in float32 for 16 stars: a model with weights large enough that
    its answers are of order 1 and vary from star to star and request to request (the default initialisation
    gives answers of about 3e-4)."""
    batch = _batch(tokenizer, n_stars=16)
    with torch.no_grad():
        low = create_test_model(initializer_range=0.3).to(torch.bfloat16)(**batch)
        reference = create_test_model(initializer_range=0.3)(**batch)
    return low, reference


def test_bfloat16_on_cpu(tokenizer):
    low, reference = bfloat16_and_float32_answers(tokenizer)
    assert low.mean.dtype == low.log_variance.dtype == torch.bfloat16
    for name in ("mean", "log_variance"):
        assert getattr(reference, name).std() > 0.1, f"float32 {name}s barely vary: nothing to compare"
        assert bfloat16_error_in_spread(getattr(low, name), getattr(reference, name)) <= BFLOAT16_TOLERANCE, (
            name
        )


def test_bfloat16_check_reports_zero_and_constant_answers(tokenizer):
    _, reference = bfloat16_and_float32_answers(tokenizer)
    for name in ("mean", "log_variance"):
        answers = getattr(reference, name)
        for broken in (torch.zeros_like(answers), torch.full_like(answers, answers.mean().item())):
            assert bfloat16_error_in_spread(broken.bfloat16(), answers) > BFLOAT16_TOLERANCE, name


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
