"""The one way benchmarks write their results: a CSV under ``benchmarks/results/``, written atomically."""

from __future__ import annotations

import csv
import os
from pathlib import Path

from datasets_builder.atomic import atomic_path

RESULTS_DIR = Path(__file__).resolve().parent / "results"


def write_results(path: str | os.PathLike, rows: list[dict]) -> Path:
    """Write ``rows`` (dicts sharing the first row's keys) to ``path`` via a temporary file and a rename,
    so an interrupted benchmark never leaves half a table over the previous one."""
    path = Path(path)
    with atomic_path(path) as staging, open(staging, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path
