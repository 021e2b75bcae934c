"""Deliberate breaks of a model folder or of the model code, for tests that prove a guard fails when it should.

A guard that no break can trip is no evidence (issue 28, "Evidence that can fail"): each check of the shipped folder,
the card, the padding mask or the bfloat16 path is a function that the real test calls on the real thing and a
mutation test calls on one of these breaks, asserting that the check reports it.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
import torch

from modeling_stellar.modeling_stellar import StellarAttention

PREPROCESSOR_FILE = "preprocessor_config.json"
CARD_FILE = "README.md"

CARD_METRIC = re.compile(r"(?m)^(\s+- type: \S+\n\s+value: )(\S+)(\n\s+name: )(.+)$")
"""One ``model-index`` metric of a card's YAML front matter: type, value and name lines, as `ModelCardData` writes
them."""


def copy_model_folder(folder: Path, destination: Path) -> Path:
    """A copy of ``folder`` under ``destination`` (same folder name), to break without touching the original."""
    return Path(shutil.copytree(folder, destination / folder.name))


def _edit_vocabulary(folder: Path, edit) -> list[str]:
    """Apply ``edit(entry) -> bool`` to every vocabulary entry of the folder's tokenizer settings, save them, and
    return the names of the entries it changed."""
    path = folder / PREPROCESSOR_FILE
    settings = json.loads(path.read_text())
    changed = [entry["name"] for entry in settings["vocabulary"] if edit(entry)]
    path.write_text(json.dumps(settings, indent=2))
    return changed


def scale_sigma_scales(folder: Path, factor: float = 2.5) -> list[str]:
    """Multiply every calibration factor (``sigma_scale``) of the folder's vocabulary by ``factor``: the predicted
    sigmas grow by it, the means do not move. Returns the names changed."""

    def scale(entry: dict) -> bool:
        if "sigma_scale" not in entry:
            return False
        entry["sigma_scale"] *= factor
        return True

    return _edit_vocabulary(folder, scale)


def shift_center(folder: Path, name: str, offset: float) -> None:
    """Move the normalisation centre of ``name`` by ``offset`` physical units: every answer for it moves by as much."""

    def shift(entry: dict) -> bool:
        if entry["name"] != name:
            return False
        entry["center"] += offset
        return True

    assert _edit_vocabulary(folder, shift) == [name], f"no vocabulary entry {name!r}"


def fake_card_numbers(folder: Path, factor: float = 0.9) -> list[str]:
    """Multiply the first and the last ``model-index`` number of the folder's card by ``factor`` (the text of the
    YAML, as a hand edit would). Returns the two metric names faked."""
    path = folder / CARD_FILE
    text = path.read_text()
    metrics = list(CARD_METRIC.finditer(text))
    assert len(metrics) >= 2, f"{path} has fewer than two model-index numbers"
    for metric in (metrics[-1], metrics[0]):  # last first: the earlier offsets stay valid
        faked = repr(float(metric.group(2)) * factor)
        text = text[: metric.start(2)] + faked + text[metric.end(2) :]
    path.write_text(text)
    return [metrics[0].group(4), metrics[-1].group(4)]


def attention_sees_padding(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every attention layer (encoder self-attention, decoder cross-attention) ignores its key mask: padding tokens
    are read as if they were observations."""
    attend = StellarAttention.forward

    def attend_to_everything(self, queries, keys_values, key_mask, output_attentions=False):
        return attend(self, queries, keys_values, torch.ones_like(key_mask), output_attentions)

    monkeypatch.setattr(StellarAttention, "forward", attend_to_everything)
