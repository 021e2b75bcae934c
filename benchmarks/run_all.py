"""Every benchmark, one after the other, on the built dataset and the shipped model (``make bench``).

Each writes its own CSV under ``benchmarks/results/``; every ratio in them compares rows measured in the same
run of that script. The time-to-accuracy curve needs a training run's checkpoints, so it runs only when
``--run`` names one (``make train`` leaves ``runs/stellar-foundation-apogee-xp``).

    python benchmarks/run_all.py [--dataset data/apogee-gaia-xp] [--model pretrained/...] [--run runs/...]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parent
ROOT = BENCHMARKS.parent


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", default=str(ROOT / "data" / "apogee-gaia-xp"))
    parser.add_argument("--model", default=str(ROOT / "pretrained" / "stellar-foundation-apogee-xp"))
    parser.add_argument("--run", default=None, help="train.py output folder for the time-to-accuracy curve")
    args = parser.parse_args()
    commands = [
        ["bench_build.py"],
        ["bench_forward.py"],
        ["bench_inference.py", "--dataset", args.dataset, "--model", args.model],
        ["bench_catalogue.py", "--dataset", args.dataset, "--model", args.model],
        ["bench_training.py", "--dataset", args.dataset],
    ]
    if args.run:
        commands.append(["bench_time_to_accuracy.py", "--run", args.run, "--dataset", args.dataset])
    failed = []
    for script, *options in commands:
        print(f"== {script} {' '.join(options)}", flush=True)
        if subprocess.run([sys.executable, str(BENCHMARKS / script), *options], cwd=ROOT).returncode != 0:
            failed.append(script)
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
