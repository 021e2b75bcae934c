"""Star embeddings: do a test star's nearest train-set neighbours in the encoder's space share its parameters?

Each star is embedded from the headline inputs (XP coefficients and colours, no labels) with ``model.embed``. For a
draw of test stars, the k most similar train stars (cosine similarity) are found; the scatter of the neighbours'
labels around the star's own is compared with that of k random train stars.
"""

from __future__ import annotations

import numpy as np
import torch

from modeling_stellar import StarTokenizer, StellarForObservationPrediction

from .data import Split
from .inference import embed_arrays, mask_to_inputs
from .inputs import HEADLINE_INPUTS, LABELS
from .metrics import score

__all__ = ["neighbour_summary"]

N_NEIGHBOURS = 10
"""Neighbours per test star."""


def _embed(model, tokenizer: StarTokenizer, split: Split, index: np.ndarray) -> torch.Tensor:
    shown = mask_to_inputs(tokenizer, split.values[index], HEADLINE_INPUTS)
    embedding = torch.from_numpy(embed_arrays(model, tokenizer, shown, split.errors[index]))
    return torch.nn.functional.normalize(embedding, dim=1)


def neighbour_summary(
    model: StellarForObservationPrediction,
    tokenizer: StarTokenizer,
    train: Split,
    test: Split,
    n_query: int = 1000,
    n_reference: int = 10_000,
    k: int = N_NEIGHBOURS,
    seed: int = 0,
) -> dict:
    """Scatter of the labels of each test star's ``k`` nearest train neighbours around its own labels, against ``k``
    random train stars; ``n_query`` test stars and ``n_reference`` train stars (seeded draws) among those with every
    headline input.

    Returns a JSON-ready dict: per label, the metric of (star label, neighbour label) pairs for ``neighbours`` and
    ``random``, and their scatter ratio.
    """
    rng = np.random.default_rng(seed)
    train_index = np.flatnonzero(train.has_all(tokenizer, HEADLINE_INPUTS))
    train_index = np.sort(rng.choice(train_index, min(n_reference, len(train_index)), replace=False))
    test_index = np.flatnonzero(test.has_all(tokenizer, HEADLINE_INPUTS))
    test_index = np.sort(rng.choice(test_index, min(n_query, len(test_index)), replace=False))
    k = min(k, len(train_index))
    reference = _embed(model, tokenizer, train, train_index)
    query = _embed(model, tokenizer, test, test_index)
    neighbours = torch.cat(
        [torch.topk(chunk @ reference.T, k, dim=1).indices for chunk in query.split(512)]
    ).numpy()
    random = rng.integers(0, len(train_index), size=neighbours.shape)
    train_labels, _ = train.subset(train_index).physical(tokenizer, LABELS)
    test_labels, _ = test.subset(test_index).physical(tokenizer, LABELS)
    summary: dict = {
        "n_query": len(test_index),
        "n_reference": len(train_index),
        "k": k,
        "inputs": "headline (a)",
    }
    for j, label in enumerate(LABELS):
        own = np.repeat(test_labels[:, j], k)
        found = score(own, train_labels[neighbours.ravel(), j])
        baseline = score(own, train_labels[random.ravel(), j])
        summary[label] = {
            "neighbours": found,
            "random": baseline,
            "scatter_ratio": found["scatter"] / baseline["scatter"],
        }
    return summary
