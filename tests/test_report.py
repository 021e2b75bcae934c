"""The report entry point end to end: a tiny saved model and dataset folder in, Markdown, JSON, figures and card out."""

from __future__ import annotations

import csv
import json
import subprocess
import sys

import numpy as np
import pytest
import yaml

from stellar_tasks import report as report_module
from stellar_tasks.baselines import BaselineBudget, XGBoostSettings
from tests.conftest import REPO_ROOT
from tests.tasks_factory import dataset_tokenizer, save_model_folder, write_dataset

TINY_BUDGET = BaselineBudget(
    "quick",
    XGBoostSettings(n_estimators=15, learning_rate=0.3, max_depth=3),
    XGBoostSettings(
        n_estimators=10,
        learning_rate=0.3,
        max_depth=3,
        multi_strategy="multi_output_tree",
    ),
    "tiny test budget",
)


@pytest.fixture(scope="module")
def report_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("report")
    dataset, test_ids = write_dataset(root / "dataset", n_train=160, n_test=60)
    model_dir = save_model_folder(root / "model", dataset_tokenizer(dataset))
    ids_file = root / "test_ids.txt"
    np.savetxt(ids_file, test_ids[:-1], fmt="%d")  # one test star missing from the list
    argv = ["--model", str(model_dir), "--dataset", str(dataset), "--output", str(root / "reports")]
    with pytest.MonkeyPatch.context() as patch:
        patch.setitem(report_module.BUDGETS, "quick", TINY_BUDGET)
        results = report_module.main(
            [*argv, "--test-ids", str(ids_file), "--write-card", "--max-spectrum-stars", "30"]
        )
    return root, model_dir, results


def test_report_files(report_run):
    root, _, results = report_run
    reports = root / "reports"
    names = {p.name for p in reports.iterdir()}
    assert {"report.md", "results.json"} <= names
    assert set(results["meta"]["figures"].values()) <= names
    for figure in results["meta"]["figures"].values():
        assert (reports / figure).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not [n for n in names if n.endswith(".tmp")]
    assert json.loads((reports / "results.json").read_text()) == results


def test_results_cover_every_task(report_run):
    _, _, results = report_run
    assert (
        len(results["parameters"]) == 5 * 4 * 2
    )  # settings x (Teff, log g, [Fe/H], [alpha/M]) x (model, XGBoost)
    assert {r["setting"] for r in results["parameters"]} == set("abcde")
    assert {r["label"] for r in results["parameters"]} == {"teff", "logg", "fe_h", "alpha_m"}
    assert {r["label"] for r in results["populations"]} == {"teff", "logg", "fe_h", "alpha_m"}
    assert len(results["goals"]) == 9
    assert [s["task"] for s in results["spectra"]] == [
        "parameters",
        "parameters_colours",
        "bp_to_rp",
        "rp_to_bp",
        "low_to_high",
    ]
    assert all(s["n_stars"] == 30 for s in results["spectra"])
    assert set(results["loci"]["branches"]) == {"giant branch", "main sequence"}
    assert len(results["extinction"]["colour_excess"]) == 343
    assert results["embeddings"]["k"] == 10
    assert results["meta"]["split"] == {
        "train_stars": 160,
        "test_stars": 60,
        "shared_train_test": 0,
        "test_not_in_list": 1,
        "listed_not_in_test": 0,
    }
    assert results["meta"]["baseline"]["description"] == "tiny test budget"


def test_markdown_has_the_tables(report_run):
    root, _, results = report_run
    text = (root / "reports" / "report.md").read_text()
    assert "| setting | label | n | model scatter |" in text
    teff_a = next(
        r
        for r in results["parameters"]
        if r["setting"] == "a" and r["label"] == "teff" and r["method"] == "model"
    )
    assert f"| (a) | teff [K] | {teff_a['n']} | {report_module.fmt(teff_a['scatter'])} |" in text
    for figure in results["meta"]["figures"].values():
        assert f"]({figure})" in text


def test_card_written_into_the_model_folder(report_run):
    _, model_dir, results = report_run
    card = (model_dir / "README.md").read_text()
    metadata = yaml.safe_load(card.split("---")[1])
    assert metadata["pipeline_tag"] == "tabular-regression"
    values = [m["value"] for m in metadata["model-index"][0]["results"][0]["metrics"]]
    teff_a = next(
        r
        for r in results["parameters"]
        if r["setting"] == "a" and r["label"] == "teff" and r["method"] == "model"
    )
    assert teff_a["scatter"] in values


def test_reports_compare_side_by_side_with_the_last_reports_baseline(tmp_path):
    """benchmarks/compare_reports.py reads every task's number from each committed full report."""
    results = REPO_ROOT / "benchmarks" / "results"
    first, last = results / "evaluation_full_v1", results / "evaluation_full"
    output = tmp_path / "comparison.csv"
    command = [sys.executable, str(REPO_ROOT / "benchmarks" / "compare_reports.py"), f"first={first}",
               f"last={last}", "--output", str(output)]  # fmt: skip
    subprocess.run(command, check=True, capture_output=True)
    rows = {row["number"]: row for row in csv.DictReader(output.open())}
    report = json.loads((last / "results.json").read_text())
    for task in report["spectra"]:
        row = rows[f"spectra: {task['task']} flux chi2"]
        assert float(row["last"]) == pytest.approx(task["model"]["flux"]["chi2_reduced"])
        assert float(row["xgboost"]) == pytest.approx(task["xgboost"]["flux"]["chi2_reduced"])
        assert float(row["first"]) > 0
    settings = {row["setting"] for row in report["parameters"]}
    assert sum(key.startswith("parameters") for key in rows) == len(settings) * 4  # four labels per setting
    statistic = report["extinction"]["statistic"]
    assert {
        "loci: main sequence median |dTeff| [K]",
        f"extinction curve ({statistic}): mean |deviation| from F99",
        f"extinction curve ({statistic}), giants only: from F99",
    } <= set(rows)
    assert rows["loci: main sequence median |dTeff| [K]"]["xgboost"] == ""  # no baseline for the loci
    refused = subprocess.run([*command[:2], str(first)], capture_output=True, text=True)
    assert refused.returncode == 2 and "NAME=FOLDER" in refused.stderr
