"""Configuration of the stellar foundation model (`model_type = "stellar"`).

The architecture follows Leung & Bovy 2023 (arXiv:2308.10944; code: henrysky/astroNN_stars_foundation,
class ``StellarPerceptron``): a set encoder over (name, value) tokens, a cross-attention-only decoder that
answers requests, and an MLP head giving a mean and a log-variance per request.
"""

from __future__ import annotations

from dataclasses import field

from transformers import PreTrainedConfig

# Published sizes (architecture.md, "Architecture (published sizes; 8.85 M parameters)").
_PUBLISHED_SIZES = {
    "context_length": 64,
    "d_model": 128,
    "encoder_attention_heads": [16, 8],
    "encoder_ffn_dims": [1024, 512],
    "decoder_attention_heads": [16, 8, 4],
    "decoder_ffn_dims": [3096, 1548, 774],
    "head_hidden_dims": [3096, 1548, 774, 387],
    "dropout": 0.1,
    "activation_function": "gelu",
    "add_bias_kv": True,
    "norm_first": False,
}

_ACTIVATIONS = ("gelu", "relu", "silu")


class StellarConfig(PreTrainedConfig):
    r"""Sizes of a [`StellarForObservationPrediction`] model.

    The defaults are the *compact* model that this project trains on 2 CPU cores (0.22 M parameters). Why
    these sizes: training on 2 cores is compute-bound, and a step costs ~L * (4 d^2 + 2 d ffn) per encoder
    block. Halving d_model to 64 (4 heads of 16) and the feed-forward to 256 makes a step ~4x cheaper than
    d_model=128 and trained to 177 K / 0.41 / 0.27 dex (Teff / log g / [Fe/H], hold-out) in 7 minutes, where
    the d_model=128 model had not started learning the labels; the published 6.7 M-parameter head (76 % of
    its weights) is replaced by one 128-wide layer. It reads 63 tokens several times faster than the
    published architecture (``benchmarks/bench_forward.py``).
    ``StellarConfig.published()`` gives the published architecture exactly (8,845,529 parameters with the
    published 118-name vocabulary).

    Args:
        vocab_size (`int`, *optional*, defaults to 119):
            Number of token ids: the observation names of the tokenizer's vocabulary plus id 0 (padding).
        context_length (`int`, *optional*, defaults to 128):
            Most observation tokens one star may bring to the encoder. The model needs no positions, so this
            is a bound checked on input, not a learned size; 128 holds all 110 XP coefficients + 3 colours.
        d_model (`int`, *optional*, defaults to 64):
            Width of every token embedding and attention block.
        encoder_attention_heads (`list[int]`, *optional*, defaults to `[4, 4]`):
            Heads of each encoder self-attention block; its length is the encoder depth.
        encoder_ffn_dims (`list[int]`, *optional*, defaults to `[256, 256]`):
            Hidden width of each encoder block's feed-forward layer (same length as the heads).
        decoder_attention_heads (`list[int]`, *optional*, defaults to `[4, 4]`):
            Heads of each decoder cross-attention block; its length is the decoder depth.
        decoder_ffn_dims (`list[int]`, *optional*, defaults to `[256, 256]`):
            Hidden width of each decoder block's feed-forward layer.
        head_hidden_dims (`list[int]`, *optional*, defaults to `[128]`):
            Hidden widths of the MLP that maps a decoded request to its mean and log-variance.
        dropout (`float`, *optional*, defaults to 0.0):
            Dropout probability after attention, inside feed-forward layers and in the head.
        activation_function (`str`, *optional*, defaults to `"gelu"`):
            Non-linearity of the value embedding, feed-forward layers and head: "gelu", "relu" or "silu".
        add_bias_kv (`bool`, *optional*, defaults to `True`):
            Give every attention layer one learned extra key/value slot (torch's ``add_bias_kv``), so that a
            query always has something to attend to.
        norm_first (`bool`, *optional*, defaults to `False`):
            Pre-LN blocks when true; post-LN (the published choice) when false.
        layer_norm_eps (`float`, *optional*, defaults to 1e-5):
            Epsilon of every LayerNorm.
        initializer_range (`float`, *optional*, defaults to 0.02):
            Standard deviation of the normal initialisation of linear layers and token vectors.
        nll_beta (`float`, *optional*, defaults to 0.0):
            The loss: 0 is the published Gaussian NLL (Leung & Bovy 2023, Eq. 2); ``0 < beta <= 1`` weights
            each request's term by its detached variance to the power beta (beta-NLL, Seitzer et al. 2022).
            Measured on 600 supervised steps of the d_model=64 model: beta=0.5 gave 141 K / 0.30 / 0.19 dex
            against 126 K / 0.26 / 0.21 for beta=0, so 0 it is.
        is_encoder_decoder (`bool`, *optional*, defaults to `True`):
            Inherited flag, true for every stellar model (false is refused): the encoder reads the star, the
            decoder answers the requests, and the outputs are named as transformers' seq2seq outputs
            (`encoder_hidden_states`, `decoder_hidden_states`, `encoder_attentions`, `cross_attentions`,
            `encoder_last_hidden_state`). transformers' common model tests pick those fields, rather than
            `hidden_states` / `attentions`, from this flag. Nothing generates, so generation never reads it;
            a folder saved without it (the shipped one) loads with the default.

    transformers' common names map onto ours (`attribute_map`): ``hidden_size`` is ``d_model``,
    ``num_attention_heads`` is ``encoder_attention_heads`` (one entry per encoder block, as Swin's
    ``num_heads``) and ``num_hidden_layers`` is the encoder depth ``len(encoder_attention_heads)``, read-only:
    give the per-block lists to change it. The decoder's depth is ``decoder_layers``.

    Example:

    ```python
    >>> from modeling_stellar import StellarConfig, StellarForObservationPrediction
    >>> model = StellarForObservationPrediction(StellarConfig.published())
    >>> model.num_parameters()
    8845529
    ```
    """

    model_type = "stellar"
    attribute_map = {
        "hidden_size": "d_model",
        "num_attention_heads": "encoder_attention_heads",
        "num_hidden_layers": "encoder_layers",
    }

    # ours: vocabulary and context
    vocab_size: int = 119
    context_length: int = 128
    # ours: widths and depths
    d_model: int = 64
    encoder_attention_heads: list[int] = field(default_factory=lambda: [4, 4])
    encoder_ffn_dims: list[int] = field(default_factory=lambda: [256, 256])
    decoder_attention_heads: list[int] = field(default_factory=lambda: [4, 4])
    decoder_ffn_dims: list[int] = field(default_factory=lambda: [256, 256])
    head_hidden_dims: list[int] = field(default_factory=lambda: [128])
    # ours: regularisation and block details
    dropout: float = 0.0
    activation_function: str = "gelu"
    add_bias_kv: bool = True
    norm_first: bool = False
    layer_norm_eps: float = 1e-5
    initializer_range: float = 0.02
    # ours: the loss
    nll_beta: float = 0.0
    # inherited: an encoder over the star and a decoder over the requests, whatever the sizes
    is_encoder_decoder: bool = True

    @property
    def encoder_layers(self) -> int:
        """Number of encoder blocks (``num_hidden_layers``): one per entry of ``encoder_attention_heads``."""
        return len(self.encoder_attention_heads)

    @encoder_layers.setter
    def encoder_layers(self, value: int) -> None:
        # transformers' ConfigTester accepts NotImplementedError from a common property it cannot set.
        raise NotImplementedError(
            "StellarConfig.num_hidden_layers is len(encoder_attention_heads): give encoder_attention_heads and "
            "encoder_ffn_dims, one entry per block"
        )

    @property
    def decoder_layers(self) -> int:
        """Number of decoder blocks: one per entry of ``decoder_attention_heads``."""
        return len(self.decoder_attention_heads)

    def __post_init__(self, **kwargs) -> None:
        for name in (
            "encoder_attention_heads",
            "encoder_ffn_dims",
            "decoder_attention_heads",
            "decoder_ffn_dims",
            "head_hidden_dims",
        ):
            setattr(self, name, [int(v) for v in getattr(self, name)])
        super().__post_init__(**kwargs)
        self.validate_architecture()

    @classmethod
    def published(cls, vocab_size: int = 119, **overrides) -> StellarConfig:
        """The architecture of Leung & Bovy 2023 (architecture.md), for a vocabulary of ``vocab_size - 1`` names."""
        return cls(**{**_PUBLISHED_SIZES, "vocab_size": vocab_size, **overrides})

    def validate_architecture(self) -> None:
        """Raise ``ValueError`` naming the first field that cannot describe a model."""
        if self.vocab_size < 2:
            raise ValueError(
                f"StellarConfig.vocab_size must be >= 2 (padding + one name), got {self.vocab_size}"
            )
        for name in ("context_length", "d_model"):
            if getattr(self, name) < 1:
                raise ValueError(f"StellarConfig.{name} must be positive, got {getattr(self, name)}")
        for part in ("encoder", "decoder"):
            heads = getattr(self, f"{part}_attention_heads")
            ffn = getattr(self, f"{part}_ffn_dims")
            if not heads:
                raise ValueError(f"StellarConfig.{part}_attention_heads must list at least one block")
            if len(heads) != len(ffn):
                raise ValueError(
                    f"StellarConfig.{part}_ffn_dims has {len(ffn)} entries but {part}_attention_heads has "
                    f"{len(heads)}: give one feed-forward width per block"
                )
            for h in heads:
                if h < 1 or self.d_model % h:
                    raise ValueError(
                        f"StellarConfig.{part}_attention_heads: {h} heads do not divide d_model={self.d_model}"
                    )
            if any(f < 1 for f in ffn):
                raise ValueError(f"StellarConfig.{part}_ffn_dims must be positive, got {ffn}")
        if any(f < 1 for f in self.head_hidden_dims):
            raise ValueError(f"StellarConfig.head_hidden_dims must be positive, got {self.head_hidden_dims}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"StellarConfig.dropout must be in [0, 1), got {self.dropout}")
        if self.activation_function not in _ACTIVATIONS:
            raise ValueError(
                f"StellarConfig.activation_function must be one of {_ACTIVATIONS}, got {self.activation_function!r}"
            )
        if self.layer_norm_eps <= 0:
            raise ValueError(f"StellarConfig.layer_norm_eps must be positive, got {self.layer_norm_eps}")
        if self.initializer_range <= 0:
            raise ValueError(
                f"StellarConfig.initializer_range must be positive, got {self.initializer_range}"
            )
        if not 0.0 <= self.nll_beta <= 1.0:
            raise ValueError(f"StellarConfig.nll_beta must be in [0, 1], got {self.nll_beta}")
        if self.is_encoder_decoder is not True:
            raise ValueError(
                "StellarConfig.is_encoder_decoder must be True (the model is an encoder over the star and a "
                f"decoder over the requests), got {self.is_encoder_decoder!r}"
            )
