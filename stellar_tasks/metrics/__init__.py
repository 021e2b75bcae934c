"""The project's `evaluate` metric module, loaded offline from this package.

``stellar_regression.py`` is an `evaluate` module: ``evaluate.load(METRIC_PATH)`` copies it into the `evaluate`
modules cache and imports it from there (no network). `score` is the one call every reported number goes through.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np

__all__ = ["METRIC_PATH", "load_metric", "score"]

METRIC_PATH = str(Path(__file__).resolve().parent / "stellar_regression.py")
"""Path of the `evaluate` module file: ``evaluate.load(METRIC_PATH)``."""


@lru_cache(maxsize=1)
def load_metric():
    """The ``stellar_regression`` `evaluate.Metric`, loaded once per process (in memory, no cache files)."""
    import evaluate

    return evaluate.load(METRIC_PATH, keep_in_memory=True)


def score(
    truth: np.ndarray,
    prediction: np.ndarray,
    prediction_std: np.ndarray | None = None,
    reference_errors: np.ndarray | None = None,
) -> dict[str, float]:
    """Compute the ``stellar_regression`` metric of (n,) arrays in one physical unit.

    Returns the metric's dict: ``n``, ``scatter`` (mad_std of truth - prediction), ``bias`` (median), ``mean_abs``,
    ``median_abs`` and, with ``prediction_std``, the calibration numbers ``z_std``, ``z_median``, ``chi2_reduced``,
    ``coverage_68``, ``coverage_95``, ``median_std``.
    """
    extra = {}
    if prediction_std is not None:
        extra["prediction_std"] = np.asarray(prediction_std, dtype=np.float64)
        if reference_errors is not None:
            extra["reference_errors"] = np.asarray(reference_errors, dtype=np.float64)
    return load_metric().compute(
        predictions=np.asarray(prediction, dtype=np.float64),
        references=np.asarray(truth, dtype=np.float64),
        **extra,
    )
