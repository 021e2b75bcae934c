"""The model's interstellar extinction curve: XP spectra requested at increasing extinction, against a published law.

For a set of test stars the model is given the star's Teff, log g and [Fe/H] and an extinction ``ak_targ`` (APOGEE's
K-band extinction A_K, mag) on a grid, and asked for all XP coefficients. Per star and wavelength, the slope of
``-ln(F(A_K) / F(0))`` against A_K is the extinction per unit A_K; the median over stars is the model's curve.

Our XP coefficients are divided by the star's G-band flux, so a predicted spectrum cannot dim as a whole: the curve is
``k (A_lambda - A_G) / A_K``, known up to the grey term A_G. It is therefore compared as a colour-excess curve,
zero at 550 nm and one at 440 nm (the B and V of ``E(lambda - V) / E(B - V)``, Fitzpatrick 1999):
``xi(lambda) = (A_lambda - A_550) / (A_440 - A_550)``, which removes any grey term, for the model and for the law.
"""

from __future__ import annotations

from dataclasses import dataclass

import astropy.units as u
import numpy as np

from datasets_builder.constants import XP_SAMPLING_NM
from datasets_builder.xp import XP_NAMES, sampled_flux
from modeling_stellar import StarTokenizer, StellarForObservationPrediction

from .data import Split
from .inference import predict_arrays
from .inputs import LABELS
from .metrics import score

__all__ = ["AK_GRID", "LAWS", "ExtinctionCurve", "extinction_curve", "extinction_summary", "law_curve"]

EXTINCTION_NAME = "ak_targ"
"""Vocabulary name of the extinction observation: APOGEE targeting A_K [mag]."""

AK_GRID = (0.0, 0.1, 0.2, 0.3, 0.4)
"""A_K values [mag] at which spectra are requested; 0 is the reference. Within the bulk of APOGEE's A_K."""

ZERO_NM, SCALE_NM = 550.0, 440.0
"""Wavelengths [nm] where the colour-excess curve is 0 (V-like) and 1 (B-like)."""

COMPARISON_RANGE_NM = (400.0, 950.0)
"""Wavelengths [nm] of the mean absolute deviation from the law (the issue's range)."""

LAWS = {"F99": "Fitzpatrick (1999), R_V = 3.1", "G23": "Gordon et al. (2023), R_V = 3.1"}
"""Published laws compared (``dust_extinction`` classes, R_V = 3.1)."""


def colour_excess_curve(curve: np.ndarray, wavelength: np.ndarray = XP_SAMPLING_NM) -> np.ndarray:
    """``(c - c(550 nm)) / (c(440 nm) - c(550 nm))`` of an extinction curve ``c`` sampled at ``wavelength`` [nm]."""
    zero = np.interp(ZERO_NM, wavelength, curve)
    return (curve - zero) / (np.interp(SCALE_NM, wavelength, curve) - zero)


def law_curve(law: str, wavelength: np.ndarray = XP_SAMPLING_NM) -> np.ndarray:
    """The colour-excess curve of a `LAWS` entry at ``wavelength`` [nm], R_V = 3.1."""
    from dust_extinction.parameter_averages import F99, G23

    model = {"F99": F99, "G23": G23}[law](Rv=3.1)
    return colour_excess_curve(model(np.asarray(wavelength) * u.nm), wavelength)


@dataclass(frozen=True)
class ExtinctionCurve:
    """The model's extinction curve.

    Attributes
    ----------
    ak_grid : numpy.ndarray
        (n_grid,) A_K values [mag].
    per_unit_ak : numpy.ndarray
        (343,) median over stars of d(-ln F)/dA_K [1/mag]; NaN where no star has positive flux.
    colour_excess : numpy.ndarray
        (343,) `colour_excess_curve` of ``per_unit_ak``.
    n_stars : int
        Stars the curve is the median of.
    """

    ak_grid: np.ndarray
    per_unit_ak: np.ndarray
    colour_excess: np.ndarray
    n_stars: int


def extinction_curve(
    model: StellarForObservationPrediction,
    tokenizer: StarTokenizer,
    test: Split,
    n_stars: int = 200,
    ak_grid: tuple[float, ...] = AK_GRID,
    seed: int = 0,
) -> ExtinctionCurve:
    """Request XP spectra of ``n_stars`` test stars (a seeded draw among those with Teff, log g and [Fe/H]) at every
    A_K of ``ak_grid`` and fit the slope of -ln F against A_K per star and wavelength."""
    ak = np.asarray(ak_grid, dtype=np.float64)
    if ak[0] != 0 or np.any(np.diff(ak) <= 0):
        raise ValueError(f"ak_grid must start at 0 and increase, got {ak_grid}")
    eligible = np.flatnonzero(test.has_all(tokenizer, LABELS))
    chosen = np.random.default_rng(seed).choice(eligible, min(n_stars, len(eligible)), replace=False)
    labels, _ = test.subset(np.sort(chosen)).physical(tokenizer, LABELS)
    rows = {name: np.repeat(labels[:, j], len(ak)) for j, name in enumerate(LABELS)}
    rows[EXTINCTION_NAME] = np.tile(ak, len(labels))
    values, errors = tokenizer.to_arrays(rows)
    mean, _, _ = predict_arrays(model, tokenizer, values, errors, XP_NAMES)
    flux = sampled_flux(mean).reshape(len(labels), len(ak), -1)  # (stars, grid, 343), per unit G-band flux
    with np.errstate(invalid="ignore", divide="ignore"):
        depth = -np.log(flux[:, 1:] / flux[:, :1])  # (stars, grid - 1, 343)
    depth[~np.isfinite(depth)] = np.nan
    # Least-squares slope through the origin over the grid, per star and wavelength, skipping missing points.
    weights = np.where(np.isfinite(depth), ak[1:, None], 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        slope = np.nansum(depth * ak[1:, None], axis=1) / np.sum(
            weights * ak[1:, None], axis=1
        )  # (stars, 343)
    slope[~np.isfinite(slope)] = np.nan
    observed = np.isfinite(slope).any(axis=0)
    per_unit = np.full(slope.shape[1], np.nan)
    per_unit[observed] = np.nanmedian(slope[:, observed], axis=0)
    return ExtinctionCurve(ak, per_unit, colour_excess_curve(per_unit), len(labels))


def extinction_summary(curve: ExtinctionCurve) -> dict:
    """Mean absolute deviation of the model's colour-excess curve from each law over `COMPARISON_RANGE_NM`."""
    in_range = (COMPARISON_RANGE_NM[0] <= XP_SAMPLING_NM) & (COMPARISON_RANGE_NM[1] >= XP_SAMPLING_NM)
    summary: dict = {
        "n_stars": curve.n_stars,
        "ak_grid": curve.ak_grid.tolist(),
        "normalisation": f"(A(lambda) - A({ZERO_NM:g} nm)) / (A({SCALE_NM:g} nm) - A({ZERO_NM:g} nm))",
        "range_nm": list(COMPARISON_RANGE_NM),
        "laws": {},
    }
    for law, description in LAWS.items():
        result = score(law_curve(law)[in_range], curve.colour_excess[in_range])
        summary["laws"][law] = {
            "description": description,
            "mean_abs_deviation": result["mean_abs"],
            "n": result["n"],
        }
    return summary
