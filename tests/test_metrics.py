"""The `stellar_regression` evaluate module: loads offline from the package and matches hand-computed numbers."""

from __future__ import annotations

import math

import evaluate
import numpy as np
import pytest

from stellar_tasks.metrics import METRIC_PATH, load_metric, score

# Hand-computed case. truth - prediction = [-2, -1, 0, 1, 4]: median 0; |r - median| = [2, 1, 0, 1, 4], median 1,
# so mad_std = 1.482602218505602 (the normal-consistency factor 1 / Phi^-1(3/4)); mean |r| = 8 / 5, median |r| = 1.
TRUTH = np.array([1.0, 2.0, 3.0, 4.0, 5.0])
PREDICTION = np.array([3.0, 3.0, 3.0, 3.0, 1.0])
# sigma and err in quadrature: sqrt(1.2^2 + 1.6^2) = 2 for every star, so z = r / 2 = [-1, -0.5, 0, 0.5, 2].
SIGMA = np.full(5, 1.2)
ERROR = np.full(5, 1.6)


def test_module_loads_offline_from_its_file():
    metric = evaluate.load(METRIC_PATH, keep_in_memory=True)
    assert type(metric).__name__ == "StellarRegression"
    result = metric.compute(predictions=PREDICTION, references=TRUTH)
    assert result["n"] == 5
    assert result["scatter"] == pytest.approx(1.482602218505602)


def test_hand_computed_case():
    result = score(TRUTH, PREDICTION, SIGMA, ERROR)
    assert result["bias"] == 0.0
    assert result["scatter"] == pytest.approx(1.482602218505602)
    assert result["mean_abs"] == pytest.approx(1.6)
    assert result["median_abs"] == pytest.approx(1.0)
    # z = [-1, -0.5, 0, 0.5, 2]: median 0, |z - 0| median 0.5 -> z_std = 0.5 * 1.4826
    assert result["z_median"] == 0.0
    assert result["z_std"] == pytest.approx(0.5 * 1.482602218505602)
    assert result["chi2_reduced"] == pytest.approx((1 + 0.25 + 0 + 0.25 + 4) / 5)
    # 68 % interval |z| <= 0.9945: -0.5, 0, 0.5 (3 of 5); 95 % interval |z| <= 1.96: all but 2 (4 of 5)
    assert result["coverage_68"] == pytest.approx(0.6)
    assert result["coverage_95"] == pytest.approx(0.8)
    assert result["median_std"] == pytest.approx(1.2)


def test_calibrated_gaussian_predictions_give_unit_z_and_nominal_coverage():
    rng = np.random.default_rng(1)
    sigma = rng.uniform(0.5, 2.0, 20_000)
    truth = rng.normal(0, sigma)
    result = score(truth, np.zeros_like(truth), sigma)
    assert abs(result["z_std"] - 1) < 0.03
    assert abs(result["coverage_68"] - 0.68) < 0.01
    assert abs(result["coverage_95"] - 0.95) < 0.01
    assert abs(result["chi2_reduced"] - 1) < 0.05


def test_non_finite_pairs_are_left_out_and_counted():
    truth = np.array([1.0, np.nan, 3.0, 4.0])
    prediction = np.array([1.0, 2.0, np.inf, 5.0])
    result = score(truth, prediction)
    assert result["n"] == 2
    assert result["bias"] == pytest.approx(-0.5)
    empty = score(np.array([np.nan]), np.array([1.0]), np.array([1.0]))
    assert empty["n"] == 0 and math.isnan(empty["scatter"]) and math.isnan(empty["z_std"])


def test_without_uncertainties_no_calibration_numbers():
    assert set(score(TRUTH, PREDICTION)) == {"n", "scatter", "bias", "mean_abs", "median_abs"}


def test_metric_is_loaded_once():
    assert load_metric() is load_metric()


def test_shape_mismatch_raises():
    with pytest.raises(ValueError, match="shape"):
        score(TRUTH, PREDICTION, SIGMA[:3])
