"""The recipe study: changes to the shipped training recipe, one at a time, at an equal wall-clock budget, each
scored on the **validation hold-out** (train.py's seeded 5 % of the train split; the test split is never read
here, so the choices made from this table are not made on it).

Every variant is the first shipped model's recipe (``configs/train_compact_v1.json``) with the settings of `VARIANTS` changed,
trained by ``train.py`` with a complete warm-up + cosine schedule sized from a speed probe of that variant, so a
slower variant gets fewer steps in the same minutes. Variants run ``--parallel`` at a time with the machine's
threads shared equally between them (the probe runs under the same share). The hold-out scatter of the raw
weights and of their exponential moving average (``ema_decay``, logged beside it) is read from the run's log.

    python benchmarks/bench_recipe.py --dataset data/apogee-gaia-xp --minutes 15 --parallel 2 \\
        --variants reference headline_40pct

Variants whose steps cost the same (the sampling changes) can also be compared at an equal step, which is then an
equal compute whatever else the machine was doing (``--at-step``: the validation at that step, read from the runs'
logs; ``--report-only`` trains nothing).

Writes benchmarks/results/recipe.csv (one row per variant; rows of variants not run this time are kept). Runs go
to ``runs/recipe/<variant>``; a finished one (it has ``training_facts.json``) is read again, not retrained.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from results_table import RESULTS_DIR, write_results

ROOT = Path(__file__).resolve().parents[1]
RESULTS = RESULTS_DIR / "recipe.csv"
BASE_CONFIG = ROOT / "configs" / "train_compact_v1.json"
"""The recipe of the first shipped model (d_model 64, 14,000 steps): every variant changes it."""
EMA_DECAY = 0.999
"""Every variant also keeps a weight average, so each row measures it at no extra run."""

VARIANTS = {
    "reference": {},
    "headline_40pct": {"headline_fraction": 0.4},
    "headline_40pct_lr2e-3": {"headline_fraction": 0.4, "learning_rate": 2e-3},
    "headline_40pct_d96": {
        "headline_fraction": 0.4,
        "model_overrides": {
            "d_model": 96,
            "encoder_ffn_dims": [384, 384],
            "decoder_ffn_dims": [384, 384],
            "head_hidden_dims": [192],
        },
    },
}
"""Settings each variant changes in the shipped recipe (d_model 64, R = 16, lr 1e-3, no headline batches)."""

PROBE_STEPS = 100
SCHEDULE_SHARE = 0.9
"""Fraction of the budget the schedule is sized for: the rest covers validation, start-up and the final save."""


def run_train(config: Path, run: Path, dataset: str, threads: int, *extra: str) -> subprocess.Popen:
    """Start ``train.py`` on ``config`` into ``run`` with ``threads`` intra-op threads; its output goes to
    ``<run>.out`` (a pipe nobody reads while another variant is awaited would fill and stall the run)."""
    command = [sys.executable, str(ROOT / "train.py"), "--dataset", dataset, "--output", str(run)]
    command += ["--config", str(config), *extra]
    environment = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    with open(run.with_name(run.name + ".out"), "w") as output:
        return subprocess.Popen(command, env=environment, stdout=output, stderr=subprocess.STDOUT)


def wait_for(name: str, process: subprocess.Popen, run: Path) -> None:
    if process.wait():
        tail = run.with_name(run.name + ".out").read_text()[-2000:]
        raise RuntimeError(f"{name} failed:\n{tail}")


def log_records(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "train_log.jsonl").read_text().splitlines()]


def probe_rates(names: list[str], dataset: str, threads: int) -> dict[str, float]:
    """Training steps per second of each variant, all probed at once (as they will train), timed between two
    log lines of a short run."""
    probes = {}
    for name in names:
        run = ROOT / "runs" / "recipe" / "probe" / name
        shutil.rmtree(run, ignore_errors=True)
        config = run.parent / f"{name}.json"
        run.parent.mkdir(parents=True, exist_ok=True)
        config.write_text(
            json.dumps({**variant_settings(name), "log_every": PROBE_STEPS // 2, "max_steps": 10**6})
        )
        probes[name] = run_train(config, run, dataset, threads, "--stop-at-step", str(PROBE_STEPS))
    rates = {}
    for name, process in probes.items():
        run = ROOT / "runs" / "recipe" / "probe" / name
        wait_for(f"probe of {name}", process, run)
        timed = [r for r in log_records(run) if "stars_per_s" in r][-1]
        rates[name] = timed["stars_per_s"] / variant_settings(name)["batch_size"]
        shutil.rmtree(run)
    return rates


def variant_settings(name: str) -> dict:
    """The base recipe with the variant's changes and the weight average on."""
    return {**json.loads(BASE_CONFIG.read_text()), "ema_decay": EMA_DECAY, **VARIANTS[name]}


def start_variant(name: str, rate: float, minutes: float, dataset: str, threads: int) -> subprocess.Popen:
    """Start one variant for ``minutes`` at ``rate`` steps per second."""
    run = ROOT / "runs" / "recipe" / name
    shutil.rmtree(run, ignore_errors=True)
    settings = variant_settings(name)
    steps = int(rate * minutes * 60 * SCHEDULE_SHARE)
    settings.update(
        max_steps=steps,
        warmup_steps=min(settings["warmup_steps"], steps // 10),
        validation_every=max(1, steps // 4),
        checkpoint_every=10**9,
    )
    config = run.parent / f"{name}.json"
    config.write_text(json.dumps(settings, indent=1))
    print(f"{name}: {rate:.2f} steps/s probed at {threads} thread(s), {steps} steps", flush=True)
    return run_train(config, run, dataset, threads, "--max-minutes", str(minutes))


def result_row(name: str, at_step: int | None = None) -> dict:
    """The variant's hold-out scatter (raw and averaged weights) at its last validation, or at ``at_step``."""
    validations = [r for r in log_records(ROOT / "runs" / "recipe" / name) if "validation" in r]
    record = validations[-1] if at_step is None else next(r for r in validations if r["step"] == at_step)
    row = {"variant": name, "changes": json.dumps(VARIANTS[name], sort_keys=True)}
    row.update(step=record["step"], minutes=round(record["minutes"], 2))
    for weights in ("validation", "validation_ema"):
        for label, scatter in record[weights].items():
            row[f"{label}_{'ema' if weights.endswith('ema') else 'raw'}"] = round(scatter, 4)
    return row


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--minutes", type=float, default=15.0, help="wall-clock budget of every variant")
    parser.add_argument("--parallel", type=int, default=1, help="variants trained at the same time")
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument(
        "--at-step",
        type=int,
        default=None,
        help="compare every variant at this validation step (equal steps)",
    )
    parser.add_argument("--report-only", action="store_true", help="read the runs there are; train nothing")
    args = parser.parse_args(argv)
    threads = max(1, (os.cpu_count() or 1) // args.parallel)
    pending = [] if args.report_only else list(args.variants)
    while pending:
        group, pending = pending[: args.parallel], pending[args.parallel :]
        group = [
            name for name in group if not (ROOT / "runs" / "recipe" / name / "training_facts.json").is_file()
        ]
        rates = probe_rates(group, args.dataset, threads) if group else {}
        started = {
            name: start_variant(name, rates[name], args.minutes, args.dataset, threads) for name in group
        }
        for name, process in started.items():
            wait_for(name, process, ROOT / "runs" / "recipe" / name)
        print(f"{', '.join(group)} done at {time.strftime('%H:%M:%S')}", flush=True)
    kept = []
    if RESULTS.is_file():
        with RESULTS.open() as handle:
            kept = [row for row in csv.DictReader(handle) if row["variant"] not in args.variants]
    rows = kept + [result_row(name, args.at_step) for name in args.variants]
    return write_results(RESULTS, rows)


if __name__ == "__main__":
    print(main())
