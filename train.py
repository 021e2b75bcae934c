"""Self-supervised training of the stellar foundation model, under `accelerate launch` or plain `python`.

One model, no task-specific heads: every step each star shows a random subset of its observations and is
asked for R others, which are removed from its input. Loss: Gaussian NLL with label errors in quadrature.

Launch lines (all take the same arguments; ``--mixed-precision`` or accelerate's own flag picks bf16/fp16):

    # one CPU process
    python train.py --dataset data/apogee-gaia-xp --output runs/apogee-xp
    # several CPU processes (gloo). NB: `--cpu --num_processes 2` silently starts ONE process.
    ACCELERATE_USE_CPU=1 accelerate launch --multi_gpu --num_processes 2 train.py --dataset ... --output ...
    # one GPU, bf16
    accelerate launch --mixed_precision bf16 train.py --dataset ... --output ...
    # several GPUs on one machine (DDP), or fully sharded
    accelerate launch --config_file configs/accelerate_ddp.yaml train.py --dataset ... --output ...
    accelerate launch --config_file configs/accelerate_fsdp.yaml train.py --dataset ... --output ...
    # several machines (run on each, machine_rank 0..N-1)
    accelerate launch --multi_gpu --num_machines 2 --num_processes 16 --machine_rank 0 \
        --main_process_ip 10.0.0.1 --main_process_port 29500 train.py --dataset ... --output ...
    # resume the newest checkpoint of a stopped run, or stop cleanly after a time budget
    python train.py --dataset ... --output runs/apogee-xp --resume
    python train.py --dataset ... --output runs/apogee-xp --max-minutes 60

``--dataset`` is a dataset folder written by ``python -m datasets_builder build`` or a Hub dataset id; its
normalisation statistics (``meta/stats.json``, train split only) set the tokenizer's centres and scales.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import re
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from accelerate import Accelerator
from accelerate.utils import DataLoaderConfiguration, set_seed
from astropy.stats import mad_std
from datasets import load_dataset
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from modeling_stellar import StarTokenizer, StellarConfig, StellarForObservationPrediction, gaussian_nll
from stellar_tasks.hub import prepare_model_folder

REPO_ROOT = Path(__file__).resolve().parent
DEFAULT_VOCABULARY = REPO_ROOT / "modeling_stellar" / "vocabularies" / "apogee_gaia_xp.json"
CHECKPOINT_DIR = "checkpoints"
RUN_FILE = "run_config.json"
LOG_FILE = "train_log.jsonl"
# The published headline inputs (architecture.md, "Published results"): what validation reads.
HEADLINE_INPUTS = [f"bp{i}" for i in range(30)] + [f"rp{i}" for i in range(30)] + ["bprp", "jh", "jk"]
VALIDATION_REQUESTS = ["teff", "logg", "fe_h"]


@dataclass
class TrainingConfig:
    """Every hyperparameter of a run. ``configs/train_default.json`` holds the shipped model's values."""

    # --- model: a `StellarConfig` preset name ("compact" = StellarConfig(), "published") plus overrides
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
    # beta-NLL (Seitzer et al. 2022): 0 is the published Gaussian NLL. Measured on 600 supervised steps of the
    # d_model=64 model: beta=0.5 gave 141 K / 0.30 / 0.19 dex vs 126 K / 0.26 / 0.21 for beta=0, so 0 it is.
    nll_beta: float = 0.0
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

    def model_config(self, vocab_size: int) -> StellarConfig:
        presets = {"compact": StellarConfig, "published": StellarConfig.published}
        if self.model_preset not in presets:
            raise ValueError(f"model_preset must be one of {sorted(presets)}, got {self.model_preset!r}")
        settings = {"vocab_size": vocab_size, **self.model_overrides}
        return presets[self.model_preset](**settings)


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
    n_observed = observed.sum(1)
    # Gumbel top-k: sampling without replacement with probabilities proportional to the weights.
    gumbel = -np.log(-np.log(rng.uniform(1e-12, 1.0, size=(batch, vocab))))
    drawable = observed & (request_weight > 0)
    request_key = np.where(
        drawable, np.log(np.where(request_weight > 0, request_weight, 1.0)) + gumbel, -np.inf
    )
    n_requests = np.minimum(config.requests_per_star, np.maximum(n_observed - 1, 0))
    top = np.argsort(-request_key, axis=1)[:, : config.requests_per_star]  # (batch, R) candidate ids
    rank = np.arange(config.requests_per_star)[None, :]
    chosen = (rank < n_requests[:, None]) & np.isfinite(np.take_along_axis(request_key, top, axis=1))
    request_ids = np.where(chosen, top, 0)
    rows = np.arange(batch)[:, None]
    keep = observed.copy()
    keep[rows, request_ids] = False
    keep[:, 0] = False
    # Shuffle (random order keys), crop to context, drop a random tail; or show an XP prefix.
    order_key = rng.uniform(size=(batch, vocab))
    n_keep = rng.integers(config.min_input_tokens, config.max_input_tokens + 1)
    if rng.random() < config.xp_prefix_fraction:
        xp_order = xp_coefficient_order(tokenizer)
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


def request_weights(tokenizer: StarTokenizer, config: TrainingConfig) -> np.ndarray:
    """(vocab_size,) relative chance of each name being drawn as a request (`sample_batch`): 0 for padding and
    names that are never requested, ``config.request_weights`` for the names it lists, 1 for the others."""
    weight = np.where(tokenizer._requestable, 1.0, 0.0)
    for name, value in config.request_weights.items():
        weight[tokenizer.convert_names_to_ids([name])[0]] = value
    return weight


def xp_coefficient_order(tokenizer: StarTokenizer) -> np.ndarray:
    """(vocab_size,) order of each XP coefficient name (``bp7`` -> 7), -1 for every other name and padding."""
    order = np.full(tokenizer.vocab_size, -1)
    for token, name in enumerate(tokenizer.observation_names, start=1):
        match = re.fullmatch(r"(bp|rp)(\d+)", name)
        if match:
            order[token] = int(match.group(2))
    return order


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


def load_training_arrays(dataset: str, tokenizer: StarTokenizer) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Standardised (values, errors) arrays of the dataset's train split and its source ids."""
    train = load_dataset(dataset, split="train")
    missing = [name for name in VALIDATION_REQUESTS + HEADLINE_INPUTS if name not in train.column_names]
    if missing:
        raise ValueError(f"dataset {dataset!r} lacks the columns training needs: {missing}")
    table = train.with_format("numpy")[:]
    values, errors = tokenizer.to_arrays(table, ignore_unknown=True)
    return values.astype(np.float32), errors.astype(np.float32), np.asarray(table["gaia_dr3_source_id"])


def load_statistics(dataset: str) -> dict:
    """The dataset's normalisation statistics, from its folder or the Hub."""
    local = Path(dataset) / "meta" / "stats.json"
    if local.is_file():
        return json.loads(local.read_text())
    from huggingface_hub import hf_hub_download

    return json.loads(Path(hf_hub_download(dataset, "meta/stats.json", repo_type="dataset")).read_text())


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
        tokenizer.set_normalization(load_statistics(args.dataset))
        values, errors, source_ids = load_training_arrays(args.dataset, tokenizer)
    # Seeded hold-out drawn from the train split (the test split is never read here).
    holdout = np.random.default_rng(config.seed).random(len(values)) < config.validation_fraction
    train_index, valid_index = np.flatnonzero(~holdout), np.flatnonzero(holdout)
    if config.train_fraction < 1.0:
        kept = max(config.batch_size, round(config.train_fraction * len(train_index)))
        train_index = np.sort(np.random.default_rng(config.seed + 1).choice(train_index, kept, replace=False))
    request_weight = request_weights(tokenizer, config)

    model = StellarForObservationPrediction(config.model_config(tokenizer.vocab_size))
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

    step = 0
    log = output / LOG_FILE if accelerator.is_main_process else None
    if args.resume:
        step = resume(accelerator, output)
        write_log(log, {"resumed_from": step})
    steps_per_epoch = len(train_loader)
    stop_step = min(config.max_steps, args.stop_at_step or config.max_steps)
    started, budget = time.monotonic(), (args.max_minutes * 60 if args.max_minutes else math.inf)
    progress = tqdm(total=stop_step, initial=step, disable=not accelerator.is_main_process, desc="training")
    window = {"loss": 0.0, "steps": 0, "stars": 0, "targets": 0, "t0": time.monotonic()}
    stop_reason = "max_steps"
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
                labels, label_errors = batch.pop("labels"), batch.pop("label_errors")
                prediction = model(**batch)
                loss = gaussian_nll(
                    prediction.mean,
                    prediction.log_variance,
                    labels,
                    label_errors,
                    batch["request_ids"] != 0,
                    config.nll_beta,
                )
                accelerator.backward(loss)
                if accelerator.sync_gradients:
                    accelerator.clip_grad_norm_(model.parameters(), config.max_grad_norm)
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad()
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
                scatter = validate(accelerator, model, tokenizer, values, errors, valid_loader)
                write_log(
                    log, {"step": step, "validation": scatter, "minutes": (time.monotonic() - started) / 60}
                )
                model.train()
            if step % config.checkpoint_every == 0:
                save_checkpoint(accelerator, output, step, config.keep_checkpoints)
            if time.monotonic() - started > budget:
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
        save_model_folder(accelerator.unwrap_model(model), tokenizer, output, run_record, step, started)
    accelerator.end_training()
    return output


def guard_output_folder(output: Path, run_record: dict, resume: bool) -> None:
    """Refuse to mix runs: an output folder holding another run's settings is an error, never overwritten."""
    record_file = output / RUN_FILE
    if record_file.exists():
        previous = json.loads(record_file.read_text())
        if previous != run_record:
            raise ValueError(
                f"{output} holds another run (its {RUN_FILE} differs from these settings); "
                "use a new --output folder, or the same settings to --resume"
            )
        if not resume and checkpoints_in(output):
            raise ValueError(f"{output} already holds checkpoints of this run: pass --resume to continue it")
    elif resume:
        raise ValueError(f"--resume: {output} holds no run to resume")
    elif output.exists() and any(output.iterdir()):
        raise ValueError(f"{output} is not empty and holds no run of train.py: choose a new --output folder")
    else:
        output.mkdir(parents=True, exist_ok=True)
        write_atomic(record_file, json.dumps(run_record, indent=2, sort_keys=True))


def resume(accelerator: Accelerator, output: Path) -> int:
    """Load the newest finished checkpoint; returns its step."""
    found = checkpoints_in(output)
    if not found:
        raise ValueError(f"--resume: {output / CHECKPOINT_DIR} holds no finished checkpoint")
    newest = found[-1]
    try:
        accelerator.load_state(str(newest))
    except Exception as error:  # corrupt or truncated files: say which checkpoint
        raise ValueError(f"checkpoint {newest} cannot be loaded ({type(error).__name__}: {error})") from error
    return int(newest.name.split("_")[1])


def save_checkpoint(accelerator: Accelerator, output: Path, step: int, keep: int) -> None:
    """``save_state`` into ``step_N.tmp`` then rename: a stopped save never looks finished; keep the last k."""
    final = output / CHECKPOINT_DIR / f"step_{step}"
    staging = final.with_name(final.name + ".tmp")
    if accelerator.is_main_process and staging.exists():
        shutil.rmtree(staging)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(staging))
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        if final.exists():
            shutil.rmtree(final)
        staging.rename(final)
        for old in checkpoints_in(output)[:-keep]:
            shutil.rmtree(old)
    accelerator.wait_for_everyone()


@torch.no_grad()
def validate(accelerator, model, tokenizer, values, errors, valid_loader) -> dict[str, float]:
    """Scatter (mad_std, physical units) of Teff, log g, [Fe/H] on the hold-out, from the headline inputs."""
    model.eval()
    means, truths = [], []
    for star_index in valid_loader:
        index = star_index.cpu().numpy()
        batch = fixed_batch(tokenizer, values[index], errors[index], HEADLINE_INPUTS, VALIDATION_REQUESTS)
        batch = {k: v.to(accelerator.device) for k, v in batch.items()}
        mean = model(**{k: v for k, v in batch.items() if k != "labels"}).mean
        mean, labels = accelerator.gather_for_metrics((mean, batch["labels"]))
        means.append(mean.float().cpu())
        truths.append(labels.float().cpu())
    mean, truth = torch.cat(means), torch.cat(truths)
    request_ids = torch.tensor(tokenizer.convert_names_to_ids(VALIDATION_REQUESTS)).expand_as(mean)
    predicted, _ = tokenizer.decode(request_ids, mean)
    true, _ = tokenizer.decode(request_ids, truth)
    return {name: robust_scatter(true[:, j], predicted[:, j]) for j, name in enumerate(VALIDATION_REQUESTS)}


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
    write_atomic(folder / f"process_{accelerator.process_index}.json", json.dumps(report))


def write_log(log: Path | None, record: dict) -> None:
    """Append one JSON line to the run's log (main process only: others pass None)."""
    if log is not None:
        with log.open("a") as handle:
            handle.write(json.dumps(record) + "\n")


def write_atomic(path: Path, text: str) -> None:
    staging = path.with_name(path.name + ".tmp")
    staging.write_text(text)
    os.replace(staging, path)


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
    write_atomic(output / "training_facts.json", json.dumps(facts, indent=2))


def describe_hardware() -> str:
    if torch.cuda.is_available():
        return f"{torch.cuda.device_count()} x {torch.cuda.get_device_name(0)}"
    return f"CPU, {os.cpu_count()} cores, torch {torch.__version__} with {torch.get_num_threads()} threads"


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
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
        "--stop-at-step",
        type=int,
        default=None,
        help="stop cleanly at this step (the schedule still runs to max_steps)",
    )
    parser.add_argument("--mixed-precision", choices=["no", "bf16", "fp16"], default=None)
    args = parser.parse_args(argv)
    config = TrainingConfig.from_json(args.config, max_steps=args.max_steps)
    return training_function(config, args)


if __name__ == "__main__":
    main()
