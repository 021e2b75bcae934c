"""Teach a trained model with few stars, and new observations: ``stellar-foundation finetune``.

    stellar-foundation finetune pretrained/stellar-foundation-apogee-xp --data my_stars.parquet --output mine
    stellar-foundation finetune user/model --data data/apogee-gaia-xp --unit g_fakemag=mas --output with-parallax

The data is a star table (Parquet, FITS, ECSV, CSV: vocabulary-named columns in physical units, ``<name>_err``, NaN
= not observed) or a dataset folder (its train split). Every numeric column that is not a vocabulary name, an
uncertainty or an identifier becomes a **new observation**: its unit from the table (astropy units; a dataset
folder's ``meta/info.json``) or ``--unit NAME=UNIT``, its centre, scale and envelope from the given stars, as a
dataset's statistics are (`datasets_builder.layout.load_stats`). The model's embedding table grows by one row per new
name (`StellarPreTrainedModel._get_resized_embeddings`), so every old answer is bit-identical until training starts.
A column that looks like a misspelt name (``Teff`` for ``teff``) is refused with the suggestion, never added.

Training is the pre-training's own objective (`stellar_tasks.training.sample_batch`: any subset in, any
observation out) on the given stars, the targets weighted up, with the headline batches showing the headline inputs
and the new observations. What is trained (`METHODS`):

* ``lora`` (the default): LoRA adapters (the ``peft`` library) on every attention and feed-forward projection,
  with the token embeddings and the output head trained in full (new names need their own vectors);
* ``head``: the token embeddings and the output head only, the Transformer frozen;
* ``all``: every weight.

A seeded fifth of the stars (`FinetuneConfig.validation_fraction`) is held out: every ``validation_every`` steps the
targets' Gaussian NLL from the inputs is scored there, the best step's weights are kept, and the sigma calibration
(`stellar_tasks.calibration`) is fitted there. The output is a Hub-ready model folder (LoRA merged into the weights,
so it loads with ``AutoModel`` / ``pipeline(..., trust_remote_code=True)`` without ``peft`` and serves the command's
fast paths like any other), with ``finetune_facts.json`` (what it was adapted on, with how many stars, the new
observations, the measured scores) and a card. A stopped run resumes with ``--resume``; the folder is swapped in
whole at the end (`datasets_builder.atomic.move_into_place`), so it never holds half a model.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import shutil
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from astropy import units as u
from astropy.stats import mad_std
from astropy.table import Table
from huggingface_hub import ModelCard, ModelCardData

from datasets_builder.atomic import atomic_write, move_into_place, temporary_sibling
from datasets_builder.layout import INFO_PATH, load_info
from datasets_builder.schema import error_name, observation_names
from datasets_builder.writer import ENVELOPE_QUANTILE
from modeling_stellar import StarInputError, StarTokenizer, StellarForObservationPrediction

from .calibration import CALIBRATED_NAMES, fit_sigma_scales
from .catalogue import ID_COLUMNS
from .data import validation_mask
from .hub import PIPELINE_TASK, prepare_model_folder
from .inference import mask_to_inputs, predict_arrays
from .inputs import COLOURS, HEADLINE_INPUTS
from .model_folder import CARD_FILE, CHECKPOINT_DIR
from .training import (
    TrainingConfig,
    checkpoints_in,
    fixed_batch,
    get_lr_lambda,
    guard_output_folder,
    logged_minutes,
    request_weights,
    robust_scatter,
    sample_batch,
    write_log,
)

__all__ = ["METHODS", "FinetuneConfig", "build_parser", "finetune", "new_observations", "read_star_table"]

METHODS = ("lora", "head", "all")
"""What fine-tuning trains (module docstring)."""

FACTS_FILE = "finetune_facts.json"
LOG_FILE = "finetune_log.jsonl"
RUN_FILE = "finetune_config.json"

LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "out_proj", "feed_forward.0", "feed_forward.3")
"""The linear layers LoRA adapts: every attention projection and both feed-forward layers of every block."""

FULLY_TRAINED = ("embeddings", "head", "mean_head", "log_variance_head")
"""Modules trained in full by ``lora`` and ``head``: the token vectors (the new names' are new) and the output head."""

MIN_NEW_OBSERVED = 10
"""Fewest given stars observing a new name for its centre and scale to be measured (fewer: refused)."""


@dataclass
class FinetuneConfig:
    """Every setting of a fine-tuning run (``--config`` JSON keys; the command's options override them)."""

    method: str = "lora"
    lora_rank: int = 8
    lora_alpha: float = 16.0
    # The names taught and scored (validation NLL, calibration); default: the labels of
    # `stellar_tasks.calibration.CALIBRATED_NAMES` that the given stars observe.
    targets: list = field(default_factory=list)
    # What the validation reads to answer the targets; default: the headline inputs and the new observations.
    inputs: list = field(default_factory=list)
    target_weight: float = 6.0  # request weight of the targets (the pre-training's label weight)
    requests_per_star: int = 16
    headline_fraction: float = 0.5  # of batches that show the validation's inputs (see `TrainingConfig`)
    xp_prefix_fraction: float = 0.5
    batch_size: int = 128
    learning_rate: float = 1e-3
    weight_decay: float = 0.01
    warmup_steps: int = 50
    max_steps: int = 1000
    max_grad_norm: float = 1.0
    validation_fraction: float = 0.2  # of the given stars, held out by a seeded draw
    validation_every: int = 100
    checkpoint_every: int = 100
    seed: int = 0

    @classmethod
    def from_json(cls, path: str | Path | None, **overrides) -> FinetuneConfig:
        values = json.loads(Path(path).read_text()) if path else {}
        unknown = set(values) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise ValueError(f"{path}: unknown fine-tuning settings {sorted(unknown)}")
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"method must be one of {', '.join(METHODS)}, got {self.method!r}")
        if not 0.0 < self.validation_fraction < 1.0:
            raise ValueError(f"validation_fraction must be in (0, 1), got {self.validation_fraction}")

    def sampling(self, new_names: Sequence[str], batch_size: int) -> TrainingConfig:
        """The pre-training's sampler settings for these stars: headline batches show the colours and the new
        names beside the XP prefix; the targets weigh ``target_weight``."""
        return TrainingConfig(
            requests_per_star=self.requests_per_star,
            request_weights={name: self.target_weight for name in self.targets},
            headline_fraction=self.headline_fraction,
            headline_colours=[*COLOURS, *new_names],
            xp_prefix_fraction=self.xp_prefix_fraction,
            batch_size=batch_size,
            learning_rate=self.learning_rate,
            warmup_steps=self.warmup_steps,
            max_steps=self.max_steps,
            seed=self.seed,
        )


# --------------------------------------------------------------------------------------------- the data
def read_star_table(data: str | Path | Table) -> Table:
    """A star table as an astropy ``Table`` with its units: a table file (Parquet, FITS, ECSV, CSV), a dataset
    folder's train split (its identifiers and observations, with their units from its ``meta/info.json``), or a
    ``Table`` as it is."""
    if isinstance(data, Table):
        return data
    path = Path(data)
    if not path.exists():
        raise ValueError(f"{path}: no such star table or dataset folder")
    try:
        if path.is_dir():
            if not (path / INFO_PATH).is_file():
                raise ValueError(f"{path}: a folder, but not a dataset folder (no {INFO_PATH})")
            from datasets import load_dataset

            train = load_dataset(str(path), split="train").with_format("numpy")[:]
            observed = observation_names(list(train))
            kept = [*ID_COLUMNS, *observed, *map(error_name, observed)]  # not its bookkeeping columns
            table = Table({name: np.asarray(train[name]) for name in train if name in kept})
            for name, feature in load_info(path).features.items():
                if name in table.colnames and feature["unit"]:
                    table[name].unit = feature["unit"]
            return table
        fmt = {".parquet": "parquet", ".csv": "ascii.csv", ".ecsv": "ascii.ecsv"}.get(path.suffix.lower())
        return Table.read(path, format=fmt) if fmt else Table.read(path)
    except ValueError as error:
        if str(path) in str(error):
            raise
        raise ValueError(f"{path}: cannot read as a star table: {error}") from error
    except Exception as error:
        raise ValueError(f"{path}: cannot read as a star table: {type(error).__name__}: {error}") from error


def new_observations(
    tokenizer: StarTokenizer, table: Table, units: Mapping[str, str], ignore: Sequence[str] = ()
) -> list[dict]:
    """Vocabulary entries for the table's columns that are not observation names: ``name``, ``unit``, ``requestable``,
    ``center`` (median), ``scale`` (``mad_std``), ``low``/``high`` (the 0.1 / 99.9 % quantiles) of the given stars.

    Identifier columns (`stellar_tasks.catalogue.ID_COLUMNS`), text, integer and boolean columns, the uncertainty
    columns (``<name>_err`` of another column) and ``ignore`` are skipped. ``ValueError`` (naming the column) for a near-miss of a known name, a column without a
    unit (give ``units``; ``""`` for a dimensionless one), or one too few stars observe to measure its scale."""
    known = set(tokenizer.observation_names)
    uncertainties = {error_name(column) for column in table.colnames}
    unknown_units = sorted(set(units) - set(table.colnames))
    if unknown_units:
        raise ValueError(f"--unit names columns the table does not have: {', '.join(unknown_units)}")
    entries = []
    for column in table.colnames:
        data = table[column]
        if column in known or column in ID_COLUMNS or column in ignore or column in uncertainties:
            continue
        if np.asarray(data).dtype.kind != "f":
            continue
        suggestion = tokenizer.near_miss(column)
        if suggestion is not None:
            raise ValueError(
                f"column {column!r} looks like the observation {suggestion!r}: rename it (or --ignore it); "
                "a near-miss of a known name is not added as a new one"
            )
        unit = units.get(column, None if data.unit is None else data.unit.to_string())
        if unit is None:
            raise ValueError(
                f"new observation {column!r} has no unit: give --unit {column}=UNIT (--unit {column}= when it is "
                "dimensionless)"
            )
        try:
            u.Unit(unit)
        except ValueError as error:
            raise ValueError(
                f"new observation {column!r}: {unit!r} is not a unit astropy knows ({error})"
            ) from None
        values = np.ma.filled(np.ma.asarray(data, dtype=np.float64), np.nan)
        finite = values[np.isfinite(values)]
        scale = float(mad_std(finite)) if len(finite) else 0.0
        if len(finite) < MIN_NEW_OBSERVED or not scale > 0:
            raise ValueError(
                f"new observation {column!r}: {len(finite)} stars observe it with scale {scale:.3g}; at least "
                f"{MIN_NEW_OBSERVED} and a spread are needed to standardise it"
            )
        low, high = np.quantile(finite, [ENVELOPE_QUANTILE, 1 - ENVELOPE_QUANTILE])
        entries.append(
            {
                "name": column,
                "unit": unit,
                "requestable": True,
                "center": float(np.median(finite)),
                "scale": scale,
                "low": float(low),
                "high": float(high),
            }
        )
    return entries


def extend_vocabulary(
    model: StellarForObservationPrediction, tokenizer: StarTokenizer, entries: Sequence[dict]
) -> StarTokenizer:
    """Add ``entries`` to the vocabulary: returns the grown tokenizer and resizes ``model``'s embeddings in place
    (the old names keep their vectors, so the old answers do not move)."""
    if not entries:
        return tokenizer
    settings = {
        k: v for k, v in tokenizer.to_dict().items() if k not in ("vocabulary", "feature_extractor_type")
    }
    grown = StarTokenizer(vocabulary=[*tokenizer.vocabulary, *entries], **settings)
    model.resize_token_embeddings(grown.vocab_size)
    return grown


# -------------------------------------------------------------------------------------------- the model
def trainable_model(model: StellarForObservationPrediction, config: FinetuneConfig) -> torch.nn.Module:
    """``model`` ready for ``config.method``: wrapped in LoRA adapters (``peft``), or with only the trained weights
    requiring gradients."""
    if config.method == "lora":
        from peft import LoraConfig, get_peft_model

        lora = LoraConfig(
            r=config.lora_rank,
            lora_alpha=config.lora_alpha,
            target_modules=list(LORA_TARGETS),
            modules_to_save=list(FULLY_TRAINED),
        )
        return get_peft_model(model, lora)
    for name, parameter in model.named_parameters():
        parameter.requires_grad = config.method == "all" or any(
            part in FULLY_TRAINED for part in name.split(".")
        )
    return model


def plain_model(trained: torch.nn.Module) -> StellarForObservationPrediction:
    """The fine-tuned weights as a plain `StellarForObservationPrediction` (LoRA merged in)."""
    if hasattr(trained, "merge_and_unload"):
        trained = trained.merge_and_unload()
    for parameter in trained.parameters():
        parameter.requires_grad = True
    return trained


# ------------------------------------------------------------------------------------------- the run
def finetune(
    model: str | Path,
    data: str | Path | Table,
    output: str | Path,
    config: FinetuneConfig | None = None,
    units: Mapping[str, str] | None = None,
    ignore: Sequence[str] = (),
    resume: bool = False,
) -> Path:
    """Fine-tune the model folder (or Hub id) ``model`` on the stars of ``data`` into the model folder ``output``.

    Returns ``output``. See the module docstring for what is trained, held out and written."""
    config = config or FinetuneConfig()
    output = Path(output)
    if (output / FACTS_FILE).is_file():
        raise ValueError(f"{output} already holds a fine-tuned model: choose a new --output folder")
    table = read_star_table(data)
    table = table[[column for column in table.colnames if column not in ignore]]
    base = StellarForObservationPrediction.from_pretrained(str(model)).eval()
    tokenizer = StarTokenizer.from_pretrained(str(model))
    added = new_observations(tokenizer, table, units or {}, ignore)
    new_names = [entry["name"] for entry in added]
    torch.manual_seed(config.seed)  # the new names' vectors and the adapters start the same in every run
    tokenizer = extend_vocabulary(base, tokenizer, added)
    values, errors = tokenizer.to_arrays(table, ignore_unknown=True)
    values, errors = values.astype(np.float32), errors.astype(np.float32)
    targets = list(config.targets) or [
        n for n in CALIBRATED_NAMES if np.isfinite(values[:, _ids(tokenizer, [n])]).any()
    ]
    inputs = list(config.inputs) or [*HEADLINE_INPUTS, *new_names]
    if not targets:
        raise ValueError(
            f"{_where(data)}: none of {', '.join(CALIBRATED_NAMES)} is observed: give the targets"
        )
    config = dataclasses.replace(config, targets=targets, inputs=inputs)
    in_validation = validation_mask(len(values), config.seed, config.validation_fraction)
    train_index, valid_index = np.flatnonzero(~in_validation), np.flatnonzero(in_validation)
    if len(train_index) < 2 or len(valid_index) < 1:
        raise ValueError(f"{_where(data)}: {len(values)} stars are too few to train on and validate")
    run_record = json.loads(
        json.dumps(
            {
                "finetune": dataclasses.asdict(config),
                "base_model": str(model),
                "data": _where(data),
                "stars": len(values),
                "new_observations": added,
            }
        )
    )
    guard_output_folder(output, run_record, resume, RUN_FILE)
    batch_size = min(config.batch_size, len(train_index))
    sampling = config.sampling(new_names, batch_size)
    weight = request_weights(tokenizer, sampling)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    trained = trainable_model(base.to(device), config)
    parameters = [p for p in trained.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(parameters, lr=config.learning_rate, weight_decay=config.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, get_lr_lambda(sampling))
    log = output / LOG_FILE
    state = {"step": 0, "best_loss": math.inf, "best_step": 0, "best_weights": _trained_state(trained)}
    if resume:
        state = _load_checkpoint(output, trained, optimizer, scheduler)
        write_log(log, {"resumed_from": state["step"]})
    started = time.monotonic() - 60 * logged_minutes(log, state["step"])
    validate = _validation(tokenizer, values[valid_index], errors[valid_index], inputs, targets, device)
    if state["step"] == 0:
        scores = validate(trained)
        state["best_loss"] = scores["loss"]
        write_log(log, {"step": 0, "minutes": 0.0, "validation": scores})
    while state["step"] < config.max_steps:
        step = state["step"]
        rng = np.random.default_rng([config.seed, step])
        torch.manual_seed(int(rng.integers(2**62)))  # dropout's draws too: a resumed run repeats them
        index = rng.choice(train_index, batch_size, replace=False)
        batch = sample_batch(tokenizer, values[index], errors[index], weight, sampling, rng)
        trained.train()
        loss = trained(**{k: v.to(device) for k, v in batch.items()}).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(parameters, config.max_grad_norm)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad()
        state["step"] = step = step + 1
        if step % config.validation_every == 0 or step == config.max_steps:
            scores = validate(trained)
            if scores["loss"] < state["best_loss"]:
                state.update(best_loss=scores["loss"], best_step=step, best_weights=_trained_state(trained))
            minutes = (time.monotonic() - started) / 60
            write_log(log, {"step": step, "loss": loss.item(), "minutes": minutes, "validation": scores})
        if step % config.checkpoint_every == 0 or step == config.max_steps:
            _save_checkpoint(output, state, trained, optimizer, scheduler)
    trained.load_state_dict(state["best_weights"], strict=False)
    final = plain_model(trained).eval()
    held_out = (values[valid_index], errors[valid_index])
    uncalibrated = _scores(final, tokenizer, *held_out, inputs, targets)
    sigma_scales = fit_sigma_scales(final, tokenizer, *held_out, inputs, targets)
    tokenizer.set_sigma_scales(sigma_scales)
    for name, score in uncalibrated.items():
        score["sigma_scale"] = sigma_scales.get(name, 1.0)
    scores = {"adapted": uncalibrated, "base": _base_scores(model, table, valid_index, targets)}
    facts = {
        **run_record,
        "train_stars": len(train_index),
        "validation_stars": len(valid_index),
        "steps": config.max_steps,
        "best_step": state["best_step"],
        "minutes": (time.monotonic() - started) / 60,
        "validation_scores": scores,
    }
    staging = temporary_sibling(output)
    prepare_model_folder(final.cpu(), tokenizer, staging)
    shutil.copy(log, staging / LOG_FILE)
    atomic_write(staging / FACTS_FILE, json.dumps(facts, indent=2))
    write_card(staging, facts, output.name)
    return move_into_place(staging, output)


def _where(data) -> str:
    return "the given table" if isinstance(data, Table) else str(data)


def _ids(tokenizer: StarTokenizer, names: Sequence[str]) -> list[int]:
    return tokenizer.convert_names_to_ids(list(names))


def _trained_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """A copy of the weights that training changes (the frozen ones are left out)."""
    trained = {name for name, p in model.named_parameters() if p.requires_grad}
    return {name: tensor.detach().clone() for name, tensor in model.state_dict().items() if name in trained}


def _validation(tokenizer, values, errors, inputs, targets, device):
    """A scorer of the validation stars: the targets' mean Gaussian NLL from ``inputs`` (``loss``, standardised) and
    each target's scatter (mad_std, physical units)."""
    batch = fixed_batch(tokenizer, values, errors, list(inputs), list(targets))
    batch = {k: v.to(device) for k, v in batch.items()}
    ids = np.broadcast_to(_ids(tokenizer, targets), batch["labels"].shape)

    @torch.no_grad()
    def score(model: torch.nn.Module) -> dict[str, float]:
        model.eval()
        output = model(**batch)
        mean, _ = tokenizer.decode(ids, output.mean.float().cpu().numpy())
        truth, _ = tokenizer.decode(ids, batch["labels"].cpu().numpy())
        result = {"loss": float(output.loss)}
        result.update({name: robust_scatter(truth[:, j], mean[:, j]) for j, name in enumerate(targets)})
        return result

    return score


def _scores(model, tokenizer, values, errors, inputs, targets) -> dict[str, dict[str, float]]:
    """Per target: scatter (mad_std [unit]) and the robust std of z = (truth - mean) / sqrt(sigma^2 + error^2) of the
    calibrated answers on these stars, from ``inputs``."""
    mean, sigma, _ = predict_arrays(
        model, tokenizer, mask_to_inputs(tokenizer, values, inputs), errors, targets
    )
    ids = np.array(_ids(tokenizer, targets))
    truth, _ = tokenizer.decode(np.broadcast_to(ids, mean.shape), values[:, ids])
    error = np.nan_to_num(errors[:, ids]) * tokenizer.scales_of(targets)
    scores = {}
    for j, name in enumerate(targets):
        known = np.isfinite(truth[:, j]) & np.isfinite(mean[:, j])
        z = (truth[known, j] - mean[known, j]) / np.hypot(sigma[known, j], error[known, j])
        scores[name] = {
            "scatter": robust_scatter(truth[known, j], mean[known, j]),
            "z_robust_std": float(mad_std(z)) if known.any() else math.nan,
            "stars": int(known.sum()),
        }
    return scores


def _base_scores(model, table: Table, valid_index: np.ndarray, targets: Sequence[str]) -> dict:
    """The base model's `_scores` on the same validation stars, from the headline inputs it knows (what the adapted
    model must at least keep)."""
    base = StellarForObservationPrediction.from_pretrained(str(model)).eval()
    tokenizer = StarTokenizer.from_pretrained(str(model))
    values, errors = tokenizer.to_arrays(table[valid_index], ignore_unknown=True)
    known = [name for name in targets if name in tokenizer.observation_names]
    return _scores(base, tokenizer, values, errors, HEADLINE_INPUTS, known)


def _save_checkpoint(output: Path, state: dict, model, optimizer, scheduler) -> None:
    """One file per checkpoint (written atomically), the previous ones removed."""
    folder = output / CHECKPOINT_DIR / f"step_{state['step']}"
    folder.mkdir(parents=True, exist_ok=True)
    payload = {
        **state,
        "model": _trained_state(model),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
    }
    staging = temporary_sibling(folder / "state.pt")
    torch.save(payload, staging)
    move_into_place(staging, folder / "state.pt")
    for old in checkpoints_in(output)[:-1]:
        shutil.rmtree(old)


def _load_checkpoint(output: Path, model, optimizer, scheduler) -> dict:
    """The newest checkpoint into ``model``, ``optimizer`` and ``scheduler`` (tensors only: ``weights_only``)."""
    found = [p for p in checkpoints_in(output) if (p / "state.pt").is_file()]
    if not found:
        raise ValueError(f"--resume: {output / CHECKPOINT_DIR} holds no finished checkpoint")
    try:
        payload = torch.load(found[-1] / "state.pt", weights_only=True)
    except Exception as error:
        raise ValueError(
            f"checkpoint {found[-1]} cannot be loaded ({type(error).__name__}: {error})"
        ) from error
    model.load_state_dict(payload.pop("model"), strict=False)
    optimizer.load_state_dict(payload.pop("optimizer"))
    scheduler.load_state_dict(payload.pop("scheduler"))
    return payload


# ------------------------------------------------------------------------------------------- the card
CARD_TEMPLATE = """---
{{ card_data }}
---

# {{ name }}

`{{ base_model }}` fine-tuned on {{ stars }} stars of `{{ data }}` ({{ train_stars }} trained on, {{ validation_stars }}
held out), method `{{ method }}`, best of {{ steps }} steps at step {{ best_step }} ({{ minutes }} minutes).
Load it like its base model:

```python
from transformers import pipeline

predictor = pipeline(model="{{ name }}", trust_remote_code=True)
```

## New observations

{% if new_observations %}| name | unit | centre | scale | stars' range (0.1-99.9 %) |
|---|---|---|---|---|
{% for entry in new_observations %}| `{{ entry.name }}` | {{ entry.unit or "(dimensionless)" }} | {{ "%.4g" % entry.center }} | {{ "%.4g" % entry.scale }} | {{ "%.4g" % entry.low }} .. {{ "%.4g" % entry.high }} |
{% endfor %}{% else %}None: the base model's vocabulary.{% endif %}

## Scores on the held-out stars

From {{ inputs }}; scatter is `mad_std(truth - mean)`; z is the robust std of the residual over the model's own sigma
(1 = honest), before the sigma factor fitted on these same stars (so after it, z is 1 here by construction). The base
model answers from the headline inputs.

| target | adapted scatter | base scatter | z before calibration | sigma factor | stars |
|---|---|---|---|---|---|
{% for name, score in adapted.items() %}| `{{ name }}` | {{ "%.4g" % score.scatter }} | {{ "%.4g" % base[name].scatter if name in base else "-" }} | {{ "%.3f" % score.z_robust_std }} | {{ "%.3f" % score.sigma_scale }} | {{ score.stars }} |
{% endfor %}
These {{ validation_stars }} stars also chose the step kept (early stopping): numbers on stars neither saw say more.
"""


def write_card(folder: Path, facts: dict, name: str) -> Path:
    """The fine-tuned folder's ``README.md`` (the model ``name``): what it was adapted on, its held-out scores."""
    config = facts["finetune"]
    new_names = [entry["name"] for entry in facts["new_observations"]]
    inputs = "the headline inputs" + (f" and {', '.join(new_names)}" if new_names else "")
    card = ModelCard.from_template(
        ModelCardData(
            library_name="transformers",
            pipeline_tag=PIPELINE_TASK,
            base_model=facts["base_model"] if not Path(facts["base_model"]).exists() else None,
            tags=["astronomy", "stellar-parameters", "fine-tuned"],
        ),
        template_str=CARD_TEMPLATE,
        name=name,
        base_model=facts["base_model"],
        data=facts["data"],
        stars=facts["stars"],
        train_stars=facts["train_stars"],
        validation_stars=facts["validation_stars"],
        method=config["method"],
        steps=facts["steps"],
        best_step=facts["best_step"],
        minutes=f"{facts['minutes']:.1f}",
        new_observations=facts["new_observations"],
        inputs=inputs if config["inputs"] == [*HEADLINE_INPUTS, *new_names] else ", ".join(config["inputs"]),
        adapted=facts["validation_scores"]["adapted"],
        base=facts["validation_scores"]["base"],
    )
    path = folder / CARD_FILE
    atomic_write(path, str(card))
    return path


# ------------------------------------------------------------------------------------------ the command
def build_parser(parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    """``stellar-foundation finetune``'s command line (added to ``parser`` when given)."""
    parser = parser or argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", help="the model folder or Hub id to start from")
    parser.add_argument(
        "--data", required=True, help="star table (Parquet, FITS, ECSV, CSV) or dataset folder to learn from"
    )
    parser.add_argument("--output", required=True, help="the fine-tuned model folder to write")
    parser.add_argument("--config", default=None, help="JSON file of FinetuneConfig settings")
    parser.add_argument("--method", choices=METHODS, default=None, help="what is trained (default lora)")
    parser.add_argument(
        "--unit",
        action="append",
        default=[],
        metavar="NAME=UNIT",
        help="the unit of a new observation whose column has none (NAME= for a dimensionless one)",
    )
    parser.add_argument(
        "--ignore", action="append", default=[], metavar="COLUMN", help="a column not to read"
    )
    parser.add_argument(
        "--target",
        action="append",
        default=None,
        metavar="NAME",
        help="a name to teach and score (repeatable)",
    )
    parser.add_argument("--max-steps", type=int, default=None, help="optimiser steps (default 1000)")
    parser.add_argument("--learning-rate", type=float, default=None, help="AdamW peak learning rate")
    parser.add_argument("--seed", type=int, default=None, help="seed of the validation draw and the batches")
    parser.add_argument("--resume", action="store_true", help="continue the stopped run in --output")
    parser.set_defaults(handler=finetune_command)
    return parser


def _units(pairs: Sequence[str]) -> dict[str, str]:
    units = {}
    for pair in pairs:
        name, separator, unit = pair.partition("=")
        if not separator or not name:
            raise ValueError(f"--unit {pair!r}: write NAME=UNIT")
        units[name] = unit
    return units


def finetune_command(args: argparse.Namespace) -> Path:
    """Run ``finetune`` for parsed `build_parser` arguments; returns the model folder."""
    config = FinetuneConfig.from_json(
        args.config,
        method=args.method,
        targets=args.target,
        max_steps=args.max_steps,
        learning_rate=args.learning_rate,
        seed=args.seed,
    )
    try:
        folder = finetune(
            args.model, args.data, args.output, config, _units(args.unit), args.ignore, args.resume
        )
    except StarInputError as error:
        raise ValueError(f"{args.data}: {error}") from error
    facts = json.loads((folder / FACTS_FILE).read_text())
    print(f"fine-tuned model written to {folder}")
    for name, score in facts["validation_scores"]["adapted"].items():
        base = facts["validation_scores"]["base"].get(name)
        print(
            f"  {name}: held-out scatter {score['scatter']:.4g}"
            + (f" (base model {base['scatter']:.4g})" if base else "")
            + f", z robust std {score['z_robust_std']:.3f}"
        )
    return folder
