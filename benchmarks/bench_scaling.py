"""What more training would buy, measured at equal compute: the shipped recipe against less data and against a
narrower and a wider model, each trained by train.py for the same wall-clock minutes on this machine, each with
a complete warm-up + cosine schedule (its ``max_steps`` set from a speed probe of that variant), then scored from the
headline inputs on the training hold-out (`stellar_tasks.data.split_holdout`: the 5 % of the train split that no
variant trains on; a choice made from this table never reads the test split), beside XGBoost with the anchor's
settings trained in the same run on the rest of the train split (`bench_time_to_accuracy.headline_scatter`,
`bench_time_to_accuracy.xgboost_scatter`).

    python benchmarks/bench_scaling.py --dataset data/apogee-gaia-xp [--minutes 10] [--variants reference data_25pct]

Writes benchmarks/results/scaling.csv. Runs go to ``runs/scaling/<variant>``; a finished one (it has its
``training_facts.json``) is scored again, not retrained, so a stopped benchmark resumes where it stopped; an
unfinished one is started afresh, since its minutes would not be comparable. Longer training of the shipped
recipe is the time-to-accuracy curve (`bench_time_to_accuracy.py`).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import subprocess
import sys
from pathlib import Path

from bench_time_to_accuracy import headline_arrays, headline_scatter, xgboost_scatter
from bench_training import time_training_steps
from datasets import load_dataset

from datasets_builder import load_stats
from modeling_stellar import StarTokenizer, StellarForObservationPrediction
from results_table import RESULTS_DIR, write_results
from stellar_tasks import training
from stellar_tasks.data import load_training_arrays, split_holdout
from stellar_tasks.recipe import load_recipe

ROOT = Path(__file__).resolve().parents[1]
RESULTS = RESULTS_DIR / "scaling.csv"
FIRST_PHASE = load_recipe(ROOT / "configs" / "recipe.json")[0].config
"""The shipped recipe's first phase (d_model 96, all stars, from random weights): what every variant changes."""


def _width(d_model: int) -> dict:
    """The compact preset's shape at another width: 4 heads, feed-forward 4 d_model, head MLP 2 d_model."""
    return {
        "d_model": d_model,
        "encoder_ffn_dims": [4 * d_model] * 2,
        "decoder_ffn_dims": [4 * d_model] * 2,
        "head_hidden_dims": [2 * d_model],
    }


VARIANTS = {
    "reference": {},
    "data_25pct": {"train_fraction": 0.25},
    "data_50pct": {"train_fraction": 0.5},
    "d_model_32": {"model_overrides": _width(32)},
    "d_model_128": {"model_overrides": _width(128)},
}
"""Settings each variant changes in `FIRST_PHASE`."""

PROBE_STEPS = 8
SCHEDULE_SHARE = 0.9
"""Fraction of the budget the schedule is sized for: the rest covers validation, checkpoints and start-up."""


def train_variant(name: str, minutes: float, dataset: str) -> Path:
    """Train one variant for ``minutes`` (unless already finished); its run folder."""
    run = ROOT / "runs" / "scaling" / name
    if (run / "training_facts.json").is_file():
        return run
    shutil.rmtree(run, ignore_errors=True)
    settings = {**dataclasses.asdict(FIRST_PHASE), **VARIANTS[name]}
    variant = dataclasses.replace(FIRST_PHASE, **VARIANTS[name])
    rate = time_training_steps(variant, dataset, PROBE_STEPS)["steps_per_s"]
    settings.update(
        max_steps=int(rate * minutes * 60 * SCHEDULE_SHARE),
        warmup_steps=min(settings["warmup_steps"], int(rate * minutes * 6)),
        checkpoint_every=10**9,
        validation_every=10**9,
    )
    run.parent.mkdir(parents=True, exist_ok=True)
    config = run.parent / f"{name}.json"
    config.write_text(json.dumps(settings, indent=1))
    command = [sys.executable, str(ROOT / "train.py"), "--dataset", dataset, "--output", str(run)]
    command += ["--config", str(config), "--max-minutes", str(minutes)]
    print(f"{name}: {rate:.2f} steps/s probed, {settings['max_steps']} steps", flush=True)
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return run


def holdout_tables(dataset: str) -> tuple[dict, dict]:
    """The train split's columns cut as training cuts them (`split_holdout` with the first phase's seed and validation
    fraction, which no variant changes): (the stars a run may train on, the hold-out)."""
    tokenizer = StarTokenizer.from_pretrained(str(training.DEFAULT_VOCABULARY))
    tokenizer.set_normalization(load_stats(dataset))
    values, errors, source_ids = load_training_arrays(dataset, tokenizer)
    seed, fraction = FIRST_PHASE.seed, FIRST_PHASE.validation_fraction
    train_index, holdout_index, _ = split_holdout(values, errors, source_ids, seed, fraction)
    table = load_dataset(dataset, split="train").with_format("numpy")[:]
    return (
        {name: column[train_index] for name, column in table.items()},
        {name: column[holdout_index] for name, column in table.items()},
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", default=str(ROOT / "data" / "apogee-gaia-xp"))
    parser.add_argument("--minutes", type=float, default=10.0, help="wall-clock training budget per variant")
    parser.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=list(VARIANTS))
    args = parser.parse_args()
    fit, holdout = holdout_tables(args.dataset)
    xgboost = xgboost_scatter(fit, holdout)
    rows = []
    for name in args.variants:
        run = train_variant(name, args.minutes, args.dataset)
        facts = json.loads((run / "training_facts.json").read_text())
        model = StellarForObservationPrediction.from_pretrained(run)
        tokenizer = StarTokenizer.from_pretrained(run)
        row = {
            "variant": name,
            "parameters": facts["parameters"],
            "train_fraction": facts["training"]["train_fraction"],
            "steps": facts["steps"],
            "minutes": round(facts["train_minutes"], 2),
            **headline_scatter(model, tokenizer, headline_arrays(tokenizer, holdout), xgboost),
        }
        rows.append(row)
        print(row, flush=True)
        write_results(RESULTS, rows)


if __name__ == "__main__":
    main()
