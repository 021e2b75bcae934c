"""Batched, array-level prediction: the one inference loop that evaluation, the tasks and the CLI share.

The encoder reads each star once; all requests are answered in one decoder pass.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from modeling_stellar import StarTokenizer, StellarForObservationPrediction
from modeling_stellar.pipeline_stellar import positive_integer


def mask_to_inputs(tokenizer: StarTokenizer, values: np.ndarray, input_names: Sequence[str]) -> np.ndarray:
    """A copy of (batch, vocab_size) standardised ``values`` where only ``input_names`` stay observed."""
    shown = np.full_like(values, np.nan)
    ids = tokenizer.convert_names_to_ids(list(input_names))
    shown[:, ids] = values[:, ids]
    return shown


@torch.no_grad()
def predict_arrays(
    model: StellarForObservationPrediction,
    tokenizer: StarTokenizer,
    values: np.ndarray,
    errors: np.ndarray,
    requests: Sequence[str],
    batch_size: int = 1024,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Predict ``requests`` for every star from all its observed (finite) values.

    Args:
        values, errors: (n_stars, vocab_size) standardised arrays from ``tokenizer.to_arrays`` (NaN = not
            observed); use `mask_to_inputs` to restrict what the model may read.
        requests: names to predict, the same for every star.

    Returns:
        ``(mean, std, usable)``: physical-unit (n_stars, R) float64 arrays, NaN for stars with no input left
        once the requests are removed, and the (n_stars,) bool mask of stars that could be predicted.
    """
    positive_integer(batch_size, "batch_size")  # a negative one would silently predict nothing
    request_ids = np.array(tokenizer.convert_names_to_ids(list(requests)))
    shown = values.copy()
    shown[:, request_ids] = np.nan
    usable = np.isfinite(shown[:, 1:]).any(axis=1)
    mean = np.full((len(values), len(request_ids)), np.nan)
    std = np.full_like(mean, np.nan)
    rows = np.flatnonzero(usable)
    if len(rows):
        standardised_mean, log_variance = predict_standardised(
            model, tokenizer, shown[rows], errors[rows], requests, batch_size
        )
        ids = np.broadcast_to(request_ids, standardised_mean.shape)
        mean[rows], std[rows] = tokenizer.decode(ids, standardised_mean, log_variance)
    return mean, std, usable


@torch.no_grad()
def predict_standardised(
    model: StellarForObservationPrediction,
    tokenizer: StarTokenizer,
    values: np.ndarray,
    errors: np.ndarray,
    requests: Sequence[str],
    batch_size: int = 1024,
) -> tuple[np.ndarray, np.ndarray]:
    """The model's own answer, before decoding: standardised mean and log-variance (n_stars, R) float32.

    Every star reads all its observed values that are not requested and must have one (the tokenizer's
    ``StarInputError`` otherwise); `predict_arrays` is this in physical units, for any stars.
    """
    positive_integer(batch_size, "batch_size")
    means, log_variances = (
        [np.zeros((0, len(requests)), np.float32)],
        [np.zeros((0, len(requests)), np.float32)],
    )
    for start in range(0, len(values), batch_size):
        rows = slice(start, start + batch_size)
        batch = tokenizer.encode_arrays(values[rows], errors[rows], list(requests))
        batch = {k: v.to(model.device) for k, v in batch.items()}
        encoded = model.encode(batch["input_ids"], batch["input_values"], batch["attention_mask"])
        mean, log_variance, _ = model.predict(encoded, batch["request_ids"])
        means.append(mean.float().cpu().numpy())
        log_variances.append(log_variance.float().cpu().numpy())
    return np.concatenate(means), np.concatenate(log_variances)


@torch.no_grad()
def embed_arrays(
    model: StellarForObservationPrediction,
    tokenizer: StarTokenizer,
    values: np.ndarray,
    errors: np.ndarray,
    batch_size: int = 1024,
) -> np.ndarray:
    """The encoder's star embedding (``model.embed``: mean final encoder state over the star's tokens).

    Args:
        values, errors: (n_stars, vocab_size) standardised arrays (NaN = not observed); every star needs at least
            one observation (`mask_to_inputs` restricts what the encoder reads).

    Returns:
        (n_stars, d_model) float32 array.
    """
    embeddings = []
    for start in range(0, len(values), batch_size):
        batch = tokenizer.encode_arrays(
            values[start : start + batch_size], errors[start : start + batch_size]
        )
        batch = {k: v.to(model.device) for k, v in batch.items()}
        embeddings.append(
            model.embed(batch["input_ids"], batch["input_values"], batch["attention_mask"]).float().cpu()
        )
    return torch.cat(embeddings).numpy()
