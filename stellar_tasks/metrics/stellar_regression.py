"""stellar_regression: accuracy and calibration of predicted stellar observations, as an `evaluate` metric.

Every accuracy number of the project is ``astropy.stats.mad_std(truth - prediction)`` (``DESIGN.md``, Units and
conventions); this module is the one place it is computed. It is an `evaluate` module that loads offline from the
installed package (Hub-hosted metrics cannot be reached):

```python
>>> import evaluate
>>> from stellar_tasks.metrics import METRIC_PATH
>>> metric = evaluate.load(METRIC_PATH)
>>> metric.compute(predictions=[4000.0, 5010.0], references=[4010.0, 5000.0])["scatter"]
14.826...
```

With the predicted standard deviation (and optionally the references' measurement errors) it also measures the
calibration of the uncertainties through ``z = (truth - mean) / sqrt(sigma**2 + err**2)``.
"""

from __future__ import annotations

import datasets
import evaluate
import numpy as np
from astropy.stats import mad_std
from scipy.stats import norm

_CITATION = """\
@article{leung2024foundation,
  title   = {Towards an astronomical foundation model for stars with a Transformer-based model},
  author  = {Leung, Henry W. and Bovy, Jo},
  journal = {Monthly Notices of the Royal Astronomical Society},
  year    = {2024},
  eprint  = {2308.10944},
}
"""

_DESCRIPTION = """\
Robust accuracy and calibration of regression predictions in physical units: the scatter ``mad_std(truth -
prediction)``, the bias ``median(truth - prediction)`` and the mean and median absolute residual over finite pairs; given the predicted standard deviation,
the robust standard deviation of ``z = (truth - prediction) / sqrt(prediction_std**2 + reference_errors**2)`` and the
fraction of stars inside the central 68 % and 95 % Gaussian intervals (|z| <= 0.994 and |z| <= 1.960).
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list` of `float`, length n): predicted values (physical units).
    references (`list` of `float`, length n): true values, same unit; NaN pairs are left out.
    prediction_std (`list` of `float`, length n, *optional*): predicted one-sigma uncertainty, same unit. A keyword
        of `compute`, aligned with all the predictions added so far (it cannot be added in batches).
    reference_errors (`list` of `float`, length n, *optional*): measurement error of the references (0 or NaN =
        unknown, taken as 0); used only with ``prediction_std``.
Returns:
    n (`int`): number of finite (prediction, reference) pairs used.
    scatter (`float`): mad_std(references - predictions), NaN when n = 0.
    bias (`float`): median(references - predictions).
    mean_abs (`float`): mean |references - predictions|.
    median_abs (`float`): median |references - predictions|.
    With ``prediction_std`` (pairs with a finite positive total sigma):
    z_std (`float`): mad_std of z; 1 for calibrated uncertainties.
    z_median (`float`): median of z.
    chi2_reduced (`float`): mean of z**2 (the reduced chi-square when ``prediction_std`` is 0 and
        ``reference_errors`` are the measurement errors).
    coverage_68, coverage_95 (`float`): fractions with |z| inside the central 68 % / 95 % Gaussian interval.
    median_std (`float`): median predicted standard deviation.
Examples:
    >>> metric = evaluate.load(METRIC_PATH)
    >>> result = metric.compute(predictions=[1.0, 2.0, 3.0], references=[1.5, 2.0, 2.0], prediction_std=[0.5, 1, 1])
    >>> result["bias"], result["z_std"], result["coverage_95"]
    (0.0, 1.48..., 1.0)
"""

COVERAGE_LEVELS = {"coverage_68": 0.68, "coverage_95": 0.95}
"""Nominal probability of each coverage number: the central Gaussian interval |z| <= norm.ppf(0.5 + level / 2)."""


def regression_summary(
    truth: np.ndarray,
    prediction: np.ndarray,
    prediction_std: np.ndarray | None = None,
    reference_errors: np.ndarray | None = None,
) -> dict[str, float]:
    """The metric's numbers from plain arrays (see the module's ``_KWARGS_DESCRIPTION``).

    Parameters
    ----------
    truth, prediction : numpy.ndarray
        (n,) values in one physical unit.
    prediction_std, reference_errors : numpy.ndarray, optional
        (n,) one-sigma uncertainties in the same unit.

    Returns
    -------
    dict
        ``n``, ``scatter``, ``bias``, ``mean_abs``, ``median_abs`` and, with ``prediction_std``, ``z_std``, ``z_median``, ``chi2_reduced``,
        ``coverage_68``, ``coverage_95``, ``median_std``.
    """
    truth = np.asarray(truth, dtype=np.float64)
    prediction = np.asarray(prediction, dtype=np.float64)
    if truth.shape != prediction.shape or truth.ndim != 1:
        raise ValueError(
            f"references {truth.shape} and predictions {prediction.shape} must be equal 1-d shapes"
        )
    residual = truth - prediction
    finite = np.isfinite(residual)
    n = int(finite.sum())
    result: dict[str, float] = {
        "n": n,
        "scatter": float(mad_std(residual[finite])) if n else float("nan"),
        "bias": float(np.median(residual[finite])) if n else float("nan"),
        "mean_abs": float(np.mean(np.abs(residual[finite]))) if n else float("nan"),
        "median_abs": float(np.median(np.abs(residual[finite]))) if n else float("nan"),
    }
    if prediction_std is None:
        return result
    sigma = np.asarray(prediction_std, dtype=np.float64)
    errors = (
        np.zeros_like(sigma) if reference_errors is None else np.asarray(reference_errors, dtype=np.float64)
    )
    if sigma.shape != truth.shape or errors.shape != truth.shape:
        raise ValueError("prediction_std and reference_errors must have the shape of the predictions")
    total = np.sqrt(sigma**2 + np.nan_to_num(errors, nan=0.0) ** 2)
    usable = finite & np.isfinite(total) & (total > 0)
    z = residual[usable] / total[usable]
    empty = not usable.any()
    result["z_std"] = float("nan") if empty else float(mad_std(z))
    result["z_median"] = float("nan") if empty else float(np.median(z))
    result["chi2_reduced"] = float("nan") if empty else float(np.mean(z**2))
    for key, level in COVERAGE_LEVELS.items():
        result[key] = float("nan") if empty else float(np.mean(np.abs(z) <= norm.ppf(0.5 + level / 2)))
    result["median_std"] = float("nan") if empty else float(np.median(sigma[usable]))
    return result


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class StellarRegression(evaluate.Metric):
    """Scatter, bias and uncertainty calibration of predicted stellar observations (see the module docstring)."""

    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {"predictions": datasets.Value("float64"), "references": datasets.Value("float64")}
            ),
            reference_urls=[
                "https://arxiv.org/abs/2308.10944",
                "https://docs.astropy.org/en/stable/api/astropy.stats.mad_std.html",
            ],
        )

    def _compute(
        self, predictions, references, prediction_std=None, reference_errors=None
    ) -> dict[str, float]:
        return regression_summary(references, predictions, prediction_std, reference_errors)
