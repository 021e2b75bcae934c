"""Training throughput: supervised targets/s with R requests per star vs R = 1 (the published sampling), and
optimiser steps/s (and stars/s) with 1 vs 2 CPU processes. Same model, same data, same run. Writes
benchmarks/results/training.csv.

    python benchmarks/bench_training.py --dataset data/apogee-gaia-xp [--steps 100]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from datasets_builder import load_stats
from modeling_stellar import StarTokenizer, StellarForObservationPrediction
from results_table import RESULTS_DIR, write_results
from stellar_tasks import training
from stellar_tasks.data import load_training_arrays
from stellar_tasks.model_folder import LOG_FILE
from stellar_tasks.recipe import load_recipe

ROOT = Path(__file__).resolve().parents[1]
RESULTS = RESULTS_DIR / "training.csv"
FIRST_PHASE = load_recipe(ROOT / "configs" / "recipe.json")[0].config
"""The shipped recipe's first phase: the settings timed."""
"""The shipped model's settings: both measures use them, changing only R or the process count."""


def time_training_steps(config: training.TrainingConfig, dataset: str, steps: int) -> dict[str, float]:
    """One process's training step (`training.sample_batch` with the run's request weights, forward, backward,
    AdamW) timed over ``steps`` steps after two warm-up steps: ``steps_per_s`` and ``targets_per_s`` (labelled
    requests trained per second)."""
    tokenizer = StarTokenizer.from_pretrained(str(training.DEFAULT_VOCABULARY))
    tokenizer.set_normalization(load_stats(dataset))
    values, errors, _ = load_training_arrays(dataset, tokenizer)
    weight = training.request_weights(tokenizer, config)
    torch.manual_seed(0)
    model = StellarForObservationPrediction(config.model_config(tokenizer.vocab_size)).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.learning_rate)
    rng = np.random.default_rng(0)
    targets, elapsed = 0, 0.0
    for step in range(steps + 2):
        index = rng.choice(len(values), config.batch_size, replace=False)
        start = time.perf_counter()
        batch = training.sample_batch(tokenizer, values[index], errors[index], weight, config, rng)
        model(**batch).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        if step >= 2:  # two warm-up steps
            elapsed += time.perf_counter() - start
            targets += int(torch.isfinite(batch["labels"]).sum())
    return {"steps_per_s": steps / elapsed, "targets_per_s": targets / elapsed}


def training_rates(dataset: str, processes: int, steps: int) -> dict[str, float]:
    """Optimiser steps/s and stars/s (all processes together) of train.py itself, per-process batch fixed, read
    from the last window of its log."""
    with tempfile.TemporaryDirectory() as folder:
        config = Path(folder) / "config.json"
        settings = dataclasses.asdict(FIRST_PHASE)
        settings.update(log_every=steps // 2, validation_every=10**9, checkpoint_every=10**9)
        config.write_text(json.dumps(settings))
        arguments = [
            str(ROOT / "train.py"),
            "--dataset",
            dataset,
            "--output",
            f"{folder}/run",
            "--config",
            str(config),
        ]
        arguments += ["--stop-at-step", str(steps)]
        if processes == 1:
            command = [sys.executable, *arguments]
        else:
            accelerate = str(Path(sys.executable).parent / "accelerate")
            command = [accelerate, "launch", "--multi_gpu", "--num_processes", str(processes), *arguments]
        env = {**os.environ, "ACCELERATE_USE_CPU": "1"}
        subprocess.run(command, check=True, capture_output=True, env=env)
        records = [json.loads(line) for line in (Path(folder) / "run" / LOG_FILE).read_text().splitlines()]
        stars_per_s = [r["stars_per_s"] for r in records if "stars_per_s" in r][-1]
        return {"steps_per_s": stars_per_s / (settings["batch_size"] * processes), "stars_per_s": stars_per_s}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", default=str(ROOT / "data" / "apogee-gaia-xp"))
    parser.add_argument("--steps", type=int, default=100)
    args = parser.parse_args()
    default_r = FIRST_PHASE.requests_per_star
    rows = []
    published, ours = (
        time_training_steps(dataclasses.replace(FIRST_PHASE, requests_per_star=r), args.dataset, args.steps)[
            "targets_per_s"
        ]
        for r in (1, default_r)
    )
    rows.append(
        {
            "measure": "targets_per_s",
            "baseline": "R=1",
            "baseline_value": published,
            "ours": f"R={default_r}",
            "ours_value": ours,
            "ratio": ours / published,
        }
    )
    one, two = (training_rates(args.dataset, processes, args.steps) for processes in (1, 2))
    for measure in ("steps_per_s", "stars_per_s"):
        rows.append(
            {
                "measure": measure,
                "baseline": "1 process",
                "baseline_value": one[measure],
                "ours": "2 processes",
                "ours_value": two[measure],
                "ratio": two[measure] / one[measure],
            }
        )
    write_results(RESULTS, rows)
    for row in rows:
        print({k: round(v, 2) if isinstance(v, float) else v for k, v in row.items()})


if __name__ == "__main__":
    main()
