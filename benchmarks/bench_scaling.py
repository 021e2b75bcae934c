"""What more training would buy, measured at equal compute: the shipped recipe against less data and against a
narrower and a wider model, each trained by train.py for the same wall-clock minutes on this machine, each with
a complete warm-up + cosine schedule (its ``max_steps`` set from a speed probe of that variant), then scored on
the test split from the headline inputs (`bench_time_to_accuracy.headline_test_scatter`).

    python benchmarks/bench_scaling.py --dataset data/apogee-gaia-xp [--minutes 10] [--variants reference data_25pct]

Writes benchmarks/results/scaling.csv. Runs go to ``runs/scaling/<variant>``; a finished one (it has its
``training_facts.json``) is scored again, not retrained, so a stopped benchmark resumes where it stopped; an
unfinished one is started afresh, since its minutes would not be comparable. Longer training of the shipped
recipe is the time-to-accuracy curve (`bench_time_to_accuracy.py`).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

from bench_time_to_accuracy import headline_test_arrays, headline_test_scatter
from bench_training import time_training_steps
from datasets import load_dataset

from modeling_stellar import StarTokenizer, StellarForObservationPrediction
from results_table import RESULTS_DIR, write_results
from stellar_tasks import training

ROOT = Path(__file__).resolve().parents[1]
RESULTS = RESULTS_DIR / "scaling.csv"
DEFAULT_CONFIG = ROOT / "configs" / "train_default.json"


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
"""Settings each variant changes in ``configs/train_default.json`` (the shipped recipe: d_model 64, all stars)."""

PROBE_STEPS = 8
SCHEDULE_SHARE = 0.9
"""Fraction of the budget the schedule is sized for: the rest covers validation, checkpoints and start-up."""


def train_variant(name: str, minutes: float, dataset: str) -> Path:
    """Train one variant for ``minutes`` (unless already finished); its run folder."""
    run = ROOT / "runs" / "scaling" / name
    if (run / "training_facts.json").is_file():
        return run
    shutil.rmtree(run, ignore_errors=True)
    settings = {**json.loads(DEFAULT_CONFIG.read_text()), **VARIANTS[name]}
    variant = training.TrainingConfig.from_json(DEFAULT_CONFIG, **VARIANTS[name])
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", default=str(ROOT / "data" / "apogee-gaia-xp"))
    parser.add_argument("--minutes", type=float, default=10.0, help="wall-clock training budget per variant")
    parser.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=list(VARIANTS))
    args = parser.parse_args()
    test = load_dataset(args.dataset, split="test").with_format("numpy")[:]
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
            **headline_test_scatter(model, tokenizer, headline_test_arrays(tokenizer, test)),
        }
        rows.append(row)
        print(row, flush=True)
        write_results(RESULTS, rows)


if __name__ == "__main__":
    main()
