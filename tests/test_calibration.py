"""stellar_tasks.calibration: sigma factors fitted on a hold-out make z's robust std 1 there, travel with the
saved tokenizer, and are applied by decode."""

import json

import numpy as np
import pytest
import torch
from astropy.stats import mad_std

from modeling_stellar import StarTokenizer
from stellar_tasks.calibration import calibrate_folder, fit_sigma_scales
from stellar_tasks.data import validation_mask
from stellar_tasks.inference import mask_to_inputs, predict_arrays
from stellar_tasks.inputs import HEADLINE_INPUTS
from tests.conftest import create_test_model
from tests.tasks_factory import dataset_tokenizer, in_memory_splits, save_model_folder, write_dataset

HEADLINE = HEADLINE_INPUTS
NAMES = ["teff", "logg", "fe_h"]


def _z_robust_std(model, tokenizer, split) -> np.ndarray:
    shown = mask_to_inputs(tokenizer, split.values, HEADLINE)
    mean, sigma, _ = predict_arrays(model, tokenizer, shown, split.errors, NAMES)
    ids = np.array(tokenizer.convert_names_to_ids(NAMES))
    truth, _ = tokenizer.decode(np.broadcast_to(ids, mean.shape), split.values[:, ids])
    error = np.nan_to_num(split.errors[:, ids]) * tokenizer.scales_of(NAMES)
    z = (truth - mean) / np.sqrt(sigma**2 + error**2)
    return np.array([mad_std(z[np.isfinite(z[:, j]), j]) for j in range(len(NAMES))])


def test_fitted_factors_make_the_robust_std_of_z_one_and_compose():
    tokenizer, train, _ = in_memory_splits(n_train=400)
    model = create_test_model(seed=3, vocab_size=tokenizer.vocab_size)
    tokenizer.set_sigma_scales(dict.fromkeys(NAMES, 3.0))  # sigmas three times too wide
    assert np.abs(_z_robust_std(model, tokenizer, train) - 1).min() > 0.5  # the test can fail
    scales = fit_sigma_scales(model, tokenizer, train.values, train.errors, HEADLINE, NAMES)
    tokenizer.set_sigma_scales(scales)
    np.testing.assert_allclose(_z_robust_std(model, tokenizer, train), 1.0, atol=1e-3)
    # the factor a tokenizer already holds is refined, not stacked: fitting again changes nothing
    again = fit_sigma_scales(model, tokenizer, train.values, train.errors, HEADLINE, NAMES)
    np.testing.assert_allclose([again[n] for n in NAMES], [scales[n] for n in NAMES], rtol=1e-3)


def test_decode_multiplies_sigma_by_the_factor_and_it_survives_saving(tmp_path):
    tokenizer, _, _ = in_memory_splits(n_train=50, n_test=10)
    ids = torch.tensor([tokenizer.convert_names_to_ids(["teff", "jh"])])
    log_variance = torch.tensor([[0.3, -1.0]])
    _, plain = tokenizer.decode(ids, torch.zeros(1, 2), log_variance)
    tokenizer.set_sigma_scales({"teff": 0.8})
    tokenizer.save_pretrained(tmp_path)
    reloaded = StarTokenizer.from_pretrained(tmp_path)
    _, scaled = reloaded.decode(ids, torch.zeros(1, 2), log_variance)
    np.testing.assert_allclose(scaled, plain * [[0.8, 1.0]])
    with pytest.raises(ValueError, match="unknown observation names \\['tef'\\]"):
        tokenizer.set_sigma_scales({"tef": 1.1})
    with pytest.raises(ValueError, match="'teff' needs a positive, finite sigma_scale"):
        tokenizer.set_sigma_scales({"teff": 0.0})


def test_calibrate_folder_uses_the_runs_own_holdout(tmp_path):
    dataset, _ = write_dataset(tmp_path / "data", n_train=240, n_test=20)
    folder = save_model_folder(tmp_path / "model", dataset_tokenizer(dataset))
    facts = json.loads((folder / "training_facts.json").read_text())
    facts["training"].update(seed=7, validation_fraction=0.25)
    (folder / "training_facts.json").write_text(json.dumps(facts))
    scales = calibrate_folder(folder, dataset)
    assert set(scales) == {"teff", "logg", "fe_h", "alpha_m"}
    saved = {
        e["name"]: e.get("sigma_scale")
        for e in json.loads((folder / "preprocessor_config.json").read_text())["vocabulary"]
    }
    assert {name: saved[name] for name in scales} == scales
    # the same factors follow from fitting on the hold-out drawn with the run's seed and fraction
    from stellar_tasks.data import load_split
    from stellar_tasks.model_folder import load_model

    model, tokenizer = load_model(folder)
    tokenizer.set_sigma_scales(dict.fromkeys(scales, 1.0))
    train = load_split(dataset, "train", tokenizer)
    holdout = validation_mask(len(train), 7, 0.25)
    assert 0 < holdout.sum() < len(train)
    expected = fit_sigma_scales(model, tokenizer, train.values[holdout], train.errors[holdout], HEADLINE)
    assert scales == pytest.approx(expected)
