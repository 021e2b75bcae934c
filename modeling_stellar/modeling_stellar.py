"""The stellar foundation model: a set encoder over observation tokens and a decoder that answers requests.

Reference: Leung & Bovy 2023, "Towards an astronomical foundation model for stars with a Transformer-based
model", arXiv:2308.10944 (MNRAS 2024); authors' code henrysky/astroNN_stars_foundation (``StellarPerceptron``).

A star is a set of (name id, standardised value) tokens. The value embedding is ``act(w[id] * x + b[id])``;
a request for a name is embedded as ``w[id]`` alone. The encoder (self-attention, no positions) reads the
observed set once; each decoder block lets the requests attend to the final encoder states (cross-attention
only, no self-attention between requests, so requests are independent); the head gives a mean and a
log-variance per request, in standardised units.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers import PreTrainedModel
from transformers.utils import ModelOutput

from .configuration_stellar import StellarConfig

_ACTIVATIONS = {"gelu": nn.GELU, "relu": nn.ReLU, "silu": nn.SiLU}


@dataclass
class StellarEncoderOutput(ModelOutput):
    """Output of `StellarModel.encode`.

    Args:
        last_hidden_state (`torch.FloatTensor` of shape `(batch, L, d_model)`):
            Final encoder state of every input token (padding positions hold values that are never used).
        attention_mask (`torch.LongTensor` of shape `(batch, L)`):
            1 on real tokens, 0 on padding; returned so that decoding needs nothing else.
        hidden_states (`tuple(torch.FloatTensor)`, returned when `output_hidden_states=True`):
            The token embeddings and the output of every encoder block, each `(batch, L, d_model)`:
            ``num_hidden_layers + 1`` tensors.
        attentions (`tuple(torch.FloatTensor)`, returned when `output_attentions=True`):
            Self-attention weights of every encoder block, each `(batch, heads, L, L[+1])` (the extra key is the
            learned ``add_bias_kv`` slot).
    """

    last_hidden_state: torch.FloatTensor | None = None
    attention_mask: torch.LongTensor | None = None
    hidden_states: tuple[torch.FloatTensor, ...] | None = None
    attentions: tuple[torch.FloatTensor, ...] | None = None


@dataclass
class StellarDecoderOutput(ModelOutput):
    """Output of `StellarModel.decode`.

    Args:
        last_hidden_state (`torch.FloatTensor` of shape `(batch, R, d_model)`):
            Decoder state of every request.
        hidden_states (`tuple(torch.FloatTensor)`, returned when `output_hidden_states=True`):
            The request embeddings and the output of every decoder block, each `(batch, R, d_model)`.
        cross_attentions (`tuple(torch.FloatTensor)`, returned when `output_attentions=True`):
            Cross-attention weights of every decoder block, each `(batch, heads, R, L[+1])`.
    """

    last_hidden_state: torch.FloatTensor | None = None
    hidden_states: tuple[torch.FloatTensor, ...] | None = None
    cross_attentions: tuple[torch.FloatTensor, ...] | None = None


@dataclass
class StellarModelOutput(ModelOutput):
    """Output of `StellarModel.forward`.

    The fields are named as transformers' `Seq2SeqModelOutput` because the config says `is_encoder_decoder`:
    code written for any encoder-decoder model (its common model tests among it) reads `encoder_hidden_states`,
    `decoder_hidden_states`, `encoder_attentions` and `cross_attentions` when that flag is set, and
    `hidden_states` / `attentions` when it is not. There is no `decoder_attentions`: the decoder has no
    self-attention (each request attends to the star alone).

    Args:
        last_hidden_state (`torch.FloatTensor` of shape `(batch, R, d_model)`):
            Decoder state of every request.
        encoder_last_hidden_state (`torch.FloatTensor` of shape `(batch, L, d_model)`):
            Final encoder state of every input token.
        encoder_hidden_states (`tuple(torch.FloatTensor)`, returned when `output_hidden_states=True`):
            Token embeddings and every encoder block's output, `num_hidden_layers + 1` tensors `(batch, L, d_model)`.
        decoder_hidden_states (`tuple(torch.FloatTensor)`, returned when `output_hidden_states=True`):
            Request embeddings and every decoder block's output, `decoder_layers + 1` tensors `(batch, R, d_model)`.
        encoder_attentions (`tuple(torch.FloatTensor)`, returned when `output_attentions=True`):
            Self-attention weights of every encoder block, `(batch, heads, L, L[+1])`.
        cross_attentions (`tuple(torch.FloatTensor)`, returned when `output_attentions=True`):
            Cross-attention weights of every decoder block, `(batch, heads, R, L[+1])` (the decoder has no
            self-attention).
    """

    last_hidden_state: torch.FloatTensor | None = None
    encoder_last_hidden_state: torch.FloatTensor | None = None
    encoder_hidden_states: tuple[torch.FloatTensor, ...] | None = None
    decoder_hidden_states: tuple[torch.FloatTensor, ...] | None = None
    encoder_attentions: tuple[torch.FloatTensor, ...] | None = None
    cross_attentions: tuple[torch.FloatTensor, ...] | None = None


@dataclass
class StellarPredictionOutput(ModelOutput):
    """Output of `StellarForObservationPrediction.forward`: the encoder-decoder fields of `StellarModelOutput`
    (named as transformers' seq2seq outputs, for the same reason) after the loss and the Gaussian.

    Args:
        loss (`torch.FloatTensor` of shape `()`, returned when `labels` is given):
            Gaussian negative log-likelihood (beta-NLL when `config.nll_beta > 0`), label error in quadrature,
            averaged over requests with a label.
        mean (`torch.FloatTensor` of shape `(batch, R)`):
            Predicted value of every request, standardised (the tokenizer's ``decode`` gives physical units).
        log_variance (`torch.FloatTensor` of shape `(batch, R)`):
            Natural log of the predicted variance, standardised units.
        decoder_hidden_state (`torch.FloatTensor` of shape `(batch, R, d_model)`):
            Decoder state of every request.
        encoder_last_hidden_state (`torch.FloatTensor` of shape `(batch, L, d_model)`):
            Final encoder state of every input token.
        encoder_hidden_states (`tuple(torch.FloatTensor)`, returned when `output_hidden_states=True`):
            Token embeddings and every encoder block's output, `num_hidden_layers + 1` tensors `(batch, L, d_model)`.
        decoder_hidden_states (`tuple(torch.FloatTensor)`, returned when `output_hidden_states=True`):
            Request embeddings and every decoder block's output, `decoder_layers + 1` tensors `(batch, R, d_model)`.
        encoder_attentions (`tuple(torch.FloatTensor)`, returned when `output_attentions=True`):
            Self-attention weights of every encoder block, `(batch, heads, L, L[+1])`.
        cross_attentions (`tuple(torch.FloatTensor)`, returned when `output_attentions=True`):
            Cross-attention weights of every decoder block, `(batch, heads, R, L[+1])` (the decoder has no
            self-attention).
    """

    loss: torch.FloatTensor | None = None
    mean: torch.FloatTensor | None = None
    log_variance: torch.FloatTensor | None = None
    decoder_hidden_state: torch.FloatTensor | None = None
    encoder_last_hidden_state: torch.FloatTensor | None = None
    encoder_hidden_states: tuple[torch.FloatTensor, ...] | None = None
    decoder_hidden_states: tuple[torch.FloatTensor, ...] | None = None
    encoder_attentions: tuple[torch.FloatTensor, ...] | None = None
    cross_attentions: tuple[torch.FloatTensor, ...] | None = None


class StellarTokenEmbedding(nn.Module):
    """Per-name vectors ``w`` and ``b`` (vocab_size, d_model): values embed as ``act(w[id] x + b[id])``,
    requests as ``w[id]``."""

    def __init__(self, config: StellarConfig, num_embeddings: int | None = None) -> None:
        super().__init__()
        self.num_embeddings = config.vocab_size if num_embeddings is None else num_embeddings
        self.weight = nn.Parameter(torch.empty(self.num_embeddings, config.d_model))
        self.bias = nn.Parameter(torch.empty(self.num_embeddings, config.d_model))
        self.activation = _ACTIVATIONS[config.activation_function]()

    def forward(self, input_ids: torch.LongTensor, input_values: torch.Tensor) -> torch.Tensor:
        # (batch, L) ids and values -> (batch, L, d_model)
        values = input_values.to(self.weight.dtype).unsqueeze(-1)
        return self.activation(self.weight[input_ids] * values + self.bias[input_ids])

    def embed_requests(self, request_ids: torch.LongTensor) -> torch.Tensor:
        # (batch, R) ids -> (batch, R, d_model)
        return self.weight[request_ids]


class StellarAttention(nn.Module):
    """Multi-head attention with optional learned extra key/value slot (torch's ``add_bias_kv``).

    ``config._attn_implementation`` picks the kernel: "sdpa" (the default, torch's fused
    ``scaled_dot_product_attention``) or "eager" (the same product written out, which can return its weights).
    """

    def __init__(self, config: StellarConfig, num_heads: int) -> None:
        super().__init__()
        self.config = config  # read at call time: `set_attn_implementation` may change the kernel
        d_model = config.d_model
        self.num_heads = num_heads
        self.head_dim = d_model // num_heads
        self.dropout = config.dropout
        self.q_proj = nn.Linear(d_model, d_model)
        self.k_proj = nn.Linear(d_model, d_model)
        self.v_proj = nn.Linear(d_model, d_model)
        self.out_proj = nn.Linear(d_model, d_model)
        if config.add_bias_kv:
            self.bias_k = nn.Parameter(torch.empty(1, 1, d_model))
            self.bias_v = nn.Parameter(torch.empty(1, 1, d_model))
        else:
            self.bias_k = self.bias_v = None

    def _split(self, x: torch.Tensor) -> torch.Tensor:
        batch, length, _ = x.shape
        return x.view(batch, length, self.num_heads, self.head_dim).transpose(1, 2)  # (batch, heads, len, hd)

    def forward(
        self,
        queries: torch.Tensor,
        keys_values: torch.Tensor,
        key_mask: torch.Tensor,
        output_attentions: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """queries (batch, Q, d), keys_values (batch, K, d), key_mask (batch, K) bool True = attend.

        Returns the attended queries (batch, Q, d) and, with ``output_attentions`` (eager only), the weights
        (batch, heads, Q, K[+1])."""
        batch = queries.shape[0]
        keys, values = self.k_proj(keys_values), self.v_proj(keys_values)
        if self.bias_k is not None:
            keys = torch.cat([keys, self.bias_k.expand(batch, 1, -1)], dim=1)
            values = torch.cat([values, self.bias_v.expand(batch, 1, -1)], dim=1)
            key_mask = F.pad(key_mask, (0, 1), value=True)
        mask = key_mask[:, None, None, :]  # (batch, 1, 1, K[+1]) broadcast over heads and queries
        query, key, value = self._split(self.q_proj(queries)), self._split(keys), self._split(values)
        dropout = self.dropout if self.training else 0.0
        weights = None
        if self.config._attn_implementation == "eager" or output_attentions:
            if self.config._attn_implementation != "eager":
                raise ValueError(
                    "output_attentions=True needs attn_implementation='eager' (the fused sdpa kernel does not "
                    "return weights): load the model with attn_implementation='eager'"
                )
            scores = query @ key.transpose(-1, -2) / math.sqrt(self.head_dim)  # (batch, heads, Q, K[+1])
            weights = scores.masked_fill(~mask, float("-inf")).softmax(dim=-1)
            attended = F.dropout(weights, p=dropout, training=self.training) @ value
        else:
            attended = F.scaled_dot_product_attention(query, key, value, attn_mask=mask, dropout_p=dropout)
        attended = attended.transpose(1, 2).reshape(queries.shape)  # (batch, Q, d_model)
        return self.out_proj(attended), weights


class StellarBlock(nn.Module):
    """Attention then feed-forward, each with residual, dropout and LayerNorm (post-LN unless ``norm_first``).

    Self-attention in the encoder (queries are the keys), cross-attention in the decoder.
    """

    def __init__(self, config: StellarConfig, num_heads: int, ffn_dim: int) -> None:
        super().__init__()
        self.norm_first = config.norm_first
        self.attention = StellarAttention(config, num_heads)
        self.attention_norm = nn.LayerNorm(config.d_model, eps=config.layer_norm_eps)
        self.feed_forward = nn.Sequential(
            nn.Linear(config.d_model, ffn_dim),
            _ACTIVATIONS[config.activation_function](),
            nn.Dropout(config.dropout),
            nn.Linear(ffn_dim, config.d_model),
        )
        self.feed_forward_norm = nn.LayerNorm(config.d_model, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.dropout)

    def forward(
        self,
        queries: torch.Tensor,
        keys_values: torch.Tensor,
        key_mask: torch.Tensor,
        output_attentions: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(batch, Q, d) queries -> (batch, Q, d) states, and the attention weights when asked (see
        `StellarAttention`)."""
        if self.norm_first:
            normed = self.attention_norm(queries)
            context = normed if keys_values is queries else keys_values
            attended, weights = self.attention(normed, context, key_mask, output_attentions)
            hidden = queries + self.dropout(attended)
            return hidden + self.dropout(self.feed_forward(self.feed_forward_norm(hidden))), weights
        attended, weights = self.attention(queries, keys_values, key_mask, output_attentions)
        hidden = self.attention_norm(queries + self.dropout(attended))
        return self.feed_forward_norm(hidden + self.dropout(self.feed_forward(hidden))), weights


class StellarPreTrainedModel(PreTrainedModel):
    """Weight initialisation and loading for the stellar models."""

    config_class = StellarConfig
    base_model_prefix = "stellar"
    main_input_name = "input_ids"
    _no_split_modules = ["StellarBlock"]
    _supports_sdpa = True

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        """Normal(0, initializer_range) for linear layers and token vectors (BERT/TST convention), zero biases,
        unit LayerNorms; the value-embedding offsets ``b`` start at zero so that ``act(w x)`` is odd-ish at start."""
        std = self.config.initializer_range
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, mean=0.0, std=std)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.LayerNorm):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
        elif isinstance(module, StellarTokenEmbedding):
            nn.init.normal_(module.weight, mean=0.0, std=1.0 / math.sqrt(self.config.d_model))
            nn.init.zeros_(module.bias)
        elif isinstance(module, StellarAttention) and module.bias_k is not None:
            nn.init.normal_(module.bias_k, mean=0.0, std=std)
            nn.init.normal_(module.bias_v, mean=0.0, std=std)

    def _get_resized_embeddings(
        self,
        old_embeddings: StellarTokenEmbedding,
        new_num_tokens: int | None = None,
        pad_to_multiple_of: int | None = None,
        mean_resizing: bool = True,
    ) -> StellarTokenEmbedding:
        """`resize_token_embeddings`' hook for our two-vector embedding (``w`` and ``b`` per name): keep the first
        ``min(old, new)`` names, initialise added names as `_init_weights` does (``mean_resizing``, meant for
        language-model logits, does not apply: nothing here is a softmax over the vocabulary)."""
        if pad_to_multiple_of is not None:
            new_num_tokens = -(-(new_num_tokens or old_embeddings.num_embeddings) // pad_to_multiple_of)
            new_num_tokens *= pad_to_multiple_of
        if new_num_tokens is None or new_num_tokens == old_embeddings.num_embeddings:
            return old_embeddings
        new_embeddings = StellarTokenEmbedding(self.config, new_num_tokens).to(
            old_embeddings.weight.device, old_embeddings.weight.dtype
        )
        self._init_weights(new_embeddings)
        kept = min(old_embeddings.num_embeddings, new_num_tokens)
        with torch.no_grad():
            new_embeddings.weight[:kept] = old_embeddings.weight[:kept]
            new_embeddings.bias[:kept] = old_embeddings.bias[:kept]
        return new_embeddings


class StellarModel(StellarPreTrainedModel):
    """Token embedding, set encoder and request decoder: stars in, one state per request out."""

    def __init__(self, config: StellarConfig) -> None:
        super().__init__(config)
        self.embeddings = StellarTokenEmbedding(config)
        self.encoder = nn.ModuleList(
            StellarBlock(config, heads, ffn)
            for heads, ffn in zip(config.encoder_attention_heads, config.encoder_ffn_dims, strict=True)
        )
        self.encoder_norm = (
            nn.LayerNorm(config.d_model, eps=config.layer_norm_eps) if config.norm_first else None
        )
        self.decoder = nn.ModuleList(
            StellarBlock(config, heads, ffn)
            for heads, ffn in zip(config.decoder_attention_heads, config.decoder_ffn_dims, strict=True)
        )
        self.post_init()

    def get_input_embeddings(self) -> StellarTokenEmbedding:
        return self.embeddings

    def set_input_embeddings(self, value: StellarTokenEmbedding) -> None:
        self.embeddings = value

    def encode(
        self,
        input_ids: torch.LongTensor,
        input_values: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        output_hidden_states: bool | None = None,
        output_attentions: bool | None = None,
    ) -> StellarEncoderOutput:
        """Read each star once.

        Args:
            input_ids (`torch.LongTensor` of shape `(batch, L)`): observation name ids, 0 = padding.
            input_values (`torch.FloatTensor` of shape `(batch, L)`): standardised values (0 at padding).
            attention_mask (`torch.Tensor` of shape `(batch, L)`, *optional*): 1 on real tokens; default
                ``input_ids != 0``.
            output_hidden_states, output_attentions (`bool`, *optional*): also return every block's states /
                attention weights; default from the config.
        """
        if input_ids.shape != input_values.shape:
            raise ValueError(
                f"input_ids {tuple(input_ids.shape)} and input_values {tuple(input_values.shape)} differ"
            )
        if input_ids.shape[1] > self.config.context_length:
            raise ValueError(
                f"{input_ids.shape[1]} input tokens exceed context_length={self.config.context_length}"
            )
        if attention_mask is None:
            attention_mask = (input_ids != 0).long()
        output_hidden_states, output_attentions = self._output_flags(output_hidden_states, output_attentions)
        key_mask = attention_mask.bool()
        hidden = self.embeddings(input_ids, input_values)
        states, attentions = [hidden], []
        for block in self.encoder:
            hidden, weights = block(hidden, hidden, key_mask, output_attentions)
            states.append(hidden)
            attentions.append(weights)
        if self.encoder_norm is not None:
            hidden = self.encoder_norm(hidden)
        return StellarEncoderOutput(
            last_hidden_state=hidden,
            attention_mask=attention_mask,
            hidden_states=tuple(states) if output_hidden_states else None,
            attentions=tuple(attentions) if output_attentions else None,
        )

    def decode(
        self,
        encoder_output: StellarEncoderOutput,
        request_ids: torch.LongTensor,
        output_hidden_states: bool | None = None,
        output_attentions: bool | None = None,
    ) -> StellarDecoderOutput:
        """Answer requests from encoded stars: (batch, R) request ids -> (batch, R, d_model) states.

        Each request attends only to the encoder states, so its answer does not depend on the other requests.
        """
        output_hidden_states, output_attentions = self._output_flags(output_hidden_states, output_attentions)
        key_mask = encoder_output.attention_mask.bool()
        hidden = self.embeddings.embed_requests(request_ids)
        states, attentions = [hidden], []
        for block in self.decoder:
            hidden, weights = block(hidden, encoder_output.last_hidden_state, key_mask, output_attentions)
            states.append(hidden)
            attentions.append(weights)
        return StellarDecoderOutput(
            last_hidden_state=hidden,
            hidden_states=tuple(states) if output_hidden_states else None,
            cross_attentions=tuple(attentions) if output_attentions else None,
        )

    def _output_flags(
        self, output_hidden_states: bool | None, output_attentions: bool | None
    ) -> tuple[bool, bool]:
        """transformers' convention: an argument left at None takes the config's value."""
        if output_hidden_states is None:
            output_hidden_states = self.config.output_hidden_states
        if output_attentions is None:
            output_attentions = self.config.output_attentions
        return bool(output_hidden_states), bool(output_attentions)

    def forward(
        self,
        input_ids: torch.LongTensor,
        input_values: torch.Tensor,
        request_ids: torch.LongTensor,
        attention_mask: torch.Tensor | None = None,
        output_hidden_states: bool | None = None,
        output_attentions: bool | None = None,
        return_dict: bool | None = None,
        **kwargs,
    ) -> StellarModelOutput | tuple:
        """Encode (batch, L) tokens and decode (batch, R) requests; see `encode` and `decode`."""
        encoded = self.encode(
            input_ids, input_values, attention_mask, output_hidden_states, output_attentions
        )
        decoded = self.decode(encoded, request_ids, output_hidden_states, output_attentions)
        output = StellarModelOutput(
            last_hidden_state=decoded.last_hidden_state,
            encoder_last_hidden_state=encoded.last_hidden_state,
            encoder_hidden_states=encoded.hidden_states,
            decoder_hidden_states=decoded.hidden_states,
            encoder_attentions=encoded.attentions,
            cross_attentions=decoded.cross_attentions,
        )
        return output if return_dict is not False else output.to_tuple()


class StellarForObservationPrediction(StellarPreTrainedModel):
    """The any-to-any model: `StellarModel` plus a head giving a Gaussian (mean, log-variance) per request.

    This is what ``AutoModel.from_pretrained(..., trust_remote_code=True)`` returns for a saved stellar model.
    """

    def __init__(self, config: StellarConfig) -> None:
        super().__init__(config)
        self.stellar = StellarModel(config)
        layers: list[nn.Module] = []
        width = config.d_model
        for hidden in config.head_hidden_dims:
            layers += [
                nn.Linear(width, hidden),
                _ACTIVATIONS[config.activation_function](),
                nn.Dropout(config.dropout),
            ]
            width = hidden
        self.head = nn.Sequential(*layers)
        self.mean_head = nn.Linear(width, 1)
        self.log_variance_head = nn.Linear(width, 1)
        self.post_init()

    def encode(self, input_ids, input_values, attention_mask=None, **output_flags) -> StellarEncoderOutput:
        """See `StellarModel.encode`."""
        return self.stellar.encode(input_ids, input_values, attention_mask, **output_flags)

    def predict(
        self, encoder_output: StellarEncoderOutput, request_ids: torch.LongTensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(batch, R) requests of already encoded stars -> mean, log_variance (batch, R), states (batch, R, d)."""
        decoded = self.stellar.decode(encoder_output, request_ids).last_hidden_state
        return (*self._gaussian(decoded), decoded)

    def _gaussian(self, decoded: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(batch, R, d_model) decoder states -> mean, log_variance (batch, R)."""
        features = self.head(decoded)
        return self.mean_head(features).squeeze(-1), self.log_variance_head(features).squeeze(-1)

    def embed(self, input_ids, input_values, attention_mask=None) -> torch.Tensor:
        """One embedding per star: the mean final encoder state over its real tokens, (batch, d_model)."""
        encoded = self.encode(input_ids, input_values, attention_mask)
        weights = encoded.attention_mask.to(encoded.last_hidden_state.dtype).unsqueeze(-1)
        return (encoded.last_hidden_state * weights).sum(1) / weights.sum(1).clamp_min(1.0)

    def forward(
        self,
        input_ids: torch.LongTensor,
        input_values: torch.Tensor,
        request_ids: torch.LongTensor,
        attention_mask: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        label_errors: torch.Tensor | None = None,
        input_errors: torch.Tensor | None = None,
        output_hidden_states: bool | None = None,
        output_attentions: bool | None = None,
        return_dict: bool | None = None,
        **kwargs,
    ) -> StellarPredictionOutput | tuple:
        """Predict every request of every star.

        Args:
            input_ids, input_values, attention_mask: (batch, L) tokens, see `StellarModel.encode`.
            request_ids (`torch.LongTensor` of shape `(batch, R)`): names to predict; 0 = no request (padding).
            labels (`torch.FloatTensor` of shape `(batch, R)`, *optional*): standardised true values; NaN where
                unknown. Requests without a label (NaN, or request id 0) are left out of the loss.
            label_errors (`torch.FloatTensor` of shape `(batch, R)`, *optional*): standardised measurement
                errors of the labels, added in quadrature to the predicted variance in the loss; default 0.
            input_errors: accepted so that ``model(**tokenizer(...))`` works; uncertainties of the inputs are
                not embedded (as published), they only enter the loss through ``label_errors``.
            output_hidden_states, output_attentions (`bool`, *optional*): also return every block's states /
                attention weights (the latter with ``attn_implementation="eager"``); default from the config.
        """
        encoded = self.stellar.encode(
            input_ids, input_values, attention_mask, output_hidden_states, output_attentions
        )
        decoded = self.stellar.decode(encoded, request_ids, output_hidden_states, output_attentions)
        mean, log_variance = self._gaussian(decoded.last_hidden_state)
        loss = None
        if labels is not None:
            loss = gaussian_nll(
                mean, log_variance, labels, label_errors, request_ids != 0, beta=self.config.nll_beta
            )
        output = StellarPredictionOutput(
            loss=loss,
            mean=mean,
            log_variance=log_variance,
            decoder_hidden_state=decoded.last_hidden_state,
            encoder_last_hidden_state=encoded.last_hidden_state,
            encoder_hidden_states=encoded.hidden_states,
            decoder_hidden_states=decoded.hidden_states,
            encoder_attentions=encoded.attentions,
            cross_attentions=decoded.cross_attentions,
        )
        return output if return_dict is not False else output.to_tuple()


def gaussian_nll(
    mean: torch.Tensor,
    log_variance: torch.Tensor,
    labels: torch.Tensor,
    label_errors: torch.Tensor | None = None,
    request_mask: torch.Tensor | None = None,
    beta: float = 0.0,
) -> torch.Tensor:
    """Gaussian negative log-likelihood with the label's error in quadrature (Leung & Bovy 2023, Eq. 2):
    ``V = exp(log_variance) + err**2``, ``L = 0.5 ((y - mean)**2 / V + ln V)``, averaged over the requests
    whose label is finite (and whose ``request_mask`` is true). All tensors (batch, R), standardised units.

    ``beta > 0`` gives the beta-NLL of Seitzer et al. 2022 (ICLR, "On the pitfalls of heteroscedastic
    uncertainty estimation"): each term is weighted by the detached ``V**beta``, so that requests the model
    is still unsure of do not learn their mean more slowly; the optimum (mean, variance) is unchanged.
    Returns 0 (with a gradient path) when no request has a label."""
    labelled = torch.isfinite(labels)
    if request_mask is not None:
        labelled = labelled & request_mask.bool()
    mean, log_variance = mean.float(), log_variance.float()
    target = torch.where(labelled, labels.float(), mean.detach())
    variance = log_variance.exp()
    if label_errors is not None:
        variance = variance + torch.where(labelled, label_errors.float(), 0.0).square()
    per_request = 0.5 * ((target - mean).square() / variance + variance.log())
    if beta:
        per_request = per_request * variance.detach().pow(beta)
    weights = labelled.float()
    return (per_request * weights).sum() / weights.sum().clamp_min(1.0)
