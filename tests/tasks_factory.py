"""Tiny stand-ins for the real dataset and model, for the tests of ``stellar_tasks``.

`make_star_table` draws stars with the real dataset's columns: labels, colours, extinction and XP coefficients
recovered (with ``datasets_builder.xp``) from smooth blackbody-like spectra, divided by a G-band flux that
is consistent with ``phot_g_mean_mag``. `write_dataset` lays them out like a built dataset folder
(``data/{split}-*.parquet`` + ``meta/stats.json``); `save_model_folder` saves a tiny model as ``train.py`` would.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
from astropy.stats import mad_std

from datasets_builder.constants import G_ZERO_POINT, XP_SAMPLING_NM
from datasets_builder.xp import XP_NAMES, fit_coefficients
from modeling_stellar import StarTokenizer
from stellar_tasks.data import Split
from tests.conftest import VOCABULARY_FILE, create_test_model

OBSERVATIONS = (*XP_NAMES, "bprp", "jh", "jk", "teff", "logg", "fe_h", "alpha_m", "ak_targ")


def make_star_table(n_stars: int, seed: int, first_source_id: int) -> pd.DataFrame:
    """``n_stars`` synthetic stars, one row each, physical units, columns as in the real dataset."""
    rng = np.random.default_rng(seed)
    giant = rng.random(n_stars) < 0.6
    teff = np.where(giant, rng.uniform(3900, 5200, n_stars), rng.uniform(4500, 6600, n_stars))
    logg = np.where(
        giant, 1.0 + 2.4 * (teff - 3900) / 1300 + rng.normal(0, 0.2, n_stars), rng.uniform(4.0, 4.7, n_stars)
    )
    fe_h = np.where(
        rng.random(n_stars) < 0.15, rng.normal(-1.5, 0.3, n_stars), rng.normal(-0.2, 0.25, n_stars)
    )
    ak = rng.uniform(0.0, 0.3, n_stars)
    # Blackbody-like spectra, reddened, with a metallicity-dependent blue depression.
    wavelength_um = XP_SAMPLING_NM[None, :] / 1000.0
    planck = wavelength_um**-5 / np.expm1(14387.77 / (wavelength_um * teff[:, None]))
    blue = 1.0 - 0.1 * (fe_h[:, None] + 2.0) * np.exp(-(((XP_SAMPLING_NM[None, :] - 400.0) / 60.0) ** 2))
    flux = planck * blue * 10 ** (-0.4 * 8.0 * ak[:, None] * (550.0 / XP_SAMPLING_NM[None, :]) ** 1.5)
    flux *= 1e-16 / flux.mean(axis=1, keepdims=True)
    fit = fit_coefficients(flux, 0.01 * flux)
    # Any positive per-star scale is self-consistent with phot_g_mean_mag below.
    g_flux = fit.coefficients[:, 0] + fit.coefficients[:, 55]
    coefficients = fit.coefficients / g_flux[:, None]
    errors = np.nan_to_num(fit.errors, nan=0.0) / g_flux[:, None] + 1e-5
    table = {name: coefficients[:, i] for i, name in enumerate(XP_NAMES)}
    table |= {f"{name}_err": errors[:, i] for i, name in enumerate(XP_NAMES)}
    colour = (7000.0 - teff) / 2500.0
    table |= {
        "bprp": colour + 1.5 * ak + rng.normal(0, 0.02, n_stars),
        "jh": 0.4 * colour + 0.2 + 0.9 * ak + rng.normal(0, 0.02, n_stars),
        "jk": 0.5 * colour + 0.25 + 1.0 * ak + rng.normal(0, 0.02, n_stars),
        "teff": teff,
        "logg": logg,
        "fe_h": fe_h,
        "alpha_m": np.clip(-0.3 * fe_h, 0, 0.4) + rng.normal(0, 0.03, n_stars),
        "ak_targ": ak,
    }
    for name, error in {
        "bprp": 0.01,
        "jh": 0.02,
        "jk": 0.02,
        "teff": 50.0,
        "logg": 0.05,
        "fe_h": 0.02,
    }.items():
        table[f"{name}_err"] = np.full(n_stars, error)
    table["alpha_m_err"] = np.full(n_stars, 0.02)
    table["ak_targ_err"] = np.full(n_stars, np.nan)
    table["gaia_dr3_source_id"] = np.arange(first_source_id, first_source_id + n_stars, dtype=np.int64)
    table["phot_g_mean_mag"] = G_ZERO_POINT.value - 2.5 * np.log10(g_flux)
    return pd.DataFrame(table)


def statistics(train: pd.DataFrame) -> dict:
    """``meta/stats.json`` of a train table: centre = nanmedian, scale = mad_std of each observation."""
    return {
        name: {
            "center": float(np.nanmedian(train[name])),
            "scale": float(mad_std(train[name], ignore_nan=True)),
        }
        for name in OBSERVATIONS
    }


def write_dataset(
    folder: Path, n_train: int = 300, n_test: int = 100, seed: int = 0
) -> tuple[Path, np.ndarray]:
    """A dataset folder like the builder's; returns it and the test split's source ids."""
    train = make_star_table(n_train, seed, first_source_id=1_000_000)
    test = make_star_table(n_test, seed + 1, first_source_id=9_000_000)
    (folder / "data").mkdir(parents=True)
    (folder / "meta").mkdir()
    train.to_parquet(folder / "data" / "train-00000.parquet")
    test.to_parquet(folder / "data" / "test-00000.parquet")
    (folder / "meta" / "stats.json").write_text(json.dumps(statistics(train)))
    return folder, test["gaia_dr3_source_id"].to_numpy()


def dataset_tokenizer(folder: Path) -> StarTokenizer:
    """The project's vocabulary normalised with the dataset's statistics (what train.py does)."""
    tokenizer = StarTokenizer.from_pretrained(str(VOCABULARY_FILE))
    tokenizer.set_normalization(json.loads((folder / "meta" / "stats.json").read_text()))
    return tokenizer


def save_model_folder(folder: Path, tokenizer: StarTokenizer, seed: int = 0) -> Path:
    """A tiny untrained model saved with its tokenizer and a ``training_facts.json`` as train.py writes it."""
    model = create_test_model(seed=seed, vocab_size=tokenizer.vocab_size)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    facts = {
        "training": {"model_preset": "compact", "batch_size": 8, "learning_rate": 0.001, "max_steps": 3},
        "dataset": "tiny",
        "steps": 3,
        "train_minutes": 0.05,
        "hardware": "CPU, 2 cores",
        "parameters": model.num_parameters(),
    }
    (folder / "training_facts.json").write_text(json.dumps(facts))
    return folder


def in_memory_splits(
    n_train: int = 300, n_test: int = 100, seed: int = 0
) -> tuple[StarTokenizer, Split, Split]:
    """A tokenizer normalised on the train stars, and train and test `Split` objects, without a dataset folder."""
    tables = {
        "train": make_star_table(n_train, seed, 1_000_000),
        "test": make_star_table(n_test, seed + 1, 9_000_000),
    }
    tokenizer = StarTokenizer.from_pretrained(str(VOCABULARY_FILE))
    tokenizer.set_normalization(statistics(tables["train"]))
    splits = []
    for name, table in tables.items():
        values, errors = tokenizer.to_arrays(table, ignore_unknown=True)
        ids, g_mag = table["gaia_dr3_source_id"].to_numpy(), table["phot_g_mean_mag"].to_numpy()
        splits.append(Split(name, values, errors, ids, g_mag))
    return tokenizer, splits[0], splits[1]
