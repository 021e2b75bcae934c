"""The model folder on the Hugging Face Hub: make it pipeline-ready, describe it, push it (and its dataset).

A Hub-ready folder (``DESIGN.md``, "Saved model folder") holds ``config.json`` with ``auto_map`` and
``custom_pipelines``, ``model.safetensors``, ``preprocessor_config.json`` (the tokenizer), the remote code
(``configuration_stellar.py``, ``modeling_stellar.py``, ``tokenization_stellar.py``, ``pipeline_stellar.py``)
and ``README.md``, the model card. `prepare_model_folder` writes all but the card (`stellar_tasks.card` renders
it from measured results), `export_model_folder` copies a training run's Hub-ready part, `push_model` checks the
folder and uploads it, publishing the dataset first when asked, and returns the commit to pin
(``revision=...``): loading with ``trust_remote_code=True`` runs the folder's code, so users pin the commit they
reviewed.

The Hub's hosted inference widget runs no custom code, so the card points to the demo Space (``space/``).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from modeling_stellar import StarTokenizer, StellarForObservationPrediction, StellarParameterPipeline

from .model_folder import (
    CARD_FILE,
    CONFIG_FILE,
    DISTILLED_FOLDER,
    REQUIRED_FILES,
    RUN_FILES,
    UPLOAD_PATTERNS,
    WEIGHTS_FILE,
    weights_sha256,
)

__all__ = [
    "PIPELINE_TASK",
    "export_model_folder",
    "prepare_model_folder",
    "push_model",
    "validate_model_folder",
]

PIPELINE_TASK = "tabular-regression"
"""The Hub task of the pipeline (``pipeline_tag`` of the card, key of ``custom_pipelines``)."""


def prepare_model_folder(
    model: StellarForObservationPrediction, tokenizer: StarTokenizer, folder: str | Path
) -> Path:
    """Save model, tokenizer and the ``tabular-regression`` pipeline registration into ``folder``.

    Writes ``config.json`` (with ``auto_map`` and ``custom_pipelines``), ``model.safetensors``,
    ``preprocessor_config.json`` and the four remote-code files, so that
    ``pipeline(model=folder, trust_remote_code=True)`` returns a `StellarParameterPipeline`. The card
    (``README.md``) is written separately (`stellar_tasks.card.write_model_card`).

    Parameters
    ----------
    model : StellarForObservationPrediction
        The trained model (any device; it is not moved).
    tokenizer : StarTokenizer
        Its tokenizer, with the training set's normalisation.
    folder : str or Path
        Created if needed; files of the same names are replaced.

    Returns
    -------
    Path
        ``folder``.
    """
    folder = Path(folder)
    StellarParameterPipeline(model=model, feature_extractor=tokenizer, device=model.device).save_pretrained(
        folder
    )
    return folder


def validate_model_folder(folder: str | Path) -> dict:
    """Check that ``folder`` is Hub-ready; returns the card's YAML metadata.

    Raises
    ------
    ValueError
        Naming every problem: a missing file, ``config.json`` without ``auto_map`` or without the
        ``tabular-regression`` entry of ``custom_pipelines``, a ``distilled/`` fast path of other weights, a card without YAML front matter or whose
        ``pipeline_tag`` is not ``tabular-regression``.
    """
    from huggingface_hub import metadata_load

    folder = Path(folder)
    problems = [f"{folder / name}: missing" for name in REQUIRED_FILES if not (folder / name).is_file()]
    config_file, card_file = folder / CONFIG_FILE, folder / CARD_FILE
    if config_file.is_file():
        config = json.loads(config_file.read_text())
        if "AutoModel" not in config.get("auto_map", {}):
            problems.append(f"{config_file}: no auto_map for AutoModel")
        if PIPELINE_TASK not in config.get("custom_pipelines", {}):
            problems.append(
                f"{config_file}: no custom_pipelines[{PIPELINE_TASK!r}] (use prepare_model_folder)"
            )
    student_file = folder / DISTILLED_FOLDER / CONFIG_FILE
    stale = (
        student_file.is_file()
        and (folder / WEIGHTS_FILE).is_file()
        and json.loads(student_file.read_text()).get("teacher_sha256") != weights_sha256(folder)
    )
    if stale:
        problems.append(
            f"{student_file.parent}: distilled from other weights (run stellar-foundation distill again)"
        )
    metadata: dict = {}
    if card_file.is_file():
        found = metadata_load(card_file)
        metadata = found or {}
        if found is None:
            problems.append(f"{card_file}: no YAML front matter")
        elif metadata.get("pipeline_tag") != PIPELINE_TASK:
            problems.append(
                f"{card_file}: pipeline_tag is {metadata.get('pipeline_tag')!r}, not {PIPELINE_TASK!r}"
            )
    if problems:
        raise ValueError(f"{folder}: not ready to push:\n  " + "\n  ".join(problems))
    return metadata


def push_model(
    folder: str | Path,
    repo_id: str,
    token: str | None = None,
    private: bool = False,
    dataset_folder: str | Path | None = None,
    dataset_repo_id: str | None = None,
) -> str:
    """Push a model folder to the Hub; with ``dataset_folder``, publish its dataset first.

    Parameters
    ----------
    folder : str or Path
        A folder that passes `validate_model_folder`.
    repo_id : str
        ``namespace/name`` of the model repository; created if missing.
    token : str, optional
        Hub token with write access; None uses the saved token or ``HF_TOKEN``.
    private : bool, optional, default False
        Visibility of repositories this call creates.
    dataset_folder, dataset_repo_id : optional
        A built dataset folder and its Hub id, published with `datasets_builder.publish.publish`. The card must
        list ``dataset_repo_id`` under ``datasets:``, so that the model page links it.

    Returns
    -------
    str
        What ``stellar-foundation push`` prints, three lines: the commit URL, ``pin this revision: <sha>`` and the
        ``AutoModel.from_pretrained`` call with ``revision="<sha>"``. The folder carries code that runs on the
        user's machine (``trust_remote_code=True``); a pinned ``revision`` makes it the code of this commit, not
        whatever the branch holds later.
    """
    from huggingface_hub import HfApi

    metadata = validate_model_folder(folder)
    if (dataset_folder is None) != (dataset_repo_id is None):
        raise ValueError("give both dataset_folder and dataset_repo_id, or neither")
    if dataset_repo_id is not None:
        if dataset_repo_id not in (metadata.get("datasets") or []):
            raise ValueError(
                f"{Path(folder) / CARD_FILE}: 'datasets' is {metadata.get('datasets')}, it must name {dataset_repo_id!r}"
            )
        from datasets_builder.publish import publish

        publish(dataset_folder, dataset_repo_id, token=token, private=private)
    api = HfApi(token=token)
    api.create_repo(repo_id, private=private, exist_ok=True)
    commit = api.upload_folder(
        repo_id=repo_id,
        folder_path=str(folder),
        allow_patterns=UPLOAD_PATTERNS,
        commit_message="Upload stellar-foundation model",
    )
    return (
        f"{commit.commit_url}\n"
        f"pin this revision: {commit.oid}\n"
        f'AutoModel.from_pretrained("{repo_id}", trust_remote_code=True, revision="{commit.oid}")'
    )


def export_model_folder(run_dir: str | Path, folder: str | Path) -> Path:
    """Copy the Hub-ready part of a ``train.py`` run (no checkpoints, no process reports) into ``folder``.

    The model and tokenizer are reloaded from the run and saved with `prepare_model_folder`; the training facts
    and log (`RUN_FILES`) travel with them so that the card can state the recipe, hardware and time.
    """
    from transformers import AutoFeatureExtractor, AutoModel

    run_dir = Path(run_dir)
    model = AutoModel.from_pretrained(run_dir, trust_remote_code=True)
    tokenizer = AutoFeatureExtractor.from_pretrained(run_dir, trust_remote_code=True)
    folder = prepare_model_folder(model, tokenizer, folder)
    for name in RUN_FILES:
        shutil.copy(run_dir / name, folder / name)
    return folder
