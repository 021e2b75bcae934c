"""The model and its dataset on the Hub, through the offline stand-in: push, then load the pipeline in a fresh process.

The push runs here with ``huggingface_hub.constants`` pointed at `hub_server.HubServer`; the read-back runs
``pipeline(model=repo_id, trust_remote_code=True)`` in a new interpreter that cannot import this repository, with
``HF_ENDPOINT`` set and an empty ``HF_HOME``, as a user on another machine would.
"""

from __future__ import annotations

import json
import re

import pytest
import yaml
from hub_server import HubServer
from test_publish import make_dataset_folder

from stellar_tasks.card import render_model_card
from stellar_tasks.cli import main
from stellar_tasks.hub import prepare_model_folder, push_model, validate_model_folder
from tests.conftest import create_test_stars, create_test_tokenizer
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
    url = push_model(
        model_folder, MODEL_REPO, token=TOKEN, dataset_folder=dataset, dataset_repo_id=DATASET_REPO
    )
    assert url.endswith(hub.repos[("model", MODEL_REPO)].branches["main"])

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
    environment = {
        "HF_ENDPOINT": hub.endpoint,
        "HF_HUB_OFFLINE": "0",
        "HF_TOKEN": TOKEN,
        "HF_HUB_DISABLE_XET": "1",
        "HF_HUB_DISABLE_TELEMETRY": "1",
    }
    answers = run_fresh(MODEL_REPO, stars, tmp_path, environment)
    model, tokenizer = lively_model(), create_test_tokenizer()
    check_fresh_answers(answers, model, tokenizer, stars)
    assert hub.unhandled == []


def test_push_command(hub, model_folder, capsys, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    assert main(["push", str(model_folder), "--repo", MODEL_REPO]) == 0
    assert capsys.readouterr().out.strip().endswith(hub.repos[("model", MODEL_REPO)].branches["main"])
    assert hub.commit_titles(MODEL_REPO) == ["Upload stellar-foundation model", "initial commit"]
