"""StellarConfig: fields, validation, presets and serialisation."""

import pytest

from modeling_stellar import StarTokenizer, StellarConfig, StellarForObservationPrediction
from tests.conftest import PUBLISHED_VOCABULARY_FILE, VOCABULARY_FILE


def test_published_preset_has_the_published_parameter_count():
    # architecture.md: "Architecture (published sizes; 8.85 M parameters)"; exact count from the authors' model.
    vocabulary = StarTokenizer.from_pretrained(str(PUBLISHED_VOCABULARY_FILE))
    assert len(vocabulary.observation_names) == 118
    model = StellarForObservationPrediction(StellarConfig.published(vocab_size=vocabulary.vocab_size))
    assert model.num_parameters() == 8_845_529


def test_default_is_much_smaller_than_published():
    vocab_size = StarTokenizer.from_pretrained(str(VOCABULARY_FILE)).vocab_size
    default = StellarForObservationPrediction(StellarConfig(vocab_size=vocab_size)).num_parameters()
    assert default < 8_845_529 / 5


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"d_model": 102}, "encoder_attention_heads"),
        ({"encoder_ffn_dims": [64]}, "encoder_ffn_dims"),
        ({"decoder_attention_heads": []}, "decoder_attention_heads"),
        ({"dropout": 1.5}, "dropout"),
        ({"activation_function": "tanh"}, "activation_function"),
        ({"vocab_size": 1}, "vocab_size"),
        ({"context_length": 0}, "context_length"),
        ({"head_hidden_dims": [0]}, "head_hidden_dims"),
        ({"layer_norm_eps": 0.0}, "layer_norm_eps"),
    ],
)
def test_invalid_values_raise_naming_the_field(overrides, field):
    with pytest.raises(ValueError, match=field):
        StellarConfig(**overrides)


def test_save_and_reload_keeps_every_field(tmp_path):
    config = StellarConfig.published(dropout=0.05)
    config.save_pretrained(tmp_path)
    reloaded = StellarConfig.from_pretrained(tmp_path)
    assert reloaded.to_dict() == config.to_dict()
    assert reloaded.hidden_size == reloaded.d_model == 128
    assert reloaded.decoder_ffn_dims == [3096, 1548, 774]
