"""Generation and inpainting of Gaia XP spectra, the model beside XGBoost, on the test split.

Generation asks the model for all 110 XP coefficients from stellar parameters (with and without 2MASS colours);
inpainting asks for one part of the spectrum from another (BP -> RP, RP -> BP, low orders -> high orders). The
baseline is one multi-output XGBoost per task trained on the train split with the same inputs. Both are compared
with the real test spectra coefficient by coefficient and in flux (gaiaxpy sampled spectra, `datasets_builder.xp.sampled_flux`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from datasets_builder.constants import XP_SAMPLING_NM
from datasets_builder.xp import XP_NAMES, sampled_flux, sampled_flux_error, xp_names
from modeling_stellar import StarTokenizer, StellarForObservationPrediction

from .baselines import XGBoostSettings, fit_predict_xgboost
from .data import Split
from .inference import mask_to_inputs, predict_arrays
from .inputs import LABELS
from .metrics import score

__all__ = [
    "SPECTRUM_TASKS",
    "SpectrumPredictions",
    "SpectrumTask",
    "inpainting_flux_chi2",
    "predict_spectra",
    "spectrum_summary",
]

BP_NAMES = tuple(name for name in XP_NAMES if name.startswith("bp"))
RP_NAMES = tuple(name for name in XP_NAMES if name.startswith("rp"))

FLUX_RANGE_NM = (400.0, 950.0)
"""Wavelengths [nm] of the fractional flux scatter: where every XP spectrum has positive, well-measured flux."""

SIGNAL_TO_NOISE = 2.0
"""An output is signal-dominated when XGBoost's residual scatter exceeds this many times its median measurement
error; the comparison of coefficient scatter is summarised over those outputs."""

AFFECTED_FRACTION = 0.01
"""A pixel is compared in flux when the task's outputs carry at least this fraction of its flux (median over stars):
inpainting BP leaves the RP-only pixels exact for both methods, which would only dilute the comparison."""


@dataclass(frozen=True)
class SpectrumTask:
    """Which observations are given and which XP coefficients are asked for."""

    key: str
    description: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]

    @property
    def output_columns(self) -> np.ndarray:
        """Columns of the outputs in (n, 110) coefficient arrays (`XP_NAMES` order)."""
        return np.array([XP_NAMES.index(name) for name in self.outputs])


SPECTRUM_TASKS: tuple[SpectrumTask, ...] = (
    SpectrumTask("parameters", "Teff, log g, [Fe/H] -> all 110 XP coefficients", LABELS, XP_NAMES),
    SpectrumTask(
        "parameters_colours",
        "Teff, log g, [Fe/H], J-H, J-K -> all 110 XP coefficients",
        (*LABELS, "jh", "jk"),
        XP_NAMES,
    ),
    SpectrumTask("bp_to_rp", "inpainting: BP0-54 -> RP0-54", BP_NAMES, RP_NAMES),
    SpectrumTask("rp_to_bp", "inpainting: RP0-54 -> BP0-54", RP_NAMES, BP_NAMES),
    SpectrumTask(
        "low_to_high", "inpainting: BP0-9 + RP0-9 -> BP10-54 + RP10-54", xp_names(0, 10), xp_names(10, 55)
    ),
)
"""Generation (parameters -> spectrum) and inpainting tasks."""


@dataclass(frozen=True)
class SpectrumPredictions:
    """Real and predicted XP spectra of the task's test stars.

    Attributes
    ----------
    task : SpectrumTask
    truth, truth_error : numpy.ndarray
        (n, 110) the stars' G-flux-normalised coefficients (`XP_NAMES` order) and their errors.
    model, xgboost : numpy.ndarray
        (n, 110) the real coefficients with the task's outputs replaced by each method's prediction.
    model_std : numpy.ndarray
        (n, len(outputs)) the model's standard deviation of each output.
    g_mag : numpy.ndarray
        (n,) G magnitudes [mag], for spectra in W m-2 nm-1.
    labels : numpy.ndarray
        (n, 3) the stars' Teff, log g, [Fe/H] (for choosing examples to plot).
    baseline : dict
        The baseline's training record.
    """

    task: SpectrumTask
    truth: np.ndarray
    truth_error: np.ndarray
    model: np.ndarray
    model_std: np.ndarray
    xgboost: np.ndarray
    g_mag: np.ndarray
    labels: np.ndarray
    baseline: dict

    @property
    def output_columns(self) -> np.ndarray:
        """Columns of the task's outputs in the (n, 110) arrays."""
        return self.task.output_columns


def predict_spectra(
    model: StellarForObservationPrediction,
    tokenizer: StarTokenizer,
    train: Split,
    test: Split,
    task: SpectrumTask,
    xgboost_settings: XGBoostSettings,
    max_stars: int | None = None,
    seed: int = 0,
) -> SpectrumPredictions:
    """Run one task on the test stars that observe all its inputs and all 110 coefficients (at most ``max_stars``,
    a seeded draw); the baseline is fitted on the train stars that observe the inputs and outputs."""
    eligible = np.flatnonzero(test.has_all(tokenizer, (*task.inputs, *XP_NAMES)) & np.isfinite(test.g_mag))
    if max_stars is not None and len(eligible) > max_stars:
        eligible = np.sort(np.random.default_rng(seed).choice(eligible, max_stars, replace=False))
    stars = test.subset(eligible)
    truth, truth_error, model_full, std = _model_answer(model, tokenizer, stars, task)
    input_ids = tokenizer.convert_names_to_ids(task.inputs)
    output_ids = np.array(tokenizer.convert_names_to_ids(task.outputs))
    rows = train.has_all(tokenizer, (*task.inputs, *task.outputs))
    standardised, record = fit_predict_xgboost(
        train.values[rows][:, input_ids],
        train.values[rows][:, output_ids],
        stars.values[:, input_ids],
        xgboost_settings,
        joint=True,
    )
    baseline, _ = tokenizer.decode(np.broadcast_to(output_ids, standardised.shape), standardised)
    xgboost_full = truth.copy()
    xgboost_full[:, task.output_columns] = baseline
    labels, _ = stars.physical(tokenizer, LABELS)
    return SpectrumPredictions(
        task, truth, truth_error, model_full, std, xgboost_full, stars.g_mag, labels, record
    )


def _model_answer(
    model: StellarForObservationPrediction, tokenizer: StarTokenizer, stars: Split, task: SpectrumTask
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``stars`` (each observing all 110 coefficients) show ``task.inputs`` and the model answers ``task.outputs``.
    Returns the (n, 110) real coefficients and their errors, the (n, 110) spectra with the outputs replaced by the
    model's means, and the (n, len(outputs)) sigmas, all physical."""
    truth, truth_error = stars.physical(tokenizer, XP_NAMES)
    shown = mask_to_inputs(tokenizer, stars.values, task.inputs)
    mean, std, _ = predict_arrays(model, tokenizer, shown, stars.errors, task.outputs)
    answered = truth.copy()
    answered[:, task.output_columns] = mean
    return truth, truth_error, answered, std


def _affected_pixels(truth: np.ndarray, columns: np.ndarray) -> np.ndarray:
    """(343,) bool: the sampled-flux pixels that the coefficients at ``columns`` of the (n, 110) real spectra
    ``truth`` carry at least `AFFECTED_FRACTION` of (median over stars)."""
    outputs_only = np.zeros_like(truth)
    outputs_only[:, columns] = truth[:, columns]
    with np.errstate(invalid="ignore", divide="ignore"):
        share = np.nanmedian(np.abs(sampled_flux(outputs_only) / sampled_flux(truth)), axis=0)
    return share >= AFFECTED_FRACTION


def inpainting_flux_chi2(
    model: StellarForObservationPrediction, tokenizer: StarTokenizer, stars: Split, task: SpectrumTask
) -> float:
    """The flux reduced chi-square of ``task``'s model answer (the report's ``flux.chi2_reduced``), without the
    baseline: the ``stars`` that observe all 110 coefficients show ``task.inputs``, the outputs are replaced by the
    model's and the affected pixels compared with the real flux, against its errors."""
    stars = stars.subset(stars.has_all(tokenizer, XP_NAMES))
    truth, truth_error, predicted, _ = _model_answer(model, tokenizer, stars, task)
    affected = _affected_pixels(truth, task.output_columns)
    flux, flux_truth = sampled_flux(predicted)[:, affected], sampled_flux(truth)[:, affected]
    flux_error = sampled_flux_error(truth_error)[:, affected]
    return score(flux_truth.ravel(), flux.ravel(), np.zeros(flux.size), flux_error.ravel())["chi2_reduced"]


def spectrum_summary(predictions: SpectrumPredictions) -> dict:
    """Per-coefficient and flux-space comparison of the model and XGBoost with the real spectra.

    Returns a JSON-ready dict with, per method (``model``, ``xgboost``): ``coefficient_scatter`` (per output,
    mad_std of real - predicted, dimensionless), ``flux`` (the metric over every pixel of every star: ``chi2_reduced``
    against the real spectra's flux errors, ``z_std``), ``flux_fraction_scatter`` (mad_std of predicted / real - 1
    over `FLUX_RANGE_NM`); for the model also ``coefficient_z_std``; and the comparison ``median_scatter_ratio``
    (model / XGBoost over outputs), ``fraction_outputs_better``, ``median_scatter_ratio_signal`` (over the
    ``n_signal_outputs`` signal-dominated outputs, `SIGNAL_TO_NOISE`) and ``beats_xgboost`` (lower flux chi2 and a
    signal-dominated median ratio below 1). Flux numbers use the pixels the outputs affect
    (`AFFECTED_FRACTION`; their range is ``flux_range_nm``).
    """
    columns = predictions.output_columns
    flux_truth = sampled_flux(predictions.truth)
    flux_error = sampled_flux_error(predictions.truth_error)
    affected = _affected_pixels(predictions.truth, columns)
    in_range = (FLUX_RANGE_NM[0] <= XP_SAMPLING_NM) & (FLUX_RANGE_NM[1] >= XP_SAMPLING_NM)
    summary: dict = {"task": predictions.task.key, "description": predictions.task.description}
    summary["n_stars"] = len(predictions.truth)
    summary["outputs"] = list(predictions.task.outputs)
    summary["flux_range_nm"] = [float(XP_SAMPLING_NM[affected].min()), float(XP_SAMPLING_NM[affected].max())]
    for method in ("model", "xgboost"):
        predicted = getattr(predictions, method)
        scatter, z_std = [], []
        for k, column in enumerate(columns):
            std = predictions.model_std[:, k] if method == "model" else None
            result = score(
                predictions.truth[:, column], predicted[:, column], std, predictions.truth_error[:, column]
            )
            scatter.append(result["scatter"])
            z_std.append(result.get("z_std"))
        flux = sampled_flux(predicted)[:, affected]
        truth, error = flux_truth[:, affected], flux_error[:, affected]
        flux_result = score(truth.ravel(), flux.ravel(), np.zeros(flux.size), error.ravel())
        usable = (truth > 0) & in_range[affected]
        fraction = score(np.ones(int(usable.sum())), flux[usable] / truth[usable])
        summary[method] = {
            "coefficient_scatter": scatter,
            "flux": flux_result,
            "flux_fraction_scatter": fraction["scatter"],
        }
        if method == "model":
            summary[method]["coefficient_z_std"] = z_std
    ratio = np.array(summary["model"]["coefficient_scatter"]) / np.array(
        summary["xgboost"]["coefficient_scatter"]
    )
    summary["median_scatter_ratio"] = float(np.nanmedian(ratio)) if len(ratio) else float("nan")
    summary["fraction_outputs_better"] = float(np.mean(ratio < 1)) if len(ratio) else float("nan")
    # High orders are noise-dominated: both methods predict ~their median and their scatter is the measurement noise.
    noise = np.median(predictions.truth_error[:, columns], axis=0)
    signal = np.array(summary["xgboost"]["coefficient_scatter"]) > SIGNAL_TO_NOISE * noise
    summary["n_signal_outputs"] = int(signal.sum())
    summary["median_scatter_ratio_signal"] = float(np.median(ratio[signal])) if signal.any() else float("nan")
    summary["beats_xgboost"] = bool(
        summary["model"]["flux"]["chi2_reduced"] < summary["xgboost"]["flux"]["chi2_reduced"]
        and (summary["median_scatter_ratio_signal"] if signal.any() else summary["median_scatter_ratio"]) < 1
    )
    summary["baseline"] = predictions.baseline
    return summary
