"""Time to accuracy: test-split scatter of Teff, log g, [Fe/H] (headline inputs) at every kept checkpoint of
a training run (its weight average when the run keeps one: what it would ship), against the minutes of training
that produced it; beside it XGBoost with the anchor's settings, trained on the train split in the same run.

    python benchmarks/bench_time_to_accuracy.py --run runs/stellar-foundation-apogee-xp --dataset data/apogee-gaia-xp

The saved folders of the shipped model's six stages give its curve at the end of each stage from committed files:

    python benchmarks/bench_time_to_accuracy.py --dataset data/apogee-gaia-xp --run pretrained/candidate-d96 \
        pretrained/candidate-d96-stage2 pretrained/candidate-d96-stage3 pretrained/candidate-d96-stage4 \
        pretrained/candidate-d96-stage5 pretrained/stellar-foundation-apogee-xp

Writes benchmarks/results/time_to_accuracy.csv. The minutes are wall-clock minutes of that run on its machine
(training_facts.json says which; the ``hardware`` column repeats it), including validation and checkpoint writes.
Several ``--run`` folders are a chain of warm restarts (``init_from``), in order: each one's steps and minutes
continue from the previous one's end. A saved model folder in the chain (no checkpoints left) gives one row, its
final weights. Every row carries the XGBoost scatter it is divided by (``*_xgboost``). With ``--append`` the rows
are merged into the existing table (a new row replaces an old one at the same step; the old rows keep their own run's
baseline): a chain whose earlier runs are gone extends the curve measured from them, e.g.

    python benchmarks/bench_time_to_accuracy.py --append --dataset data/apogee-gaia-xp --run pretrained/candidate-d96 \
        pretrained/candidate-d96-stage2 pretrained/candidate-d96-stage3 pretrained/candidate-d96-stage4 runs/inpainting
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

import numpy as np
import torch
from datasets import load_dataset
from safetensors.torch import load_file

from modeling_stellar import StarTokenizer, StellarConfig, StellarForObservationPrediction
from results_table import RESULTS_DIR, write_results
from stellar_tasks import training
from stellar_tasks.baselines import BUDGETS, fit_predict_xgboost
from stellar_tasks.inference import mask_to_inputs, predict_arrays
from stellar_tasks.inputs import HEADLINE_INPUTS, LABELS

RESULTS = RESULTS_DIR / "time_to_accuracy.csv"
ANCHOR_XGBOOST = BUDGETS["full"].labels
"""The anchor's XGBoost (4000 trees, learning rate 0.05, subsample and colsample_bytree 0.8): the settings of
`bench_headline.py` and of the report's full budget."""


def _columns(table: dict, names: list[str]) -> np.ndarray:
    """(n_stars, len(names)) float64 physical values of a split's columns (numpy arrays)."""
    return np.stack([np.asarray(table[name], dtype=float) for name in names], axis=1)


def _labelled(table: dict) -> np.ndarray:
    """(n_stars,) bool: the stars with all three of Teff, log g and [Fe/H], the anchor's population."""
    return np.isfinite(_columns(table, LABELS)).all(axis=1)


def headline_arrays(tokenizer: StarTokenizer, table: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The stars of ``table`` (a split's columns as numpy arrays: the test split, or the training hold-out) that have
    all three labels: the anchor's population (3,516 of the 3,985 test stars; the others, mostly hot stars without an
    APOGEE [Fe/H], have a Teff scatter several times larger, so scoring Teff on all stars would not compare with the
    anchor). Returns their standardised values restricted to the headline inputs, their errors, and the (n, 3)
    physical labels."""
    labelled = _labelled(table)
    values, errors = tokenizer.to_arrays(table, ignore_unknown=True)
    return (
        mask_to_inputs(tokenizer, values[labelled], HEADLINE_INPUTS),
        errors[labelled],
        _columns(table, LABELS)[labelled],
    )


def xgboost_scatter(train: dict, scored: dict) -> dict[str, float]:
    """The baseline every ratio of this benchmark and `bench_scaling.py` divides by, measured in the calling run:
    `ANCHOR_XGBOOST` trained on the stars of ``train`` with all three labels (as the anchor and `bench_headline.py`)
    from the 63 headline inputs, one regressor per label, and its ``mad_std(truth - prediction)`` per label on the
    stars of ``scored`` that `headline_arrays` keeps. Trees are invariant to the tokenizer's affine standardisation,
    so the physical columns are its features. A few minutes on 2 CPU cores."""
    fit, keep = _labelled(train), _labelled(scored)
    prediction, record = fit_predict_xgboost(
        _columns(train, HEADLINE_INPUTS)[fit],
        _columns(train, LABELS)[fit],
        _columns(scored, HEADLINE_INPUTS)[keep],
        ANCHOR_XGBOOST,
    )
    truth = _columns(scored, LABELS)[keep]
    scatter = {name: training.robust_scatter(truth[:, j], prediction[:, j]) for j, name in enumerate(LABELS)}
    print(f"XGBoost: {int(fit.sum())} train stars, {record['seconds']:.0f} s, scatter {scatter}", flush=True)
    return scatter


def headline_scatter(
    model: StellarForObservationPrediction,
    tokenizer: StarTokenizer,
    arrays: tuple[np.ndarray, ...],
    xgboost: dict[str, float],
) -> dict:
    """``mad_std(truth - prediction)`` of Teff [K], log g and [Fe/H] [dex] on `headline_arrays`, and beside each
    the ``xgboost`` scatter on the same stars (`xgboost_scatter`) and the ratio to it."""
    shown, errors, truth = arrays
    mean, _, _ = predict_arrays(model.eval(), tokenizer, shown, errors, LABELS)
    row: dict = {"stars": len(truth)}
    for j, name in enumerate(LABELS):
        row[name] = round(training.robust_scatter(truth[:, j], mean[:, j]), 4)
        row[f"{name}_xgboost"] = round(xgboost[name], 4)
        row[f"{name}_over_xgboost"] = round(row[name] / xgboost[name], 3)
    return row


def checkpoint_weights(checkpoint: Path) -> dict:
    """The weights a run would ship from this checkpoint: its moving average when it keeps one (``ema_decay``,
    saved by accelerate as the first custom object: ``module.``-prefixed), else the raw weights."""
    average = checkpoint / "custom_checkpoint_0.pkl"
    if average.is_file():
        state = torch.load(average, map_location="cpu", weights_only=True)
        return {k.removeprefix("module."): v for k, v in state.items() if k.startswith("module.")}
    return load_file(checkpoint / "model.safetensors")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--run",
        required=True,
        nargs="+",
        help="train.py output folders (checkpoints/, log), in training order",
    )
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--append", action="store_true", help="merge the rows into the existing table")
    args = parser.parse_args()
    test = load_dataset(args.dataset, split="test").with_format("numpy")[:]
    train = load_dataset(args.dataset, split="train").with_format("numpy")[:]
    xgboost = xgboost_scatter(train, test)
    rows, steps_before, minutes_before = [], 0, 0.0
    hardware = []  # (first step, last step, the machine that trained them) of each run in the chain
    for run in map(Path, args.run):
        tokenizer = StarTokenizer.from_pretrained(run)
        config = StellarConfig.from_pretrained(run)
        arrays = headline_arrays(tokenizer, test)
        minutes = {}
        for line in (run / training.LOG_FILE).read_text().splitlines():
            record = json.loads(line)
            if "minutes" in record:
                minutes[record["step"]] = record["minutes"]
        facts = json.loads((run / training.FACTS_FILE).read_text())
        weights = {int(c.name.split("_")[1]): checkpoint_weights(c) for c in training.checkpoints_in(run)}
        if not weights:  # a saved model folder: its final weights
            weights = {facts["steps"]: load_file(run / "model.safetensors")}
            minutes[facts["steps"]] = facts["train_minutes"]
        for step, state in weights.items():
            model = StellarForObservationPrediction(config)
            model.load_state_dict(state)
            row = {"run": run.name, "step": steps_before + step}
            row["minutes"] = round(minutes_before + minutes.get(step, np.nan), 2)
            row["hardware"] = facts["hardware"]
            rows.append({**row, **headline_scatter(model, tokenizer, arrays, xgboost)})
            print(rows[-1], flush=True)
        hardware.append((steps_before + 1, steps_before + facts["steps"], facts["hardware"]))
        steps_before, minutes_before = steps_before + facts["steps"], minutes_before + facts["train_minutes"]
    if args.append and RESULTS.is_file():
        new_steps = {row["step"] for row in rows}
        with open(RESULTS, newline="") as handle:
            kept = [row for row in csv.DictReader(handle) if int(row["step"]) not in new_steps]
        # rows written before the column existed: the machine of the chain's run that made that step
        for row in kept:
            step = int(row["step"])
            row.setdefault("hardware", next(name for first, last, name in hardware if first <= step <= last))
        kept = [{key: row[key] for key in rows[0]} for row in kept]
        rows = sorted(kept + rows, key=lambda row: int(row["step"]))
    write_results(RESULTS, rows)


if __name__ == "__main__":
    main()
