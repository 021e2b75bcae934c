"""A dataset split as the arrays every task reads: standardised observations, their errors and identifiers.

The dataset is a folder written by ``python -m datasets_builder build`` (or a Hub dataset id) with ``train`` and
``test`` splits whose columns are vocabulary names in physical units (``DESIGN.md``, Contracts). The model's own
tokenizer standardises them, so model and baselines read exactly the same numbers.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from modeling_stellar import StarTokenizer

from .inputs import HEADLINE_INPUTS, LABELS

__all__ = ["Split", "load_split", "load_training_arrays", "split_holdout", "split_overlap", "validation_mask"]

SOURCE_ID = "gaia_dr3_source_id"
G_MAGNITUDE = "phot_g_mean_mag"


@dataclass(frozen=True)
class Split:
    """The stars of one split.

    Attributes
    ----------
    name : str
        Split name ("train", "test").
    values, errors : numpy.ndarray
        (n_stars, vocab_size) float64, standardised by the tokenizer (``to_arrays``): NaN value = not observed,
        error 0 = unknown. Column 0 (padding) is NaN.
    source_ids : numpy.ndarray
        (n_stars,) int64 Gaia DR3 source_id.
    g_mag : numpy.ndarray
        (n_stars,) float64 Gaia G magnitude [mag] that normalised the XP coefficients; NaN when absent.
    """

    name: str
    values: np.ndarray
    errors: np.ndarray
    source_ids: np.ndarray
    g_mag: np.ndarray

    def __len__(self) -> int:
        return len(self.values)

    def subset(self, index: np.ndarray) -> Split:
        """The stars at ``index`` (integer or boolean array)."""
        return Split(
            self.name, self.values[index], self.errors[index], self.source_ids[index], self.g_mag[index]
        )

    def physical(self, tokenizer: StarTokenizer, names: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Values and one-sigma errors of ``names`` in physical units, each (n_stars, len(names)) float64.

        Errors that the dataset does not know are 0 (the tokenizer's convention)."""
        ids = np.array(tokenizer.convert_names_to_ids(list(names)))
        values, _ = tokenizer.decode(np.broadcast_to(ids, (len(self), len(ids))), self.values[:, ids])
        return values, self.errors[:, ids] * tokenizer.scales_of(list(names))

    def has_all(self, tokenizer: StarTokenizer, names: Sequence[str]) -> np.ndarray:
        """(n_stars,) bool: the star observes every one of ``names``."""
        ids = tokenizer.convert_names_to_ids(list(names))
        return np.isfinite(self.values[:, ids]).all(axis=1)


def load_split(dataset: str | Path, split: str, tokenizer: StarTokenizer) -> Split:
    """Read one split of a dataset folder or Hub dataset id into a `Split`, standardised by ``tokenizer``.

    Columns that are not vocabulary names (identifiers, provenance) are ignored, except ``gaia_dr3_source_id``
    (required) and ``phot_g_mean_mag`` (NaN when absent).
    """
    from datasets import load_dataset

    table = load_dataset(str(dataset), split=split).with_format("numpy")
    if SOURCE_ID not in table.column_names:
        raise ValueError(f"dataset {dataset!r}, split {split!r}: no {SOURCE_ID!r} column")
    names = [n for n in tokenizer.observation_names if n in table.column_names]
    columns = names + [f"{n}_err" for n in names if f"{n}_err" in table.column_names]
    data = table.select_columns(
        [*columns, SOURCE_ID, *([G_MAGNITUDE] if G_MAGNITUDE in table.column_names else [])]
    )[:]
    values, errors = tokenizer.to_arrays({c: data[c] for c in columns})
    g_mag = (
        np.asarray(data[G_MAGNITUDE], dtype=np.float64)
        if G_MAGNITUDE in data
        else np.full(len(values), np.nan)
    )
    return Split(split, values, errors, np.asarray(data[SOURCE_ID], dtype=np.int64), g_mag)


def validation_mask(n_stars: int, seed: int, fraction: float) -> np.ndarray:
    """(n_stars,) bool: the seeded validation hold-out of a train split (a ``fraction`` of its stars, drawn with
    ``seed``), on which training validates and the uncertainties are calibrated; it is never trained on."""
    return np.random.default_rng(seed).random(n_stars) < fraction


def load_training_arrays(
    dataset: str | Path, tokenizer: StarTokenizer
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Standardised (values, errors) float32 arrays of the dataset's train split, each (n_stars, vocab_size), and its
    source ids (n_stars,): what training, the hold-out scores and distillation read."""
    from datasets import load_dataset

    train = load_dataset(str(dataset), split="train")
    missing = [name for name in LABELS + HEADLINE_INPUTS if name not in train.column_names]
    if missing:
        raise ValueError(f"dataset {dataset!r} lacks the columns training needs: {missing}")
    table = train.with_format("numpy")[:]
    values, errors = tokenizer.to_arrays(table, ignore_unknown=True)
    return values.astype(np.float32), errors.astype(np.float32), np.asarray(table[SOURCE_ID])


def split_holdout(
    values: np.ndarray, errors: np.ndarray, source_ids: np.ndarray, seed: int, fraction: float
) -> tuple[np.ndarray, np.ndarray, Split]:
    """The train split's seeded hold-out (`validation_mask` of ``seed`` and ``fraction``): (train_index, valid_index,
    holdout), the hold-out also as a `Split` for the loci and extinction scores, which read its labels only (its G
    magnitudes are NaN). A saved model's seed and fraction: `stellar_tasks.model_folder.holdout_settings`."""
    in_holdout = validation_mask(len(values), seed, fraction)
    train_index, valid_index = np.flatnonzero(~in_holdout), np.flatnonzero(in_holdout)
    no_g_mag = np.full(len(valid_index), np.nan)
    holdout = Split("validation", values[valid_index], errors[valid_index], source_ids[valid_index], no_g_mag)
    return train_index, valid_index, holdout


def split_overlap(train: Split, test: Split, test_ids_file: str | Path | None = None) -> dict[str, int]:
    """Provenance checks of the test split: stars shared with train, and (given the project's list of test source
    ids) test stars missing from that list and listed stars missing from the test split."""
    checks = {
        "train_stars": len(train),
        "test_stars": len(test),
        "shared_train_test": int(np.isin(test.source_ids, train.source_ids).sum()),
    }
    if test_ids_file is not None:
        listed = np.loadtxt(test_ids_file, dtype=np.int64, ndmin=1)
        checks["test_not_in_list"] = int((~np.isin(test.source_ids, listed)).sum())
        checks["listed_not_in_test"] = int((~np.isin(listed, test.source_ids)).sum())
    return checks
