"""Training (`stellar_tasks.training`, launched as train.py): sampling rules, resume equality, two processes, the saved
folder, and refusals."""

import dataclasses
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from modeling_stellar import StellarForObservationPrediction
from stellar_tasks import training
from stellar_tasks.model_folder import FACTS_FILE, LOG_FILE
from tests.conftest import REPO_ROOT, create_test_tokenizer

TINY_TRAINING = {
    "model_overrides": {
        "d_model": 16,
        "encoder_attention_heads": [2],
        "encoder_ffn_dims": [32],
        "decoder_attention_heads": [2],
        "decoder_ffn_dims": [32],
        "head_hidden_dims": [16],
    },
    "batch_size": 32,
    "max_steps": 400,
    "warmup_steps": 3,
    "checkpoint_every": 4,
    "validation_every": 8,
    "log_every": 1,
    "keep_checkpoints": 50,
    "headline_fraction": 0.3,
    "ema_decay": 0.9,
}


@pytest.fixture(scope="module")
def tiny_config(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("config") / "tiny.json"
    path.write_text(json.dumps(TINY_TRAINING))
    return path


def _run(dataset: Path, output: Path, config: Path, *extra: str, **popen) -> subprocess.CompletedProcess:
    command = [
        sys.executable,
        str(REPO_ROOT / "train.py"),
        "--dataset",
        str(dataset),
        "--output",
        str(output),
    ]
    return subprocess.run(
        [*command, "--config", str(config), *extra], capture_output=True, text=True, **popen
    )


def _losses(output: Path, after: int = 0) -> dict[int, float]:
    records = [json.loads(line) for line in (output / LOG_FILE).read_text().splitlines()]
    return {r["step"]: r["loss"] for r in records if "loss" in r and r["step"] > after}


def _steps_since_resume(output: Path) -> tuple[int, list[int]]:
    """The step the last ``--resume`` of a run says it started from (its log's ``resumed_from`` record), and the steps
    whose losses were logged after that record, in order: what that resumed process trained."""
    records = [json.loads(line) for line in (output / LOG_FILE).read_text().splitlines()]
    start = max(k for k, record in enumerate(records) if "resumed_from" in record)
    return records[start]["resumed_from"], [r["step"] for r in records[start + 1 :] if "loss" in r]


def _checkpoint_identities(output: Path) -> dict[str, tuple[int, int]]:
    """Each finished checkpoint folder's inode and modification time: a checkpoint saved again is a new folder
    (`training.save_checkpoint` renames a staging folder into place), so both change."""
    return {
        path.name: (path.stat().st_ino, path.stat().st_mtime_ns) for path in training.checkpoints_in(output)
    }


def _rewritten(output: Path, identities: dict[str, tuple[int, int]]) -> list[str]:
    """The checkpoints of ``identities`` (`_checkpoint_identities` taken earlier) that are not the same folders now."""
    now = _checkpoint_identities(output)
    return [name for name, identity in identities.items() if now.get(name) != identity]


def _run_broken(
    break_name: str, dataset: Path, output: Path, config: Path, *extra: str
) -> subprocess.CompletedProcess:
    """`_run` with issue 28's break ``break_name`` applied (``python -m tests.guard_breaks``: the same training
    function, as ``stellar-foundation train``)."""
    command = [sys.executable, "-m", "tests.guard_breaks", break_name, "train", "--dataset", str(dataset)]
    return subprocess.run(
        [*command, "--output", str(output), "--config", str(config), *extra],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
    )


def _random_arrays(tokenizer, n_stars=64, seed=0):
    rng = np.random.default_rng(seed)
    values = rng.normal(size=(n_stars, tokenizer.vocab_size))
    values[:, 0] = np.nan
    values[rng.random(values.shape) < 0.3] = np.nan  # 30 % not observed
    return values, np.abs(rng.normal(scale=0.1, size=values.shape))


def test_no_request_is_visible_in_its_own_input():
    tokenizer = create_test_tokenizer()
    values, errors = _random_arrays(tokenizer)
    config = training.TrainingConfig(requests_per_star=16)
    weight = np.where(tokenizer.requestable_mask, 1.0, 0.0)
    for seed in range(20):
        batch = training.sample_batch(tokenizer, values, errors, weight, config, np.random.default_rng(seed))
        for inputs, requests, labels in zip(
            batch["input_ids"], batch["request_ids"], batch["labels"], strict=True
        ):
            asked = set(requests[requests > 0].tolist())
            assert asked and not asked & set(inputs[inputs > 0].tolist())
            assert torch.isfinite(labels[requests > 0]).all()  # only observed names are requested
        assert batch["input_ids"].shape[1] <= config.max_input_tokens
        assert (batch["request_ids"] > 0).sum(1).max() == 16


def test_every_requestable_name_can_be_drawn():
    tokenizer = create_test_tokenizer()
    values, errors = _random_arrays(tokenizer, n_stars=256)
    config = training.TrainingConfig(requests_per_star=8)
    weight = np.where(tokenizer.requestable_mask, 1.0, 0.0)
    weight[tokenizer.convert_names_to_ids(["teff"])[0]] = 6.0
    drawn = np.zeros(tokenizer.vocab_size, dtype=int)
    for seed in range(30):
        batch = training.sample_batch(tokenizer, values, errors, weight, config, np.random.default_rng(seed))
        np.add.at(drawn, batch["request_ids"].flatten().numpy(), 1)
    names = tokenizer.convert_ids_to_names(np.flatnonzero(drawn[1:] == 0) + 1)
    assert names == [], f"never drawn: {names}"
    assert {"bprp", "jk"} <= set(tokenizer.requestable_names)  # the published code never asked for these
    teff, others = drawn[tokenizer.convert_names_to_ids(["teff"])[0]], np.median(drawn[1:])
    assert teff > 3 * others  # the weights steer how often a name is drawn


def test_learning_rate_schedule_warms_up_then_decays():
    factor = training.get_lr_lambda(training.TrainingConfig(warmup_steps=10, max_steps=110, min_lr_ratio=0.1))
    assert factor(0) == pytest.approx(0.1) and factor(9) == pytest.approx(1.0)
    assert factor(60) == pytest.approx(0.55) and factor(110) == pytest.approx(0.1)


@pytest.mark.slow
def test_headline_batches_show_an_xp_prefix_and_the_colours_only():
    tokenizer = create_test_tokenizer()
    values, errors = _random_arrays(tokenizer, n_stars=128)
    values[:, tokenizer.convert_names_to_ids(["bp0", "rp0"])] = 0.5  # every star has something to show
    config = training.TrainingConfig(headline_fraction=1.0)
    weight = np.where(tokenizer.requestable_mask, 1.0, 0.0)
    order = training.xp_coefficient_order(tokenizer)
    colours = set(tokenizer.convert_names_to_ids(config.headline_colours))
    prefixes = set()
    for seed in range(20):
        batch = training.sample_batch(tokenizer, values, errors, weight, config, np.random.default_rng(seed))
        shown = batch["input_ids"][batch["input_ids"] > 0].numpy()
        xp_shown = shown[order[shown] >= 0]
        assert set(shown[order[shown] < 0].tolist()) <= colours  # no label, no extinction as an input
        prefix = order[xp_shown].max() + 1
        prefixes.add(int(prefix))
        assert batch["input_ids"].shape[1] <= config.max_input_tokens
        for inputs, requests in zip(batch["input_ids"], batch["request_ids"], strict=True):
            asked = requests[requests > 0].numpy()
            # requests come from what the batch hides: higher orders, labels, extinction
            assert not set(asked.tolist()) & set(inputs[inputs > 0].tolist())
            assert ((order[asked] >= prefix) | (order[asked] < 0)).all()
            assert not set(asked.tolist()) & colours
    assert max(prefixes) <= 30 and len(prefixes) > 5  # K_max = (64 - 3) // 2: the published BP/RP 0-29


def test_spectra_batches_show_no_xp_coefficient_and_ask_mostly_for_them():
    tokenizer = create_test_tokenizer()
    values, errors = _random_arrays(tokenizer, n_stars=128)
    order = training.xp_coefficient_order(tokenizer)
    others = np.flatnonzero(order < 0)[1:]  # labels, colours, extinction
    values[:, others[:2]] = np.nan  # some stars show few: the sampler must leave each of them an input
    values[:64, others[2:-1]] = np.nan
    values[:, others[-1]] = 0.3  # ... and half of them have one other observation only
    config = training.TrainingConfig(spectra_fraction=1.0, headline_fraction=0.0)
    weight = training.request_weights(tokenizer, config)
    input_counts, asked_xp, asked_other = set(), 0, 0
    for seed in range(30):
        batch = training.sample_batch(tokenizer, values, errors, weight, config, np.random.default_rng(seed))
        inputs, requests = batch["input_ids"].numpy(), batch["request_ids"].numpy()
        assert (order[inputs[inputs > 0]] < 0).all()  # no XP coefficient is an input
        assert ((inputs > 0).sum(1) >= 1).all()
        input_counts.add(int((inputs > 0).sum(1).max()))
        for shown, asked in zip(inputs, requests, strict=True):
            assert not set(asked[asked > 0].tolist()) & set(shown[shown > 0].tolist())
        asked_xp += int((order[requests[requests > 0]] >= 0).sum())
        asked_other += int((order[requests[requests > 0]] < 0).sum())
    assert len(input_counts) > 3  # how many of its other observations a star shows varies
    assert (
        asked_other > 0 and asked_xp > 5 * asked_other
    )  # equal weights: mostly coefficients, sometimes a label
    with pytest.raises(ValueError, match="at most 1"):
        training.TrainingConfig(spectra_fraction=0.7, headline_fraction=0.4)
    with pytest.raises(ValueError, match="inpainting_fraction must be at most 1"):
        training.TrainingConfig(spectra_fraction=0.5, headline_fraction=0.3, inpainting_fraction=0.3)


def test_spectra_batches_take_their_own_number_of_requests():
    tokenizer = create_test_tokenizer()
    values, errors = _random_arrays(tokenizer, n_stars=64)
    order = training.xp_coefficient_order(tokenizer)
    sizes = {}
    for spectra in (0.0, 1.0):
        config = training.TrainingConfig(spectra_fraction=spectra, spectra_requests_per_star=40)
        weight = training.request_weights(tokenizer, config)
        batch = training.sample_batch(tokenizer, values, errors, weight, config, np.random.default_rng(0))
        requests = batch["request_ids"].numpy()
        sizes[spectra] = requests.shape[1]
        assert batch["labels"].shape == requests.shape
        if spectra:  # filled as far as each star's hidden observations allow
            assert ((requests > 0).sum(1) == 40).all()
            assert (order[requests[requests > 0]] >= 0).sum() > 30 * len(requests)
    assert sizes == {0.0: 16, 1.0: 40}


def test_inpainting_batches_show_one_band_and_ask_mostly_for_the_other():
    tokenizer = create_test_tokenizer()
    values, errors = _random_arrays(tokenizer, n_stars=64)
    values[:, 1:] = np.nan_to_num(values[:, 1:], nan=0.5)  # every star observes everything
    order, bands = training.xp_coefficient_order(tokenizer), training.xp_bands(tokenizer)
    config = training.TrainingConfig(inpainting_fraction=1.0, spectra_requests_per_star=40)
    weight = training.request_weights(tokenizer, config)
    shown_bands, prefixes, asked_other_band, asked = set(), set(), 0, 0
    for seed in range(30):
        batch = training.sample_batch(tokenizer, values, errors, weight, config, np.random.default_rng(seed))
        inputs, requests = batch["input_ids"].numpy(), batch["request_ids"].numpy()
        band = set(bands[inputs[inputs > 0]].tolist())
        assert len(band) == 1 and band != {0}  # one photometer's coefficients and nothing else
        (shown_band,) = band
        shown_bands.add(shown_band)
        prefix = int(order[inputs[inputs > 0]].max()) + 1
        assert (inputs > 0).sum(1).max() == prefix  # all of order < K: the stars observe every coefficient
        prefixes.add(prefix)
        assert requests.shape[1] == 40
        asked_other_band += int((bands[requests[requests > 0]] == 3 - shown_band).sum())
        asked += int((requests > 0).sum())
    assert shown_bands == {1, 2} and len(prefixes) > 10
    assert asked_other_band > asked / 2


def test_spectra_label_weight_asks_for_labels_more_often():
    tokenizer = create_test_tokenizer()
    values, errors = _random_arrays(tokenizer, n_stars=128)
    order = training.xp_coefficient_order(tokenizer)
    asked_labels = {}
    for label_weight in (1.0, 6.0):
        config = training.TrainingConfig(spectra_fraction=1.0, spectra_label_weight=label_weight)
        weight = training.request_weights(tokenizer, config)
        counts = 0
        for seed in range(20):
            batch = training.sample_batch(
                tokenizer, values, errors, weight, config, np.random.default_rng(seed)
            )
            requests = batch["request_ids"].numpy()
            counts += int((order[requests[requests > 0]] < 0).sum())
        asked_labels[label_weight] = counts
    assert asked_labels[6.0] > 2 * asked_labels[1.0]


def test_spectra_inputs_first_trains_every_input_size_whatever_the_label_weight():
    tokenizer = create_test_tokenizer()
    values, errors = _random_arrays(tokenizer, n_stars=256)
    order = training.xp_coefficient_order(tokenizer)
    others = np.flatnonzero(order < 0)[1:]  # labels, colours, extinction
    values[:, others] = np.nan_to_num(values[:, others], nan=0.1)  # every star observes all of them
    values[:32, others[1:]] = np.nan  # ... except these, which observe one only
    shown_counts, hidden_asked = {}, {False: np.zeros(2), True: np.zeros(2)}
    for inputs_first in (False, True):
        config = training.TrainingConfig(
            spectra_fraction=1.0,
            headline_fraction=0.0,
            spectra_label_weight=6.0,
            spectra_requests_per_star=40,
            spectra_inputs_first=inputs_first,
        )
        weight = training.request_weights(tokenizer, config)
        counts = []
        for seed in range(20):
            batch = training.sample_batch(
                tokenizer, values, errors, weight, config, np.random.default_rng(seed)
            )
            inputs, requests = batch["input_ids"].numpy(), batch["request_ids"].numpy()
            assert (order[inputs[inputs > 0]] < 0).all() and ((inputs > 0).sum(1) >= 1).all()
            for star, (shown, asked) in enumerate(zip(inputs, requests, strict=True)):
                shown, asked = set(shown[shown > 0].tolist()), set(asked[asked > 0].tolist())
                assert not shown & asked
                requestable = (
                    set(others[np.isfinite(values[star, others]) & (weight[others] > 0)].tolist()) - shown
                )
                hidden_asked[inputs_first] += np.array([len(requestable & asked), len(requestable)])
            counts.append((inputs[32:] > 0).sum(1))
        shown_counts[inputs_first] = np.bincount(np.concatenate(counts), minlength=len(others) + 1)[1:]
    # requests first: the weight leaves most stars one input; inputs first: every size 1..all about as often
    assert shown_counts[False][0] > 0.5 * shown_counts[False].sum()
    assert shown_counts[True].min() > 0.5 * shown_counts[True].mean()
    assert len(shown_counts[True]) == len(others)
    # either way, nearly every requestable observation a star does not show is asked for (weight 6)
    assert all(asked / hidden > 0.85 for asked, hidden in hidden_asked.values())


def test_spectra_input_sets_show_the_inputs_users_give():
    tokenizer = create_test_tokenizer()
    values, errors = _random_arrays(tokenizer, n_stars=512)
    order = training.xp_coefficient_order(tokenizer)
    others = np.flatnonzero(order < 0)[1:]
    values[:, others] = np.nan_to_num(values[:, others], nan=0.1)  # every star observes all of them
    values[:64, tokenizer.convert_names_to_ids(["logg"])] = np.nan  # ... these lack log g
    sets = [["teff", "logg", "fe_h"], ["logg", "fe_h"]]
    config = training.TrainingConfig(
        spectra_fraction=1.0,
        headline_fraction=0.0,
        spectra_inputs_first=True,
        spectra_input_sets=sets,
        spectra_input_set_fraction=0.5,
    )
    weight = training.request_weights(tokenizer, config)
    batch = training.sample_batch(tokenizer, values, errors, weight, config, np.random.default_rng(0))
    shown = [
        frozenset(tokenizer.convert_ids_to_names(row[row > 0].tolist())) for row in batch["input_ids"].numpy()
    ]
    share = {frozenset(names): np.mean([star == frozenset(names) for star in shown[64:]]) for names in sets}
    # half the stars show a named set, each set a quarter (a random subset matches one only by chance, < 3 %)
    assert all(0.17 < value < 0.33 for value in share.values()), share
    assert frozenset({"teff", "fe_h"}) in shown[:64]  # a star lacking log g shows what it observes of its set
    with pytest.raises(ValueError, match="spectra_inputs_first"):
        training.TrainingConfig(spectra_input_sets=sets, spectra_input_set_fraction=0.5)


def test_killed_run_resumes_with_identical_losses(tiny_dataset, tiny_config, tmp_path):
    straight = _run(tiny_dataset, tmp_path / "straight", tiny_config, "--stop-at-step", "16")
    assert straight.returncode == 0, straight.stderr[-2000:]
    interrupted = tmp_path / "interrupted"
    command = [sys.executable, str(REPO_ROOT / "train.py"), "--dataset", str(tiny_dataset)]
    process = subprocess.Popen(
        [*command, "--output", str(interrupted), "--config", str(tiny_config)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 120
    while not (interrupted / "checkpoints" / "step_4").is_dir():
        assert process.poll() is None and time.monotonic() < deadline, "run ended before its first checkpoint"
        time.sleep(0.01)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    newest = training.checkpoints_in(interrupted)[-1]
    resumed_from = int(newest.name.split("_")[1])
    assert resumed_from < 16, "the run got too far before the kill to test anything"
    kept = _checkpoint_identities(interrupted)
    resumed = _run(tiny_dataset, interrupted, tiny_config, "--stop-at-step", "16", "--resume")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    # the resumed process trains the remaining steps only (a deterministic run trained again from step 0 logs the
    # same losses and saves the same weights): its log says so, and the checkpoints it started from are not saved again
    assert _steps_since_resume(interrupted) == (resumed_from, list(range(resumed_from + 1, 17)))
    assert _rewritten(interrupted, kept) == []
    expected, got = (
        _losses(tmp_path / "straight", after=resumed_from),
        _losses(interrupted, after=resumed_from),
    )
    # the log of the killed run may hold steps past its checkpoint; the resumed ones are appended last
    assert sorted(got) == list(range(resumed_from + 1, 17))
    assert got == expected
    # the resumed run's clock goes on from the killed one's: its facts count both parts
    before = training.logged_minutes(interrupted / LOG_FILE, resumed_from)
    assert before > 0
    facts = json.loads((interrupted / FACTS_FILE).read_text())
    assert facts["train_minutes"] > before
    # the saved model is the weight average, restored from the checkpoint with the rest of the state (equal to the
    # last few bits: a resumed run's average was seen up to 4 float32 ulp off on a few weights)
    from safetensors.numpy import load_file

    straight_weights, resumed_weights = (
        load_file(run / "model.safetensors") for run in (tmp_path / "straight", interrupted)
    )
    assert straight_weights.keys() == resumed_weights.keys()
    for key, weights in straight_weights.items():
        np.testing.assert_allclose(resumed_weights[key], weights, rtol=1e-6, atol=1e-9, err_msg=key)


@pytest.mark.slow  # two training runs: ~1 minute on 2 shared cores
def test_a_resume_that_trains_again_from_step_0_is_caught(tiny_dataset, tiny_config, tmp_path):
    """Issue 28's break of ``--resume`` (`tests.guard_breaks.resume_ignoring_the_checkpoint`: nothing loaded, step 0)
    against the checks the resume test adds: its losses are the first run's, step for step (which is why comparing
    losses let it pass), but its log and its checkpoints show the steps it trained again."""
    run = tmp_path / "run"
    first = _run(tiny_dataset, run, tiny_config, "--stop-at-step", "8")
    assert first.returncode == 0, first.stderr[-2000:]
    kept = _checkpoint_identities(run)
    assert list(kept) == ["step_4", "step_8"]
    broken = _run_broken(
        "resume_ignoring_the_checkpoint", tiny_dataset, run, tiny_config, "--stop-at-step", "12", "--resume"
    )
    assert broken.returncode == 0, broken.stderr[-2000:]
    records = [json.loads(line) for line in (run / LOG_FILE).read_text().splitlines()]
    start = next(k for k, record in enumerate(records) if "resumed_from" in record)
    again = {r["step"]: r["loss"] for r in records[start:] if "loss" in r and r["step"] <= 8}
    assert again == {r["step"]: r["loss"] for r in records[:start] if "loss" in r}
    assert _steps_since_resume(run) == (0, list(range(1, 13)))  # the resume test asks for (8, [9, ..., 12])
    assert _rewritten(run, kept) == ["step_4", "step_8"]  # ... and for []


def test_warm_restart_starts_from_the_saved_weights_and_refuses_another_architecture(
    tiny_dataset, tiny_config, tmp_path
):
    first = _run(tiny_dataset, tmp_path / "first", tiny_config, "--stop-at-step", "4")
    assert first.returncode == 0, first.stderr[-2000:]
    # learning rate 0: the warm-started run's saved weights are the first run's (to the rounding of its average;
    # two random initialisations differ by ~0.1)
    frozen = tmp_path / "frozen.json"
    frozen.write_text(json.dumps({**TINY_TRAINING, "learning_rate": 0.0}))
    started = ("--init-from", str(tmp_path / "first"))  # the command line overrides the config's init_from
    second = _run(tiny_dataset, tmp_path / "second", frozen, "--stop-at-step", "2", *started)
    assert second.returncode == 0, second.stderr[-2000:]
    from safetensors.numpy import load_file

    before, after = (load_file(tmp_path / run / "model.safetensors") for run in ("first", "second"))
    assert before.keys() == after.keys()
    assert all(np.allclose(before[key], after[key], rtol=0, atol=1e-6) for key in before)
    facts = json.loads((tmp_path / "second" / FACTS_FILE).read_text())
    assert facts["steps"] == 2 and facts["initialised_from"]["steps"] == 4  # the card tells both runs
    # the restart first scores its starting weights, before any step
    log = [json.loads(line) for line in (tmp_path / "second" / LOG_FILE).read_text().splitlines()]
    start = next(record for record in log if "validation" in record)
    assert start["step"] == 0 and set(start["validation"]) == {
        "teff",
        "logg",
        "fe_h",
        "spectra_flux_chi2",
        "bp_to_rp_flux_chi2",
        "rp_to_bp_flux_chi2",
        "giant_locus_teff",
        "main_sequence_locus_teff",
        "extinction_f99",
    }
    assert all(np.isfinite(start["validation"][label]) for label in ("teff", "logg", "fe_h"))
    wider = dataclasses.replace(
        training.TrainingConfig.from_json(tiny_config),
        model_overrides={**TINY_TRAINING["model_overrides"], "d_model": 32},
    )
    vocab_size = json.loads((tmp_path / "first" / "config.json").read_text())["vocab_size"]
    model = StellarForObservationPrediction(wider.model_config(vocab_size))
    with pytest.raises(ValueError, match="d_model is 16, this run's is 32"):
        training.load_initial_weights(model, tmp_path / "first")


@pytest.mark.slow
def test_two_processes_synchronise_and_save_a_loadable_model(tiny_dataset, tiny_config, tmp_path):
    accelerate = shutil.which("accelerate", path=str(Path(sys.executable).parent))
    env = {**os.environ, "ACCELERATE_USE_CPU": "1", "OMP_NUM_THREADS": "1"}
    command = [accelerate, "launch", "--multi_gpu", "--num_processes", "2", "--main_process_port", "29561"]
    command += [
        str(REPO_ROOT / "train.py"),
        "--dataset",
        str(tiny_dataset),
        "--output",
        str(tmp_path / "ddp"),
    ]
    result = subprocess.run(
        [*command, "--config", str(tiny_config), "--stop-at-step", "6"],
        capture_output=True,
        text=True,
        env=env,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    reports = [json.loads(p.read_text()) for p in sorted((tmp_path / "ddp" / "processes").glob("*.json"))]
    assert [r["process_index"] for r in reports] == [0, 1]
    assert all(r["num_processes"] == 2 and r["steps"] == 6 for r in reports)
    assert reports[0]["weights_sum"] == reports[1]["weights_sum"]
    assert reports[0]["weights_abs_sum"] == reports[1]["weights_abs_sum"]
    from transformers import AutoModel

    model = AutoModel.from_pretrained(tmp_path / "ddp", trust_remote_code=True)
    assert model.num_parameters() > 0


def test_saved_folder_is_hub_ready_and_loads(tiny_dataset, tiny_config, tmp_path):
    result = _run(tiny_dataset, tmp_path / "run", tiny_config, "--stop-at-step", "8")
    assert result.returncode == 0, result.stderr[-2000:]
    folder = tmp_path / "run"
    config = json.loads((folder / "config.json").read_text())
    assert "AutoModel" in config["auto_map"]
    for name in (
        "model.safetensors",
        "preprocessor_config.json",
        "modeling_stellar.py",
        "training_facts.json",
    ):
        assert (folder / name).is_file(), name
    stats = json.loads((tiny_dataset / "meta" / "stats.json").read_text())
    vocabulary = json.loads((folder / "preprocessor_config.json").read_text())["vocabulary"]
    teff = next(entry for entry in vocabulary if entry["name"] == "teff")
    assert teff["center"] == pytest.approx(stats["teff"]["center"])  # normalisation came with the dataset
    validation = [json.loads(line) for line in (folder / LOG_FILE).read_text().splitlines()]
    assert any("validation" in record for record in validation)


def test_max_minutes_stops_cleanly_with_a_checkpoint_and_a_model(tiny_dataset, tiny_config, tmp_path):
    result = _run(tiny_dataset, tmp_path / "run", tiny_config, "--max-minutes", "0.0001")
    assert result.returncode == 0, result.stderr[-2000:]
    records = [json.loads(line) for line in (tmp_path / "run" / LOG_FILE).read_text().splitlines()]
    assert records[-1]["stopped"] == "max_minutes" and records[-1]["step"] < TINY_TRAINING["max_steps"]
    assert training.checkpoints_in(tmp_path / "run")[-1].name == f"step_{records[-1]['step']}"
    assert (tmp_path / "run" / "model.safetensors").is_file()


def test_refuses_to_mix_runs_or_resume_nothing(tiny_dataset, tiny_config, tmp_path):
    occupied = tmp_path / "occupied"
    occupied.mkdir()
    (occupied / "notes.txt").write_text("keep me")
    result = _run(tiny_dataset, occupied, tiny_config, "--stop-at-step", "1")
    assert result.returncode != 0 and "is not empty" in result.stderr
    assert (occupied / "notes.txt").read_text() == "keep me"
    result = _run(tiny_dataset, tmp_path / "fresh", tiny_config, "--resume")
    assert result.returncode != 0 and "holds no run to resume" in result.stderr
    assert _run(tiny_dataset, tmp_path / "run", tiny_config, "--stop-at-step", "4").returncode == 0
    other = tmp_path / "other.json"
    other.write_text(json.dumps({**TINY_TRAINING, "learning_rate": 0.5}))
    result = _run(tiny_dataset, tmp_path / "run", other, "--resume")
    assert result.returncode != 0 and "holds another run" in result.stderr


def test_a_run_started_before_a_setting_existed_resumes(tmp_path):
    record = json.loads(
        json.dumps({"training": dataclasses.asdict(training.TrainingConfig()), "dataset": "d"})
    )
    older = json.loads(json.dumps(record))
    del older["training"]["init_from"]  # as written before warm restarts existed
    (tmp_path / training.RUN_FILE).write_text(json.dumps(older))
    training.guard_output_folder(
        tmp_path, record, resume=True
    )  # the new setting at its default: the same run
    changed = json.loads(json.dumps(record))
    changed["training"]["init_from"] = "elsewhere"
    with pytest.raises(ValueError, match="holds another run"):
        training.guard_output_folder(tmp_path, changed, resume=True)


def test_logged_minutes_are_those_at_or_before_the_step(tmp_path):
    log = tmp_path / LOG_FILE
    assert training.logged_minutes(log, 10) == 0.0  # no log yet
    records = [{"step": 0, "minutes": 0.0}, {"step": 50, "minutes": 1.5}, {"resumed_from": 50},
               {"step": 100, "minutes": 3.0}, {"step": 150, "minutes": 4.5}]  # fmt: skip
    log.write_text("".join(json.dumps(r) + "\n" for r in records))
    assert training.logged_minutes(log, 100) == 3.0
    assert training.logged_minutes(log, 120) == 3.0  # a checkpoint between two log records
    assert training.logged_minutes(log, 40) == 0.0


def test_corrupt_checkpoint_is_named(tiny_dataset, tiny_config, tmp_path):
    assert _run(tiny_dataset, tmp_path / "run", tiny_config, "--stop-at-step", "4").returncode == 0
    newest = training.checkpoints_in(tmp_path / "run")[-1]
    (newest / "model.safetensors").write_bytes(b"not a safetensors file")
    result = _run(tiny_dataset, tmp_path / "run", tiny_config, "--stop-at-step", "8", "--resume")
    assert result.returncode != 0 and f"checkpoint {newest} cannot be loaded" in result.stderr


def test_dataset_without_needed_columns_is_refused(tmp_path, tiny_config):
    datasets = pytest.importorskip("datasets")
    folder = tmp_path / "bad"
    datasets.Dataset.from_dict({"gaia_dr3_source_id": [1, 2], "teff": [5000.0, 4000.0]}).to_parquet(
        str(folder / "data" / "train-00000.parquet")
    )
    (folder / "meta").mkdir()
    stats = {"teff": {"center": 4500.0, "scale": 500.0, "count": 2, "unit": "K"}}  # load_stats validates
    (folder / "meta" / "stats.json").write_text(json.dumps(stats))
    result = _run(folder, tmp_path / "run", tiny_config, "--stop-at-step", "1")
    assert result.returncode != 0 and "lacks the columns training needs" in result.stderr


def test_train_fraction_trains_on_a_seeded_share_of_the_train_stars(tiny_dataset, tmp_path):
    epochs = {}
    for fraction in (1.0, 0.5):
        config = tmp_path / f"fraction_{fraction}.json"
        config.write_text(json.dumps({**TINY_TRAINING, "train_fraction": fraction}))
        result = _run(tiny_dataset, tmp_path / f"run_{fraction}", config, "--stop-at-step", "2")
        assert result.returncode == 0, result.stderr[-2000:]
        records = [json.loads(line) for line in (tmp_path / f"run_{fraction}" / LOG_FILE).open()]
        epochs[fraction] = next(r["epoch"] for r in records if r.get("step") == 2 and "epoch" in r)
    # half the stars: an epoch has half the steps, so the same step is twice as far into training
    assert epochs[0.5] / epochs[1.0] == pytest.approx(2.0, rel=0.1)
    with pytest.raises(ValueError, match="train_fraction"):
        training.TrainingConfig(train_fraction=0.0)


def test_nll_beta_reaches_the_model_config_and_the_run_record_keeps_its_fields():
    # Old runs' run_config.json is compared with dataclasses.asdict(config) on --resume: nll_beta stays a field.
    config = training.TrainingConfig(nll_beta=0.5)
    assert config.model_config(vocab_size=119).nll_beta == 0.5
    assert "nll_beta" in {f.name for f in dataclasses.fields(training.TrainingConfig)}
    overridden = training.TrainingConfig(nll_beta=0.5, model_overrides={"nll_beta": 0.25})
    assert overridden.model_config(vocab_size=119).nll_beta == 0.25


def test_train_py_is_a_leaf():
    # train.py is the accelerate entry point only; the package and the benchmarks never import it.
    importers = []
    for folder in ("modeling_stellar", "datasets_builder", "stellar_tasks", "benchmarks", "space", "tests"):
        for path in (REPO_ROOT / folder).rglob("*.py"):
            text = path.read_text(encoding="utf-8")
            if re.search(r"^\s*(import train\b|from train import)", text, re.MULTILINE):
                importers.append(str(path.relative_to(REPO_ROOT)))
    assert importers == []
    script = (REPO_ROOT / "train.py").read_text(encoding="utf-8")
    assert "from stellar_tasks.recipe import main" in script  # one run or a recipe, like the command
    assert len(script.splitlines()) < 60
