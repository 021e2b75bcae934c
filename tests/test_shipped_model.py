"""The shipped model folder: its remote code is the package's, its card is its report's, and, copied anywhere, it
reproduces its card.

``pretrained/stellar-foundation-apogee-xp`` carries copies of ``modeling_stellar/*.py`` (what
``trust_remote_code=True`` runs) and a card rendered by ``stellar-foundation evaluate --write-card`` from the
report in ``benchmarks/results/evaluation_full/``. Every ``model-index`` number of the card must be the one
``render_model_card`` writes from that report, and the folder, run by a fresh interpreter, must give the card's
setting (a) scatter (its weights) and calibration (its ``sigma_scale``s). The numbers are read from the folder's
card and report, never written here, so the tests hold for whatever model is shipped; the mutation tests break a
copy (``tests/mutations.py``) to show each check reports the break.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from stellar_tasks.card import LABEL_NAMES, render_model_card
from stellar_tasks.inputs import HEADLINE_INPUTS, REPORT_LABELS
from stellar_tasks.model_folder import REQUIRED_FILES
from tests.conftest import REPO_ROOT
from tests.mutations import copy_model_folder, fake_card_numbers, scale_sigma_scales

SHIPPED = REPO_ROOT / "pretrained" / "stellar-foundation-apogee-xp"
REMOTE_CODE = [name for name in REQUIRED_FILES if name.endswith(".py")]

# A fresh interpreter that cannot import this repository: pipeline(...) on the copied folder, then over the test stars
# that know each label the project's accuracy number, mad_std(truth - prediction), and the calibration numbers of the
# report (`stellar_tasks.metrics`, written out here): z = (truth - mean) / sqrt(std**2 + err**2), its robust std and
# the fraction of stars with |z| inside the central 68 % Gaussian interval.
SCORER = textwrap.dedent(
    """
    import glob, importlib.abc, json, sys

    class BlockRepository(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in {"modeling_stellar", "datasets_builder", "stellar_tasks", "train"}:
                raise ImportError(f"{name} is blocked: the shipped folder must not need the repository")
            return None

    sys.meta_path.insert(0, BlockRepository())
    import numpy as np
    import pyarrow.parquet as pq
    from astropy.stats import mad_std
    from scipy.stats import norm
    from transformers import pipeline

    folder, dataset, inputs, labels = sys.argv[1], sys.argv[2], json.loads(sys.argv[3]), json.loads(sys.argv[4])
    columns = inputs + labels + [f"{label}_err" for label in labels]
    test = pq.read_table(sorted(glob.glob(dataset + "/data/test-*.parquet")), columns=columns)
    column = {name: test.column(name).to_numpy(zero_copy_only=False).astype(np.float64) for name in columns}
    predictor = pipeline(model=folder, trust_remote_code=True, device="cpu")
    assert type(predictor.model).__module__.startswith("transformers_modules."), type(predictor.model).__module__
    answers = predictor({name: column[name] for name in inputs}, requests=labels)
    measured = {}
    for label in labels:
        mean = np.array([answer[label]["mean"] for answer in answers])
        std = np.array([answer[label]["std"] for answer in answers])
        residual = column[label] - mean
        known = np.isfinite(residual)
        z = residual[known] / np.hypot(std, np.nan_to_num(column[f"{label}_err"]))[known]
        measured[label] = {
            "scatter": float(mad_std(residual[known])),
            "z_std": float(mad_std(z)),
            "coverage_68": float(np.mean(np.abs(z) <= norm.ppf(0.5 + 0.68 / 2))),
        }
    print(json.dumps(measured))
    """
)


MODEL_FOLDERS = sorted(path.parent for path in (REPO_ROOT / "pretrained").glob("*/config.json"))
"""Every committed model folder (the shipped one only): each carries the remote code."""


@pytest.mark.parametrize("folder", MODEL_FOLDERS, ids=lambda folder: folder.name)
@pytest.mark.parametrize("name", REMOTE_CODE)
def test_remote_code_copies_are_the_package_files(name, folder):
    # `make train` / `stellar-foundation export` write these copies; an edit of modeling_stellar/ must be re-exported.
    assert (folder / name).read_bytes() == (REPO_ROOT / "modeling_stellar" / name).read_bytes(), (
        f"{folder / name} differs from modeling_stellar/{name}: re-copy it (stellar-foundation export)"
    )


RESULTS_FILE = REPO_ROOT / "benchmarks" / "results" / "evaluation_full" / "results.json"
"""The shipped model's report (README.md, Results): what its card was rendered from (`stellar_tasks.card`)."""


def model_index_numbers(card_text: str) -> dict[str, float]:
    """Every ``model-index`` number of a card, keyed by what it measures (task, dataset, split, metric, name)."""
    from huggingface_hub import ModelCard

    return {
        f"{r.task_type} | {r.dataset_type} {r.dataset_split} | {r.metric_type} | {r.metric_name}": r.metric_value
        for r in ModelCard(card_text).data.eval_results
    }


def card_mismatches(folder: Path, results: dict) -> dict[str, tuple[float | None, float | None]]:
    """``{key: (card's number, rendered number)}`` of each ``model-index`` number of the folder's card that differs
    from (or is missing in, or added to) those ``render_model_card`` writes from ``results`` (None = absent): a
    card re-rendered from its report has none."""
    card = model_index_numbers((folder / "README.md").read_text())
    rendered = model_index_numbers(render_model_card(folder, results))
    return {
        key: (card.get(key), rendered.get(key))
        for key in sorted(card.keys() | rendered.keys())
        if card.get(key) != rendered.get(key)
    }


def test_every_card_number_is_its_reports():
    results = json.loads(RESULTS_FILE.read_text())
    assert Path(results["meta"]["model"]) == SHIPPED.relative_to(REPO_ROOT), "the report scored another model"
    assert model_index_numbers((SHIPPED / "README.md").read_text()), "the card has no model-index"
    assert card_mismatches(SHIPPED, results) == {}


def test_card_check_reports_faked_numbers(tmp_path):
    folder = copy_model_folder(SHIPPED, tmp_path)
    faked = fake_card_numbers(folder)
    reported = card_mismatches(folder, json.loads(RESULTS_FILE.read_text()))
    assert sorted(key.rsplit(" | ", 1)[1] for key in reported) == sorted(faked)


CARD_METRICS = {"mad_std": "scatter", "z_std": "z_std", "coverage_68": "coverage_68"}
"""The card's metric types of setting (a) and the scorer's names for them."""


def card_setting_a(folder: Path) -> dict[str, dict[str, float]]:
    """The card's setting (a) numbers per label: scatter (physical units), robust std of z and 68 % coverage."""
    from huggingface_hub import ModelCard

    found: dict[str, dict[str, float]] = {label: {} for label in REPORT_LABELS}
    for result in ModelCard.load(folder / "README.md").data.eval_results:
        for label in REPORT_LABELS:
            if (
                result.metric_name.endswith(", setting (a)")
                and f"{LABEL_NAMES[label]} [" in result.metric_name
            ):
                found[label][CARD_METRICS[result.metric_type]] = result.metric_value
    missing = {label: set(CARD_METRICS.values()) - set(found[label]) for label in REPORT_LABELS}
    assert not any(missing.values()), f"the card lacks setting (a) numbers {missing}"
    return found


def measure_copied_folder(folder: Path, dataset: Path, workspace: Path) -> dict[str, dict[str, float]]:
    """``SCORER``'s setting (a) numbers of ``folder`` copied into ``workspace`` and run by a fresh interpreter that
    cannot import this repository, over the dataset's test split."""
    copied = shutil.copytree(folder, workspace / "elsewhere" / folder.name)
    workdir = workspace / "empty"
    workdir.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(HF_HUB_OFFLINE="1", HF_HOME=str(workspace / "hf_home"))
    arguments = [
        str(copied),
        str(dataset),
        json.dumps(list(HEADLINE_INPUTS)),
        json.dumps(list(REPORT_LABELS)),
    ]
    result = subprocess.run(
        [sys.executable, "-I", "-c", SCORER, *arguments], cwd=workdir, env=env, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def reproduction_mismatches(
    expected: dict[str, dict[str, float]], measured: dict[str, dict[str, float]], rel: float = 1e-3
) -> list[str]:
    """``label metric`` of each number measured off the card's by more than ``rel`` (relative)."""
    return [
        f"{label} {metric}"
        for label, numbers in expected.items()
        for metric, value in numbers.items()
        if measured[label][metric] != pytest.approx(value, rel=rel)
    ]


@pytest.mark.slow
def test_shipped_folder_copied_elsewhere_reproduces_its_card(tmp_path, full_dataset):
    # the report scored the same model on the same stars through another batching: float32 noise only, so the
    # folder's weights give the card's scatter and its sigma_scales give the card's z and coverage
    measured = measure_copied_folder(SHIPPED, full_dataset, tmp_path)
    assert reproduction_mismatches(card_setting_a(SHIPPED), measured) == []


@pytest.mark.slow
def test_reproduction_check_reports_rescaled_sigmas(tmp_path, full_dataset):
    broken = copy_model_folder(SHIPPED, tmp_path / "broken")
    assert sorted(scale_sigma_scales(broken, 2.5)) == sorted(REPORT_LABELS)
    measured = measure_copied_folder(broken, full_dataset, tmp_path)
    # the means do not move (scatter still reproduced); every calibration number of the card is missed
    assert reproduction_mismatches(card_setting_a(SHIPPED), measured) == [
        f"{label} {metric}" for label in REPORT_LABELS for metric in ("z_std", "coverage_68")
    ]
