"""The observation sets the paper's comparisons are made with: the headline inputs and the labels.

Light on purpose (names only): training validates on them, evaluation, embeddings and benchmarks score on them.
"""

from __future__ import annotations

from datasets_builder.schema import error_name
from datasets_builder.xp import xp_names

__all__ = [
    "COLOURS",
    "HATTORI_2024_ALPHA_M_RMSE",
    "HEADLINE_COLUMNS",
    "HEADLINE_INPUTS",
    "LABELS",
    "REPORT_LABELS",
]

COLOURS: tuple[str, ...] = ("bprp", "jh", "jk")
"""Gaia BP - RP and 2MASS J - H, J - Ks [mag]."""

HEADLINE_INPUTS: tuple[str, ...] = xp_names(0, 30) + COLOURS
"""The published headline inputs (``shared/reference/architecture.md``, "Published results"): BP 0-29, RP 0-29 and
the three colours, 63 names."""

HEADLINE_COLUMNS: tuple[str, ...] = (*HEADLINE_INPUTS, *map(error_name, HEADLINE_INPUTS))
"""The headline inputs and their uncertainty columns: what a catalogue of them holds (126 columns)."""

LABELS: tuple[str, ...] = ("teff", "logg", "fe_h")
"""The stellar parameters evaluated and validated: Teff [K], log g [dex], [Fe/H] [dex]."""

REPORT_LABELS: tuple[str, ...] = (*LABELS, "alpha_m")
"""The labels the evaluation report scores beside XGBoost: `LABELS` and [alpha/M] [dex]."""

HATTORI_2024_ALPHA_M_RMSE = 0.044
"""The best published [alpha/M] from XP spectra: RMSE [dex] on APOGEE DR17, a quantile regression forest
(Hattori 2024); the model card quotes it beside the measured [alpha/M]."""
