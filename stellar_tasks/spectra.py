"""XP coefficients as sampled spectra: the gaiaxpy design matrix of ``datasets_builder.xp_basis``, reused.

Our XP observations are Gaia DR3 continuous coefficients divided by the star's G-band flux
``10**((ZP_G - G) / 2.5)`` (``DESIGN.md``, Units). Multiplying back and applying gaiaxpy's (343 x 110) calibration
matrix gives the absolutely calibrated spectrum on 336-1020 nm in 2 nm steps, in W m-2 nm-1.
"""

from __future__ import annotations

import numpy as np

from datasets_builder.constants import G_ZERO_POINT, XP_N_COEFFICIENTS, XP_SAMPLING_NM
from datasets_builder.xp_basis import design_matrix

__all__ = ["WAVELENGTH_NM", "XP_NAMES", "g_band_flux", "sampled_flux", "sampled_flux_error", "xp_names"]

WAVELENGTH_NM = XP_SAMPLING_NM
"""(343,) wavelengths [nm] of the sampled spectra."""


def xp_names(start: int, stop: int) -> tuple[str, ...]:
    """BP then RP coefficient names of orders ``start`` .. ``stop - 1`` (vocabulary names)."""
    return tuple(f"{band}{i}" for band in ("bp", "rp") for i in range(start, stop))


XP_NAMES = xp_names(0, XP_N_COEFFICIENTS)
"""The 110 coefficient names in the design matrix's column order: BP 0-54 then RP 0-54."""


def g_band_flux(g_mag: np.ndarray) -> np.ndarray:
    """G-band flux [e-/s] of stars of Gaia G magnitude ``g_mag`` [mag]: ``10**((ZP_G - G) / 2.5)``."""
    return 10.0 ** ((G_ZERO_POINT.value - np.asarray(g_mag, dtype=np.float64)) / 2.5)


def sampled_flux(coefficients: np.ndarray, g_mag: np.ndarray | None = None) -> np.ndarray:
    """Sampled spectra of (n, 110) G-flux-normalised XP coefficients (BP 0-54 then RP 0-54).

    Returns (n, 343) float64: W m-2 nm-1 given the stars' G magnitudes ``g_mag`` (n,), else per unit G-band flux
    (W m-2 nm-1 per e-/s), which is enough for flux ratios and chi-square.
    """
    flux = np.asarray(coefficients, dtype=np.float64) @ design_matrix().T
    return flux if g_mag is None else flux * g_band_flux(g_mag)[:, None]


def sampled_flux_error(errors: np.ndarray, g_mag: np.ndarray | None = None) -> np.ndarray:
    """(n, 343) one-sigma flux errors from (n, 110) coefficient errors, correlations ignored (as
    ``datasets_builder.xp_basis`` models them); units as `sampled_flux`."""
    variance = np.asarray(errors, dtype=np.float64) ** 2 @ (design_matrix() ** 2).T
    error = np.sqrt(variance)
    return error if g_mag is None else error * g_band_flux(g_mag)[:, None]
