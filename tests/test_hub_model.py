"""The model and its dataset on the Hub, through the offline stand-in: push, then load the pipeline in a fresh process.

The push runs here with ``huggingface_hub.constants`` pointed at `hub_server.HubServer`; the read-back runs
``pipeline(model=repo_id, trust_remote_code=True)`` in a new interpreter that cannot import this repository, with
``HF_ENDPOINT`` set and an empty ``HF_HOME``, as a user on another machine would. Remote code, safely: the revision
that ``push`` prints is the code that runs, whatever is pushed later, and no file a user gives (checkpoints
included) is unpickled with arbitrary objects.
"""

from __future__ import annotations

import ast
import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from accelerate import Accelerator
from hub_server import HubServer
from test_publish import make_dataset_folder

from datasets_builder.layout import load_stats
from stellar_tasks import training
from stellar_tasks.card import render_model_card
from stellar_tasks.cli import main
from stellar_tasks.distillation import DistillationConfig, distill
from stellar_tasks.hub import prepare_model_folder, push_model, validate_model_folder
from stellar_tasks.model_folder import DISTILLED_FOLDER, FACTS_FILE
from tests.conftest import REPO_ROOT, create_test_stars, create_test_tokenizer
from tests.test_card import SCATTER
from tests.test_card import _results as report_results
from tests.test_pipeline import check_fresh_answers, lively_model, run_fresh

TOKEN = "hf_stand_in_token"
MODEL_REPO = "stellar/stellar-foundation-tiny"
DATASET_REPO = "stellar/apogee-gaia-xp-tiny"
LABELS = ("teff", "logg", "fe_h")


@pytest.fixture
def hub(monkeypatch, tmp_path):
    """The stand-in Hub, with this process's huggingface_hub pointed at it (Xet off: see hub_server)."""
    import huggingface_hub.constants as constants

    with HubServer(token=TOKEN) as server:
        monkeypatch.setattr(constants, "ENDPOINT", server.endpoint)
        monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", True)
        monkeypatch.setattr(constants, "AGENT_HARNESSES_PATH", str(tmp_path / "agent_harnesses.json"))
        yield server


def hub_environment(hub: HubServer) -> dict[str, str]:
    """What a process on another machine needs to read the stand-in Hub (`hub_server`: endpoint, token, no Xet)."""
    return {
        "HF_ENDPOINT": hub.endpoint,
        "HF_HUB_OFFLINE": "0",
        "HF_TOKEN": TOKEN,
        "HF_HUB_DISABLE_XET": "1",
        "HF_HUB_DISABLE_TELEMETRY": "1",
    }


@pytest.fixture
def model_folder(tmp_path):
    """A Hub-ready folder: the saved model and pipeline, and a card with the metadata the Hub needs."""
    folder = prepare_model_folder(lively_model(), create_test_tokenizer(), tmp_path / "model")
    (folder / "README.md").write_text(render_model_card(folder, report_results(), dataset_id=DATASET_REPO))
    (folder / "checkpoints").mkdir()
    (folder / "checkpoints" / "optimizer.bin").write_bytes(b"local only")
    return folder


def test_card_metadata_for_the_hub(model_folder):
    metadata = validate_model_folder(model_folder)
    assert metadata["pipeline_tag"] == "tabular-regression" and metadata["library_name"] == "transformers"
    assert metadata["datasets"] == [DATASET_REPO] and metadata["license"] == "mit"  # card.MODEL_LICENSE
    assert {"astronomy", "gaia", "apogee"} <= set(metadata["tags"])
    (result,) = metadata["model-index"][0]["results"]
    assert result["dataset"] == {"name": "APOGEE DR17 x Gaia DR3 XP", "type": DATASET_REPO, "split": "test"}
    scatter = {m["name"]: m["value"] for m in result["metrics"] if m["type"] == "mad_std"}
    assert scatter["scatter Teff [K], setting (a)"] == SCATTER["teff"]
    assert scatter["scatter [Fe/H] [dex], setting (a)"] == SCATTER["fe_h"]


def test_incomplete_folder_is_refused_before_any_upload(hub, model_folder):
    (model_folder / "pipeline_stellar.py").unlink()
    (model_folder / "README.md").write_text("---\npipeline_tag: text-generation\n---\n")
    with pytest.raises(ValueError) as caught:
        push_model(model_folder, MODEL_REPO, token=TOKEN)
    assert "pipeline_stellar.py: missing" in str(caught.value)
    assert "pipeline_tag is 'text-generation', not 'tabular-regression'" in str(caught.value)
    assert hub.repos == {}


@pytest.mark.slow
def test_push_model_and_dataset_then_load_the_pipeline_from_the_hub(hub, model_folder, tmp_path):
    dataset = make_dataset_folder(tmp_path / "dataset")
    with pytest.raises(ValueError, match="must name 'stellar/other'"):
        push_model(
            model_folder, MODEL_REPO, token=TOKEN, dataset_folder=dataset, dataset_repo_id="stellar/other"
        )
    printed = push_model(
        model_folder, MODEL_REPO, token=TOKEN, dataset_folder=dataset, dataset_repo_id=DATASET_REPO
    )
    assert f"pin this revision: {hub.repos[('model', MODEL_REPO)].branches['main']}\n" in printed

    assert "meta/stats.json" in hub.files(DATASET_REPO, "dataset")  # published through datasets_builder
    remote = hub.files(MODEL_REPO)
    assert set(remote) == {
        ".gitattributes",
        "README.md",
        "config.json",
        "model.safetensors",
        "preprocessor_config.json",
        "configuration_stellar.py",
        "modeling_stellar.py",
        "tokenization_stellar.py",
        "pipeline_stellar.py",
    }
    assert remote["model.safetensors"] == (model_folder / "model.safetensors").read_bytes()
    assert ("POST", f"/{MODEL_REPO}.git/info/lfs/objects/batch") in hub.requests  # weights went through LFS
    card = yaml.safe_load(re.match(r"---\n(.*?)\n---", remote["README.md"].decode(), re.DOTALL).group(1))
    assert card["datasets"] == [DATASET_REPO] and card["pipeline_tag"] == "tabular-regression"
    assert "tabular-regression" in json.loads(remote["config.json"])["custom_pipelines"]

    stars = [{k: v for k, v in star.items() if k not in LABELS} for star in create_test_stars(3)]
    answers = run_fresh(MODEL_REPO, stars, tmp_path, hub_environment(hub))
    model, tokenizer = lively_model(), create_test_tokenizer()
    check_fresh_answers(answers, model, tokenizer, stars)
    assert hub.unhandled == []


def test_push_command(hub, model_folder, capsys, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    assert main(["push", str(model_folder), "--repo", MODEL_REPO]) == 0
    sha = hub.repos[("model", MODEL_REPO)].branches["main"]
    url, pin, usage = capsys.readouterr().out.strip().splitlines()
    assert url.endswith(f"/{MODEL_REPO}/commit/{sha}") and pin == f"pin this revision: {sha}"
    assert usage == f'AutoModel.from_pretrained("{MODEL_REPO}", trust_remote_code=True, revision="{sha}")'
    assert hub.commit_titles(MODEL_REPO) == ["Upload stellar-foundation model", "initial commit"]


@pytest.mark.slow
def test_push_then_predict_from_the_hub_with_the_distilled_fast_path(hub, tiny_dataset, tmp_path):
    """The student travels with the model: ``predict --model user/repo --distilled`` serves rows from the Hub."""
    tokenizer = create_test_tokenizer()
    tokenizer.set_normalization(load_stats(tiny_dataset))
    folder = prepare_model_folder(lively_model(), tokenizer, tmp_path / "model")
    (folder / "README.md").write_text(render_model_card(folder, report_results(), dataset_id=DATASET_REPO))
    (folder / FACTS_FILE).write_text(json.dumps({"training": {"seed": 42, "validation_fraction": 0.05}}))
    quick = DistillationConfig(noise_copies=0, mixture_copies=0, hidden_dims=(32,), members=1, epochs=2)
    distill(folder, str(tiny_dataset), quick, log=lambda message: None)
    weights = (folder / "model.safetensors").read_bytes()
    (folder / "model.safetensors").write_bytes(weights[:-4] + bytes(4))  # other weights: the student is stale
    with pytest.raises(ValueError, match="distilled from other weights"):
        push_model(folder, MODEL_REPO, token=TOKEN)
    (folder / "model.safetensors").write_bytes(weights)
    push_model(folder, MODEL_REPO, token=TOKEN)
    remote = hub.files(MODEL_REPO)
    assert {f"{DISTILLED_FOLDER}/config.json", f"{DISTILLED_FOLDER}/model.safetensors", FACTS_FILE} <= set(
        remote
    )
    assert not any(name.startswith("checkpoints") for name in remote)

    stars = next((tiny_dataset / "data").glob("test-*.parquet"))
    environment = {**os.environ, "HF_HOME": str(tmp_path / "hf_home"), **hub_environment(hub)}
    command = [sys.executable, "-m", "stellar_tasks", "predict", str(stars), "--model", MODEL_REPO, "--distilled",
               "--input-names", "headline", "--output", str(tmp_path / "out.parquet")]  # fmt: skip
    result = subprocess.run(
        command, cwd=REPO_ROOT, env=environment, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stderr[-4000:]
    served = re.search(
        r"(\d+) rows, (\d+) predicted \((\d+) by the model, (\d+) by the distilled\)", result.stderr
    )
    assert served is not None, result.stderr[-2000:]
    rows, predicted, by_model, by_student = map(int, served.groups())
    assert rows == predicted == by_model + by_student and by_student > 0
    assert hub.unhandled == []


PINNED_LOAD = textwrap.dedent(
    """
    import json, sys
    from transformers import AutoModel, pipeline

    repo, revision = sys.argv[1:]
    model = AutoModel.from_pretrained(repo, trust_remote_code=True, revision=revision)
    predictor = pipeline(model=repo, trust_remote_code=True, revision=revision, device="cpu")
    try:
        AutoModel.from_pretrained(repo, trust_remote_code=True)
        unpinned = "loaded"
    except RuntimeError as error:
        unpinned = str(error)
    print(json.dumps({
        "model": type(model).__module__,
        "pipeline": type(predictor).__module__,
        "sums": {name: float(t.double().sum()) for name, t in model.state_dict().items()},
        "unpinned": unpinned,
    }))
    """
)
"""Load a repo at a revision with the Auto class and the pipeline, then unpinned; print where each came from."""


@pytest.mark.slow
def test_the_printed_revision_loads_the_pushed_code_after_later_pushes(hub, model_folder, tmp_path):
    pin = re.search(r"pin this revision: ([0-9a-f]{40})\n", push_model(model_folder, MODEL_REPO, token=TOKEN))
    first = pin.group(1)
    # a later push changes the weights and the code: whatever main holds, the pinned commit is what runs
    prepare_model_folder(lively_model(seed=1), create_test_tokenizer(), model_folder)
    with (model_folder / "modeling_stellar.py").open("a") as code:
        code.write('\nraise RuntimeError("code of a later commit")\n')
    push_model(model_folder, MODEL_REPO, token=TOKEN)
    assert hub.repos[("model", MODEL_REPO)].branches["main"] != first

    workdir = tmp_path / "elsewhere"
    workdir.mkdir()
    environment = {**os.environ, "HF_HOME": str(tmp_path / "hf_home"), **hub_environment(hub)}
    result = subprocess.run(
        [sys.executable, "-I", "-c", PINNED_LOAD, MODEL_REPO, first],
        cwd=workdir, env=environment, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-4000:]
    loaded = json.loads(result.stdout.strip().splitlines()[-1])
    # the remote code is cached and imported under the commit it came from
    assert loaded["model"].startswith("transformers_modules.")
    assert loaded["model"].endswith(f".{first}.modeling_stellar") and f".{first}." in loaded["pipeline"]
    expected = {name: float(t.double().sum()) for name, t in lively_model().state_dict().items()}
    assert loaded["sums"].keys() == expected.keys()
    np.testing.assert_allclose(list(loaded["sums"].values()), list(expected.values()), rtol=1e-6)
    # unpinned, main's later code runs: the pin is what kept it out
    assert loaded["unpinned"] == "code of a later commit"
    assert hub.unhandled == []


SOURCE_FOLDERS = ("stellar_tasks", "modeling_stellar", "datasets_builder", "benchmarks", "tests", "space")


def source_files() -> list[Path]:
    """The repository's Python files: every place that could read a user's file."""
    files = [REPO_ROOT / "train.py"]
    for folder in SOURCE_FOLDERS:
        files += sorted((REPO_ROOT / folder).rglob("*.py"))
    return files


def unsafe_load_lines(source: str) -> list[int]:
    """Lines of ``source`` calling ``torch.load`` without ``weights_only=True`` or ``np.load`` allowing pickles."""
    lines = []
    for node in ast.walk(ast.parse(source)):
        if not (
            isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "load"
        ):
            continue
        owner = ast.unparse(node.func.value)
        keywords = {k.arg: ast.unparse(k.value) for k in node.keywords}
        if (owner == "torch" and keywords.get("weights_only") != "True") or (
            owner in ("np", "numpy") and keywords.get("allow_pickle", "False") != "False"
        ):
            lines.append(node.lineno)
    return sorted(lines)


def test_no_source_file_loads_a_pickle_that_could_run_code():
    files = source_files()
    assert REPO_ROOT / "stellar_tasks" / "distillation.py" in files and len(files) > 50
    found = [
        f"{path.relative_to(REPO_ROOT)}:{line}"
        for path in files
        for line in unsafe_load_lines(path.read_text())
    ]
    assert found == [], "pass weights_only=True to torch.load (np.load: no allow_pickle)"
    planted = "torch.load(f)\ntorch.load(f, weights_only=False)\nnp.load(f, allow_pickle=True)\n"
    assert unsafe_load_lines(planted + "torch.load(f, weights_only=True)\nnp.load(f)\n") == [1, 2, 3]


class Planted:
    """Unpickled, this makes the folder ``marker``: the sign that a loader ran code from a file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.mkdir, (str(self.marker),)


def test_resume_refuses_a_checkpoint_that_would_run_code(tmp_path):
    # accelerate loads registered objects (the weight average) with weights_only=False: `training.resume` must not
    accelerator = Accelerator()
    linear = torch.nn.Linear(2, 1)
    model, _ = accelerator.prepare(linear, torch.optim.SGD(linear.parameters(), lr=0.1))
    accelerator.register_for_checkpointing(torch.optim.swa_utils.AveragedModel(model))
    training.save_checkpoint(accelerator, tmp_path, step=4, keep=1)
    assert training.resume(accelerator, tmp_path) == 4  # an honest checkpoint: tensors only
    marker = tmp_path / "code-ran"
    (checkpoint,) = training.checkpoints_in(tmp_path)
    torch.save({"n_averaged": Planted(marker)}, checkpoint / "custom_checkpoint_0.pkl")
    forced = os.environ.get(training.FORCE_WEIGHTS_ONLY)
    with pytest.raises(ValueError, match=r"step_4 cannot be loaded \(UnpicklingError"):
        training.resume(accelerator, tmp_path)
    assert not marker.exists()
    assert os.environ.get(training.FORCE_WEIGHTS_ONLY) == forced  # the rest of the process loads as it asks
