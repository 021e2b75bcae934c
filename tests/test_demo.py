"""`make demo`'s job in CI: the real ``stellar-foundation evaluate`` command on the shipped model over the real
dataset, every step of the report run on the first stars of each split only (``--max-stars``), so that a change that
breaks the demo fails `make test` instead of waiting for someone to run the 10-minute demo."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from stellar_tasks.extinction import POPULATIONS
from stellar_tasks.generation import SPECTRUM_TASKS
from stellar_tasks.inputs import REPORT_LABELS
from tests.conftest import REPO_ROOT

SHIPPED_MODEL = REPO_ROOT / "pretrained" / "stellar-foundation-apogee-xp"
MAX_STARS = 1000
"""Test stars evaluated (and train stars the baselines learn from): enough for every score to be defined (the loci
need 20 test stars around a grid point: the first 800 give the giant branch none)."""


@pytest.fixture(scope="module")
def demo_report(full_dataset, tmp_path_factory) -> tuple[Path, dict]:
    """The report folder the demo's command writes, and its results.json."""
    output = tmp_path_factory.mktemp("demo") / "reports"
    command = [sys.executable, "-m", "stellar_tasks", "evaluate", "--model", str(SHIPPED_MODEL)]
    command += ["--dataset", str(full_dataset), "--output", str(output), "--max-stars", str(MAX_STARS)]
    # OpenMP threads (XGBoost, torch) that spin while a sibling thread waits for a shared core multiplied this run's
    # CPU time by 5 on 2 busy cores (400 stars: 48 s -> over 280 s); passive waiting gives the same numbers
    environment = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE"}
    ran = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, env=environment)
    assert ran.returncode == 0, ran.stderr[-3000:]
    return output, json.loads((output / "results.json").read_text())


def _finite(value) -> bool:
    return isinstance(value, float | int) and math.isfinite(value)


@pytest.mark.slow  # about a minute on 2 CPU cores
def test_the_demo_writes_the_report_its_figures_and_the_numbers_behind_them(demo_report):
    output, results = demo_report
    figures = results["meta"]["figures"]
    assert set(figures) == {"parameters", "calibration", "spectra", "coefficients", "kiel", "extinction"}
    for name in figures.values():
        assert (output / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
    report = (output / "report.md").read_text()
    assert f"--max-stars {MAX_STARS}" in report and "| (a) | teff [K] |" in report
    assert results["meta"]["max_stars"] == MAX_STARS
    # the split checks read the whole splits; the rest ran on the first MAX_STARS test stars
    split = results["meta"]["split"]
    assert (
        split["test_stars"] > MAX_STARS and split["shared_train_test"] == 0 and split["test_not_in_list"] == 0
    )


@pytest.mark.slow
def test_every_task_of_the_demo_gives_finite_numbers(demo_report):
    _, results = demo_report
    rows = results["parameters"]
    assert {(row["setting"], row["label"], row["method"]) for row in rows} >= {
        ("a", label, method) for label in REPORT_LABELS for method in ("model", "xgboost")
    }
    for row in rows:
        assert 0 < row["n"] <= MAX_STARS and _finite(row["scatter"]) and _finite(row["bias"]), row
    assert [spectrum["task"] for spectrum in results["spectra"]] == [task.key for task in SPECTRUM_TASKS]
    for spectrum in results["spectra"]:
        for method in ("model", "xgboost"):
            assert _finite(spectrum[method]["flux"]["chi2_reduced"]), (spectrum["task"], method)
    for name, branch in results["loci"]["branches"].items():
        assert branch["n_grid_points"] > 0 and _finite(branch["median_abs_delta_teff"]), name
    for law in results["extinction"]["laws"].values():
        assert _finite(law["mean_abs_deviation"]), law["description"]
        assert all(_finite(law["populations"][kind]["mean_abs_deviation"]) for kind in POPULATIONS), law
    embeddings = results["embeddings"]
    assert 0 < embeddings["n_query"] <= MAX_STARS
    assert all(_finite(embeddings[label]["scatter_ratio"]) for label in ("teff", "logg", "fe_h"))
