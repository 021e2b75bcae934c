"""The model's interstellar extinction curve: XP spectra requested at increasing extinction, against a published law.

For a set of test stars the model is given the star's Teff, log g and [Fe/H] and an extinction ``ak_targ`` (APOGEE's
K-band extinction A_K, mag) on a grid, and asked for all XP coefficients. Per star and wavelength, the slope of
``-ln(F(A_K) / F(0))`` against A_K is the extinction per unit A_K.

Our XP coefficients are divided by the star's G-band flux, so a predicted spectrum cannot dim as a whole: the curve is
``k (A_lambda - A_G) / A_K``, known up to the grey term A_G. It is therefore compared as a colour-excess curve,
zero at 550 nm and one at 440 nm (the B and V of ``E(lambda - V) / E(B - V)``, Fitzpatrick 1999):
``xi(lambda) = (A_lambda - A_550) / (A_440 - A_550)``, which removes any grey term, for the model and for the law.

The model's curve is the median over stars of each star's own colour-excess curve. Dust has one law, so every star's
curve should have its shape, whatever the model's scale k for that kind of star. (The median of the slopes,
normalised afterwards, mixes the scales of giants and dwarfs wavelength by wavelength, so its shape belongs to no
star: on the hold-out it rated the model whose giants and dwarfs were both closest to the law the worst.)
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import astropy.units as u
import numpy as np

from datasets_builder.constants import XP_SAMPLING_NM
from datasets_builder.xp import XP_NAMES, sampled_flux
from modeling_stellar import StarTokenizer, StellarForObservationPrediction

from .data import Split
from .inference import predict_arrays
from .inputs import LABELS
from .loci import BRANCHES
from .metrics import score

__all__ = [
    "AK_GRID",
    "LAWS",
    "POPULATIONS",
    "ExtinctionCurve",
    "colour_excess_curve",
    "extinction_curve",
    "extinction_summary",
    "in_population",
    "law_curve",
    "law_score",
    "per_star_colour_excess",
]

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

POPULATIONS = {
    "giants": (-np.inf, BRANCHES["giant branch"][1]),
    "dwarfs": (BRANCHES["giant branch"][1], np.inf),
}
"""log g ranges [dex] of the star kinds also scored on their own, split at the loci's giant-branch edge."""


def in_population(logg: np.ndarray, kind: str) -> np.ndarray:
    """(n,) bool: the stars of log g ``logg`` (n,) [dex] that are of `POPULATIONS` ``kind``."""
    low, high = POPULATIONS[kind]
    return (low <= logg) & (logg < high)


def _at(curve: np.ndarray, nm: float, wavelength: np.ndarray) -> np.ndarray:
    """(...,) curves (..., n_wavelength) linearly interpolated at ``nm`` on ``wavelength`` [nm] (increasing)."""
    index = float(np.interp(nm, wavelength, np.arange(len(wavelength), dtype=np.float64)))
    low = min(int(index), len(wavelength) - 2)
    return curve[..., low] + (index - low) * (curve[..., low + 1] - curve[..., low])


def colour_excess_curve(curve: np.ndarray, wavelength: np.ndarray = XP_SAMPLING_NM) -> np.ndarray:
    """``(c - c(550 nm)) / (c(440 nm) - c(550 nm))`` of extinction curves ``c`` (..., n_wavelength) sampled at
    ``wavelength`` [nm] (increasing), each row on its own."""
    curve = np.asarray(curve, dtype=np.float64)
    zero = _at(curve, ZERO_NM, wavelength)[..., None]
    return (curve - zero) / (_at(curve, SCALE_NM, wavelength)[..., None] - zero)


def law_score(colour_excess: np.ndarray, law: str) -> dict[str, float]:
    """The ``stellar_regression`` metric (`stellar_tasks.metrics.score`) of a (343,) colour-excess curve against
    `LAWS` ``law`` over `COMPARISON_RANGE_NM`: ``mean_abs`` is its mean absolute deviation, ``n`` the pixels."""
    in_range = (COMPARISON_RANGE_NM[0] <= XP_SAMPLING_NM) & (COMPARISON_RANGE_NM[1] >= XP_SAMPLING_NM)
    return score(law_curve(law)[in_range], np.asarray(colour_excess)[in_range])


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
        (343,) median over stars of d(-ln F)/dA_K [1/mag] (the model's scale); NaN where no star has positive flux.
    per_star : numpy.ndarray
        (n_drawn, 343) each drawn star's `colour_excess_curve`; NaN rows for stars whose predicted spectrum does not
        redden (A_440 <= A_550: no colour excess to scale by).
    logg : numpy.ndarray
        (n_drawn,) the drawn stars' log g [dex], to score `POPULATIONS` on their own.
    """

    ak_grid: np.ndarray
    per_unit_ak: np.ndarray
    per_star: np.ndarray
    logg: np.ndarray

    @property
    def n_stars(self) -> int:
        """Stars with a colour-excess curve (those that redden)."""
        return self.n_stars_of(np.ones(len(self.per_star), dtype=bool))

    def n_stars_of(self, stars: np.ndarray) -> int:
        """How many of ``stars`` ((n_drawn,) bool) have a colour-excess curve."""
        return int(np.isfinite(self.per_star[stars]).any(axis=1).sum())

    def colour_excess(self, stars: np.ndarray | None = None) -> np.ndarray:
        """(343,) the median of the per-star colour-excess curves, of ``stars`` ((n_drawn,) bool) or of all."""
        chosen = self.per_star if stars is None else self.per_star[stars]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns stay NaN
            return np.nanmedian(chosen, axis=0)


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
    return ExtinctionCurve(ak, per_unit, per_star_colour_excess(slope), labels[:, LABELS.index("logg")])


def per_star_colour_excess(slope: np.ndarray) -> np.ndarray:
    """(n_stars, 343) `colour_excess_curve` of each star's extinction per unit A_K ``slope`` (n_stars, 343) [1/mag];
    a NaN row where the star does not redden (A_440 <= A_550, or either unknown), which has no colour excess."""
    reddens = _at(slope, SCALE_NM, XP_SAMPLING_NM) > _at(slope, ZERO_NM, XP_SAMPLING_NM)  # NaN compares False
    per_star = np.full(slope.shape, np.nan)
    per_star[reddens] = colour_excess_curve(slope[reddens])
    per_star[~np.isfinite(per_star)] = np.nan
    return per_star


def extinction_summary(curve: ExtinctionCurve) -> dict:
    """Mean absolute deviation of the model's colour-excess curve from each law over `COMPARISON_RANGE_NM`, for all
    stars and for each of `POPULATIONS`."""
    kinds = {kind: in_population(curve.logg, kind) for kind in POPULATIONS}
    summary: dict = {
        "n_stars": curve.n_stars,
        "n_not_reddening": len(curve.per_star) - curve.n_stars,
        "ak_grid": curve.ak_grid.tolist(),
        "normalisation": f"(A(lambda) - A({ZERO_NM:g} nm)) / (A({SCALE_NM:g} nm) - A({ZERO_NM:g} nm))",
        "statistic": "median over stars of each star's colour-excess curve",
        "range_nm": list(COMPARISON_RANGE_NM),
        "laws": {},
    }
    for law, description in LAWS.items():
        result = law_score(curve.colour_excess(), law)
        summary["laws"][law] = {
            "description": description,
            "mean_abs_deviation": result["mean_abs"],
            "n": result["n"],
            "populations": {
                kind: {
                    "mean_abs_deviation": law_score(curve.colour_excess(stars), law)["mean_abs"],
                    "n_stars": curve.n_stars_of(stars),
                }
                for kind, stars in kinds.items()
            },
        }
    return summary
