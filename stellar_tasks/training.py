"""Self-supervised training of the stellar foundation model, under `accelerate launch` or plain `python`.

The package's training code: ``train.py`` (the ``accelerate launch`` entry point) and ``stellar-foundation train``
both call `main`; benchmarks import `sample_batch`, `request_weights` and `TrainingConfig` from here.

One model, no task-specific heads: every step each star shows a random subset of its observations and is
asked for R others, which are removed from its input. Loss: Gaussian NLL with label errors in quadrature.

The launch lines (one or several CPUs, GPUs and machines, bf16/fp16, ``--resume``, ``--max-minutes``) are in
``train.py``'s docstring.

``--dataset`` is a dataset folder written by ``stellar-foundation build`` or a Hub dataset id; its
normalisation statistics (``meta/stats.json``, train split only, read by `datasets_builder.load_stats`) set the
tokenizer's centres and scales.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import math
import os
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from accelerate import Accelerator
from accelerate.utils import DataLoaderConfiguration, set_seed
from astropy.stats import mad_std
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

import modeling_stellar
from datasets_builder.atomic import atomic_write, move_into_place
from datasets_builder.layout import load_stats
from datasets_builder.xp import sampled_flux, sampled_flux_error, xp_order
from modeling_stellar import StarTokenizer, StellarConfig, StellarForObservationPrediction

from .calibration import fit_sigma_scales
from .data import Split, load_training_arrays, split_holdout
from .extinction import extinction_curve, extinction_summary
from .generation import SPECTRUM_TASKS, inpainting_flux_chi2
from .hub import prepare_model_folder
from .inputs import HEADLINE_INPUTS, LABELS
from .loci import loci_summary, stellar_loci
from .model_folder import CHECKPOINT_DIR, FACTS_FILE, LOG_FILE

__all__ = [
    "MODEL_PRESETS",
    "TrainingConfig",
    "build_parser",
    "fixed_batch",
    "main",
    "request_weights",
    "sample_batch",
    "training_function",
]

DEFAULT_VOCABULARY = Path(modeling_stellar.__file__).resolve().parent / "vocabularies" / "apogee_gaia_xp.json"
FORCE_WEIGHTS_ONLY = "TORCH_FORCE_WEIGHTS_ONLY_LOAD"
"""torch's switch that makes every ``torch.load`` use ``weights_only=True``, whatever its caller passes (`resume`)."""
RUN_FILE = "run_config.json"
GENERATION_TASK = next(task for task in SPECTRUM_TASKS if task.key == "parameters_colours")
"""The spectrum task the hold-out scores (`validate`): the one users compare with XGBoost."""
INPAINTING_TASKS = tuple(task for task in SPECTRUM_TASKS if task.key in ("bp_to_rp", "rp_to_bp"))
"""The inpainting tasks the hold-out scores: each photometer's spectrum from the other's."""
HOLDOUT_EXTINCTION_STARS = 1000
"""Hold-out stars whose extinction curves are medianed (of the hold-out's ~1,600 with Teff, log g and [Fe/H])."""


MODEL_PRESETS = {
    "compact": StellarConfig,
    "d96": functools.partial(
        StellarConfig,
        d_model=96,
        encoder_ffn_dims=[384, 384],
        decoder_ffn_dims=[384, 384],
        head_hidden_dims=[192],
    ),
    "published": StellarConfig.published,
}
"""Architectures by name: ``compact`` (`StellarConfig`'s defaults, d_model 64), ``d96`` (the shipped model's: the
compact layout at d_model 96, feed-forward 384, head 192; 0.49 M parameters) and ``published`` (Leung & Bovy 2023's
8.8 M parameters)."""


@dataclass
class TrainingConfig:
    """Every hyperparameter of a run (``configs/recipe.json`` holds the shipped model's phases)."""

    # --- model: a preset name of `MODEL_PRESETS` plus overrides
    model_preset: str = "compact"
    model_overrides: dict = field(default_factory=dict)
    # --- sampling (per star, per step)
    requests_per_star: int = 16  # R: requests drawn without replacement among the star's observed names
    # relative chance of a name being drawn (Gumbel top-k); names not listed weigh 1. Labels weigh more
    # so that most steps train them, yet they stay inputs often enough for parameters -> spectra.
    request_weights: dict = field(
        default_factory=lambda: {"teff": 6.0, "logg": 6.0, "fe_h": 6.0, "alpha_m": 3.0}
    )
    # Each batch draws one input budget n ~ U[min_input_tokens, max_input_tokens] and every star keeps n of
    # its shuffled observations: the published crop-and-drop-a-tail, without padding waste (3x faster).
    min_input_tokens: int = 4
    max_input_tokens: int = 64  # the published context; the model itself accepts up to its context_length
    # In this fraction of batches the XP coefficients shown are a prefix in order (all of order < K, K drawn
    # uniformly), as Gaia itself truncates them (n_relevant_bases) and as users pass them (BP/RP 0-29, 0-4);
    # the other batches shuffle freely as published.
    xp_prefix_fraction: float = 0.5
    # In this fraction of batches every star shows exactly what users give: an XP prefix (all coefficients of
    # order < K, K uniform in 1..K_max with 2 K_max + len(headline_colours) <= max_input_tokens, so K_max = 30
    # is the published headline BP/RP 0-29) and the colours, nothing else; the requests are drawn among the
    # names it hides (labels, extinction, higher orders). The other batches follow the two modes above.
    headline_fraction: float = 0.0
    headline_colours: list = field(default_factory=lambda: ["bprp", "jh", "jk"])
    # In this fraction of batches no XP coefficient is an input, as when users generate spectra: every star shows
    # a shuffled subset of its other observations (labels, colours, extinction; `spectra_inputs_first` says how
    # its size is drawn) and its requests are drawn among the rest, mostly XP coefficients and, as often as
    # `spectra_label_weight` says, labels (the loci: Teff from log g and [Fe/H]). The other batches follow the
    # modes above.
    spectra_fraction: float = 0.0
    # Relative request weight, in those batches, of the names that are not XP coefficients (labels, colours,
    # extinction) against the coefficients': above 1 trains the loci (Teff from log g and [Fe/H]) more often.
    spectra_label_weight: float = 1.0
    # Order of the two draws in spectra batches. False (stages 3, 4 and the first stage 5): the requests are drawn
    # first and the inputs are what they leave, so a label weight above 1 also shrinks the inputs (at 6, 68 % of
    # stars show one observation and almost none the five of parameters + colours -> spectra). True: each star's
    # inputs are drawn first (k uniform in 1..its number of observations that are not XP coefficients, a random
    # subset), then the requests among the rest, so every input size is trained whatever the label weight.
    spectra_inputs_first: bool = False
    # With `spectra_inputs_first`: in spectra batches this fraction of stars shows one of these name lists (drawn
    # uniformly; what of it the star observes) instead of a random subset -- the inputs users give without XP, as
    # the headline batches favour theirs: parameters -> spectra, + colours, the loci (log g, [Fe/H]), the extinction
    # curve (+ ak_targ). Requests are drawn among the rest as usual.
    spectra_input_sets: list = field(default_factory=list)
    spectra_input_set_fraction: float = 0.0
    # In this fraction of batches every star shows one photometer's spectrum and nothing else, as in inpainting
    # (BP -> RP, RP -> BP): the coefficients of one band (BP or RP, drawn per batch) of order < K, K uniform in
    # 1..55; its requests are drawn with equal weights among the rest, mostly the other band's coefficients.
    inpainting_fraction: float = 0.0
    # Names whose values the train stars never show, as input or as request (the hold-out keeps them, for its
    # scores): the labels for the label-free pre-training that fine-tuning starts from (`stellar_tasks.finetune`).
    hidden_names: list = field(default_factory=list)
    # Requests per star in spectra and inpainting batches (0 = `requests_per_star`): every request is answered
    # from one encoding, so more of them give generation and inpainting more signal per step for little time.
    spectra_requests_per_star: int = 0
    # --- optimisation
    batch_size: int = 256  # stars per process per optimiser step (before accumulation)
    gradient_accumulation_steps: int = 1
    learning_rate: float = 1e-3  # AdamW peak
    weight_decay: float = 0.01
    adam_betas: tuple = (0.9, 0.98)
    warmup_steps: int = 200
    max_steps: int = 20_000  # cosine decay to `min_lr_ratio` * lr at this step
    min_lr_ratio: float = 0.05
    max_grad_norm: float = 1.0
    # Exponential moving average of the weights (0 = off, else the decay; see `moving_average`); when on,
    # validation reads both and the saved model is the average. 0.999 averages over the last ~1000 steps.
    ema_decay: float = 0.0
    # The loss (`StellarConfig.nll_beta`, where its choice is explained), passed to the model's config: 0 is the
    # published Gaussian NLL.
    nll_beta: float = 0.0
    # A saved model folder whose weights start this run (a warm restart: a fresh schedule and optimiser on
    # trained weights, as SGDR restarts); "" starts from random weights. Its architecture must be this run's.
    init_from: str = ""
    # --- bookkeeping
    validation_fraction: float = 0.05  # of the train split, held out by a seeded draw; never the test split
    # fraction of the remaining train stars trained on (a seeded draw): below 1 only for data-scaling studies
    # (benchmarks/bench_scaling.py); the hold-out stays the same whatever it is.
    train_fraction: float = 1.0
    validation_every: int = 500
    checkpoint_every: int = 500
    keep_checkpoints: int = 2
    log_every: int = 50
    seed: int = 42

    @classmethod
    def from_json(cls, path: str | os.PathLike | None, **overrides) -> TrainingConfig:
        values = json.loads(Path(path).read_text()) if path else {}
        unknown = set(values) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise ValueError(f"{path}: unknown training settings {sorted(unknown)}")
        values.update({k: v for k, v in overrides.items() if v is not None})
        if "adam_betas" in values:
            values["adam_betas"] = tuple(values["adam_betas"])
        return cls(**values)

    def __post_init__(self) -> None:
        if not 0.0 < self.train_fraction <= 1.0:
            raise ValueError(f"train_fraction must be in (0, 1], got {self.train_fraction}")
        fractions = (self.headline_fraction, self.spectra_fraction, self.inpainting_fraction)
        if sum(fractions) > 1.0:
            raise ValueError(
                "headline_fraction + spectra_fraction + inpainting_fraction must be at most 1, got "
                + " + ".join(map(str, fractions))
            )
        if self.spectra_input_set_fraction and not (self.spectra_inputs_first and self.spectra_input_sets):
            raise ValueError(
                "spectra_input_set_fraction > 0 needs spectra_inputs_first and spectra_input_sets"
            )

    def model_config(self, vocab_size: int) -> StellarConfig:
        """The model's config: the preset (`MODEL_PRESETS`), ``vocab_size``, the loss choice ``nll_beta``, then the
        overrides."""
        if self.model_preset not in MODEL_PRESETS:
            raise ValueError(
                f"model_preset must be one of {sorted(MODEL_PRESETS)}, got {self.model_preset!r}"
            )
        settings = {"vocab_size": vocab_size, "nll_beta": self.nll_beta, **self.model_overrides}
        return MODEL_PRESETS[self.model_preset](**settings)


# ------------------------------------------------------------------------------------------- pure helpers
def get_lr_lambda(config: TrainingConfig):
    """Linear warm-up then cosine decay to ``min_lr_ratio``: the LambdaLR factor for step ``s``."""

    def factor(step: int) -> float:
        if step < config.warmup_steps:
            return (step + 1) / config.warmup_steps
        progress = min(1.0, (step - config.warmup_steps) / max(1, config.max_steps - config.warmup_steps))
        return config.min_lr_ratio + (1 - config.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))

    return factor


def sample_batch(
    tokenizer: StarTokenizer,
    values: np.ndarray,
    errors: np.ndarray,
    request_weight: np.ndarray,
    config: TrainingConfig,
    rng: np.random.Generator,
) -> dict[str, torch.Tensor]:
    """Draw one self-supervised batch.

    Per star: R requests among its observed requestable names (Gumbel top-k with ``request_weight``), removed
    from its input; the remaining observations shuffled, cropped to the context and a random tail dropped
    (one budget for the whole batch, see `TrainingConfig`). A star with fewer than R + 1 observed names gets
    fewer requests.

    Args:
        values, errors: (batch, vocab_size) standardised arrays (NaN value = not observed).
        request_weight: (vocab_size,) relative draw weight, 0 for padding and non-requestable names.

    Returns:
        The tokenizer's tensors plus ``request_ids``, ``labels`` and ``label_errors`` (batch, R).
    """
    batch, vocab = values.shape
    observed = np.isfinite(values)
    observed[:, 0] = False
    xp_order = xp_coefficient_order(tokenizer)
    # One of five input modes for the whole batch (see `TrainingConfig`): headline, spectra, inpainting, XP prefix,
    # or free.
    mode_draw = rng.random()
    boundaries = np.cumsum([config.headline_fraction, config.spectra_fraction, config.inpainting_fraction])
    headline = mode_draw < boundaries[0]
    spectra = boundaries[0] <= mode_draw < boundaries[1]
    inpainting = boundaries[1] <= mode_draw < boundaries[2]
    shown = np.ones(vocab, dtype=bool)  # names that may be inputs at all in this batch
    if headline:
        colours = tokenizer.convert_names_to_ids(config.headline_colours)
        max_order = (config.max_input_tokens - len(colours)) // 2
        shown = (xp_order >= 0) & (xp_order < rng.integers(1, max_order + 1))
        shown[colours] = True
    elif spectra:
        shown = xp_order < 0
    elif inpainting:
        band = xp_bands(tokenizer) == rng.integers(1, 3)
        shown = band & (xp_order < rng.integers(1, xp_order.max() + 2))
    if spectra or inpainting:
        label_weight = config.spectra_label_weight if spectra else 1.0
        request_weight = np.where(request_weight > 0, np.where(xp_order < 0, label_weight, 1.0), 0.0)
    n_observed = observed.sum(1)
    slots = (
        config.spectra_requests_per_star
        if (spectra or inpainting) and config.spectra_requests_per_star
        else config.requests_per_star
    )
    # Gumbel top-k: sampling without replacement with probabilities proportional to the weights.
    gumbel = -np.log(-np.log(rng.uniform(1e-12, 1.0, size=(batch, vocab))))
    drawable = observed & (request_weight > 0) & ~(shown if headline or inpainting else False)
    inputs_first = spectra and config.spectra_inputs_first
    if inputs_first:
        inputs = _random_subsets(observed & shown, rng)
        if config.spectra_input_set_fraction:
            inputs = _named_input_sets(tokenizer, config, observed & shown, inputs, rng)
        drawable &= ~inputs
    elif spectra:
        # a random one of each star's shown observations is never requested: no star is left without input
        drawable[np.arange(batch), np.argmax(np.where(observed & shown, gumbel, -np.inf), axis=1)] = False
    request_key = np.where(
        drawable, np.log(np.where(request_weight > 0, request_weight, 1.0)) + gumbel, -np.inf
    )
    n_requests = np.minimum(slots, np.maximum(n_observed - 1, 0))
    top = np.argsort(-request_key, axis=1)[:, :slots]  # (batch, R) candidate ids
    rank = np.arange(slots)[None, :]
    chosen = (rank < n_requests[:, None]) & np.isfinite(np.take_along_axis(request_key, top, axis=1))
    request_ids = np.where(chosen, top, 0)
    rows = np.arange(batch)[:, None]
    keep = inputs if inputs_first else observed & shown[None, :]
    keep[rows, request_ids] = False
    keep[:, 0] = False
    # Shuffle (random order keys), crop to context, drop a random tail; or show an XP prefix.
    order_key = rng.uniform(size=(batch, vocab))
    n_keep = rng.integers(config.min_input_tokens, config.max_input_tokens + 1)
    if headline or inpainting or inputs_first:
        n_keep = config.max_input_tokens
    elif spectra:
        n_keep = rng.integers(1, int(shown[1:].sum()) + 1)
    elif mode_draw < boundaries[2] + (1 - boundaries[2]) * config.xp_prefix_fraction:
        keep &= xp_order < rng.integers(1, xp_order.max() + 2)  # non-XP names have order -1: always kept
        n_keep = config.max_input_tokens
    position = np.argsort(np.argsort(np.where(keep, order_key, np.inf), axis=1), axis=1)
    keep &= position < n_keep
    packed = tokenizer.pack(values, errors, keep, order_key=order_key)
    labels = np.where(chosen, values[rows, request_ids], np.nan)
    label_errors = np.where(chosen, errors[rows, request_ids], 0.0)
    tensors = {key: torch.from_numpy(array) for key, array in packed.items()}
    tensors["request_ids"] = torch.from_numpy(request_ids.astype(np.int64))
    tensors["labels"] = torch.from_numpy(labels.astype(np.float32))
    tensors["label_errors"] = torch.from_numpy(label_errors.astype(np.float32))
    return tensors


def moving_average(decay: float):
    """The ``avg_fn`` of an exponential moving average of the weights whose decay warms up as
    ``min(decay, (1 + n) / (10 + n))`` after n updates, so that the random initial weights are forgotten at
    once rather than after ~1 / (1 - decay) steps (TensorFlow's `ExponentialMovingAverage(num_updates=n)` rule)."""

    def update(averaged: torch.Tensor, current: torch.Tensor, n_averaged: torch.Tensor) -> torch.Tensor:
        rate = min(decay, (1.0 + float(n_averaged)) / (10.0 + float(n_averaged)))
        return rate * averaged + (1.0 - rate) * current

    return update


def _random_subsets(candidates: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Per row of the (batch, vocab_size) bool ``candidates``, a uniformly random subset of k of its True entries,
    k uniform in 1..their number (none for a row without any): the same shape, bool."""
    n_candidates = candidates.sum(1)
    size = rng.integers(1, np.maximum(n_candidates, 1) + 1)  # (batch,)
    key = np.where(candidates, rng.uniform(size=candidates.shape), np.inf)
    rank = np.argsort(np.argsort(key, axis=1), axis=1)
    return candidates & (rank < size[:, None])


def _named_input_sets(
    tokenizer: StarTokenizer,
    config: TrainingConfig,
    candidates: np.ndarray,
    inputs: np.ndarray,
    rng: np.random.Generator,
) -> np.ndarray:
    """``inputs`` (batch, vocab_size) bool with a ``config.spectra_input_set_fraction`` of its rows replaced by one of
    ``config.spectra_input_sets`` (drawn uniformly), restricted to that row's ``candidates``; a row observing none of
    its drawn set keeps its input."""
    batch, vocab = candidates.shape
    sets = np.zeros((len(config.spectra_input_sets), vocab), dtype=bool)
    for row, names in enumerate(config.spectra_input_sets):
        sets[row, tokenizer.convert_names_to_ids(list(names))] = True
    drawn = sets[rng.integers(len(sets), size=batch)] & candidates
    replace = (rng.random(batch) < config.spectra_input_set_fraction) & drawn.any(axis=1)
    return np.where(replace[:, None], drawn, inputs)


def request_weights(tokenizer: StarTokenizer, config: TrainingConfig) -> np.ndarray:
    """(vocab_size,) relative chance of each name being drawn as a request (`sample_batch`): 0 for padding and
    names that are never requested, ``config.request_weights`` for the names it lists, 1 for the others."""
    weight = np.where(tokenizer.requestable_mask, 1.0, 0.0)
    for name, value in config.request_weights.items():
        weight[tokenizer.convert_names_to_ids([name])[0]] = value
    return weight


def xp_coefficient_order(tokenizer: StarTokenizer) -> np.ndarray:
    """(vocab_size,) order of each XP coefficient name (``bp7`` -> 7), -1 for every other name and padding."""
    return np.array([-1] + [xp_order(name) for name in tokenizer.observation_names])


def xp_bands(tokenizer: StarTokenizer) -> np.ndarray:
    """(vocab_size,) photometer of each name: 1 for a BP coefficient, 2 for an RP one, 0 for every other name."""
    return np.array(
        [0]
        + [
            ("bp", "rp").index(name[:2]) + 1 if xp_order(name) >= 0 else 0
            for name in tokenizer.observation_names
        ]
    )


def fixed_batch(
    tokenizer: StarTokenizer,
    values: np.ndarray,
    errors: np.ndarray,
    input_names: list[str],
    requests: list[str],
) -> dict[str, torch.Tensor]:
    """The deterministic evaluation batch: only ``input_names`` as inputs, ``requests`` asked of every star."""
    shown = np.full_like(values, np.nan)
    input_ids = tokenizer.convert_names_to_ids(input_names)
    shown[:, input_ids] = values[:, input_ids]
    batch = dict(tokenizer.encode_arrays(shown, errors, requests))
    batch["labels"] = torch.from_numpy(values[:, batch["request_ids"][0].numpy()].astype(np.float32))
    return batch


def checkpoints_in(output: Path) -> list[Path]:
    """Finished checkpoint folders, oldest first (unfinished ones carry a .tmp suffix and are ignored)."""
    folder = output / CHECKPOINT_DIR
    found = (
        [p for p in folder.glob("step_*") if p.is_dir() and not p.name.endswith(".tmp")]
        if folder.is_dir()
        else []
    )
    return sorted(found, key=lambda p: int(p.name.split("_")[1]))


def robust_scatter(truth: np.ndarray, prediction: np.ndarray) -> float:
    """``mad_std(truth - prediction)`` over finite pairs (the project's accuracy number)."""
    residual = truth - prediction
    return float(mad_std(residual[np.isfinite(residual)]))


# ------------------------------------------------------------------------------------------ the training
def training_function(config: TrainingConfig, args: argparse.Namespace) -> Path:
    """Train (or resume) one run into ``args.output``: checkpoints, the log, process reports and the model folder."""
    accelerator = Accelerator(
        gradient_accumulation_steps=config.gradient_accumulation_steps,
        mixed_precision=args.mixed_precision,
        dataloader_config=DataLoaderConfiguration(use_seedable_sampler=True),
    )
    output = Path(args.output)
    set_seed(config.seed)
    run_record = json.loads(
        json.dumps({"training": dataclasses.asdict(config), "dataset": str(args.dataset)})
    )
    with accelerator.main_process_first():
        guard_output_folder(output, run_record, args.resume)

    tokenizer = StarTokenizer.from_pretrained(str(args.vocabulary))
    with accelerator.main_process_first():
        tokenizer.set_normalization(load_stats(args.dataset))
        values, errors, source_ids = load_training_arrays(args.dataset, tokenizer)
    # Seeded hold-out drawn from the train split (the test split is never read here).
    train_index, valid_index, holdout = split_holdout(
        values, errors, source_ids, config.seed, config.validation_fraction
    )
    if config.hidden_names:
        values[np.ix_(train_index, tokenizer.convert_names_to_ids(config.hidden_names))] = np.nan
    if config.train_fraction < 1.0:
        kept = max(config.batch_size, round(config.train_fraction * len(train_index)))
        train_index = np.sort(np.random.default_rng(config.seed + 1).choice(train_index, kept, replace=False))
    request_weight = request_weights(tokenizer, config)

    model = StellarForObservationPrediction(config.model_config(tokenizer.vocab_size))
    if config.init_from:
        load_initial_weights(model, Path(config.init_from))
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay, betas=config.adam_betas
    )
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, get_lr_lambda(config))
    train_loader = DataLoader(
        torch.from_numpy(train_index), batch_size=config.batch_size, shuffle=True, drop_last=True
    )
    valid_loader = DataLoader(torch.from_numpy(valid_index), batch_size=1024)
    model, optimizer, train_loader, valid_loader, scheduler = accelerator.prepare(
        model, optimizer, train_loader, valid_loader, scheduler
    )
    average = None
    if config.ema_decay > 0:
        average = torch.optim.swa_utils.AveragedModel(
            accelerator.unwrap_model(model), avg_fn=moving_average(config.ema_decay)
        )
        accelerator.register_for_checkpointing(average)

    step = 0
    log = output / LOG_FILE if accelerator.is_main_process else None
    if args.resume:
        step = resume(accelerator, output)
        write_log(log, {"resumed_from": step})
    steps_per_epoch = len(train_loader)
    stop_step = min(config.max_steps, args.stop_at_step or config.max_steps)
    # A resumed run's clock goes on from its log (the minutes it reports are the whole run's); --max-minutes counts
    # this process's time only.
    started = time.monotonic() - 60 * logged_minutes(output / LOG_FILE, step)
    budget_started, budget = time.monotonic(), (args.max_minutes * 60 if args.max_minutes else math.inf)
    progress = tqdm(total=stop_step, initial=step, disable=not accelerator.is_main_process, desc="training")
    window = {"loss": 0.0, "steps": 0, "stars": 0, "targets": 0, "t0": time.monotonic()}
    stop_reason = "max_steps"
    if config.init_from and step == 0:  # the starting weights' scores: what the restart must improve on
        scores = validate(accelerator, model, tokenizer, values, errors, valid_loader, holdout)
        write_log(log, {"step": 0, "minutes": 0.0, "validation": scores})
    model.train()
    while step < stop_step and stop_reason == "max_steps":
        epoch = step // steps_per_epoch
        train_loader.set_epoch(epoch)
        loader = accelerator.skip_first_batches(train_loader, step % steps_per_epoch)
        for star_index in loader:
            rng = np.random.default_rng([config.seed, accelerator.process_index, step])
            index = star_index.cpu().numpy()
            batch = sample_batch(tokenizer, values[index], errors[index], request_weight, config, rng)
            batch = {k: v.to(accelerator.device) for k, v in batch.items()}
            with accelerator.accumulate(model):
                loss = model(**batch).loss  # the config's Gaussian (beta-)NLL over the labelled requests
                accelerator.backward(loss)
                if accelerator.sync_gradients:
                    accelerator.clip_grad_norm_(model.parameters(), config.max_grad_norm)
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad()
            if average is not None and accelerator.sync_gradients:
                average.update_parameters(accelerator.unwrap_model(model))
            step += 1
            progress.update(1)
            window["loss"] += loss.item()
            window["steps"] += 1
            window["stars"] += len(index)
            window["targets"] += int((batch["request_ids"] > 0).sum())
            if step % config.log_every == 0:
                elapsed = time.monotonic() - window["t0"]
                record = {
                    "step": step,
                    "epoch": step / steps_per_epoch,
                    "loss": window["loss"] / window["steps"],
                    "lr": scheduler.get_last_lr()[0],
                    "stars_per_s": window["stars"] * accelerator.num_processes / elapsed,
                    "targets_per_s": window["targets"] * accelerator.num_processes / elapsed,
                    "minutes": (time.monotonic() - started) / 60,
                }
                write_log(log, record)
                progress.set_postfix(loss=f"{record['loss']:.3f}", stars_s=f"{record['stars_per_s']:.0f}")
                window = {"loss": 0.0, "steps": 0, "stars": 0, "targets": 0, "t0": time.monotonic()}
            if step % config.validation_every == 0 or step == config.max_steps:
                record = {"step": step, "minutes": (time.monotonic() - started) / 60}
                record["validation"] = validate(
                    accelerator, model, tokenizer, values, errors, valid_loader, holdout
                )
                if average is not None:
                    record["validation_ema"] = validate(
                        accelerator, average.module, tokenizer, values, errors, valid_loader, holdout
                    )
                write_log(log, record)
                model.train()
            if step % config.checkpoint_every == 0:
                save_checkpoint(accelerator, output, step, config.keep_checkpoints)
            if time.monotonic() - budget_started > budget:
                stop_reason = "max_minutes"
            if step >= stop_step or stop_reason != "max_steps":
                break
    progress.close()
    if not (checkpoints_in(output) and checkpoints_in(output)[-1].name == f"step_{step}"):
        save_checkpoint(accelerator, output, step, config.keep_checkpoints)
    write_log(log, {"step": step, "stopped": stop_reason, "minutes": (time.monotonic() - started) / 60})
    accelerator.wait_for_everyone()
    write_process_report(accelerator, model, output, step)
    if accelerator.is_main_process:
        final = average.module if average is not None else accelerator.unwrap_model(model)
        # sigma calibration on the hold-out, from the inputs users give (`stellar_tasks.calibration`)
        final.eval()
        tokenizer.set_sigma_scales(
            fit_sigma_scales(final, tokenizer, values[valid_index], errors[valid_index], HEADLINE_INPUTS)
        )
        save_model_folder(final, tokenizer, output, run_record, step, started)
    accelerator.end_training()
    return output


def load_initial_weights(model: StellarForObservationPrediction, folder: Path) -> None:
    """Copy the weights of the saved model ``folder`` into ``model``; refuse a different architecture."""
    started = StellarForObservationPrediction.from_pretrained(str(folder))
    for key in (
        "d_model",
        "vocab_size",
        "encoder_attention_heads",
        "encoder_ffn_dims",
        "decoder_attention_heads",
        "decoder_ffn_dims",
        "head_hidden_dims",
    ):
        if getattr(started.config, key) != getattr(model.config, key):
            raise ValueError(
                f"init_from {folder}: {key} is {getattr(started.config, key)}, this run's is "
                f"{getattr(model.config, key)}"
            )
    model.load_state_dict(started.state_dict())


def guard_output_folder(output: Path, run_record: dict, resume: bool, record_name: str = RUN_FILE) -> None:
    """Refuse to mix runs: an output folder holding another run's settings (its ``record_name``: a training run's, or
    `stellar_tasks.finetune`'s) is an error, never overwritten."""
    record_file = output / record_name
    if record_file.exists():
        previous = json.loads(record_file.read_text())
        if "training" in run_record:
            # settings added since that run started count at their defaults: a run of an older version resumes
            defaults = json.loads(json.dumps(dataclasses.asdict(TrainingConfig())))
            previous["training"] = {**defaults, **previous.get("training", {})}
        if previous != run_record:
            raise ValueError(
                f"{output} holds another run (its {record_name} differs from these settings); "
                "use a new --output folder, or the same settings to --resume"
            )
        if not resume and checkpoints_in(output):
            raise ValueError(f"{output} already holds checkpoints of this run: pass --resume to continue it")
    elif resume:
        raise ValueError(f"--resume: {output} holds no run to resume")
    elif output.exists() and any(output.iterdir()):
        raise ValueError(f"{output} is not empty and holds no run: choose a new --output folder")
    else:
        output.mkdir(parents=True, exist_ok=True)
        atomic_write(record_file, json.dumps(run_record, indent=2, sort_keys=True))


def resume(accelerator: Accelerator, output: Path) -> int:
    """Load the newest finished checkpoint; returns its step.

    Every file of it is unpickled with ``weights_only=True`` (tensors and plain containers only), so a checkpoint
    cannot run code: accelerate does so for the model, optimizer, scheduler and random states, but loads the
    registered weight average (``custom_checkpoint_0.pkl``) with ``weights_only=False``, which torch's
    ``TORCH_FORCE_WEIGHTS_ONLY_LOAD`` overrides for the duration of the load."""
    found = checkpoints_in(output)
    if not found:
        raise ValueError(f"--resume: {output / CHECKPOINT_DIR} holds no finished checkpoint")
    newest = found[-1]
    forced = os.environ.get(FORCE_WEIGHTS_ONLY)
    os.environ[FORCE_WEIGHTS_ONLY] = "1"
    try:
        accelerator.load_state(str(newest))
    except Exception as error:  # corrupt, truncated or code-carrying files: say which checkpoint
        raise ValueError(f"checkpoint {newest} cannot be loaded ({type(error).__name__}: {error})") from error
    finally:
        if forced is None:
            del os.environ[FORCE_WEIGHTS_ONLY]
        else:
            os.environ[FORCE_WEIGHTS_ONLY] = forced
    return int(newest.name.split("_")[1])


def logged_minutes(log: Path, step: int) -> float:
    """Training minutes the run's log gives up to ``step`` (its records at or before that step); 0 with no log."""
    if not log.is_file():
        return 0.0
    records = (json.loads(line) for line in log.read_text().splitlines() if line.strip())
    return max((r["minutes"] for r in records if "minutes" in r and r.get("step", 0) <= step), default=0.0)


def save_checkpoint(accelerator: Accelerator, output: Path, step: int, keep: int) -> None:
    """``save_state`` into ``step_N.tmp`` then rename: a stopped save never looks finished; keep the last k.

    The staging name is fixed, not `datasets_builder.atomic`'s unique one: every process writes its shard of the
    state into the same folder, and a save stopped half-way is cleared at the next save of that step."""
    final = output / CHECKPOINT_DIR / f"step_{step}"
    staging = final.with_name(final.name + ".tmp")
    if accelerator.is_main_process and staging.exists():
        shutil.rmtree(staging)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(staging))
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        move_into_place(staging, final)
        for old in checkpoints_in(output)[:-keep]:
            shutil.rmtree(old)
    accelerator.wait_for_everyone()


@torch.no_grad()
def validate(accelerator, model, tokenizer, values, errors, valid_loader, holdout: Split) -> dict[str, float]:
    """The hold-out's scores.

    - ``teff``, ``logg``, ``fe_h``: scatter (mad_std, physical units) from the headline inputs;
    - ``spectra_flux_chi2``: the reduced chi-square of the sampled flux generated from parameters + colours
      (`GENERATION_TASK`) against the measured flux errors, over the hold-out stars that observe all of it;
    - ``bp_to_rp_flux_chi2``, ``rp_to_bp_flux_chi2``: the report's flux reduced chi-square of inpainting
      (`INPAINTING_TASKS`, `stellar_tasks.generation.inpainting_flux_chi2`);
    - ``giant_locus_teff``, ``main_sequence_locus_teff``: median |Delta Teff| [K] between the model's loci and the
      ``holdout`` stars' running median (`stellar_tasks.loci`);
    - ``extinction_f99``: the mean |deviation| of the extinction curve from Fitzpatrick (1999), from the labels of
      `HOLDOUT_EXTINCTION_STARS` ``holdout`` stars (`stellar_tasks.extinction`).
    """
    model.eval()
    predicted, true, _, _ = _holdout_predictions(
        accelerator, model, tokenizer, values, errors, valid_loader, HEADLINE_INPUTS, LABELS
    )
    scores = {name: robust_scatter(true[:, j], predicted[:, j]) for j, name in enumerate(LABELS)}
    task = GENERATION_TASK
    predicted, true, error, complete = _holdout_predictions(
        accelerator, model, tokenizer, values, errors, valid_loader, task.inputs, task.outputs
    )
    flux_error = sampled_flux_error(error[complete])
    z = (sampled_flux(true[complete]) - sampled_flux(predicted[complete])) / flux_error
    scores["spectra_flux_chi2"] = float(np.mean(z[flux_error > 0] ** 2)) if complete.any() else float("nan")
    unwrapped = accelerator.unwrap_model(model)
    for task in INPAINTING_TASKS:
        scores[f"{task.key}_flux_chi2"] = inpainting_flux_chi2(unwrapped, tokenizer, holdout, task)
    branches = loci_summary(stellar_loci(unwrapped, tokenizer, holdout))["branches"]
    scores["giant_locus_teff"] = branches["giant branch"]["median_abs_delta_teff"]
    scores["main_sequence_locus_teff"] = branches["main sequence"]["median_abs_delta_teff"]
    curve = extinction_curve(unwrapped, tokenizer, holdout, n_stars=HOLDOUT_EXTINCTION_STARS)
    laws = extinction_summary(curve)["laws"]
    scores["extinction_f99"] = laws["F99"]["mean_abs_deviation"]
    return scores


def _holdout_predictions(
    accelerator,
    model,
    tokenizer,
    values,
    errors,
    valid_loader,
    inputs: Sequence[str],
    requests: Sequence[str],
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Every hold-out star shows what it observes of ``inputs`` and is asked for ``requests``.

    Returns (predicted, true, true_error, complete): the first three (n, len(requests)) in physical units (NaN where
    not observed), ``complete`` (n,) bool, the star observes every input and request."""
    request_ids = tokenizer.convert_names_to_ids(list(requests))
    needed = tokenizer.convert_names_to_ids([*inputs, *requests])
    gathered = []
    for star_index in valid_loader:
        index = star_index.cpu().numpy()
        batch = fixed_batch(tokenizer, values[index], errors[index], list(inputs), list(requests))
        batch = {k: v.to(accelerator.device) for k, v in batch.items()}
        mean = model(**{k: v for k, v in batch.items() if k != "labels"}).mean
        label_errors = torch.from_numpy(errors[index][:, request_ids].astype(np.float32))
        complete = torch.from_numpy(np.isfinite(values[index][:, needed]).all(1))
        parts = (mean.float(), batch["labels"], label_errors.to(mean.device), complete.to(mean.device))
        gathered.append([part.cpu() for part in accelerator.gather_for_metrics(parts)])
    mean, truth, label_errors, complete = (torch.cat(parts).numpy() for parts in zip(*gathered, strict=True))
    ids = np.broadcast_to(request_ids, mean.shape)
    scales = tokenizer.scales_of(list(requests))
    return tokenizer.decode(ids, mean)[0], tokenizer.decode(ids, truth)[0], label_errors * scales, complete


def write_process_report(accelerator: Accelerator, model, output: Path, step: int) -> None:
    """Each process records that it ran, how far, and a checksum of its weights (equal when DDP synchronised)."""
    weights = torch.cat(
        [p.detach().float().flatten().cpu() for p in accelerator.unwrap_model(model).parameters()]
    )
    report = {
        "process_index": accelerator.process_index,
        "num_processes": accelerator.num_processes,
        "steps": step,
        "weights_sum": float(weights.double().sum()),
        "weights_abs_sum": float(weights.double().abs().sum()),
    }
    folder = output / "processes"
    folder.mkdir(exist_ok=True)
    atomic_write(folder / f"process_{accelerator.process_index}.json", json.dumps(report))


def write_log(log: Path | None, record: dict) -> None:
    """Append one JSON line to the run's log (main process only: others pass None)."""
    if log is not None:
        with log.open("a") as handle:
            handle.write(json.dumps(record) + "\n")


def save_model_folder(model, tokenizer, output: Path, run_record: dict, step: int, started: float) -> None:
    """The Hub-ready folder: config with auto_map and the pipeline, model.safetensors, tokenizer, remote code and
    training facts (the card, README.md, is written by ``stellar_tasks.report --write-card`` once evaluated)."""
    prepare_model_folder(model, tokenizer, output)
    facts = {
        **run_record,
        "steps": step,
        "train_minutes": (time.monotonic() - started) / 60,
        "hardware": describe_hardware(),
        "parameters": model.num_parameters(),
    }
    init_from = run_record["training"]["init_from"]
    if init_from and (Path(init_from) / FACTS_FILE).is_file():  # a warm restart keeps its history
        facts["initialised_from"] = json.loads((Path(init_from) / FACTS_FILE).read_text())
    atomic_write(output / FACTS_FILE, json.dumps(facts, indent=2))


def describe_hardware() -> str:
    if torch.cuda.is_available():
        return f"{torch.cuda.device_count()} x {torch.cuda.get_device_name(0)}"
    return f"CPU, {os.cpu_count()} cores, torch {torch.__version__} with {torch.get_num_threads()} threads"


def build_parser(parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    """``train.py``'s command line (also ``stellar-foundation train``'s): added to ``parser`` when given."""
    parser = parser or argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--dataset", required=True, help="dataset folder (datasets_builder) or Hub dataset id"
    )
    parser.add_argument("--output", required=True, help="run folder: checkpoints, logs and the saved model")
    parser.add_argument("--config", default=None, help="JSON file of TrainingConfig settings")
    parser.add_argument("--vocabulary", default=DEFAULT_VOCABULARY, help="tokenizer vocabulary JSON")
    parser.add_argument(
        "--resume", action="store_true", help="continue from the newest checkpoint in --output"
    )
    parser.add_argument(
        "--max-minutes", type=float, default=None, help="stop cleanly (checkpoint + model) after this"
    )
    parser.add_argument("--max-steps", type=int, default=None, help="override the config's max_steps")
    parser.add_argument(
        "--init-from",
        default=None,
        help="override the config's init_from (a saved model folder to warm-start from)",
    )
    parser.add_argument(
        "--stop-at-step",
        type=int,
        default=None,
        help="stop cleanly at this step (the schedule still runs to max_steps)",
    )
    parser.add_argument("--mixed-precision", choices=["no", "bf16", "fp16"], default=None)
    parser.set_defaults(handler=train)
    return parser


def train(args: argparse.Namespace) -> Path:
    """Run training for parsed `build_parser` arguments; returns the run folder."""
    config = TrainingConfig.from_json(args.config, max_steps=args.max_steps, init_from=args.init_from)
    return training_function(config, args)


def main(argv: list[str] | None = None) -> Path:
    """``python train.py ...``: parse the command line and train."""
    return train(build_parser().parse_args(argv))
