"""`stellar-foundation finetune`: new observations, old answers kept until training, a folder that loads elsewhere,
bad input refused with nothing written, a stopped run resumed where it stopped."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from astropy.table import Table
from conftest import create_test_model, create_test_tokenizer
from datasets import load_dataset
from safetensors.torch import load_file

from datasets_builder.layout import load_stats
from modeling_stellar import StarTokenizer, StellarForObservationPrediction
from stellar_tasks import finetune as finetune_module
from stellar_tasks.cli import main as cli_main
from stellar_tasks.finetune import (
    FACTS_FILE,
    LOG_FILE,
    FinetuneConfig,
    extend_vocabulary,
    finetune,
    new_observations,
    read_star_table,
)
from stellar_tasks.hub import prepare_model_folder
from stellar_tasks.inference import predict_arrays

QUICK = dict(max_steps=20, validation_every=5, checkpoint_every=5, batch_size=32, requests_per_star=4)


@pytest.fixture(scope="module")
def base_folder(tmp_path_factory, tiny_dataset):
    """A tiny model folder normalised on the real tiny dataset."""
    tokenizer = create_test_tokenizer()
    tokenizer.set_normalization(load_stats(tiny_dataset))
    return prepare_model_folder(create_test_model(), tokenizer, tmp_path_factory.mktemp("base") / "tiny")


@pytest.fixture(scope="module")
def stars(tiny_dataset) -> Table:
    """300 real train stars (identifiers and observations) and a new observation, in dex, that tracks log g."""
    table = read_star_table(tiny_dataset)[:300]
    table["lum_proxy"] = 2.0 * np.asarray(table["logg"]) + np.random.default_rng(0).normal(
        0, 0.05, len(table)
    )
    table["lum_proxy"].unit = "dex"
    return table


def test_a_dataset_folder_is_read_with_its_observations_and_units(tiny_dataset):
    table = read_star_table(tiny_dataset)
    assert len(table) == len(load_dataset(str(tiny_dataset), split="train"))
    assert str(table["teff"].unit) == "K" and "teff_err" in table.colnames
    assert (
        "snr" not in table.colnames and "phot_g_mean_mag" not in table.colnames
    )  # bookkeeping, not observations


def test_a_new_column_gets_its_unit_and_the_given_stars_statistics(base_folder, stars):
    tokenizer = StarTokenizer.from_pretrained(str(base_folder))
    (entry,) = new_observations(tokenizer, stars, {})
    proxy = np.asarray(stars["lum_proxy"])
    assert entry["name"] == "lum_proxy" and entry["unit"] == "dex" and entry["requestable"]
    assert entry["center"] == pytest.approx(np.median(proxy))
    assert entry["low"] < entry["center"] < entry["high"] and entry["scale"] > 0


def test_old_answers_are_bit_identical_after_the_vocabulary_grows(base_folder, stars):
    model = StellarForObservationPrediction.from_pretrained(str(base_folder)).eval()
    tokenizer = StarTokenizer.from_pretrained(str(base_folder))
    values, errors = tokenizer.to_arrays(stars[:50], ignore_unknown=True)
    before = predict_arrays(model, tokenizer, values, errors, ["teff", "logg"])
    grown = extend_vocabulary(model, tokenizer, new_observations(tokenizer, stars, {}))
    assert grown.vocab_size == tokenizer.vocab_size + 1 == model.config.vocab_size
    grown_values, grown_errors = grown.to_arrays(stars[:50].copy(), ignore_unknown=True)
    grown_values[:, -1] = np.nan  # the new name not given: the old inputs only
    after = predict_arrays(model, grown, grown_values, grown_errors, ["teff", "logg"])
    for old, new in zip(before[:2], after[:2], strict=True):
        np.testing.assert_array_equal(old, new)


def test_a_near_miss_of_a_known_name_is_refused_and_nothing_is_written(base_folder, stars, tmp_path):
    table = stars.copy()
    table["Teff_new"] = table["teff"]  # not a near miss: a genuinely new name
    table["Logg"] = table["logg"]  # a near miss of logg
    table["Logg"].unit = "dex"
    with pytest.raises(ValueError, match="'Logg' looks like the observation 'logg'"):
        finetune(base_folder, table, tmp_path / "out", FinetuneConfig(**QUICK))
    assert not (tmp_path / "out").exists()


def test_a_new_column_without_a_unit_is_refused_naming_it(base_folder, stars, tmp_path):
    table = stars.copy()
    table["lum_proxy"].unit = None
    with pytest.raises(ValueError, match="'lum_proxy' has no unit: give --unit lum_proxy=UNIT"):
        finetune(base_folder, table, tmp_path / "out", FinetuneConfig(**QUICK))
    assert not (tmp_path / "out").exists()
    folder = finetune(
        base_folder, table, tmp_path / "out", FinetuneConfig(**QUICK), units={"lum_proxy": "dex"}
    )
    assert StarTokenizer.from_pretrained(str(folder)).units["lum_proxy"] == "dex"


@pytest.fixture(scope="module")
def adapted(base_folder, stars, tmp_path_factory):
    return finetune(
        base_folder, stars, tmp_path_factory.mktemp("adapted") / "tiny-adapted", FinetuneConfig(**QUICK)
    )


def test_the_adapted_folder_loads_elsewhere_and_reads_the_new_observation(adapted, tmp_path):
    from transformers import pipeline

    moved = shutil.copytree(adapted, tmp_path / "elsewhere")
    predictor = pipeline(model=str(moved), trust_remote_code=True)
    star = {name: float(stars_value) for name, stars_value in {"bprp": 1.2, "jh": 0.5, "jk": 0.6}.items()}
    with_proxy = predictor({**star, "lum_proxy": 4.0})
    without = predictor(star)
    assert with_proxy["logg"]["mean"] != without["logg"]["mean"]  # the new observation is read
    assert np.isfinite(with_proxy["logg"]["std"])
    facts = json.loads((moved / FACTS_FILE).read_text())
    assert facts["stars"] == 300 and facts["train_stars"] + facts["validation_stars"] == 300
    assert [entry["name"] for entry in facts["new_observations"]] == ["lum_proxy"]
    card = (moved / "README.md").read_text()
    assert "tiny-adapted" in card and "`lum_proxy` | dex" in card and "300 stars" in card
    assert not list(moved.glob("checkpoints")) and not list(moved.glob(".*.tmp"))


def test_the_trained_weights_are_the_methods(base_folder, stars, tmp_path):
    base = StellarForObservationPrediction.from_pretrained(str(base_folder))
    encoder = base.stellar.encoder[0].feed_forward[0].weight
    for method, moves in (("head", False), ("all", True), ("lora", True)):
        folder = finetune(base_folder, stars, tmp_path / method, FinetuneConfig(method=method, **QUICK))
        tuned = StellarForObservationPrediction.from_pretrained(str(folder)).stellar.encoder[0]
        assert (not torch.equal(tuned.feed_forward[0].weight, encoder)) == moves, method


def test_a_stopped_run_resumes_from_its_checkpoint(base_folder, stars, tmp_path, monkeypatch):
    config = FinetuneConfig(**QUICK)
    straight = finetune(base_folder, stars, tmp_path / "straight", config)
    saves = []
    original = finetune_module._save_checkpoint

    def stop_after_the_second_save(output, state, *rest):
        original(output, state, *rest)
        saves.append(state["step"])
        if len(saves) == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(finetune_module, "_save_checkpoint", stop_after_the_second_save)
    with pytest.raises(KeyboardInterrupt):
        finetune(base_folder, stars, tmp_path / "stopped", config)
    assert not (tmp_path / "stopped" / FACTS_FILE).exists()  # no half-finished model folder
    with pytest.raises(ValueError, match="pass --resume"):
        finetune(base_folder, stars, tmp_path / "stopped", config)
    monkeypatch.setattr(finetune_module, "_save_checkpoint", original)
    resumed = finetune(base_folder, stars, tmp_path / "stopped", config, resume=True)
    records = [json.loads(line) for line in (resumed / LOG_FILE).read_text().splitlines()]
    after = records[[i for i, r in enumerate(records) if "resumed_from" in r][0] :]
    assert after[0]["resumed_from"] == 10
    assert [r["step"] for r in after[1:]] == [15, 20]  # steps 1-10 were not trained again
    # CPU kernels reduce in thread order (the embedding's scatter-add): equal to float32 rounding, not bit for bit
    weights, reference = load_file(resumed / "model.safetensors"), load_file(straight / "model.safetensors")
    for name, tensor in reference.items():
        torch.testing.assert_close(weights[name], tensor, rtol=1e-4, atol=1e-5, msg=name)


def test_the_command_refuses_bad_units_naming_them(base_folder, stars, tmp_path, capsys):
    table_file = tmp_path / "stars.ecsv"
    stars.write(table_file)
    status = cli_main(
        [
            "finetune",
            str(base_folder),
            "--data",
            str(table_file),
            "--output",
            str(tmp_path / "o"),
            "--unit",
            "x",
        ]
    )
    assert status == 1 and "--unit 'x': write NAME=UNIT" in capsys.readouterr().err
    status = cli_main(
        ["finetune", str(base_folder), "--data", str(table_file), "--output", str(tmp_path / "o"),
         "--unit", "lum_proxy=bananas"]
    )  # fmt: skip
    assert status == 1 and "'bananas' is not a unit" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()
