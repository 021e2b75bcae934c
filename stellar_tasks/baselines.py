"""The XGBoost baseline: gradient-boosted trees trained on the train split, the same features as the model.

Leung & Bovy 2023 compare their model with XGBoost on the same inputs (2000 trees, multi-output; see
``shared/reference/architecture.md``, Published results). Every number the project reports has this baseline beside it, trained in the same run on the
train split only (`fit_predict_xgboost` is never given test labels).

Features and targets are the tokenizer's standardised values: trees are invariant to the per-column affine
standardisation of the features, and the predicted targets are decoded back to physical units by the caller.
NaN marks a missing feature (XGBoost's native missing-value handling), as it does for the model.
"""

from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass

import numpy as np

__all__ = ["BUDGETS", "EARLY_STOPPING_ROUNDS", "BaselineBudget", "XGBoostSettings", "fit_predict_xgboost"]

EARLY_STOPPING_ROUNDS = 50
"""Rounds without a better hold-out RMSE after which an early-stopped fit (small samples) stops."""


@dataclass(frozen=True)
class XGBoostSettings:
    """Hyperparameters of one XGBoost regressor (``xgboost.train``).

    Attributes
    ----------
    n_estimators : int
        Boosting rounds (trees per target, or vector-leaf trees with ``multi_strategy="multi_output_tree"``).
    learning_rate : float
        Shrinkage per round.
    max_depth : int
        Depth of each tree (xgboost's default, 6).
    subsample, colsample_bytree : float
        Row and feature fractions drawn per tree (the anchor run's 0.8, 0.8).
    tree_method : str
        "hist": histogram split finding, the fast CPU method.
    multi_strategy : str
        For joint multi-output fits: "one_output_per_tree" (independent trees per target) or "multi_output_tree"
        (one tree with a vector leaf for all targets: one tree per round instead of one per target).
    """

    n_estimators: int
    learning_rate: float
    max_depth: int = 6
    subsample: float = 0.8
    colsample_bytree: float = 0.8
    tree_method: str = "hist"
    multi_strategy: str = "one_output_per_tree"


@dataclass(frozen=True)
class BaselineBudget:
    """How much boosting a report run can afford: settings for label baselines and for XP-coefficient baselines."""

    name: str
    labels: XGBoostSettings
    coefficients: XGBoostSettings
    description: str


BUDGETS = {
    # The anchor run of the issue (learning_rate 0.05, 4000 trees, subsample 0.8, colsample_bytree 0.8) for labels;
    # XP coefficients: vector-leaf trees over every output.
    "full": BaselineBudget(
        "full",
        XGBoostSettings(n_estimators=4000, learning_rate=0.05),
        XGBoostSettings(n_estimators=300, learning_rate=0.1, multi_strategy="multi_output_tree"),
        "labels: 4000 trees per label, learning rate 0.05 (the anchor); XP coefficients: 300 vector-leaf trees "
        "over every output, learning rate 0.1",
    ),
    # Fits the 10-minute demo on 2 CPU cores. Measured on the APOGEE x Gaia XP split, setting (a), Teff / log g /
    # [Fe/H]: 1000 trees at 0.1 give 107 K / 0.213 / 0.124 dex against the anchor's 99 K / 0.197 / 0.114 dex (400 trees
    # at 0.15: 121 K / 0.222 / 0.137). Compressing the XP outputs to principal components instead was tried and
    # dropped: the truncation error alone (32 components) made the inpainting baseline 3-10 times worse in chi2.
    "quick": BaselineBudget(
        "quick",
        XGBoostSettings(n_estimators=1000, learning_rate=0.1),
        XGBoostSettings(n_estimators=100, learning_rate=0.25, multi_strategy="multi_output_tree"),
        "labels: 1000 trees per label, learning rate 0.1; XP coefficients: 100 vector-leaf trees over every "
        "output, learning rate 0.25",
    ),
}
"""Baseline budgets by name: ``python -m stellar_tasks.report`` uses "quick", with ``--full`` "full"."""


def fit_predict_xgboost(
    train_x: np.ndarray,
    train_y: np.ndarray,
    test_x: np.ndarray,
    settings: XGBoostSettings,
    joint: bool = False,
    seed: int = 0,
    n_jobs: int | None = None,
    early_stopping: tuple[np.ndarray, np.ndarray] | None = None,
) -> tuple[np.ndarray, dict]:
    """Train XGBoost on the train split and predict the test stars.

    Parameters
    ----------
    train_x : numpy.ndarray
        (n_train, n_features) features of the train stars; NaN = missing.
    train_y : numpy.ndarray
        (n_train, n_targets) targets of the train stars; NaN = unknown (such rows are left out of that target's fit).
    test_x : numpy.ndarray
        (n_test, n_features) features of the stars to predict.
    settings : XGBoostSettings
        Hyperparameters.
    joint : bool
        False: one regressor per target, each on the rows where its target is known. True: one multi-output
        regressor (``settings.multi_strategy``) on the rows where every target is known.
    seed : int
        Random state of the row and column sampling.
    n_jobs : int, optional
        Threads; default all CPU cores.
    early_stopping : (valid_x, valid_y), optional
        Stars held out of ``train_x``: each target's boosting stops after `EARLY_STOPPING_ROUNDS` rounds without a
        better RMSE on them and predicts with its best round (``settings.n_estimators`` is then the most); the
        small-sample baseline. Per target only (not with ``joint``).

    Returns
    -------
    prediction : numpy.ndarray
        (n_test, n_targets) float64.
    record : dict
        ``settings``, ``n_train`` (rows used per target, or the joint count), ``seconds`` of training and prediction.
    """
    import xgboost

    train_x = np.asarray(train_x, dtype=np.float32)
    train_y = np.asarray(train_y, dtype=np.float64)
    test_x = np.asarray(test_x, dtype=np.float32)
    if train_y.ndim != 2 or train_x.ndim != 2 or len(train_x) != len(train_y):
        raise ValueError(
            f"train_x {train_x.shape} and train_y {train_y.shape} must be (n, features) and (n, targets)"
        )
    # The native API (xgboost.train) needs no scikit-learn.
    parameters = {k: v for k, v in asdict(settings).items() if k not in ("n_estimators", "multi_strategy")}
    parameters.update(objective="reg:squarederror", seed=seed, nthread=n_jobs or os.cpu_count())
    started = time.monotonic()
    test = xgboost.DMatrix(test_x, missing=np.nan)
    if joint:
        rows = np.isfinite(train_y).all(axis=1)
        train = xgboost.DMatrix(train_x[rows], label=train_y[rows], missing=np.nan)
        booster = xgboost.train(
            {**parameters, "multi_strategy": settings.multi_strategy},
            train,
            num_boost_round=settings.n_estimators,
        )
        prediction = booster.predict(test).reshape(len(test_x), train_y.shape[1])
        used: int | list[int] = int(rows.sum())
    else:
        prediction = np.empty((len(test_x), train_y.shape[1]))
        used = []
        rounds = []
        for j in range(train_y.shape[1]):
            rows = np.isfinite(train_y[:, j])
            train = xgboost.DMatrix(train_x[rows], label=train_y[rows, j], missing=np.nan)
            stopping = {}
            if early_stopping is not None:
                valid_x, valid_y = (np.asarray(a, dtype=np.float64) for a in early_stopping)
                known = np.isfinite(valid_y[:, j])
                valid = xgboost.DMatrix(
                    valid_x[known].astype(np.float32), label=valid_y[known, j], missing=np.nan
                )
                stopping = {"evals": [(valid, "valid")], "early_stopping_rounds": EARLY_STOPPING_ROUNDS}
            booster = xgboost.train(
                parameters, train, num_boost_round=settings.n_estimators, verbose_eval=False, **stopping
            )
            best = booster.best_iteration + 1 if stopping else settings.n_estimators
            prediction[:, j] = booster.predict(test, iteration_range=(0, best))
            used.append(int(rows.sum()))
            rounds.append(best)
    record = {"settings": asdict(settings), "n_train": used, "seconds": time.monotonic() - started}
    if not joint:
        record["rounds"] = rounds
    return prediction.astype(np.float64), record
