"""The distilled fast path: MLPs that give the model's own answer to the headline question, 7-25x cheaper.

The any-to-any model reads a star as ~63 tokens through two attention blocks; on 2 CPU cores that costs ~0.2 ms per
star in bfloat16, and compiling it gains 1.3x (``benchmarks/results/catalogue.csv``). Catalogues mostly ask one
question of one input set: Teff, log g and [Fe/H] from the headline inputs (BP/RP 0-29 and three colours).
`DistilledPredictor` answers that question only: standardised values of its ``inputs`` in (not their uncertainties:
its teacher does not read them either, so a table with or without ``_err`` columns is served alike), the model's
standardised mean and log-variance of its ``requests`` out, averaged over a few MLPs (``members``). It is trained on the model's answers (`distill`), not on labels: for the train split's stars, for
copies redrawn within their uncertainties, and for mixtures of two stars, so it learns the model's function around
the stars rather than the labels' noise.

A row is served by it (`DistilledPredictor.serves`) only where the model would read exactly those inputs and every
feature lies inside the range it was trained on; every other row goes to the model. Its scatter against the labels
is measured on the training hold-out against the model's own (``holdout`` in its ``config.json``) and guarded on the
test split by ``tests/test_distillation.py``.

It lives in the model folder as ``distilled/`` (`DISTILLED_FOLDER`), with the SHA-256 of the model weights it was
distilled from, so that a retrained model never runs with a stale student:

    stellar-foundation distill pretrained/stellar-foundation-apogee-xp --dataset data/apogee-gaia-xp
    stellar-foundation predict TABLE --model pretrained/stellar-foundation-apogee-xp --distilled --output OUT
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from astropy.stats import mad_std
from huggingface_hub import PyTorchModelHubMixin
from torch import nn

from datasets_builder.atomic import atomic_path
from modeling_stellar import StarTokenizer, StellarForObservationPrediction

from .data import load_training_arrays, split_holdout
from .inference import predict_standardised
from .inputs import HEADLINE_INPUTS, LABELS
from .model_folder import CONFIG_FILE, DISTILLED_FOLDER, WEIGHTS_FILE, holdout_settings, weights_sha256

__all__ = [
    "DistillationConfig",
    "DistilledPredictor",
    "distill",
    "load_distilled",
]


DISTILLED_CARD = """---
{{ card_data }}
---

The distilled fast path of the stellar-foundation model in the folder above: MLPs trained on that model's own answers
(Teff, log g, [Fe/H] from BP/RP 0-29 and three colours), which `stellar-foundation predict --distilled` uses for the rows
that observe exactly those inputs; the model answers every other row. `teacher_sha256` in `config.json` ties it to the
model's weights and `holdout` gives its scatter over the model's on the training hold-out. Code and method:
`stellar_tasks/distillation.py` of the stellar-foundation repository.
"""
"""Card of a distilled folder (the Hub mixin's template: ``card_data`` is the YAML metadata)."""


class DistilledPredictor(
    nn.Module,
    PyTorchModelHubMixin,
    model_card_template=DISTILLED_CARD,
    tags=["stellar-foundation", "distillation"],
):
    """An MLP from standardised values of fixed ``inputs`` to the model's standardised mean and log-variance of
    fixed ``requests``.

    Args:
        inputs: observation names read, in feature order.
        requests: names answered, in output order.
        hidden_dims: widths of the hidden layers (SiLU between them).
        members: MLPs trained alike from different seeds; their means and log-variances are averaged (each
            member's own error against the model is half random, so averaging brings it closer).
        teacher_sha256: `weights_sha256` of the model it was distilled from.
        holdout: its scores on the training hold-out (`distill`), kept in ``config.json`` for the record.
    """

    def __init__(
        self,
        inputs: Sequence[str],
        requests: Sequence[str],
        hidden_dims: Sequence[int] = (512, 512, 512),
        members: int = 1,
        teacher_sha256: str = "",
        holdout: dict | None = None,
    ) -> None:
        super().__init__()
        self.inputs, self.requests = list(inputs), list(requests)
        self.teacher_sha256, self.holdout = teacher_sha256, dict(holdout or {})
        n_features = len(self.inputs)
        # feature normalisation and the range seen in training, both (n_inputs,); set by `distill`
        self.register_buffer("feature_center", torch.zeros(n_features))
        self.register_buffer("feature_scale", torch.ones(n_features))
        self.register_buffer("feature_low", torch.full((n_features,), -math.inf))
        self.register_buffer("feature_high", torch.full((n_features,), math.inf))
        self.members = nn.ModuleList(self._mlp(n_features, hidden_dims) for _ in range(members))

    def _mlp(self, n_features: int, hidden_dims: Sequence[int]) -> nn.Sequential:
        layers: list[nn.Module] = []
        width = n_features
        for hidden in hidden_dims:
            layers += [nn.Linear(width, hidden), nn.SiLU()]
            width = hidden
        return nn.Sequential(*layers, nn.Linear(width, 2 * len(self.requests)))

    def forward(
        self, values: torch.Tensor, members: Sequence[nn.Module] | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(n, I) standardised values of ``inputs`` -> mean, log_variance (n, R) of ``requests`` in the model's
        standardised units: the average of ``members`` (default all)."""
        normalised = (values - self.feature_center) / self.feature_scale
        out = torch.stack([member(normalised) for member in (members or self.members)]).mean(0)
        return out[:, : len(self.requests)], out[:, len(self.requests) :]

    def serves(self, tokenizer, values: np.ndarray, requests: Sequence[str]) -> np.ndarray:
        """(n,) bool: the rows this predictor answers as the model would.

        A row qualifies when ``requests`` are among its ``requests``, the model would read exactly its ``inputs``
        (each finite, nothing else observed once the requests are removed) and every input lies in the range it
        was trained on. ``values``: (n, vocab_size) standardised `StarTokenizer.to_arrays` values; uncertainties
        play no part (the model does not read them).
        """
        if not set(requests) <= set(self.requests):
            return np.zeros(len(values), dtype=bool)
        shown = values.copy()
        shown[:, tokenizer.convert_names_to_ids(list(requests))] = np.nan
        columns = tokenizer.convert_names_to_ids(self.inputs)
        exact = np.isfinite(shown[:, columns]).all(axis=1) & (
            np.isfinite(shown[:, 1:]).sum(axis=1) == len(columns)
        )
        features = np.nan_to_num(values[:, columns]).astype(np.float32)
        inside = ((features >= self.feature_low.numpy()) & (features <= self.feature_high.numpy())).all(
            axis=1
        )
        return exact & inside

    @torch.no_grad()
    def predict_arrays(
        self,
        tokenizer,
        values: np.ndarray,
        requests: Sequence[str],
        dtype: torch.dtype = torch.float32,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Physical-unit mean and std (n, len(requests)) float64 for rows it `serves`, decoded by the tokenizer
        (its sigma calibration included), as `stellar_tasks.inference.predict_arrays` returns them.

        ``dtype`` bfloat16 runs the products in bfloat16 (``torch.autocast``; the feature normalisation stays
        float32): 4x faster on an AMX CPU, and on the hold-out its answers move by 2-3 % of the model's scatter.
        """
        columns = tokenizer.convert_names_to_ids(self.inputs)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype == torch.bfloat16):
            mean, log_variance = self(torch.from_numpy(values[:, columns].astype(np.float32)))
        mean, log_variance = mean.float(), log_variance.float()
        order = [self.requests.index(name) for name in requests]
        ids = np.broadcast_to(
            np.array(tokenizer.convert_names_to_ids(list(requests))), (len(values), len(order))
        )
        return tokenizer.decode(ids, mean[:, order].numpy(), log_variance[:, order].numpy())


def load_distilled(model: str | os.PathLike) -> DistilledPredictor:
    """The distilled predictor of a model folder or Hub id (`DISTILLED_FOLDER`), checked against its weights.

    Raises:
        ValueError: naming the folder when it has none, or when it was distilled from other weights.
    """
    model_folder = Path(model)
    if not model_folder.is_dir():  # a Hub id: its weights and distilled folder (the cache when already there)
        from huggingface_hub import snapshot_download

        model_folder = Path(
            snapshot_download(str(model), allow_patterns=[f"{DISTILLED_FOLDER}/*", WEIGHTS_FILE])
        )
    folder = model_folder / DISTILLED_FOLDER
    if not (folder / CONFIG_FILE).is_file():
        raise ValueError(
            f"{model_folder}: no distilled predictor ({folder} is missing): run `stellar-foundation distill "
            f"{model_folder} --dataset DATASET`, or predict without --distilled"
        )
    predictor = DistilledPredictor.from_pretrained(folder).eval()
    if predictor.teacher_sha256 != weights_sha256(model_folder):
        raise ValueError(
            f"{folder}: distilled from other weights than {model_folder / WEIGHTS_FILE} (SHA-256 differs): "
            "distill it again, or predict without --distilled"
        )
    return predictor


# ------------------------------------------------------------------------------------------------ training
@dataclasses.dataclass
class DistillationConfig:
    """How `distill` trains a `DistilledPredictor` (defaults: chosen on the training hold-out)."""

    noise_copies: int = 8  # copies of each train star redrawn within its uncertainties
    mixture_copies: int = 8  # copies mixing each star with a random other, weight U(0, max_mixture)
    max_mixture: float = 0.5
    hidden_dims: tuple[int, ...] = (512, 512, 512)
    members: int = 4
    epochs: int = 30  # per member
    batch_size: int = 512
    learning_rate: float = 2e-3  # peak of a one-cycle schedule
    weight_decay: float = 1e-5
    log_variance_weight: float = 0.1  # of the log-variance loss against the means'
    teacher_batch_size: int = 2048
    seed: int = 0


def _teacher_answers(model, tokenizer, values, errors, columns, requests, batch_size):
    """The model's standardised mean and log-variance (n, R) for stars observing only ``columns``."""
    full_values = np.full((len(values), tokenizer.vocab_size), np.nan, dtype=np.float32)
    full_errors = np.zeros_like(full_values)
    full_values[:, columns], full_errors[:, columns] = values, errors
    return predict_standardised(model, tokenizer, full_values, full_errors, requests, batch_size)


def _augmented(values, errors, config: DistillationConfig, rng: np.random.Generator):
    """The train stars, their noise copies and their mixtures: (values, errors) (n * copies, I) float32."""
    all_values, all_errors = [values], [errors]
    for _ in range(config.noise_copies):
        all_values.append(values + rng.standard_normal(values.shape).astype(np.float32) * errors)
        all_errors.append(errors)
    for _ in range(config.mixture_copies):
        other = rng.permutation(len(values))
        weight = rng.uniform(0, config.max_mixture, (len(values), 1)).astype(np.float32)
        mixed_errors = np.sqrt((1 - weight) * errors**2 + weight * errors[other] ** 2)
        mixed = (1 - weight) * values + weight * values[other]
        all_values.append(mixed + rng.standard_normal(values.shape).astype(np.float32) * mixed_errors)
        all_errors.append(mixed_errors)
    return np.concatenate(all_values), np.concatenate(all_errors)


def distill(
    model_folder: str | os.PathLike,
    dataset: str,
    config: DistillationConfig | None = None,
    inputs: Sequence[str] | None = None,
    requests: Sequence[str] | None = None,
    log: Callable[[str], None] = print,
) -> Path:
    """Train the distilled predictor of a model folder and save it as ``<model_folder>/distilled``.

    The model answers (float32) the train split's stars that observe every input, minus the training hold-out
    (`stellar_tasks.data.split_holdout`, the seed and fraction of the model's facts), plus their noise copies and
    mixtures (`DistillationConfig`). The student is fitted to those answers with each label's loss weighted by the
    inverse square of the model's own scatter on the train stars (so each label is matched relative to how well the
    model does), then scored on the hold-out: its scatter against the labels over the model's (``holdout`` in its
    config). Work in progress (the model's answers, a checkpoint per epoch) is kept in ``distilled.partial/`` so an
    interrupted run resumes; the folder appears only when finished.

    Args:
        inputs, requests: default the headline inputs and `stellar_tasks.inputs.LABELS`.

    Returns:
        The distilled folder.
    """
    config = config or DistillationConfig()
    inputs, requests = list(inputs or HEADLINE_INPUTS), list(requests or LABELS)
    model_folder = Path(model_folder)
    target = model_folder / DISTILLED_FOLDER
    work = model_folder / f"{DISTILLED_FOLDER}.partial"
    work.mkdir(exist_ok=True)
    teacher_sha256 = weights_sha256(model_folder)
    settings = json.dumps(
        {
            "config": dataclasses.asdict(config),
            "inputs": inputs,
            "requests": requests,
            "teacher_sha256": teacher_sha256,
        }
    )
    settings_file = work / "settings.json"
    if settings_file.is_file() and settings_file.read_text() != settings:
        raise ValueError(
            f"{work}: an interrupted distillation with other settings or of other weights; resume it with those, "
            "or delete the folder"
        )
    settings_file.write_text(settings)
    tokenizer = StarTokenizer.from_pretrained(str(model_folder))
    model = StellarForObservationPrediction.from_pretrained(str(model_folder)).eval()
    values, errors, source_ids = load_training_arrays(dataset, tokenizer)
    train_index, valid_index, _ = split_holdout(values, errors, source_ids, *holdout_settings(model_folder))
    columns, label_columns = tokenizer.convert_names_to_ids(inputs), tokenizer.convert_names_to_ids(requests)
    complete = np.isfinite(values[:, columns]).all(axis=1)
    train_index, valid_index = train_index[complete[train_index]], valid_index[complete[valid_index]]

    answers_file = work / "teacher_answers.npz"
    if answers_file.is_file():
        answers = dict(np.load(answers_file))
    else:
        rng = np.random.default_rng(config.seed)
        train_values, train_errors = _augmented(
            values[train_index][:, columns], errors[train_index][:, columns], config, rng
        )
        log(
            f"distill: the model answers {len(train_values)} stars ({len(train_index)} train stars and copies)"
        )
        answers = {"values": train_values, "errors": train_errors}
        answers["mean"], answers["log_variance"] = _teacher_answers(
            model, tokenizer, train_values, train_errors, columns, requests, config.teacher_batch_size
        )
        with atomic_path(answers_file) as staging, open(staging, "wb") as stream:
            np.savez(stream, **answers)

    torch.manual_seed(config.seed)
    student = DistilledPredictor(inputs, requests, config.hidden_dims, config.members, teacher_sha256)
    features = torch.from_numpy(answers["values"])
    student.feature_center.copy_(features.mean(0))
    student.feature_scale.copy_(features.std(0).clamp_min(1e-6))
    student.feature_low.copy_(features.min(0).values)
    student.feature_high.copy_(features.max(0).values)
    targets = torch.from_numpy(np.concatenate([answers["mean"], answers["log_variance"]], axis=1))
    truth = values[train_index][:, label_columns]
    model_scatter = np.array(
        [
            mad_std(truth[:, j] - answers["mean"][: len(train_index), j], ignore_nan=True)
            for j in range(len(requests))
        ]
    )
    label_weights = torch.from_numpy((model_scatter.min() / model_scatter) ** 2).float()

    checkpoint_file = work / "checkpoint.pt"
    done = (0, 0)  # (member, epochs of it) finished
    checkpoint = torch.load(checkpoint_file, weights_only=True) if checkpoint_file.is_file() else None
    if checkpoint is not None:
        student.load_state_dict(checkpoint["student"])
        done = (checkpoint["member"], checkpoint["epoch"])
        log(f"distill: resuming after member {done[0] + 1}, epoch {done[1]}")
    n_requests = len(requests)
    steps_per_epoch = len(features) // config.batch_size
    for index, member in enumerate(student.members):
        if index < done[0] or (index == done[0] and done[1] == config.epochs):
            continue
        optimizer = torch.optim.AdamW(
            member.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay
        )
        schedule = torch.optim.lr_scheduler.OneCycleLR(
            optimizer, config.learning_rate, total_steps=config.epochs * steps_per_epoch, pct_start=0.05
        )
        first_epoch = 0
        if checkpoint is not None and index == done[0]:
            optimizer.load_state_dict(checkpoint["optimizer"])
            schedule.load_state_dict(checkpoint["schedule"])
            first_epoch = done[1]
        for epoch in range(first_epoch, config.epochs):
            seed = (config.seed * 1_000 + index) * 100_003 + epoch
            order = torch.randperm(len(features), generator=torch.Generator().manual_seed(seed))
            for step in range(steps_per_epoch):
                rows = order[step * config.batch_size : (step + 1) * config.batch_size]
                mean, log_variance = student(features[rows], [member])
                loss = (((mean - targets[rows, :n_requests]) ** 2) * label_weights).mean()
                loss = (
                    loss
                    + config.log_variance_weight * ((log_variance - targets[rows, n_requests:]) ** 2).mean()
                )
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                schedule.step()
            state = {
                "student": student.state_dict(),
                "optimizer": optimizer.state_dict(),
                "schedule": schedule.state_dict(),
                "member": index,
                "epoch": epoch + 1,
            }
            with atomic_path(checkpoint_file) as staging:
                torch.save(state, staging)
            log(
                f"distill: member {index + 1}/{config.members}, epoch {epoch + 1}/{config.epochs}, loss {loss.item():.5f}"
            )

    student.eval()
    holdout_values, holdout_errors = values[valid_index][:, columns], errors[valid_index][:, columns]
    model_mean, _ = _teacher_answers(
        model, tokenizer, holdout_values, holdout_errors, columns, requests, config.teacher_batch_size
    )
    with torch.no_grad():
        student_mean, _ = student(torch.from_numpy(holdout_values))
    holdout_truth = values[valid_index][:, label_columns]
    holdout = {"stars": len(valid_index)}
    for j, name in enumerate(requests):
        model_error = mad_std(holdout_truth[:, j] - model_mean[:, j], ignore_nan=True)
        holdout[f"{name}_scatter_ratio"] = round(
            float(mad_std(holdout_truth[:, j] - student_mean[:, j].numpy(), ignore_nan=True) / model_error), 4
        )
    log(f"distill: hold-out scatter over the model's: {holdout}")
    saved_config = {
        "inputs": inputs,
        "requests": requests,
        "hidden_dims": list(config.hidden_dims),
        "members": config.members,
        "teacher_sha256": student.teacher_sha256,
        "holdout": holdout,
    }
    with atomic_path(target) as staging:
        student.save_pretrained(staging, config=saved_config)
    shutil.rmtree(work)
    return target
