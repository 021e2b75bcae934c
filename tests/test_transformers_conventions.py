"""transformers' own conventions, checked the way its common suites check them (issue 13, point 10).

Modelled on what transformers' ``tests/test_configuration_common.py`` (``ConfigTester``) and
``tests/test_modeling_common.py`` (``ModelTesterMixin``) assert, written for our tiny config. Those suites are
not in the wheel and expect a language-model layout (``input_ids`` alone, an ``nn.Embedding``); these are our
own checks of the same promises. Left out, and why:

- ``num_labels`` / ``id2label`` round trips: the model has no classification head, it regresses requests.
- ``test_attention_outputs`` for self-attention in the decoder (and ``decoder_attentions`` in
  ``test_retain_grad_hidden_states_attentions``): the decoder has none (requests are independent), so only
  encoder attentions and cross-attentions exist; both are checked below.
- generation, past key values, gradient checkpointing, head masking, torchscript/fx, flash/flex attention,
  tensor/pipeline parallel plans: nothing generates, no cache exists, and only "sdpa" and "eager" kernels are
  offered (``_supports_sdpa``; any other ``attn_implementation`` is refused by transformers itself), chosen
  when the model is made or loaded (``set_attn_implementation`` works only on the AttentionInterface).
- ``mean_resizing`` of added embeddings: it keeps a language model's next-token distribution unchanged; our
  embeddings feed no softmax over names, so added names start as `_init_weights` starts every name.
"""

from __future__ import annotations

import inspect
import json

import pytest
import torch
from torch import nn

from modeling_stellar import StellarConfig, StellarForObservationPrediction, StellarModel
from tests.conftest import REPO_ROOT, create_test_config, create_test_model, create_test_stars

REQUESTS = ["teff", "logg", "jh"]


def _batch(tokenizer, n_stars: int = 3) -> dict[str, torch.Tensor]:
    stars = create_test_stars(n_stars)
    del stars[0]["bp3"], stars[0]["rp2"]  # one shorter star, so that the batch holds padding
    return tokenizer(stars, requests=REQUESTS, return_labels=True)


# --------------------------------------------------------------------------------------------- ConfigTester
def test_config_has_the_common_properties():
    config = create_test_config()
    assert config.vocab_size == 119
    assert config.hidden_size == config.d_model == 16
    assert config.num_attention_heads == config.encoder_attention_heads == [4, 2]
    assert config.num_hidden_layers == config.encoder_layers == 2
    assert config.decoder_layers == 2


def test_common_properties_can_be_set_or_refuse_with_not_implemented():
    # ConfigTester sets each common property and accepts NotImplementedError from those a model cannot set.
    config = create_test_config()
    config.hidden_size = 32
    assert config.d_model == 32
    config.num_attention_heads = [8, 8]
    assert config.encoder_attention_heads == [8, 8]
    with pytest.raises(NotImplementedError, match="encoder_attention_heads"):
        config.num_hidden_layers = 3
    assert StellarConfig(hidden_size=32, encoder_attention_heads=[4, 4]).d_model == 32
    with pytest.raises(NotImplementedError):
        StellarConfig(num_hidden_layers=3)


def test_config_json_string_file_and_folder_round_trips(tmp_path):
    inputs = {"d_model": 32, "encoder_attention_heads": [4, 8], "encoder_ffn_dims": [16, 16], "nll_beta": 0.5}
    config = StellarConfig(**inputs)
    as_json = json.loads(config.to_json_string())
    assert {key: as_json[key] for key in inputs} == inputs
    assert "num_hidden_layers" not in as_json and "encoder_layers" not in as_json  # derived, never stored
    config.to_json_file(tmp_path / "config.json")
    assert StellarConfig.from_json_file(tmp_path / "config.json").to_dict() == config.to_dict()
    config.save_pretrained(tmp_path / "folder")
    assert StellarConfig.from_pretrained(tmp_path / "folder").to_dict() == config.to_dict()
    config.save_pretrained(tmp_path / "with_subfolder" / "sub")
    reloaded = StellarConfig.from_pretrained(tmp_path / "with_subfolder", subfolder="sub")
    assert reloaded.to_dict() == config.to_dict()


def test_config_without_arguments_is_the_default():
    assert StellarConfig().to_dict() == StellarConfig(**{}).to_dict()
    assert StellarConfig().nll_beta == 0.0


def test_invalid_nll_beta_raises_naming_it():
    with pytest.raises(ValueError, match="nll_beta"):
        StellarConfig(nll_beta=1.5)


# ----------------------------------------------------------------------------------------- ModelTesterMixin
def _mixin_encoder_hidden_states(output, config: StellarConfig) -> tuple[torch.Tensor, ...]:
    # ModelTesterMixin.test_hidden_states_output picks the encoder's states by the config's flag; without it,
    # `hidden_states`, which an encoder-decoder output does not have.
    return output.encoder_hidden_states if config.is_encoder_decoder else output.hidden_states


def test_config_says_encoder_decoder_as_the_outputs_are_named(tmp_path):
    # The outputs carry seq2seq names (encoder_/decoder_hidden_states, encoder_attentions, cross_attentions), which
    # transformers' common code reads only when `config.is_encoder_decoder`; so every stellar config says so.
    assert create_test_config().is_encoder_decoder and StellarConfig.published().is_encoder_decoder
    shipped = REPO_ROOT / "pretrained" / "stellar-foundation-apogee-xp"
    # the shipped folder was saved before the flag: it loads with the class default
    assert "is_encoder_decoder" not in json.loads((shipped / "config.json").read_text())
    assert StellarConfig.from_pretrained(shipped).is_encoder_decoder
    create_test_config().save_pretrained(tmp_path)
    assert json.loads((tmp_path / "config.json").read_text())["is_encoder_decoder"] is True
    assert StellarConfig.from_pretrained(tmp_path).is_encoder_decoder
    with pytest.raises(ValueError, match="is_encoder_decoder"):
        StellarConfig(is_encoder_decoder=False)


@pytest.mark.parametrize("model_class", [StellarModel, StellarForObservationPrediction])
def test_hidden_states_output(model_class, tokenizer):
    config = create_test_config(decoder_attention_heads=[4, 2, 2], decoder_ffn_dims=[32, 16, 16])
    torch.manual_seed(0)
    model = model_class(config).eval()
    batch = _batch(tokenizer)
    length, requests = batch["input_ids"].shape[1], batch["request_ids"].shape[1]
    for output in (
        model(**batch, output_hidden_states=True),
        model_class(_with(config, output_hidden_states=True)).eval()(**batch),  # the config's flag
    ):
        assert len(_mixin_encoder_hidden_states(output, config)) == config.num_hidden_layers + 1
        assert len(output.decoder_hidden_states) == config.decoder_layers + 1 == 4
        assert all(h.shape == (3, length, config.hidden_size) for h in output.encoder_hidden_states)
        assert all(h.shape == (3, requests, config.hidden_size) for h in output.decoder_hidden_states)
    plain = model(**batch)
    assert plain.encoder_hidden_states is None and plain.decoder_hidden_states is None
    full = model(**batch, output_hidden_states=True)
    last = full.last_hidden_state if model_class is StellarModel else full.decoder_hidden_state
    torch.testing.assert_close(full.decoder_hidden_states[-1], last, rtol=0, atol=0)


@pytest.mark.parametrize("model_class", [StellarModel, StellarForObservationPrediction])
def test_retain_grad_hidden_states_attentions(model_class, tokenizer):
    # ModelTesterMixin's seq2seq branch (taken as `config.is_encoder_decoder`): the first encoder and decoder
    # states and attention weights keep a gradient of the first output. Its `decoder_attentions` (decoder
    # self-attention) does not exist here: requests attend only to the star, through `cross_attentions`.
    flags = {"output_hidden_states": True, "output_attentions": True}  # set on the config, as the mixin does
    config = create_test_config(attn_implementation="eager", **flags)
    assert config.is_encoder_decoder
    torch.manual_seed(0)
    output = model_class(config).train()(**_batch(tokenizer))
    kept = {
        "encoder_hidden_states": output.encoder_hidden_states[0],
        "decoder_hidden_states": output.decoder_hidden_states[0],
        "encoder_attentions": output.encoder_attentions[0],
        "cross_attentions": output.cross_attentions[0],
    }
    assert "decoder_attentions" not in output
    for tensor in kept.values():
        tensor.retain_grad()
    output[0].flatten()[0].backward(retain_graph=True)  # the loss, or the first request's first state
    assert {name: tensor.grad is not None for name, tensor in kept.items()} == dict.fromkeys(kept, True)


def test_attention_outputs_with_eager_and_equal_to_sdpa(tokenizer):
    batch = _batch(tokenizer)
    length, requests = batch["input_ids"].shape[1], batch["request_ids"].shape[1]
    sdpa = create_test_model()
    eager = create_test_model(attn_implementation="eager")
    assert sdpa.config._attn_implementation == "sdpa" and eager.config._attn_implementation == "eager"
    output = eager(**batch, output_attentions=True)
    config = eager.config
    assert len(output.encoder_attentions) == config.num_hidden_layers
    assert len(output.cross_attentions) == config.decoder_layers
    for heads, weights in zip(config.encoder_attention_heads, output.encoder_attentions, strict=True):
        assert weights.shape == (3, heads, length, length + 1)  # + the learned add_bias_kv slot
        torch.testing.assert_close(weights.sum(-1), torch.ones(weights.shape[:-1]))
    for heads, weights in zip(config.decoder_attention_heads, output.cross_attentions, strict=True):
        assert weights.shape == (3, heads, requests, length + 1)
    padding = (batch["attention_mask"] == 0)[:, None, None, :]  # (batch, 1, 1, L): never attended
    assert padding.any()
    assert (output.cross_attentions[0][:, :, :, :length].masked_select(padding) == 0).all()
    torch.testing.assert_close(output.mean, sdpa(**batch).mean, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(output.loss, sdpa(**batch).loss, rtol=1e-5, atol=1e-5)


def test_output_attentions_is_refused_with_the_fused_kernel(tokenizer):
    with pytest.raises(ValueError, match="eager"):
        create_test_model()(**_batch(tokenizer), output_attentions=True)


def test_eager_attention_is_chosen_at_loading(tokenizer, tmp_path):
    # transformers switches kernels after loading (`set_attn_implementation`) only for models written on its
    # AttentionInterface; ours picks between two kernels of its own, so the choice is made at loading.
    create_test_model().save_pretrained(tmp_path)
    model = StellarForObservationPrediction.from_pretrained(tmp_path, attn_implementation="eager")
    assert model.config._attn_implementation == "eager"
    assert len(model(**_batch(tokenizer), output_attentions=True).cross_attentions) == 2


def test_get_and_set_input_embeddings():
    model = create_test_model()
    embeddings = model.get_input_embeddings()
    assert embeddings is model.stellar.embeddings and embeddings.num_embeddings == 119
    replacement = type(embeddings)(model.config, 119)
    model.set_input_embeddings(replacement)
    assert model.get_input_embeddings() is replacement
    assert model.get_output_embeddings() is None  # no tied output layer to resize with it


def test_resize_token_embeddings_adds_a_name_and_keeps_the_old_answers(tokenizer, tmp_path):
    model = create_test_model()
    batch = _batch(tokenizer)
    with torch.no_grad():
        before = model(**batch)
    resized = model.resize_token_embeddings(121)
    assert resized.weight.shape == resized.bias.shape == (121, 16)
    assert model.config.vocab_size == 121 and model.get_input_embeddings() is resized
    assert torch.isfinite(resized.weight[119:]).all() and (resized.bias[119:] == 0).all()
    with torch.no_grad():
        after = model(**batch)
        torch.testing.assert_close(after.mean, before.mean, rtol=0, atol=0)
        # a star that shows the new name (id 120) is read, and the new name can be requested
        ids = torch.cat([batch["input_ids"][:, :1], torch.full((3, 1), 120)], dim=1)
        values = torch.cat([batch["input_values"][:, :1], torch.ones(3, 1)], dim=1)
        assert torch.isfinite(model(ids, values, torch.tensor([[120]] * 3)).mean).all()
    model.resize_token_embeddings(119)
    assert model.config.vocab_size == 119
    model.save_pretrained(tmp_path)
    reloaded, info = StellarForObservationPrediction.from_pretrained(tmp_path, output_loading_info=True)
    assert not info["missing_keys"] and not info["mismatched_keys"]


def test_model_main_input_name_and_forward_signature():
    for model_class in (StellarModel, StellarForObservationPrediction):
        model = model_class(create_test_config())
        arguments = list(inspect.signature(model.forward).parameters)
        assert arguments[:3] == ["input_ids", "input_values", "request_ids"]
        assert model.main_input_name == arguments[0]
        assert {"output_hidden_states", "output_attentions", "return_dict"} <= set(arguments)


def test_return_dict_false_gives_the_same_tensors(tokenizer):
    model = create_test_model()
    batch = _batch(tokenizer)
    as_dict = model(**batch)
    as_tuple = model(**batch, return_dict=False)
    assert isinstance(as_tuple, tuple) and len(as_tuple) == len(as_dict.to_tuple())
    for left, right in zip(as_tuple, as_dict.to_tuple(), strict=True):
        torch.testing.assert_close(left, right, rtol=0, atol=0)


def test_determinism_in_eval_mode(tokenizer):
    model = create_test_model()
    batch = _batch(tokenizer)
    torch.testing.assert_close(model(**batch).mean, model(**batch).mean, rtol=0, atol=0)


def test_initialization_is_small_and_layer_norms_are_identity():
    # ModelTesterMixin.test_initialization: weights drawn around zero, norms at one, biases at zero.
    model = create_test_model()
    for name, parameter in model.named_parameters():
        if name.endswith("norm.weight"):
            assert (parameter == 1).all(), name
        elif name.endswith(".bias") and "embeddings" not in name:
            assert (parameter == 0).all(), name
        else:
            assert parameter.abs().mean() < 0.5, name


def test_loss_uses_the_configured_nll_beta(tokenizer):
    from modeling_stellar import gaussian_nll

    batch = _batch(tokenizer)
    model = create_test_model(nll_beta=0.5)
    output = model(**batch)
    expected = gaussian_nll(
        output.mean,
        output.log_variance,
        batch["labels"],
        batch["label_errors"],
        batch["request_ids"] != 0,
        0.5,
    )
    torch.testing.assert_close(output.loss, expected, rtol=0, atol=0)
    assert not torch.allclose(create_test_model(nll_beta=0.0)(**batch).loss, expected)


def _with(config: StellarConfig, **overrides) -> StellarConfig:
    return StellarConfig(**{**config.to_dict(), **overrides})


def test_training_step_on_every_model_class(tokenizer):
    # ModelTesterMixin.test_training: a backward pass through the model's own loss.
    model = create_test_model().train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    loss = model(**_batch(tokenizer)).loss
    loss.backward()
    optimizer.step()
    assert isinstance(model.get_input_embeddings(), nn.Module) and torch.isfinite(loss)
