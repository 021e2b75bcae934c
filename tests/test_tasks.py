"""Generation, inpainting, loci, extinction and embeddings on a tiny model and synthetic stars: shapes, units, and
the pieces that have an exact answer."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from datasets_builder.constants import G_ZERO_POINT, XP_SAMPLING_NM
from datasets_builder.xp import XP_NAMES, g_band_flux, sampled_flux, sampled_flux_error
from stellar_tasks.baselines import XGBoostSettings
from stellar_tasks.embeddings import neighbour_summary
from stellar_tasks.extinction import (
    LAWS,
    ExtinctionCurve,
    colour_excess_curve,
    extinction_curve,
    extinction_summary,
    law_curve,
    per_star_colour_excess,
)
from stellar_tasks.generation import SPECTRUM_TASKS, inpainting_flux_chi2, predict_spectra, spectrum_summary
from stellar_tasks.loci import BRANCHES, LOCUS_REQUESTS, Loci, loci_summary, stellar_loci
from tests.conftest import create_test_model
from tests.tasks_factory import in_memory_splits

FAST = XGBoostSettings(n_estimators=20, learning_rate=0.3, max_depth=3, multi_strategy="multi_output_tree")


@pytest.fixture(scope="module")
def splits():
    return in_memory_splits(n_train=200, n_test=60, seed=3)


@pytest.fixture(scope="module")
def model(splits):
    return create_test_model(vocab_size=splits[0].vocab_size)


def test_g_band_flux_zero_point_and_scaling():
    assert g_band_flux(np.array([G_ZERO_POINT.value]))[0] == pytest.approx(1.0)
    assert g_band_flux(np.array([G_ZERO_POINT.value - 5.0]))[0] == pytest.approx(100.0)


def test_sampled_flux_units_and_shapes(splits):
    tokenizer, train, _ = splits
    coefficients, errors = train.physical(tokenizer, XP_NAMES)
    flux = sampled_flux(coefficients[:5], train.g_mag[:5])
    per_g_flux = sampled_flux(coefficients[:5])
    assert flux.shape == (5, XP_SAMPLING_NM.size) == (5, 343)
    np.testing.assert_allclose(flux, per_g_flux * g_band_flux(train.g_mag[:5])[:, None])
    # The synthetic stars were made from positive spectra of ~1e-16 W m-2 nm-1 mean flux.
    assert np.all(flux[:, (XP_SAMPLING_NM > 400) & (XP_SAMPLING_NM < 950)] > 0)
    assert np.mean(flux) == pytest.approx(1e-16, rel=0.05)
    assert np.all(sampled_flux_error(errors[:5]) > 0)


@pytest.mark.parametrize("task", SPECTRUM_TASKS, ids=lambda t: t.key)
def test_spectrum_tasks(splits, model, task):
    tokenizer, train, test = splits
    predictions = predict_spectra(model, tokenizer, train, test, task, FAST, max_stars=40)
    n = len(predictions.truth)
    assert n == 40
    assert predictions.model.shape == predictions.xgboost.shape == (n, 110)
    assert predictions.model_std.shape == (n, len(task.outputs))
    untouched = np.setdiff1d(np.arange(110), predictions.output_columns)
    np.testing.assert_array_equal(predictions.model[:, untouched], predictions.truth[:, untouched])
    assert not np.allclose(
        predictions.model[:, predictions.output_columns], predictions.truth[:, predictions.output_columns]
    )
    summary = spectrum_summary(predictions)
    assert (
        len(summary["model"]["coefficient_scatter"])
        == len(summary["xgboost"]["coefficient_scatter"])
        == len(task.outputs)
    )
    pixels = 343 if task.key.startswith("parameters") else summary["model"]["flux"]["n"] // n
    for method in ("model", "xgboost"):
        assert summary[method]["flux"]["n"] == n * pixels
        assert summary[method]["flux"]["chi2_reduced"] > 0
    # Inpainting compares only the pixels the requested band shapes: RP lies red of ~600 nm, BP blue of ~700 nm.
    low, high = summary["flux_range_nm"]
    assert {"bp_to_rp": low > 550, "rp_to_bp": high < 750}.get(task.key, low == 336 and high == 1020)
    assert 0 <= summary["fraction_outputs_better"] <= 1
    assert 0 <= summary["n_signal_outputs"] <= len(task.outputs)
    assert isinstance(summary["beats_xgboost"], bool)


@pytest.mark.parametrize("key", ["bp_to_rp", "rp_to_bp"])
def test_holdout_inpainting_score_is_the_reports(splits, model, key):
    """Training's hold-out score (no baseline) and the report's model flux chi2 agree on the same stars."""
    tokenizer, train, test = splits
    task = next(task for task in SPECTRUM_TASKS if task.key == key)
    report = spectrum_summary(predict_spectra(model, tokenizer, train, test, task, FAST))
    stars = test.subset(np.flatnonzero(np.isfinite(test.g_mag)))
    assert inpainting_flux_chi2(model, tokenizer, stars, task) == pytest.approx(
        report["model"]["flux"]["chi2_reduced"], rel=1e-6
    )


def test_spectrum_baseline_beats_nothing_without_training_data(splits, model):
    """The baseline sees only train stars: with the train outputs replaced by noise it cannot match the test spectra."""
    tokenizer, train, test = splits
    task = SPECTRUM_TASKS[1]
    clean = spectrum_summary(predict_spectra(model, tokenizer, train, test, task, FAST, max_stars=40))
    noisy_values = train.values.copy()
    ids = tokenizer.convert_names_to_ids(list(XP_NAMES))
    noisy_values[:, ids] = np.random.default_rng(0).permutation(noisy_values[:, ids])
    noisy = type(train)(train.name, noisy_values, train.errors, train.source_ids, train.g_mag)
    shuffled = spectrum_summary(predict_spectra(model, tokenizer, noisy, test, task, FAST, max_stars=40))
    assert shuffled["xgboost"]["flux"]["chi2_reduced"] > 2 * clean["xgboost"]["flux"]["chi2_reduced"]


def test_loci_shapes_and_running_median(splits, model):
    tokenizer, _, test = splits
    loci = stellar_loci(model, tokenizer, test, logg=np.array([1.5, 2.5, 4.4]), fe_h=(-0.2,))
    assert loci.model_mean.shape == loci.model_std.shape == (1, 3, len(LOCUS_REQUESTS))
    assert loci.data_teff.shape == (1, 3)
    assert np.all(np.isfinite(loci.model_mean)) and 2000 < np.median(loci.model_mean[..., 0]) < 9000
    summary = loci_summary(loci)
    assert set(summary["branches"]) == set(BRANCHES)


def test_loci_summary_against_a_known_offset():
    logg = np.round(np.arange(0.5, 5.01, 0.5), 2)
    data = np.linspace(6000, 3500, logg.size)[None, :]
    model_mean = np.zeros((1, logg.size, 4))
    model_mean[..., 0] = data + 100.0
    loci = Loci(logg, np.array([0.0]), model_mean, np.ones_like(model_mean), data, np.zeros((0, 3)))
    branches = loci_summary(loci)["branches"]
    assert branches["giant branch"]["median_abs_delta_teff"] == pytest.approx(100.0)
    assert branches["giant branch"]["bias"] == pytest.approx(-100.0)
    assert branches["giant branch"]["n_grid_points"] == int(np.sum((logg >= 1.0) & (logg <= 3.5)))


@pytest.mark.parametrize("law", sorted(LAWS))
def test_law_colour_excess_is_zero_at_550_one_at_440_and_falls_to_the_red(law):
    curve = law_curve(law)
    assert curve[XP_SAMPLING_NM == 550][0] == pytest.approx(0.0, abs=1e-12)
    assert curve[XP_SAMPLING_NM == 440][0] == pytest.approx(1.0)
    red = (XP_SAMPLING_NM >= 400) & (XP_SAMPLING_NM <= 950)
    assert np.all(np.diff(curve[red]) < 0)


def test_colour_excess_removes_grey_term_and_scale():
    import astropy.units as u
    from dust_extinction.parameter_averages import F99

    a_lambda = F99(Rv=3.1)(XP_SAMPLING_NM * u.nm)
    # What the G-flux-normalised model sees: k (A_lambda - A_G) per unit A_K.
    np.testing.assert_allclose(
        colour_excess_curve(0.92 * (a_lambda - 0.8) / 0.11), law_curve("F99"), atol=1e-10
    )


@settings(max_examples=25, deadline=None)
@given(
    scales=st.lists(st.floats(0.05, 20.0), min_size=3, max_size=12),
    greys=st.lists(st.floats(-2.0, 2.0), min_size=12, max_size=12),
    giant_fraction=st.floats(0.2, 0.8),
)
def test_one_law_at_any_scale_gives_the_law_for_every_kind_of_star(scales, greys, giant_fraction):
    import astropy.units as u
    from dust_extinction.parameter_averages import F99

    a_lambda = np.asarray(F99(Rv=3.1)(XP_SAMPLING_NM * u.nm))
    # Each star's slope is the law at its own scale k and grey term: what a model whose A_K scale differs between
    # kinds of stars answers. The per-star median is the law; a star whose spectrum gets bluer has no curve.
    slope = np.array([k * (a_lambda - grey) for k, grey in zip(scales, greys, strict=False)] + [-a_lambda])
    logg = np.where(np.arange(len(slope)) < giant_fraction * len(slope), 2.5, 4.5)
    curve = ExtinctionCurve(np.array([0.0, 0.2]), np.nanmedian(slope, 0), per_star_colour_excess(slope), logg)
    assert curve.n_stars == len(scales)
    summary = extinction_summary(curve)
    assert summary["n_not_reddening"] == 1
    np.testing.assert_allclose(curve.colour_excess(), law_curve("F99"), atol=1e-9)
    assert summary["laws"]["F99"]["mean_abs_deviation"] == pytest.approx(0.0, abs=1e-9)
    for kind, population in summary["laws"]["F99"]["populations"].items():
        assert population["n_stars"] == int(np.sum((logg < 3.5) == (kind == "giants")) - (kind == "dwarfs"))


def test_extinction_curve_shapes(splits, model):
    tokenizer, _, test = splits
    curve = extinction_curve(model, tokenizer, test, n_stars=10, ak_grid=(0.0, 0.2, 0.4))
    assert curve.per_unit_ak.shape == curve.colour_excess().shape == (343,)
    assert curve.per_star.shape == (10, 343) and curve.logg.shape == (10,)
    assert curve.n_stars + extinction_summary(curve)["n_not_reddening"] == 10
    summary = extinction_summary(curve)
    assert set(summary["laws"]) == set(LAWS)
    with pytest.raises(ValueError, match="start at 0"):
        extinction_curve(model, tokenizer, test, n_stars=2, ak_grid=(0.1, 0.2))


def test_neighbour_summary(splits, model):
    tokenizer, train, test = splits
    summary = neighbour_summary(model, tokenizer, train, test, n_query=30, k=5)
    assert summary["n_query"] == 30 and summary["k"] == 5 and summary["n_reference"] == len(train)
    for label in ("teff", "logg", "fe_h"):
        assert summary[label]["neighbours"]["n"] == summary[label]["random"]["n"] == 150
        assert summary[label]["scatter_ratio"] > 0
