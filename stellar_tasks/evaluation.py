"""Stellar parameters from the paper's input settings, the model beside XGBoost, on the test split.

For each input setting (Leung & Bovy 2023; ``shared/reference/architecture.md``, Published results) the model is
asked for Teff, log g and [Fe/H] from only those inputs, and an XGBoost regressor is trained on the train split with
the same inputs. Accuracy, bias and the calibration of the model's uncertainties come from the project's metric
(`stellar_tasks.metrics.score`); the same numbers are then broken down by stellar population.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from datasets_builder.xp import xp_names
from modeling_stellar import StarTokenizer, StellarForObservationPrediction

from .baselines import XGBoostSettings, fit_predict_xgboost
from .data import Split
from .inference import mask_to_inputs, predict_arrays
from .inputs import COLOURS, HEADLINE_INPUTS, LABELS
from .metrics import score

__all__ = [
    "GOALS",
    "INPUT_SETTINGS",
    "POPULATIONS",
    "InputSetting",
    "LabelPredictions",
    "assess_goals",
    "parameter_rows",
    "population_rows",
    "predict_labels",
]


@dataclass(frozen=True)
class InputSetting:
    """One row of the paper's comparison: which observations the model and the baseline may read."""

    key: str
    description: str
    inputs: tuple[str, ...]


INPUT_SETTINGS: tuple[InputSetting, ...] = (
    InputSetting("a", "BP0-29 + RP0-29 + BP-RP, J-H, J-K (headline)", HEADLINE_INPUTS),
    InputSetting("b", "BP0-4 + RP0-4 + BP-RP, J-H, J-K", xp_names(0, 5) + COLOURS),
    InputSetting("c", "BP25-54 + RP25-54 only", xp_names(25, 55)),
    InputSetting("d", "all 110 XP coefficients + BP-RP, J-H, J-K", xp_names(0, 55) + COLOURS),
    # A requested name is never an input of the same star (tokenizer contract, as in training), so each label
    # is predicted from the other two: the "labels in" sanity row is a label-to-label consistency check.
    InputSetting("e", "the other labels (Teff, log g, [Fe/H] minus the requested one)", LABELS),
)
"""The paper's input settings (a)-(d) and the labels-as-input sanity row (e)."""


@dataclass(frozen=True)
class LabelPredictions:
    """Model and XGBoost predictions of ``labels`` for the test stars, physical units, each (n_test, n_labels).

    Attributes
    ----------
    setting : InputSetting
    labels : tuple of str
        The predicted labels, in column order (`LABELS` first: the populations select on their columns 0-2).
    truth, truth_error : numpy.ndarray
        The test labels and their measurement errors (0 = unknown).
    model_mean, model_std : numpy.ndarray
        The model's mean and standard deviation; NaN where the star has none of the setting's inputs.
    xgboost : numpy.ndarray
        The baseline's prediction, NaN where the model has none (both are scored on the same stars).
    baseline : dict
        Per-label training records of the baseline (settings, rows used, seconds).
    """

    setting: InputSetting
    labels: tuple[str, ...]
    truth: np.ndarray
    truth_error: np.ndarray
    model_mean: np.ndarray
    model_std: np.ndarray
    xgboost: np.ndarray
    baseline: dict


def predict_labels(
    model: StellarForObservationPrediction,
    tokenizer: StarTokenizer,
    train: Split,
    test: Split,
    setting: InputSetting,
    xgboost_settings: XGBoostSettings,
    labels: Sequence[str] = LABELS,
) -> LabelPredictions:
    """Predict ``labels`` of the test stars from the setting's inputs, with the model and with XGBoost.

    The baseline for a label is trained on the train stars that know the label, with the same inputs the model reads
    for it (the setting's inputs minus the label itself); it never sees the test labels.
    """
    truth, truth_error = test.physical(tokenizer, labels)
    model_mean = np.full_like(truth, np.nan)
    model_std = np.full_like(truth, np.nan)
    xgboost = np.full_like(truth, np.nan)
    records = {}
    # Labels whose inputs are the same are asked together (one encoder pass); in setting (e) each label has its own.
    groups: dict[tuple[str, ...], list[int]] = {}
    for j, label in enumerate(labels):
        groups.setdefault(tuple(name for name in setting.inputs if name != label), []).append(j)
    for inputs, columns in groups.items():
        requested = [labels[j] for j in columns]
        shown = mask_to_inputs(tokenizer, test.values, inputs)
        mean, std, usable = predict_arrays(model, tokenizer, shown, test.errors, requested)
        model_mean[:, columns], model_std[:, columns] = mean, std
        ids = tokenizer.convert_names_to_ids(inputs)
        label_ids = tokenizer.convert_names_to_ids(requested)
        standardised, record = fit_predict_xgboost(
            train.values[:, ids], train.values[:, label_ids], test.values[:, ids], xgboost_settings
        )
        physical, _ = tokenizer.decode(np.broadcast_to(label_ids, standardised.shape), standardised)
        xgboost[:, columns] = np.where(usable[:, None], physical, np.nan)
        records.update({label: {**record, "inputs": len(inputs)} for label in requested})
    return LabelPredictions(
        setting, tuple(labels), truth, truth_error, model_mean, model_std, xgboost, records
    )


def _rows(
    predictions: LabelPredictions, tokenizer: StarTokenizer, select: np.ndarray, extra: dict
) -> list[dict]:
    """Metric rows (model and XGBoost, every label) over the stars in ``select``."""
    rows = []
    units = tokenizer.units
    for j, label in enumerate(predictions.labels):
        truth = np.where(select, predictions.truth[:, j], np.nan)
        common = {**extra, "setting": predictions.setting.key, "label": label, "unit": units[label]}
        model = score(
            truth, predictions.model_mean[:, j], predictions.model_std[:, j], predictions.truth_error[:, j]
        )
        rows.append({**common, "method": "model", **model})
        rows.append({**common, "method": "xgboost", **score(truth, predictions.xgboost[:, j])})
    return rows


def parameter_rows(predictions: LabelPredictions, tokenizer: StarTokenizer) -> list[dict]:
    """One metric row per (label, method) over all test stars of the setting."""
    return _rows(predictions, tokenizer, np.ones(len(predictions.truth), dtype=bool), {})


POPULATIONS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "giants (log g < 3.5)": lambda truth: truth[:, 1] < 3.5,
    "dwarfs (log g >= 3.5)": lambda truth: truth[:, 1] >= 3.5,
    "metal-poor ([Fe/H] < -1)": lambda truth: truth[:, 2] < -1.0,
    "cool (Teff < 4000 K)": lambda truth: truth[:, 0] < 4000.0,
    "hot (Teff > 6000 K)": lambda truth: truth[:, 0] > 6000.0,
}
"""Populations by their true (teff, logg, fe_h) columns: where does the model fail?"""


def population_rows(predictions: LabelPredictions, tokenizer: StarTokenizer) -> list[dict]:
    """Metric rows per population (`POPULATIONS`), model and XGBoost."""
    rows = []
    with np.errstate(invalid="ignore"):
        for name, select in POPULATIONS.items():
            rows += _rows(predictions, tokenizer, select(predictions.truth), {"population": name})
    return rows


GOALS = {
    "scatter_ratio_max": 0.85,  # model scatter <= 0.85 x XGBoost on setting (a), every label
    "z_std_tolerance": 0.1,  # |robust std of z - 1| <= 0.1
    "coverage_68_range": (0.63, 0.73),  # 68 % coverage inside 63-73 %
}
"""The issue's goals for setting (a)."""


def assess_goals(rows: list[dict], setting: str = "a") -> list[dict]:
    """Per label, whether each goal is met on ``setting`` and by how much (``margin`` > 0 = met with room)."""
    table = {(r["label"], r["method"]): r for r in rows if r["setting"] == setting and "population" not in r}
    low, high = GOALS["coverage_68_range"]
    verdicts = []
    for label in LABELS:
        model, xgboost = table[(label, "model")], table[(label, "xgboost")]
        ratio = model["scatter"] / xgboost["scatter"]
        z_off = abs(model["z_std"] - 1.0)
        coverage = model["coverage_68"]
        verdicts += [
            {
                "label": label,
                "goal": f"scatter <= {GOALS['scatter_ratio_max']} x XGBoost",
                "value": ratio,
                "met": bool(ratio <= GOALS["scatter_ratio_max"]),
                "margin": GOALS["scatter_ratio_max"] - ratio,
            },
            {
                "label": label,
                "goal": f"|z std - 1| <= {GOALS['z_std_tolerance']}",
                "value": model["z_std"],
                "met": bool(z_off <= GOALS["z_std_tolerance"]),
                "margin": GOALS["z_std_tolerance"] - z_off,
            },
            {
                "label": label,
                "goal": f"68 % coverage in {low:.0%}-{high:.0%}",
                "value": coverage,
                "met": bool(low <= coverage <= high),
                "margin": min(coverage - low, high - coverage),
            },
        ]
    return verdicts
