"""The saved model folder: one home for what it holds, how it loads, what it says of its training, what is uploaded.

The mirror of `datasets_builder.layout` for models (``DESIGN.md``, "Saved model folder"). A Hub-ready folder::

    config.json                    the model's config, with auto_map and custom_pipelines (tabular-regression)
    model.safetensors              the weights
    preprocessor_config.json       the tokenizer (`modeling_stellar.StarTokenizer`): vocabulary, normalisation, sigma factors
    configuration_stellar.py ...   the remote code (`REMOTE_CODE_FILES`), byte-identical to ``modeling_stellar/``
    README.md                      the model card (`stellar_tasks.card`)
    training_facts.json            the run's settings, steps, minutes and hardware (a warm restart nests its parent's)
    train_log.jsonl                the run's log (kept locally; not uploaded)
    distilled/                     the optional fast path (`stellar_tasks.distillation`): config.json, model.safetensors

A training run's folder adds ``checkpoints/``, ``processes/`` and ``run_config.json``; a fine-tuned folder holds
``finetune_facts.json`` and ``finetune_log.jsonl`` instead of the training files (`stellar_tasks.finetune`).

The training hold-out (the seeded fraction of the train split no phase trains on, where every choice is made) is read
from the facts (`holdout_settings`), never from a second copy of the seed.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import torch
from huggingface_hub.constants import REPOCARD_NAME
from transformers import AutoFeatureExtractor, AutoModel
from transformers.utils import CONFIG_NAME, FEATURE_EXTRACTOR_NAME, SAFE_WEIGHTS_NAME

from modeling_stellar import StarTokenizer, StellarForObservationPrediction

__all__ = [
    "CARD_FILE",
    "CHECKPOINT_DIR",
    "CONFIG_FILE",
    "DISTILLED_FOLDER",
    "FACTS_FILE",
    "LOG_FILE",
    "REMOTE_CODE_FILES",
    "REQUIRED_FILES",
    "RUN_FILES",
    "TOKENIZER_FILE",
    "UPLOAD_PATTERNS",
    "WEIGHTS_FILE",
    "holdout_settings",
    "load_facts",
    "load_model",
    "weights_sha256",
]

CONFIG_FILE = CONFIG_NAME  # "config.json"
WEIGHTS_FILE = SAFE_WEIGHTS_NAME  # "model.safetensors"
TOKENIZER_FILE = FEATURE_EXTRACTOR_NAME  # "preprocessor_config.json"
CARD_FILE = REPOCARD_NAME  # "README.md": where the Hub reads a repository's card
REMOTE_CODE_FILES = (
    "configuration_stellar.py",
    "modeling_stellar.py",
    "tokenization_stellar.py",
    "pipeline_stellar.py",
)
"""The remote code ``trust_remote_code=True`` runs: copies of ``modeling_stellar/``'s modules."""

REQUIRED_FILES = (CONFIG_FILE, WEIGHTS_FILE, TOKENIZER_FILE, *REMOTE_CODE_FILES, CARD_FILE)
"""What a model folder must hold to load with ``pipeline(model=repo, trust_remote_code=True)`` anywhere."""

FACTS_FILE = "training_facts.json"
LOG_FILE = "train_log.jsonl"
RUN_FILES = (FACTS_FILE, LOG_FILE)
"""What a training run adds to the model folder: its recipe, hardware and time, and its log (the card cites them)."""

DISTILLED_FOLDER = "distilled"
"""Subfolder holding the distilled fast path (its own ``config.json`` and ``model.safetensors``)."""

CHECKPOINT_DIR = "checkpoints"
"""Subfolder of a training or fine-tuning run holding its checkpoints (``step_<N>``); never uploaded."""

UPLOAD_PATTERNS = [*REQUIRED_FILES, FACTS_FILE, f"{DISTILLED_FOLDER}/*"]
"""What `stellar_tasks.hub.push_model` uploads (``allow_patterns``): the Hub-ready files, the facts the card cites and the
fast path, so that ``predict --model user/repo --distilled`` works; checkpoints, logs and other run files stay local."""


def load_model(folder: str | Path) -> tuple[StellarForObservationPrediction, StarTokenizer]:
    """The saved model and its tokenizer, through the Auto classes with ``trust_remote_code=True`` (as a Hub user
    loads them); evaluation mode, on the GPU when there is one."""
    model = AutoModel.from_pretrained(str(folder), trust_remote_code=True).eval()
    tokenizer = AutoFeatureExtractor.from_pretrained(str(folder), trust_remote_code=True)
    if torch.cuda.is_available():
        model = model.to("cuda")
    return model, tokenizer


def load_facts(folder: str | Path) -> dict:
    """The folder's ``training_facts.json``; ``ValueError`` naming it when there is none."""
    path = Path(folder) / FACTS_FILE
    if not path.is_file():
        raise ValueError(f"{folder}: no {FACTS_FILE} (not a trained model folder)")
    return json.loads(path.read_text())


def holdout_settings(folder: str | Path) -> tuple[int, float]:
    """(seed, fraction) of the training hold-out of the model in ``folder``, from its facts."""
    training = load_facts(folder)["training"]
    return int(training["seed"]), float(training["validation_fraction"])


def weights_sha256(folder: str | os.PathLike) -> str:
    """SHA-256 (hex) of a model folder's weights file: what ties a distilled predictor to its model."""
    return hashlib.sha256((Path(folder) / WEIGHTS_FILE).read_bytes()).hexdigest()
