"""Stellar-parameter evaluation: input settings, the XGBoost baseline (train split only), metric rows and goals."""

from __future__ import annotations

import numpy as np
import pytest

from stellar_tasks.baselines import BUDGETS, XGBoostSettings, fit_predict_xgboost
from stellar_tasks.evaluation import (
    INPUT_SETTINGS,
    LABELS,
    POPULATIONS,
    assess_goals,
    parameter_rows,
    population_rows,
    predict_labels,
)
from stellar_tasks.inputs import HEADLINE_INPUTS
from tests.conftest import create_test_model
from tests.tasks_factory import in_memory_splits

FAST = XGBoostSettings(n_estimators=30, learning_rate=0.3, max_depth=3)


@pytest.fixture(scope="module")
def splits():
    return in_memory_splits(n_train=240, n_test=80)


@pytest.fixture(scope="module")
def model(splits):
    return create_test_model(vocab_size=splits[0].vocab_size)


def test_input_settings_are_the_papers():
    settings = {s.key: s.inputs for s in INPUT_SETTINGS}
    assert list(settings) == ["a", "b", "c", "d", "e"]
    assert list(settings["a"]) == list(HEADLINE_INPUTS)
    assert len(settings["b"]) == 13 and {"bp4", "rp4", "bprp", "jh", "jk"} <= set(settings["b"])
    assert len(settings["c"]) == 60 and "bp24" not in settings["c"] and {"bp25", "rp54"} <= set(settings["c"])
    assert len(settings["d"]) == 113
    assert set(settings["e"]) == set(LABELS)


def test_xgboost_learns_a_smooth_function_and_skips_unknown_targets():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, 3))
    y = np.stack([x[:, 0] + 0.5 * x[:, 1] ** 2, -x[:, 2]], axis=1)
    y[:50, 1] = np.nan
    prediction, record = fit_predict_xgboost(
        x, y, x[:100], XGBoostSettings(n_estimators=200, learning_rate=0.1)
    )
    assert prediction.shape == (100, 2)
    assert record["n_train"] == [400, 350]
    assert np.std(prediction[:, 0] - y[:100, 0]) < 0.2 * np.std(y[:, 0])
    joint, record = fit_predict_xgboost(x, y, x[:100], FAST, joint=True)
    assert joint.shape == (100, 2) and record["n_train"] == 350


def test_budgets_quick_and_full():
    assert BUDGETS["full"].labels == XGBoostSettings(
        n_estimators=4000, learning_rate=0.05, subsample=0.8, colsample_bytree=0.8
    )
    assert BUDGETS["quick"].labels.n_estimators < BUDGETS["full"].labels.n_estimators


def test_baseline_is_trained_on_the_train_split_only(splits, model):
    """Changing every test label changes neither the baseline's nor the model's predictions."""
    tokenizer, train, test = splits
    setting = INPUT_SETTINGS[0]
    clean = predict_labels(model, tokenizer, train, test, setting, FAST)
    poisoned_values = test.values.copy()
    poisoned_values[:, tokenizer.convert_names_to_ids(list(LABELS))] += 100.0
    poisoned = type(test)(test.name, poisoned_values, test.errors, test.source_ids, test.g_mag)
    again = predict_labels(model, tokenizer, train, poisoned, setting, FAST)
    np.testing.assert_array_equal(clean.xgboost, again.xgboost)
    np.testing.assert_array_equal(clean.model_mean, again.model_mean)
    assert not np.allclose(clean.truth, again.truth)
    train_known = np.isfinite(train.values[:, tokenizer.convert_names_to_ids(list(LABELS))]).sum(axis=0)
    assert [clean.baseline[label]["n_train"][j] for j, label in enumerate(LABELS)] == train_known.tolist()


def test_predictions_are_physical_and_rows_complete(splits, model):
    tokenizer, train, test = splits
    rows, predictions = [], {}
    for setting in INPUT_SETTINGS:
        predictions[setting.key] = predict_labels(model, tokenizer, train, test, setting, FAST)
        rows += parameter_rows(predictions[setting.key], tokenizer)
    assert len(rows) == len(INPUT_SETTINGS) * len(LABELS) * 2
    headline = predictions["a"]
    assert headline.truth.shape == headline.model_mean.shape == headline.xgboost.shape == (len(test), 3)
    assert 3000 < np.nanmedian(headline.truth[:, 0]) < 7000  # Teff in K
    assert np.all(headline.model_std[np.isfinite(headline.model_std)] > 0)
    assert {r["unit"] for r in rows if r["label"] == "teff"} == {"K"}
    model_rows = [r for r in rows if r["method"] == "model"]
    assert all({"z_std", "coverage_68", "coverage_95"} <= set(r) for r in model_rows)
    assert all("z_std" not in r for r in rows if r["method"] == "xgboost")
    # The baseline fitted on XP coefficients beats a constant guess on this smooth synthetic data.
    teff_xgboost = next(
        r for r in rows if r["setting"] == "a" and r["label"] == "teff" and r["method"] == "xgboost"
    )
    assert teff_xgboost["scatter"] < 0.5 * np.nanstd(headline.truth[:, 0])
    by_population = population_rows(headline, tokenizer)
    assert len(by_population) == len(POPULATIONS) * len(LABELS) * 2
    giants = next(r for r in by_population if r["population"].startswith("giants") and r["label"] == "logg")
    assert giants["n"] == int(np.sum(headline.truth[:, 1] < 3.5))


def _row(label, method, scatter, z_std=None, coverage=None):
    row = {"setting": "a", "label": label, "method": method, "scatter": scatter}
    return row | ({"z_std": z_std, "coverage_68": coverage} if method == "model" else {})


def test_goals_met_and_not_met_with_margins():
    rows = [
        _row("teff", "model", 50.0, 1.05, 0.70),
        _row("teff", "xgboost", 70.0),
        _row("logg", "model", 0.19, 1.3, 0.60),
        _row("logg", "xgboost", 0.2),
        _row("fe_h", "model", 0.1, 0.95, 0.68),
        _row("fe_h", "xgboost", 0.1),
    ]
    verdicts = {(v["label"], v["goal"].split()[0]): v for v in assess_goals(rows)}
    assert verdicts[("teff", "scatter")]["met"] and verdicts[("teff", "scatter")]["margin"] == pytest.approx(
        0.85 - 50 / 70
    )
    assert not verdicts[("logg", "scatter")]["met"]
    assert not verdicts[("logg", "|z")]["met"] and verdicts[("logg", "|z")]["margin"] == pytest.approx(-0.2)
    assert verdicts[("fe_h", "|z")]["met"]
    assert not verdicts[("logg", "68")]["met"] and verdicts[("teff", "68")]["met"]
