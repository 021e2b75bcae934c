"""What fine-tuning buys with few labelled stars, beside XGBoost on the same stars and inputs (issue: teach it).

Two experiments, each a curve over N, the number of train stars given (a seeded draw, the same stars for every
method; their Gaia DR3 source ids are written beside the CSV so that anyone can rerun a baseline on them):

* ``parallax``: the shipped model is taught a new observation from another survey, ``g_fakemag`` (Gaia DR2
  parallax x 10^(0.2 G), `datasets_builder`'s parallax source), by `stellar_tasks.finetune.finetune` on N train
  stars that have it; scored on the test stars that have it from the headline inputs + ``g_fakemag``, beside the
  shipped model from the headline inputs alone and XGBoost on the same N stars and inputs.
* ``labels``: a model pre-trained with no label shown (``configs/pretrain_label_free.json``) is taught Teff, log g,
  [Fe/H] and [alpha/M] from N labelled stars; beside it, the same architecture trained from random weights on the same
  N stars (the same command, ``method="all"``) and XGBoost; scored from the headline inputs on the test split.

XGBoost is tuned for small N as the fine-tuning is: each label's boosting (at most 2000 trees, learning rate 0.05)
stops early on the same seeded fifth of the N stars that the fine-tuning validates on
(`stellar_tasks.baselines.fit_predict_xgboost`, ``early_stopping``). Every choice (steps, by early stopping) is made
on that fifth; the test split is read once per final number.

    python benchmarks/bench_adapt.py parallax --model pretrained/stellar-foundation-apogee-xp \\
        --dataset data/apogee-gaia-xp --n 100 300 1000 3000 all
    python benchmarks/bench_adapt.py labels --model runs/pretrain-label-free --dataset data/apogee-gaia-xp

Writes ``benchmarks/results/adapt_<experiment>.csv`` and ``adapt_<experiment>_stars.csv``. Fine-tuned folders go
to ``runs/adapt/<experiment>/``; a finished one is scored again, not retrained, so a stopped benchmark resumes.
"""

from __future__ import annotations

import argparse
import math
import shutil
import time
from pathlib import Path

import numpy as np
from astropy.stats import mad_std

from datasets_builder.layout import load_stats
from modeling_stellar import StarTokenizer, StellarForObservationPrediction
from results_table import RESULTS_DIR, write_results
from stellar_tasks.baselines import XGBoostSettings, fit_predict_xgboost
from stellar_tasks.data import validation_mask
from stellar_tasks.finetune import FACTS_FILE, FinetuneConfig, finetune, read_star_table
from stellar_tasks.hub import prepare_model_folder
from stellar_tasks.inference import mask_to_inputs, predict_arrays
from stellar_tasks.inputs import HEADLINE_INPUTS, REPORT_LABELS

ROOT = Path(__file__).resolve().parents[1]
NEW_NAME = "g_fakemag"
SMALL_SAMPLE_XGBOOST = XGBoostSettings(n_estimators=2000, learning_rate=0.05)
"""The most boosting an early-stopped baseline gets (the anchor's learning rate, half its trees)."""
FINETUNE = {"max_steps": 600, "validation_every": 50, "checkpoint_every": 100}
"""Fine-tuning settings of every N (the other `FinetuneConfig` defaults): early stopping picks the step."""


def test_stars(dataset: Path) -> tuple:
    """The test split as an astropy table (identifiers and observations with units)."""
    from astropy.table import Table
    from datasets import load_dataset

    test = load_dataset(str(dataset), split="test").with_format("numpy")[:]
    train = read_star_table(dataset)
    return Table({name: np.asarray(test[name]) for name in train.colnames}, meta={}), train


def score(
    model_folder: Path, table, inputs: list[str], labels: list[str]
) -> dict[str, tuple[float, float, int]]:
    """Per label: (scatter, robust std of z, stars) of the folder's calibrated answers from ``inputs``."""
    model = StellarForObservationPrediction.from_pretrained(str(model_folder)).eval()
    tokenizer = StarTokenizer.from_pretrained(str(model_folder))
    values, errors = tokenizer.to_arrays(table, ignore_unknown=True)
    shown = mask_to_inputs(tokenizer, values, [n for n in inputs if n in tokenizer.observation_names])
    mean, sigma, _ = predict_arrays(model, tokenizer, shown, errors, labels)
    ids = np.array(tokenizer.convert_names_to_ids(labels))
    truth, _ = tokenizer.decode(np.broadcast_to(ids, mean.shape), values[:, ids])
    error = np.nan_to_num(errors[:, ids]) * tokenizer.scales_of(labels)
    result = {}
    for j, name in enumerate(labels):
        known = np.isfinite(truth[:, j]) & np.isfinite(mean[:, j])
        residual = truth[known, j] - mean[known, j]
        z = residual / np.hypot(sigma[known, j], error[known, j])
        result[name] = (float(mad_std(residual)), float(mad_std(z)), int(known.sum()))
    return result


def xgboost_scores(train, test, inputs: list[str], labels: list[str], seed: int) -> dict:
    """Per label: (scatter, nan, stars) of XGBoost trained on ``train`` (early-stopped on its validation fifth)."""
    features = lambda table: np.column_stack([np.asarray(table[n], dtype=np.float64) for n in inputs])  # noqa: E731
    targets = lambda table: np.column_stack([np.asarray(table[n], dtype=np.float64) for n in labels])  # noqa: E731
    held = validation_mask(len(train), seed, FinetuneConfig.validation_fraction)
    prediction, _ = fit_predict_xgboost(
        features(train[~held]),
        targets(train[~held]),
        features(test),
        SMALL_SAMPLE_XGBOOST,
        seed=seed,
        early_stopping=(features(train[held]), targets(train[held])),
    )
    truth = targets(test)
    result = {}
    for j, name in enumerate(labels):
        known = np.isfinite(truth[:, j])
        result[name] = (float(mad_std(truth[known, j] - prediction[known, j])), math.nan, int(known.sum()))
    return result


def scratch_folder(model: Path, folder: Path, seed: int) -> Path:
    """The architecture and tokenizer of ``model`` with random weights (the from-scratch baseline's start)."""
    import torch

    if not (folder / "config.json").is_file():
        torch.manual_seed(seed)
        config = StellarForObservationPrediction.from_pretrained(str(model)).config
        prepare_model_folder(
            StellarForObservationPrediction(config), StarTokenizer.from_pretrained(str(model)), folder
        )
    return folder


def run(args: argparse.Namespace) -> Path:
    dataset, model = Path(args.dataset), Path(args.model)
    test, train = test_stars(dataset)
    every_test = test  # the whole test split (the parallax curve scores its stars with g_fakemag)
    labels = list(REPORT_LABELS) if args.experiment == "labels" else ["teff", "logg", "fe_h"]
    has = lambda table, names: np.all([np.isfinite(np.asarray(table[n], float)) for n in names], axis=0)  # noqa: E731
    if args.experiment == "parallax":
        if NEW_NAME not in train.colnames:
            raise SystemExit(f"{dataset} has no {NEW_NAME} column: rebuild it (make dataset)")
        pool = train[has(train, [NEW_NAME, *labels])]
        test = test[has(test, [NEW_NAME])]
        inputs = [*HEADLINE_INPUTS, NEW_NAME]
        ignore = [c for c in train.colnames if c in ("m_h", "m_h_err")]
    else:
        pool = train[has(train, labels)]
        inputs = list(HEADLINE_INPUTS)
        ignore = ["m_h", "m_h_err"]
    runs = ROOT / "runs" / "adapt" / args.experiment
    rows, drawn = [], []
    baseline = score(model, test, list(HEADLINE_INPUTS), labels)
    for name, (scatter, z, stars) in baseline.items():
        rows.append({"n": 0, "method": "base model, headline inputs", "label": name, "scatter": scatter,
                     "z_robust_std": z, "test_stars": stars, "minutes": 0.0})  # fmt: skip
    for n_text in args.n:
        n = len(pool) if n_text == "all" else min(int(n_text), len(pool))
        chosen = np.sort(np.random.default_rng(args.seed).choice(len(pool), n, replace=False))
        given = pool[chosen]
        drawn += [{"n": n, "gaia_dr3_source_id": int(i)} for i in given["gaia_dr3_source_id"]]
        methods = {"fine-tuned": (model, "lora")}
        if args.experiment == "labels":
            methods["from scratch"] = (scratch_folder(model, runs / "scratch-start", args.seed), "all")
        for method, (start, how) in methods.items():
            folder = runs / f"{method.replace(' ', '-')}-n{n}"
            started = time.monotonic()
            if not (folder / FACTS_FILE).is_file():
                shutil.rmtree(folder, ignore_errors=True)
                config = FinetuneConfig(method=how, targets=labels, inputs=inputs, seed=args.seed, **FINETUNE)
                finetune(start, given, folder, config, ignore=ignore)
            minutes = (time.monotonic() - started) / 60
            for name, (scatter, z, stars) in score(folder, test, inputs, labels).items():
                rows.append({"n": n, "method": method, "label": name, "scatter": scatter, "z_robust_std": z,
                             "test_stars": stars, "minutes": minutes})  # fmt: skip
            if args.experiment == "parallax":  # old skills: the headline inputs alone, on every test star
                for name, (scatter, z, stars) in score(
                    folder, every_test, list(HEADLINE_INPUTS), labels
                ).items():
                    rows.append({"n": n, "method": f"{method}, headline inputs, whole test split", "label": name,
                                 "scatter": scatter, "z_robust_std": z, "test_stars": stars, "minutes": minutes})  # fmt: skip
        started = time.monotonic()
        for name, (scatter, z, stars) in xgboost_scores(given, test, inputs, labels, args.seed).items():
            rows.append({"n": n, "method": "XGBoost", "label": name, "scatter": scatter, "z_robust_std": z,
                         "test_stars": stars, "minutes": (time.monotonic() - started) / 60})  # fmt: skip
        write_results(RESULTS_DIR / f"adapt_{args.experiment}.csv", rows)
        write_results(RESULTS_DIR / f"adapt_{args.experiment}_stars.csv", drawn)
        print(f"N = {n}: written")
    if args.experiment == "parallax":
        for name, (scatter, z, stars) in score(model, every_test, list(HEADLINE_INPUTS), labels).items():
            rows.append({"n": 0, "method": "base model, headline inputs, whole test split", "label": name,
                         "scatter": scatter, "z_robust_std": z, "test_stars": stars, "minutes": 0.0})  # fmt: skip
    return write_results(RESULTS_DIR / f"adapt_{args.experiment}.csv", rows)


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("experiment", choices=["parallax", "labels"])
    parser.add_argument("--model", required=True, help="the model folder to teach")
    parser.add_argument("--dataset", required=True, help="the dataset folder (make dataset)")
    parser.add_argument("--n", nargs="+", default=["100", "300", "1000", "3000", "all"], help="stars given")
    parser.add_argument(
        "--seed", type=int, default=0, help="the draw of the N stars and of their validation fifth"
    )
    args = parser.parse_args(argv)
    load_stats(args.dataset)  # a missing or unbuilt dataset fails here
    return run(args)


if __name__ == "__main__":
    main()
