"""Empirical stellar loci: Teff and colours requested on a grid of (log g, [Fe/H]), against the test stars.

The model is given only log g and [Fe/H] and asked for Teff and the colours: its answer traces the giant branch and
the main sequence (Leung & Bovy 2023, "extracts empirical stellar loci"). The data's locus is the running median
Teff of the test stars in the same (log g, [Fe/H]) window; the two are compared along each branch.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from modeling_stellar import StarTokenizer, StellarForObservationPrediction

from .data import Split
from .inference import predict_arrays
from .metrics import score

__all__ = ["BRANCHES", "LOCUS_REQUESTS", "Loci", "loci_summary", "stellar_loci"]

LOCUS_REQUESTS = ("teff", "bprp", "jh", "jk")
"""What is asked of each grid point: Teff [K] and the colours [mag]."""

LOGG_GRID = np.round(np.arange(0.5, 5.0 + 1e-9, 0.1), 2)
"""log g grid [dex]."""

FE_H_GRID = (-1.0, -0.5, 0.0, 0.3)
"""[Fe/H] values of the loci [dex]."""

WINDOW = {"logg": 0.1, "fe_h": 0.15}
"""Half-widths [dex] of the window around a grid point whose test stars give the data's running median."""

MIN_STARS = 20
"""Fewest test stars in a window for its running median to count."""

BRANCHES = {"giant branch": (1.0, 3.5), "main sequence": (4.0, 4.8)}
"""log g ranges [dex] of the two branches compared."""


@dataclass(frozen=True)
class Loci:
    """Model and data loci on the grid.

    Attributes
    ----------
    logg, fe_h : numpy.ndarray
        (n_logg,) and (n_fe_h,) grid values [dex].
    model_mean, model_std : numpy.ndarray
        (n_fe_h, n_logg, 4) the model's answer for `LOCUS_REQUESTS`, physical units.
    data_teff : numpy.ndarray
        (n_fe_h, n_logg) running median Teff [K] of the test stars; NaN where fewer than `MIN_STARS`.
    stars : numpy.ndarray
        (n_test, 3) the test stars' Teff, log g, [Fe/H] (for the Kiel diagram).
    """

    logg: np.ndarray
    fe_h: np.ndarray
    model_mean: np.ndarray
    model_std: np.ndarray
    data_teff: np.ndarray
    stars: np.ndarray


def stellar_loci(
    model: StellarForObservationPrediction,
    tokenizer: StarTokenizer,
    test: Split,
    logg: np.ndarray = LOGG_GRID,
    fe_h: tuple[float, ...] = FE_H_GRID,
) -> Loci:
    """Request `LOCUS_REQUESTS` from (log g, [Fe/H]) on the grid and measure the test stars' running median Teff."""
    logg, fe_h = np.asarray(logg, dtype=np.float64), np.asarray(fe_h, dtype=np.float64)
    grid_fe_h, grid_logg = np.meshgrid(fe_h, logg, indexing="ij")  # (n_fe_h, n_logg)
    values, errors = tokenizer.to_arrays({"logg": grid_logg.ravel(), "fe_h": grid_fe_h.ravel()})
    mean, std, _ = predict_arrays(model, tokenizer, values, errors, LOCUS_REQUESTS)
    shape = (*grid_logg.shape, len(LOCUS_REQUESTS))
    stars, _ = test.physical(tokenizer, ("teff", "logg", "fe_h"))
    stars = stars[np.isfinite(stars).all(axis=1)]
    data_teff = np.full(grid_logg.shape, np.nan)
    for i, metallicity in enumerate(fe_h):
        near = np.abs(stars[:, 2] - metallicity) <= WINDOW["fe_h"]
        for j, gravity in enumerate(logg):
            window = near & (np.abs(stars[:, 1] - gravity) <= WINDOW["logg"])
            if window.sum() >= MIN_STARS:
                data_teff[i, j] = np.median(stars[window, 0])
    return Loci(logg, fe_h, mean.reshape(shape), std.reshape(shape), data_teff, stars)


def loci_summary(loci: Loci) -> dict:
    """Median |Delta Teff| [K] between the model's locus and the data's running median along each branch, pooled over
    the [Fe/H] grid and per [Fe/H]; plus the grid itself (JSON-ready)."""
    summary: dict = {"branches": {}, "grid": {"logg": loci.logg.tolist(), "fe_h": loci.fe_h.tolist()}}
    model_teff = loci.model_mean[..., 0]
    for branch, (low, high) in BRANCHES.items():
        on_branch = np.broadcast_to((loci.logg >= low) & (loci.logg <= high), model_teff.shape)
        pooled = score(np.where(on_branch, loci.data_teff, np.nan).ravel(), model_teff.ravel())
        per_fe_h = {}
        for i, metallicity in enumerate(loci.fe_h):
            result = score(np.where(on_branch[i], loci.data_teff[i], np.nan), model_teff[i])
            per_fe_h[f"{metallicity:+.1f}"] = {"median_abs": result["median_abs"], "n": result["n"]}
        summary["branches"][branch] = {
            "logg_range": [low, high],
            "median_abs_delta_teff": pooled["median_abs"],
            "bias": pooled["bias"],
            "n_grid_points": pooled["n"],
            "per_fe_h": per_fe_h,
        }
    summary["model_teff"] = model_teff.tolist()
    summary["data_teff"] = np.where(np.isfinite(loci.data_teff), loci.data_teff, None).tolist()
    return summary
