"""The headline measurement, as a new user makes it: the shipped folder copied elsewhere and loaded through
``pipeline(model=..., trust_remote_code=True)``, Teff, log g, [Fe/H] and [alpha/M] of the test stars from the
63 headline inputs (BP0-29, RP0-29, ``bprp``, ``jh``, ``jk``, with their errors), beside XGBoost trained on the
train split in the same run (4000 trees, learning rate 0.05, subsample and colsample 0.8: the anchor's settings)
on the same 63 features.

Star sets: the test stars with all three of Teff, log g and [Fe/H] (3,516 stars; the set of XGBoost's anchor and
of the time-to-accuracy curve), and for [alpha/M] also the giants (log g < 3.5) among them. XGBoost is trained, as
the anchor was, on the train stars with all three labels (the model trains on every star, self-supervised). Scatter is
``mad_std(truth - prediction)``; the model's calibration is the robust std of z = (truth - mean) / sigma and the
share of stars within 1 sigma (`stellar_tasks.metrics.score`).

    python benchmarks/bench_headline.py --dataset data/apogee-gaia-xp --model pretrained/stellar-foundation-apogee-xp

Writes benchmarks/results/headline.csv (one row per label and star set).
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path

import numpy as np
from datasets import load_dataset
from transformers import pipeline

from results_table import RESULTS_DIR, write_results
from stellar_tasks.baselines import XGBoostSettings, fit_predict_xgboost
from stellar_tasks.inputs import HEADLINE_INPUTS, REPORT_LABELS
from stellar_tasks.inputs import LABELS as PARAMETERS
from stellar_tasks.metrics import score

RESULTS = RESULTS_DIR / "headline.csv"
LABELS = list(REPORT_LABELS)
XGBOOST = XGBoostSettings(n_estimators=4000, learning_rate=0.05, subsample=0.8, colsample_bytree=0.8)


def columns(table, names: list[str]) -> np.ndarray:
    """(n_stars, len(names)) float64 array of a numpy-formatted split."""
    return np.stack([np.asarray(table[name], dtype=np.float64) for name in names], axis=1)


def model_predictions(model: str, test, batch_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Means and sigmas (n_test, 4) of `LABELS` through the pipeline of a copy of ``model``."""
    with tempfile.TemporaryDirectory() as scratch:
        copy = Path(scratch) / Path(model).name
        shutil.copytree(model, copy)
        predictor = pipeline(model=str(copy), trust_remote_code=True)
        wanted = [*HEADLINE_INPUTS] + [f"{name}_err" for name in HEADLINE_INPUTS]
        stars = test.select_columns(wanted).to_pandas()
        answers = predictor(stars, requests=LABELS, batch_size=batch_size)
    mean = np.array([[star[name]["mean"] for name in LABELS] for star in answers])
    std = np.array([[star[name]["std"] for name in LABELS] for star in answers])
    return mean, std


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--model", required=True, help="the model folder (copied elsewhere before loading)")
    parser.add_argument("--batch-size", type=int, default=512)
    args = parser.parse_args(argv)
    train = load_dataset(args.dataset, split="train").with_format("numpy")
    test = load_dataset(args.dataset, split="test")
    mean, std = model_predictions(args.model, test, args.batch_size)
    test_arrays = test.with_format("numpy")
    truth = columns(test_arrays, LABELS)
    truth_error = np.nan_to_num(columns(test_arrays, [f"{name}_err" for name in LABELS]))
    # XGBoost learns from the train stars of the scored population (all three labels, as the anchor): trained on
    # every star with a Teff, the hot stars without [Fe/H] pull its squared error and cost it ~20 % in Teff scatter.
    train_truth = columns(train, LABELS)
    anchor_train = np.isfinite(train_truth[:, : len(PARAMETERS)]).all(axis=1)
    xgboost, record = fit_predict_xgboost(
        columns(train, HEADLINE_INPUTS)[anchor_train],
        train_truth[anchor_train],
        columns(test_arrays, HEADLINE_INPUTS),
        XGBOOST,
    )
    anchor = np.isfinite(truth[:, : len(PARAMETERS)]).all(axis=1)
    star_sets = {
        "all three labels": anchor,
        "giants (log g < 3.5), all three labels": anchor & (truth[:, 1] < 3.5),
    }
    rows = []
    for set_name, select in star_sets.items():
        for j, label in enumerate(LABELS):
            if label in PARAMETERS and set_name != "all three labels":
                continue
            keep = select & np.isfinite(truth[:, j])
            ours = score(truth[keep, j], mean[keep, j], std[keep, j], truth_error[keep, j])
            baseline = score(truth[keep, j], xgboost[keep, j])
            rows.append(
                {
                    "star_set": set_name,
                    "label": label,
                    "n": int(keep.sum()),
                    "model_scatter": round(ours["scatter"], 4),
                    "xgboost_scatter": round(baseline["scatter"], 4),
                    "ratio": round(ours["scatter"] / baseline["scatter"], 3),
                    "model_rmse": round(float(np.sqrt(np.mean((truth[keep, j] - mean[keep, j]) ** 2))), 4),
                    "xgboost_rmse": round(
                        float(np.sqrt(np.mean((truth[keep, j] - xgboost[keep, j]) ** 2))), 4
                    ),
                    "z_robust_std": round(ours["z_std"], 3),
                    "coverage_68": round(ours["coverage_68"], 3),
                    "xgboost_train_seconds": round(record["seconds"], 1),
                }
            )
    for row in rows:
        print(row)
    return write_results(RESULTS, rows)


if __name__ == "__main__":
    print(main())
