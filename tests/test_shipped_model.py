"""The shipped model folder: its remote code is the package's, and, copied anywhere, it reproduces its card.

``pretrained/stellar-foundation-apogee-xp`` carries copies of ``modeling_stellar/*.py`` (what
``trust_remote_code=True`` runs) and a card whose headline numbers were measured by ``stellar-foundation
evaluate``. The numbers are read from the folder's card, never written here, so the test holds for whatever model is
shipped.
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

from stellar_tasks.card import LABEL_NAMES
from stellar_tasks.hub import REQUIRED_FILES
from stellar_tasks.inputs import HEADLINE_INPUTS, LABELS
from tests.conftest import REPO_ROOT

SHIPPED = REPO_ROOT / "pretrained" / "stellar-foundation-apogee-xp"
REMOTE_CODE = [name for name in REQUIRED_FILES if name.endswith(".py")]

# A fresh interpreter that cannot import this repository: pipeline(...) on the copied folder, then the project's
# accuracy number, mad_std(truth - prediction), of each label over the test stars that have it.
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
    from transformers import pipeline

    folder, dataset, inputs, labels = sys.argv[1], sys.argv[2], json.loads(sys.argv[3]), json.loads(sys.argv[4])
    test = pq.read_table(sorted(glob.glob(dataset + "/data/test-*.parquet")), columns=inputs + labels)
    stars = {name: test.column(name).to_numpy(zero_copy_only=False).astype(np.float64) for name in inputs}
    predictor = pipeline(model=folder, trust_remote_code=True, device="cpu")
    assert type(predictor.model).__module__.startswith("transformers_modules."), type(predictor.model).__module__
    answers = predictor(stars, requests=labels)
    scatter = {}
    for label in labels:
        truth = test.column(label).to_numpy(zero_copy_only=False).astype(np.float64)
        residual = truth - np.array([answer[label]["mean"] for answer in answers])
        scatter[label] = float(mad_std(residual[np.isfinite(residual)]))
    print(json.dumps(scatter))
    """
)


MODEL_FOLDERS = sorted(path.parent for path in (REPO_ROOT / "pretrained").glob("*/config.json"))
"""Every committed model folder (the shipped one and candidates): each carries the remote code."""


@pytest.mark.parametrize("folder", MODEL_FOLDERS, ids=lambda folder: folder.name)
@pytest.mark.parametrize("name", REMOTE_CODE)
def test_remote_code_copies_are_the_package_files(name, folder):
    # `make train` / `stellar-foundation export` write these copies; an edit of modeling_stellar/ must be re-exported.
    assert (folder / name).read_bytes() == (REPO_ROOT / "modeling_stellar" / name).read_bytes(), (
        f"{folder / name} differs from modeling_stellar/{name}: re-copy it (stellar-foundation export)"
    )


def card_headline_scatter(folder: Path) -> dict[str, float]:
    """The card's model-index scatter of each label for the headline inputs (setting (a)), physical units."""
    from huggingface_hub import ModelCard

    units = {"teff": "K", "logg": "dex", "fe_h": "dex"}
    wanted = {f"scatter {LABEL_NAMES[label]} [{units[label]}], setting (a)": label for label in LABELS}
    results = ModelCard.load(folder / "README.md").data.eval_results
    found = {wanted[r.metric_name]: r.metric_value for r in results if r.metric_name in wanted}
    assert set(found) == set(LABELS), f"the card lacks headline scatter for {set(LABELS) - set(found)}"
    return found


@pytest.mark.slow
def test_shipped_folder_copied_elsewhere_reproduces_its_card(tmp_path, full_dataset):
    expected = card_headline_scatter(SHIPPED)
    copied = shutil.copytree(SHIPPED, tmp_path / "elsewhere" / SHIPPED.name)
    workdir = tmp_path / "empty"
    workdir.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(HF_HUB_OFFLINE="1", HF_HOME=str(tmp_path / "hf_home"))
    arguments = [str(copied), str(full_dataset), json.dumps(list(HEADLINE_INPUTS)), json.dumps(list(LABELS))]
    result = subprocess.run(
        [sys.executable, "-I", "-c", SCORER, *arguments], cwd=workdir, env=env, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr[-3000:]
    measured = json.loads(result.stdout.strip().splitlines()[-1])
    for label in LABELS:
        # the report scored the same model on the same stars through another batching: float32 noise only
        assert measured[label] == pytest.approx(expected[label], rel=1e-3), label
