"""The Hub model card, rendered from measured results: never typed by hand.

`render_model_card` fills the package's ``templates/model_card.md`` (a Jinja2 template, rendered by
``huggingface_hub.ModelCard.from_template``) with the model folder's ``config.json`` and ``training_facts.json``
(written by ``train.py``) and the results of ``python -m stellar_tasks.report`` (``results.json``). The YAML front
matter, ``model-index`` included, is built by ``huggingface_hub.ModelCardData`` from the same numbers.

    stellar-foundation evaluate --model MODEL --dataset DATASET --output reports --write-card
    stellar-foundation evaluate --model MODEL --results reports/results.json --write-card   # re-render only
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from datasets_builder.atomic import atomic_write

from .hub import PIPELINE_TASK
from .inputs import HATTORI_2024_ALPHA_M_RMSE
from .model_folder import CARD_FILE, CONFIG_FILE, DISTILLED_FOLDER, FACTS_FILE

__all__ = ["MODEL_LICENSE", "TEMPLATE_PATH", "fmt", "render_model_card", "write_model_card"]

TEMPLATE_PATH = Path(__file__).resolve().parent / "templates" / "model_card.md"
"""The card template, package data (so ``--write-card`` works from an installed wheel too)."""

MODEL_LICENSE = "mit"
"""Licence of what a model folder holds, code and weights: the project's own (``pyproject.toml``, MIT). The
training data keep theirs (Gaia: CC BY-SA 3.0 IGO; SDSS/APOGEE: public), stated on the dataset card
(`datasets_builder.writer`), which the model card links through ``datasets:``."""

DEFAULT_DATASET_ID = "stellar-foundation/apogee-gaia-xp"
"""Hub id of the training dataset, for the card's ``datasets:`` field."""

REVISION_PLACEHOLDER = "<commit sha>"
"""What the usage snippets pin when the card is rendered without a ``revision``; the card says what to put there."""

DEFAULT_SPACE_ID = "stellar-foundation/stellar-foundation-demo"
"""Hub id of the demo Space linked from the card."""

TAGS = [
    "astronomy",
    "astrophysics",
    "stellar-parameters",
    "gaia",
    "apogee",
    "xp-spectra",
    "foundation-model",
    "transformer",
]

LABEL_NAMES = {"teff": "Teff", "logg": "log g", "fe_h": "[Fe/H]", "alpha_m": "[alpha/M]"}


def _finite(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _eval_results(results: dict, dataset_id: str) -> list:
    """``model-index`` entries: the model's scatter per label and setting, and its calibration on setting (a)."""
    from huggingface_hub import EvalResult

    settings = {row["setting"] for row in results["parameters"]}
    entries = []
    for row in results["parameters"]:
        if row["method"] != "model":
            continue
        base = {
            "task_type": PIPELINE_TASK,
            "task_name": "Stellar parameters from Gaia XP spectra and colours",
            "dataset_type": dataset_id,
            "dataset_name": "APOGEE DR17 x Gaia DR3 XP",
            "dataset_split": "test",
        }
        name = f"{LABEL_NAMES.get(row['label'], row['label'])} [{row['unit']}], setting ({row['setting']})"
        if _finite(row["scatter"]):
            entries.append(
                EvalResult(
                    **base, metric_type="mad_std", metric_name=f"scatter {name}", metric_value=row["scatter"]
                )
            )
        if row["setting"] == "a" and "a" in settings:
            for key, label in (("z_std", "robust std of z"), ("coverage_68", "68 % coverage")):
                if _finite(row.get(key)):
                    entries.append(
                        EvalResult(
                            **base, metric_type=key, metric_name=f"{label}, {name}", metric_value=row[key]
                        )
                    )
    return entries


def render_model_card(
    model_dir: str | Path,
    results: dict,
    repo_id: str | None = None,
    revision: str | None = None,
    dataset_id: str = DEFAULT_DATASET_ID,
    space_id: str = DEFAULT_SPACE_ID,
    template_path: str | Path = TEMPLATE_PATH,
) -> str:
    """The model card (README.md text) of a saved model folder, with its measured results.

    Parameters
    ----------
    model_dir : path
        Saved model folder: ``config.json`` and, when train.py made it, ``training_facts.json``; when it has a
        distilled fast path, ``distilled/config.json`` (`stellar_tasks.distillation`).
    results : dict
        What ``python -m stellar_tasks.report`` returns and writes to ``results.json``.
    repo_id : str, optional
        Hub id used in the usage snippets; default ``stellar-foundation/<folder name>``.
    revision : str, optional
        The commit the snippets pin (``revision="..."``: ``trust_remote_code=True`` runs the repository's code, so
        users load the commit they reviewed). A card is rendered before the push that makes its commit, so it is
        usually unknown: the snippets then read ``revision="<commit sha>"`` and the card says where the sha comes
        from (``stellar-foundation push`` prints it; the repository's commit history lists every one).
    dataset_id, space_id : str
        Hub ids of the training dataset and of the demo Space.
    template_path : path
        The Jinja2 template.
    """
    from huggingface_hub import ModelCard, ModelCardData

    model_dir = Path(model_dir)
    config = json.loads((model_dir / CONFIG_FILE).read_text())
    facts_file = model_dir / FACTS_FILE
    facts = json.loads(facts_file.read_text()) if facts_file.is_file() else {}
    distilled_file = model_dir / DISTILLED_FOLDER / CONFIG_FILE
    distilled = json.loads(distilled_file.read_text()) if distilled_file.is_file() else None
    repo_id = repo_id or f"stellar-foundation/{model_dir.resolve().name}"
    card_data = ModelCardData(
        model_name=repo_id.split("/")[-1],
        license=MODEL_LICENSE,
        library_name="transformers",
        pipeline_tag=PIPELINE_TASK,
        tags=TAGS,
        datasets=[dataset_id],
        eval_results=_eval_results(results, dataset_id),
    )
    earlier_stages, stage = [], facts
    while "initialised_from" in stage:  # a warm restart's facts nest those of the run it started from
        stage = stage["initialised_from"]
        earlier_stages.insert(0, stage)
    paired: dict[tuple, dict] = {}
    for row in results["parameters"]:
        paired.setdefault((row["setting"], row["label"]), {})[row["method"]] = row
    card = ModelCard.from_template(
        card_data,
        template_path=str(template_path),
        model_name=repo_id.split("/")[-1],
        repo_id=repo_id,
        revision=revision or REVISION_PLACEHOLDER,
        revision_known=revision is not None,
        space_id=space_id,
        dataset_id=dataset_id,
        config=config,
        facts=facts,
        distilled=distilled,
        training=facts.get("training", {}),
        earlier_stages=earlier_stages,
        hattori_alpha_m_rmse=HATTORI_2024_ALPHA_M_RMSE,
        results=results,
        parameter_pairs=[
            {"setting": setting, "label": LABEL_NAMES.get(label, label), **pair}
            for (setting, label), pair in paired.items()
        ],
        fmt=fmt,
    )
    return str(card)


def fmt(value, digits: int = 3) -> str:
    """A number with ``digits`` significant digits; "n/a" for None/NaN; yes/no for a bool."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if not _finite(value):
        return "n/a"
    return str(value) if isinstance(value, int) else f"{value:.{digits}g}"


def write_model_card(model_dir: str | Path, results: dict, **kwargs) -> Path:
    """Render the card and write it to ``<model_dir>/README.md`` atomically (temporary file, then rename)."""
    return atomic_write(Path(model_dir) / CARD_FILE, render_model_card(model_dir, results, **kwargs))
