"""Turn Gaia archive XP files (and optionally an APOGEE allStar) into dataset rows.

`archive_rows` converts rows of `datasets_builder.gaia_archive.read_gaia_xp` into dataset rows: the
vocabulary names ``bp0`` ... ``bp54``, ``rp0`` ... ``rp54`` with ``_err``, each coefficient divided by the
star's G-band flux ``10**((ZP_G - G) / 2.5)`` (`datasets_builder.xp.g_band_flux`), as the
published model did. Coefficients with index >= ``bp/rp_n_relevant_bases`` are set to NaN: the published
model treated them as missing in training (Leung & Bovy 2023, ``xp_relevancy`` in
``Dataset_Reduction.ipynb``), since Gaia's own truncation test found them not significant
(De Angeli et al. 2023, Sect. 3.4).

Normalisation needs G, and an ``xp_continuous_mean_spectrum`` file carries none. Each star's G comes,
first found first used, from: a ``phot_g_mean_mag`` column in the XP file itself (an ADQL query joined
with ``gaiadr3.gaia_source``); a separate ``gaia_source`` table given with ``--gaia-source FILE``
(``source_id``, ``phot_g_mean_mag``, optionally ``phot_bp_mean_mag``, ``phot_rp_mean_mag``,
``phot_bp_mean_flux_over_error``, ``phot_rp_mean_flux_over_error``, ``ra``, ``dec``, ``pmra``,
``pmdec``); the allStar's ``GAIAEDR3_PHOT_G_MEAN_MAG`` (Gaia DR3 G is the EDR3 G, Riello et al. 2021).
A star with no G is dropped and counted (``no_phot_g_mean_mag``); G is never guessed, because a wrong G
scales all 110 coefficients together.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from .constants import BP_ZERO_POINT, RP_ZERO_POINT
from .crossmatch import join_rows, match_by_source_id, missing_value
from .gaia_archive import GAIA_SOURCE_COLUMNS, float_column, read_gaia_table, read_gaia_xp
from .schema import error_name
from .xp import XP_BANDS, g_band_flux, xp_name

__all__ = ["archive_rows", "fill_missing_columns", "iter_archive_rows", "read_gaia_source"]

SOURCE = "gaia_dr3_xp_continuous"
"""Provenance string written to the ``source`` column."""

_MAG_PER_LN_FLUX = 2.5 / np.log(10.0)
"""d(mag)/d(ln flux): a relative flux error e gives a magnitude error 1.0857 e (derived: m = -2.5 log10 f)."""


def _bprp(xp) -> tuple[np.ndarray, np.ndarray] | None:
    """BP - RP [mag] and its error from ``gaia_source`` columns, or None without BP and RP magnitudes.

    The error is each band's ``2.5 / ln 10 / flux_over_error`` with its zero-point uncertainty added in
    quadrature (the published recipe), NaN when ``flux_over_error`` is not given.
    """
    if "phot_bp_mean_mag" not in xp.colnames or "phot_rp_mean_mag" not in xp.colnames:
        return None
    bprp = np.asarray(xp["phot_bp_mean_mag"], float) - np.asarray(xp["phot_rp_mean_mag"], float)
    error = np.full(len(xp), np.nan)
    if "phot_bp_mean_flux_over_error" in xp.colnames and "phot_rp_mean_flux_over_error" in xp.colnames:
        bp_err = np.hypot(
            _MAG_PER_LN_FLUX / np.asarray(xp["phot_bp_mean_flux_over_error"], float),
            BP_ZERO_POINT.uncertainty,
        )
        rp_err = np.hypot(
            _MAG_PER_LN_FLUX / np.asarray(xp["phot_rp_mean_flux_over_error"], float),
            RP_ZERO_POINT.uncertainty,
        )
        error = np.hypot(bp_err, rp_err)
    return bprp, error


def archive_rows(xp, phot_g_mean_mag: np.ndarray | None = None):
    """Convert Gaia archive XP rows to dataset rows, normalised by the G-band flux.

    Parameters
    ----------
    xp : astropy.table.Table
        Rows as `datasets_builder.gaia_archive.read_gaia_xp` returns them (``source_id``,
        ``bp/rp_coefficients`` (n, 55), ``bp/rp_coefficient_errors`` (n, 55),
        ``bp/rp_n_relevant_bases``), optionally with ``gaia_source`` columns
        (`datasets_builder.gaia_archive.GAIA_SOURCE_COLUMNS`).
    phot_g_mean_mag : numpy.ndarray, shape (n,), optional, default None
        G [mag] per row of ``xp``; NaN where unknown. None uses ``xp["phot_g_mean_mag"]``.

    Returns
    -------
    astropy.table.Table
        One row per star with a finite G, in input order: ``gaia_dr3_source_id`` (int64), ``source``,
        ``phot_g_mean_mag`` (float32, mag), ``bp_n_relevant_bases``, ``rp_n_relevant_bases`` (int16),
        ``bp0``, ``bp0_err``, ..., ``rp54``, ``rp54_err`` (float32, dimensionless: coefficient / G-band
        flux; NaN at index >= n_relevant_bases and for a band without a solution), ``bprp``/``bprp_err``
        (float32, mag) when BP and RP magnitudes are given, and any of ``ra``, ``dec``, ``pmra``,
        ``pmdec`` present (float64). ``meta["counts"]`` holds ``no_phot_g_mean_mag``, the stars dropped
        for lack of G.

    Raises
    ------
    ValueError
        If no G is given at all (neither ``phot_g_mean_mag`` nor an ``xp["phot_g_mean_mag"]`` column),
        or ``phot_g_mean_mag`` has the wrong length.

    Examples
    --------
    >>> xp = read_gaia_xp("XP_CONTINUOUS_RAW.csv")  # doctest: +SKIP
    >>> rows = archive_rows(xp, phot_g_mean_mag=np.array([12.1, 15.3]))  # doctest: +SKIP
    >>> rows["bp0"]  # doctest: +SKIP
    """
    from astropy.table import Table

    if phot_g_mean_mag is None:
        if "phot_g_mean_mag" not in xp.colnames:
            raise ValueError(
                "no Gaia G magnitude to normalise the XP coefficients: give phot_g_mean_mag, a "
                "'phot_g_mean_mag' column (join gaiadr3.gaia_source in the archive query), a gaia_source "
                "table (--gaia-source FILE) or an allStar with GAIAEDR3_PHOT_G_MEAN_MAG"
            )
        phot_g_mean_mag = xp["phot_g_mean_mag"]
    g = np.asarray(np.ma.filled(np.ma.asarray(phot_g_mean_mag, dtype=np.float64), np.nan))
    if g.shape != (len(xp),):
        raise ValueError(f"phot_g_mean_mag has shape {g.shape}, expected ({len(xp)},)")
    keep = ~np.isnan(g)
    xp, g = xp[keep], g[keep]
    flux = _checked_g_band_flux(xp, g)[:, None]

    rows = Table()
    rows["gaia_dr3_source_id"] = np.asarray(xp["source_id"], dtype=np.int64)
    rows["source"] = np.full(len(xp), SOURCE)
    rows["phot_g_mean_mag"] = g.astype(np.float32)
    for band in XP_BANDS:
        rows[f"{band}_n_relevant_bases"] = np.asarray(xp[f"{band}_n_relevant_bases"], dtype=np.int16)
    for band in XP_BANDS:
        n_coefficients = xp[f"{band}_coefficients"].shape[1]  # the basis' (`read_gaia_xp` checked it)
        relevant = np.arange(n_coefficients)[None, :] < np.asarray(xp[f"{band}_n_relevant_bases"])[:, None]
        values = np.where(relevant, np.asarray(xp[f"{band}_coefficients"]) / flux, np.nan).astype(np.float32)
        errors = np.where(relevant, np.asarray(xp[f"{band}_coefficient_errors"]) / flux, np.nan).astype(
            np.float32
        )
        for i in range(n_coefficients):
            rows[xp_name(band, i)] = values[:, i]
            rows[error_name(xp_name(band, i))] = errors[:, i]
    colour = _bprp(xp)
    if colour is not None:
        rows["bprp"] = colour[0].astype(np.float32)
        rows["bprp_err"] = colour[1].astype(np.float32)
    for name in ("ra", "dec", "pmra", "pmdec"):
        if name in xp.colnames:
            rows[name] = np.asarray(xp[name], dtype=np.float64)
    rows.meta["counts"] = {"no_phot_g_mean_mag": int((~keep).sum())}
    return rows


def _checked_g_band_flux(xp, g: np.ndarray) -> np.ndarray:
    """`g_band_flux` of ``g`` (n,) [mag], after checking that it can normalise every star's coefficients: a
    finite, positive flux that keeps the largest |coefficient| or error / flux within float32. Else ValueError
    naming the XP file (``xp.meta["source_file"]``), the source and its G."""
    largest = np.zeros(len(xp))
    for band in XP_BANDS:
        for suffix in ("coefficients", "coefficient_errors"):
            if f"{band}_{suffix}" in xp.colnames:
                values = np.abs(np.asarray(xp[f"{band}_{suffix}"], dtype=np.float64))
                largest = np.fmax(largest, np.fmax.reduce(values, axis=1, initial=0.0))
    with np.errstate(over="ignore", divide="ignore"):
        flux = g_band_flux(g)
        normalised = largest / flux
    bad = ~(np.isfinite(flux) & (flux > 0) & (normalised <= np.finfo(np.float32).max))
    if bad.any():
        row = int(np.argmax(bad))
        raise ValueError(
            f"{xp.meta.get('source_file', 'XP rows')}: source_id {xp['source_id'][row]}: phot_g_mean_mag "
            f"{g[row]!r} mag gives a G-band flux of {flux[row]:.3g} e-/s, which cannot normalise its XP "
            "coefficients (not a Gaia G magnitude?)"
        )
    return flux


def read_gaia_source(path: str | Path):
    """A ``gaia_source`` export (``source_id``, ``phot_g_mean_mag``, optionally BP/RP magnitudes and flux over
    error, positions) as a side table: ``source_id`` plus the `GAIA_SOURCE_COLUMNS` it has, as float64."""
    from astropy.table import Table

    raw = read_gaia_table(path)
    if "source_id" not in raw.colnames or "phot_g_mean_mag" not in raw.colnames:
        raise ValueError(f"{path}: a gaia_source table needs 'source_id' and 'phot_g_mean_mag' columns")
    if raw["source_id"].dtype.kind not in "iu" or np.ma.is_masked(raw["source_id"]):
        raise ValueError(
            f"{path}: column 'source_id' must hold integers in every row, got {raw['source_id'].dtype}"
        )
    table = Table({"source_id": np.asarray(raw["source_id"], dtype=np.int64)})
    for name in GAIA_SOURCE_COLUMNS:
        if name in raw.colnames:
            table[name] = float_column(raw[name], path)
    return table


def fill_missing_columns(xp, other, ids: np.ndarray, names: tuple[str, ...]) -> None:
    """Fill NaN (or absent) columns ``names`` of ``xp`` in place from ``other`` rows matched on ``ids``."""
    index = match_by_source_id(xp["source_id"], ids)
    hit = index >= 0
    for name in names:
        if name not in other.colnames:
            continue
        current = np.asarray(xp[name], dtype=np.float64) if name in xp.colnames else np.full(len(xp), np.nan)
        take = hit & np.isnan(current)
        current[take] = np.asarray(other[name], dtype=np.float64)[index[take]]
        xp[name] = current


def _stack(tables: list):
    """Stack tables row-wise; a column some lack is filled with its missing value, never masked."""
    from astropy.table import Table, vstack

    names = list(dict.fromkeys(name for table in tables for name in table.colnames))
    dtypes = {name: table[name].dtype for table in tables for name in table.colnames}
    aligned = []
    for table in tables:
        table = Table(table, copy=False)
        for name in names:
            if name not in table.colnames:
                table[name] = np.full(len(table), missing_value(dtypes[name]), dtype=dtypes[name])
        aligned.append(table[names])
    return vstack(aligned, metadata_conflicts="silent")


def _chunks(tables: Iterator, chunk_size: int, counts: Counter) -> Iterator:
    """Re-cut a stream of tables into tables of ``chunk_size`` rows (the last may be shorter)."""
    pending: list = []
    size = 0
    for table in tables:
        pending.append(table)
        size += len(table)
        while size >= chunk_size:
            merged = _stack(pending)
            chunk, rest = merged[:chunk_size], merged[chunk_size:]
            chunk.meta = {"counts": dict(counts)}
            yield chunk
            pending, size = [rest], len(rest)
    if size:
        chunk = _stack(pending)
        chunk.meta = {"counts": dict(counts)}
        yield chunk


def iter_archive_rows(
    gaia_xp_paths: list[str],
    apogee_path: str | None,
    chunk_size: int = 10000,
    gaia_source_path: str | None = None,
) -> Iterator:
    """Dataset rows from Gaia archive XP files, with APOGEE labels joined when an allStar is given.

    What the build CLI runs for ``--gaia-xp FILES [--apogee FILE] [--gaia-source FILE]``.

    Parameters
    ----------
    gaia_xp_paths : list of str
        ``xp_continuous_mean_spectrum`` exports, any format `read_gaia_xp` reads. A source that appears
        in several files is kept once (first file wins) and counted as ``xp_duplicate``.
    apogee_path : str or None
        APOGEE DR17 allStar FITS file, or None for XP-only rows. Its rows go through
        `datasets_builder.apogee.iter_allstar_rows` (quality cuts) and are left-joined to the XP rows
        with `datasets_builder.crossmatch.join_rows` (by Gaia source id, else by position).
    chunk_size : int, optional, default 10000
        Rows per yielded table.
    gaia_source_path : str or None, optional, default None
        A ``gaia_source`` export giving G (and BP, RP, positions) per ``source_id``; see the module
        docstring for which G wins.

    Yields
    ------
    astropy.table.Table
        Dataset rows (`archive_rows`, plus the allStar's columns when given). ``meta["counts"]`` holds
        the running counts: ``xp_rows_read``, ``xp_duplicate``, ``no_phot_g_mean_mag``, ``rows_written``,
        ``matched_source_id``, ``matched_position``, ``without_apogee``, and the allStar's counts prefixed
        ``apogee_`` (see `datasets_builder.apogee.iter_allstar_rows`; plus ``apogee_duplicate_source_id``,
        rows dropped by `datasets_builder.apogee.deduplicate_source_ids`).

    Raises
    ------
    ValueError
        From the readers, naming the bad file.
    """
    from .apogee import deduplicate_source_ids, iter_allstar_rows

    if chunk_size < 1:
        raise ValueError(f"chunk_size must be positive, got {chunk_size}")
    counts: Counter = Counter()
    labels = None
    if apogee_path is not None:
        apogee_counts: Counter = Counter()
        labels = _stack(list(iter_allstar_rows(apogee_path, counts=apogee_counts)))
        labels, apogee_counts["duplicate_source_id"] = deduplicate_source_ids(labels)
        counts.update({f"apogee_{key}": value for key, value in apogee_counts.items()})
    gaia_source = read_gaia_source(gaia_source_path) if gaia_source_path is not None else None

    def converted() -> Iterator:
        seen: set[int] = set()
        for path in gaia_xp_paths:
            xp = read_gaia_xp(Path(path), correlations=False)
            counts["xp_rows_read"] += len(xp)
            new = np.array([sid not in seen for sid in xp["source_id"].tolist()], dtype=bool)
            counts["xp_duplicate"] += int((~new).sum())
            xp = xp[new]
            seen.update(xp["source_id"].tolist())
            if gaia_source is not None:
                fill_missing_columns(xp, gaia_source, gaia_source["source_id"], GAIA_SOURCE_COLUMNS)
            if labels is not None:
                fill_missing_columns(xp, labels, labels["gaia_dr3_source_id"], ("phot_g_mean_mag",))
            if "phot_g_mean_mag" not in xp.colnames:
                if gaia_source is None and labels is None:
                    raise ValueError(
                        f"{path}: no Gaia G magnitude to normalise the XP coefficients: the file has no "
                        "'phot_g_mean_mag' column; give a gaia_source table (--gaia-source FILE) or an "
                        "allStar (--apogee FILE), or join gaiadr3.gaia_source in the archive query"
                    )
                xp["phot_g_mean_mag"] = np.full(len(xp), np.nan)
            rows = archive_rows(xp)
            counts.update(rows.meta.pop("counts"))
            if labels is not None:
                rows = join_rows(rows, labels)
                how = np.asarray(rows["crossmatch"])
                counts["matched_source_id"] += int((how == "source_id").sum())
                counts["matched_position"] += int((how == "position").sum())
                counts["without_apogee"] += int((how == "").sum())
            counts["rows_written"] += len(rows)
            yield rows

    yield from _chunks(converted(), chunk_size, counts)
