"""Read Gaia DR3 ``xp_continuous_mean_spectrum`` files as the Gaia archive exports them.

The archive (https://gea.esac.esa.int/archive/) serves the table in CSV, ECSV, FITS and VOTable, the
text formats optionally gzip-compressed, and the bulk-download area (``Gaia/gdr3/Spectroscopy/
xp_continuous_mean_spectrum/``) serves ECSV files named ``*.csv.gz``. The formats pack the array columns
differently:

- CSV: a string ``"(c0, c1, ...)"`` per cell; an empty field when the band has no solution.
- ECSV: a JSON list ``"[c0,c1,...]"`` per cell (``subtype: float64[null]``).
- FITS: variable-length array columns (``PD(55)``, ``PE(55)``, ``PE(1485)``); a zero-length array
  when the band has no solution. Fixed-length vector columns (``55D``) are read too.
- VOTable: ``arraysize="*"`` fields; an empty or null cell when the band has no solution.

`read_gaia_xp` returns the same table, with the same numbers, whatever the format: the scalar and
array columns are cast to the archive's own data types first (``*_coefficients`` float64, their errors
and correlations float32, from the archive data model that the ECSV header and the FITS ``TFORM`` state),
so a float32 printed in a CSV string and the same float32 stored in FITS give identical values.

Gaia data: ESA/Gaia/DPAC, CC BY-SA 3.0 IGO. Data model: Gaia DR3 documentation, table
``gaiadr3.xp_continuous_mean_spectrum``; the representation: De Angeli et al. 2023, A&A 674, A2;
Carrasco et al. 2021, A&A 652, A86.
"""

from __future__ import annotations

import gzip
import zlib
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from .constants import GAIA_DR3_XP_BASES, XP_N_COEFFICIENTS
from .xp import XP_BANDS

__all__ = [
    "GAIA_SOURCE_COLUMNS",
    "MISSING_N_RELEVANT_BASES",
    "XP_N_CORRELATIONS",
    "read_gaia_table",
    "read_gaia_xp",
]

XP_N_CORRELATIONS = XP_N_COEFFICIENTS * (XP_N_COEFFICIENTS - 1) // 2
"""1485: the strictly lower triangle of the 55 x 55 correlation matrix, which is how the archive packs
``*_coefficient_correlations`` (derived: n (n - 1) / 2 for n = 55)."""

MISSING_N_RELEVANT_BASES = 0
"""``*_n_relevant_bases`` given to a band without a solution: no basis function is relevant, so every
coefficient of that band counts as missing wherever coefficients at or beyond it are masked."""

_ARRAY_COLUMNS = {
    "coefficients": (np.float64, np.float64),
    "coefficient_errors": (np.float32, np.float64),
    "coefficient_correlations": (np.float32, np.float32),
}
"""Per-band array columns: suffix -> (archive data type, returned data type). Values are cast to the archive type
first, so that every export format gives the same numbers. Their length comes from the band's basis (`_length`)."""


def _length(suffix: str, n_coefficients: int) -> int:
    """Values per row of the array column ``<band>_<suffix>`` for a basis of ``n_coefficients`` functions: the
    coefficients and their errors, or the strictly lower triangle of their correlation matrix (n (n - 1) / 2)."""
    return (
        n_coefficients * (n_coefficients - 1) // 2 if suffix == "coefficient_correlations" else n_coefficients
    )


_FLOAT_COLUMNS = ("standard_deviation", "chi_squared", "relative_shrinking")
"""Per-band float32 diagnostics kept when present (NaN for a band without a solution)."""

GAIA_SOURCE_COLUMNS = (
    "phot_g_mean_mag",
    "phot_bp_mean_mag",
    "phot_rp_mean_mag",
    "phot_bp_mean_flux_over_error",
    "phot_rp_mean_flux_over_error",
    "ra",
    "dec",
    "pmra",
    "pmdec",
)
"""``gaiadr3.gaia_source`` columns used downstream (G for the normalisation, BP - RP and its error,
positions and proper motions for the cross-match). Kept as float64 (NaN when null) when an ADQL query
joined them into the XP export; also what a ``--gaia-source`` table may provide."""

_REQUIRED = ("source_id", *(f"{b}_{c}" for b in XP_BANDS for c in ("coefficients", "coefficient_errors")))
_REQUIRED += tuple(f"{b}_n_relevant_bases" for b in XP_BANDS)

_SUFFIX_FORMATS = {
    ".csv": "csv",
    ".ecsv": "ecsv",
    ".fits": "fits",
    ".fit": "fits",
    ".fts": "fits",
    ".vot": "votable",
    ".votable": "votable",
    ".xml": "votable",
}
_ECSV_SIGNATURE = "# %ECSV"


def _detect_format(path: Path) -> str:
    """Export format from the file name (``.gz`` stripped); a ``.csv`` that starts like ECSV is ECSV."""
    name = path.name.lower()
    compressed = name.endswith(".gz")
    suffix = Path(name[:-3] if compressed else name).suffix
    if suffix not in _SUFFIX_FORMATS:
        known = ", ".join(sorted(_SUFFIX_FORMATS))
        raise ValueError(
            f"{path}: unknown Gaia archive export format {suffix!r} (known: {known}, optionally .gz)"
        )
    fmt = _SUFFIX_FORMATS[suffix]
    if fmt == "csv":
        opener = gzip.open if compressed else open
        try:
            with opener(path, "rt", encoding="utf-8", errors="replace") as stream:
                if stream.read(len(_ECSV_SIGNATURE)) == _ECSV_SIGNATURE:
                    fmt = "ecsv"
        except (OSError, EOFError) as exc:  # gzip.BadGzipFile is an OSError
            raise ValueError(f"{path}: cannot read as a Gaia archive CSV file: {exc}") from exc
    return fmt


def read_gaia_table(path: str | Path):
    """Read any Gaia archive export (CSV, ECSV, FITS, VOTable; text formats optionally .gz) as astropy reads it.

    Used for ``xp_continuous_mean_spectrum`` (see `read_gaia_xp`) and for side tables such as a
    ``gaia_source`` query result. Columns are returned as the file types them (array cells of a CSV stay
    strings).

    Parameters
    ----------
    path : str or Path
        The exported file; the format comes from its suffix (see `read_gaia_xp`).

    Returns
    -------
    astropy.table.Table

    Raises
    ------
    ValueError
        Naming the file: no such file, empty, unknown format, truncated or not parsable.
    """
    from astropy.table import Table

    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: no such file")
    if path.stat().st_size == 0:
        raise ValueError(f"{path}: empty file")
    fmt = _detect_format(path)

    # CSV goes through astropy's pure-Python "basic" reader: its "csv" reader and the fast C reader pad a
    # row cut short by truncation with empty fields, which would read as a band without a solution.
    options = {
        "csv": {"format": "ascii.basic", "delimiter": ",", "fast_reader": False, "guess": False},
        "ecsv": {"format": "ascii.ecsv", "guess": False},
        "fits": {"format": "fits"},
        "votable": {"format": "votable"},
    }[fmt]
    if fmt in ("csv", "ecsv") and _last_byte(path, fmt) != b"\n":
        # A text export ends with a newline; a file cut inside its last field would still parse.
        raise ValueError(f"{path}: file is truncated (does not end with a newline)")
    # astropy raises many types for damaged files (OSError, EOFError, ValueError, InconsistentTableError, ...)
    try:
        return Table.read(path, **options)
    except Exception as exc:
        raise ValueError(f"{path}: cannot read as a Gaia archive {fmt.upper()} file: {exc}") from exc


def _last_byte(path: Path, fmt: str) -> bytes:
    """The last byte of a file's content, decompressed for ``.gz`` (which is read through to its end, so that a
    cut compressed stream raises too); ``ValueError`` naming the file when it cannot be read."""
    if not path.name.lower().endswith(".gz"):
        with open(path, "rb") as stream:
            stream.seek(-1, 2)
            return stream.read(1)
    last = b""
    try:
        with gzip.open(path, "rb") as stream:
            while chunk := stream.read(1 << 24):
                last = chunk[-1:]
    except (OSError, EOFError, zlib.error) as exc:  # gzip.BadGzipFile is an OSError
        raise ValueError(f"{path}: cannot read as a Gaia archive {fmt.upper()} file (gzip): {exc}") from exc
    if not last:
        raise ValueError(f"{path}: empty file (once decompressed)")
    return last


def _is_masked(value) -> bool:
    return value is None or value is np.ma.masked or (np.ma.isMaskedArray(value) and np.all(value.mask))


def _parse_cell(value) -> np.ndarray | None:
    """One array cell as a float64 array, or None when the band has no solution.

    Text cells are ``"(a, b, ...)"`` (CSV) or ``"[a,b,...]"`` (ECSV read as text); array cells may be
    masked arrays (VOTable) or zero-length arrays (FITS).
    """
    if _is_masked(value):
        return None
    if isinstance(value, bytes):
        value = value.decode()
    if isinstance(value, str):
        text = value.strip().strip("()[]").strip()
        if not text or text.lower() == "null":
            return None
        return np.array([float(item) for item in text.split(",")], dtype=np.float64)
    array = np.ma.filled(np.ma.asarray(value, dtype=np.float64), np.nan).ravel()
    if array.size == 0 or np.all(np.isnan(array)):
        return None
    return array


def _parse_text_column(column, length: int, archive_dtype, out: np.ndarray, present: np.ndarray) -> bool:
    """Fast path for a CSV array column: parse every cell in one numpy conversion, filling ``out`` and
    ``present`` in place. Returns False, leaving both untouched, when any cell is malformed, so that the
    per-cell path can name the offending row."""
    text = np.char.strip(np.ma.filled(column, "").astype(str), " ()[]")
    has_values = (text != "") & (np.char.lower(text) != "null")
    if not np.all(np.char.count(text[has_values], ",") + 1 == length):
        return False
    if has_values.any():
        try:  # numpy's C text parser; raises on a malformed number
            values = np.fromstring(",".join(text[has_values]), dtype=np.float64, sep=",")
        except ValueError:
            return False
        if values.size != has_values.sum() * length:
            return False
        out[has_values] = values.reshape(-1, length).astype(archive_dtype)
    present[:] = has_values
    return True


_VALID_RANGE = {
    "coefficients": (-np.inf, np.inf, "finite"),
    "coefficient_errors": (0.0, np.inf, "finite and >= 0"),
    "coefficient_correlations": (-1.0, 1.0, "within -1 .. 1"),
}
"""Per-band array columns: suffix -> (lowest, highest, in words) of their finite values; NaN (missing) passes."""


def _array_column(table, band: str, suffix: str, path: Path, source_id: np.ndarray, n_coefficients: int):
    """`_parse_array_column`, then ValueError naming the file, column, row and position of the first value outside
    `_VALID_RANGE` (an infinite coefficient, a negative error, a correlation beyond 1)."""
    out, present = _parse_array_column(table, band, suffix, path, source_id, n_coefficients)
    low, high, what = _VALID_RANGE[suffix]
    bad = ~np.isnan(out) & ~(np.isfinite(out) & (out >= low) & (out <= high))
    if bad.any():
        row, index = (int(i) for i in np.argwhere(bad)[0])
        raise ValueError(
            f"{path}: column '{band}_{suffix}', row {row} (source_id {source_id[row]}), value {index}: "
            f"{out[row, index]} must be {what}"
        )
    return out, present


def _parse_array_column(
    table, band: str, suffix: str, path: Path, source_id: np.ndarray, n_coefficients: int
):
    """Array column ``<band>_<suffix>`` as an (n, length) array of the returned type (see
    `_ARRAY_COLUMNS`, `_length`), cast through the archive type, NaN where the band has no solution; and the
    (n,) boolean mask of rows that have one."""
    name = f"{band}_{suffix}"
    length, (archive_dtype, dtype) = _length(suffix, n_coefficients), _ARRAY_COLUMNS[suffix]
    column = table[name]
    out = np.full((len(table), length), np.nan, dtype=dtype)
    present = np.zeros(len(table), dtype=bool)
    if column.ndim == 2 and column.shape[1] != length:
        raise ValueError(f"{path}: column {name!r} has {column.shape[1]} values per row, expected {length}")
    if column.dtype.kind in "US" and _parse_text_column(column, length, archive_dtype, out, present):
        return out, present
    for i, cell in enumerate(list(column) if column.ndim == 2 else column):
        try:
            values = _parse_cell(cell)
        except ValueError as exc:
            raise ValueError(f"{path}: column {name!r}, row {i} (source_id {source_id[i]}): {exc}") from exc
        if values is None:
            continue
        if values.size != length:
            raise ValueError(
                f"{path}: column {name!r}, row {i} (source_id {source_id[i]}): "
                f"{values.size} values, expected {length}"
            )
        out[i] = values.astype(archive_dtype)
        present[i] = True
    return out, present


def _n_relevant_bases(
    column, present: np.ndarray, path: Path, source_id: np.ndarray, n_coefficients: int
) -> np.ndarray:
    """``*_n_relevant_bases`` as int16: `MISSING_N_RELEVANT_BASES` where the band has no solution,
    ValueError (naming the row) where it has one but the count is empty, not a whole number or outside
    0..n_coefficients."""
    counts = float_column(column, path)
    values = np.where(present, np.nan_to_num(counts, nan=MISSING_N_RELEVANT_BASES), MISSING_N_RELEVANT_BASES)
    whole = np.isfinite(values) & (values == np.round(values))
    bad = present & (np.isnan(counts) | ~whole | (values < 0) | (values > n_coefficients))
    if np.any(bad):
        row = int(np.flatnonzero(bad)[0])
        raise ValueError(
            f"{path}: column {column.name!r}, row {row} (source_id {source_id[row]}): "
            f"{'empty' if np.isnan(counts[row]) else values[row]}, expected a whole number 0..{n_coefficients}"
        )
    return values.astype(np.int16)


def float_column(column, path: Path) -> np.ndarray:
    """A scalar column as float64 with masked entries NaN; ValueError naming the file and column if it is text."""
    try:
        return np.ma.filled(np.ma.asarray(column, dtype=np.float64), np.nan)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{path}: column {column.name!r} is not numeric ({column.dtype}): {exc}") from None


def _scalar_column(table, name: str, dtype, path: Path) -> np.ndarray:
    """A scalar column as ``dtype`` with masked entries NaN (floats only)."""
    return float_column(table[name], path).astype(dtype)


def _check_basis(
    raw, band: str, basis: Mapping[str, int], present: np.ndarray, path: Path, source_id
) -> None:
    """ValueError naming the file, column, row and value where a row with a solution of ``band`` is expressed in
    another basis than ``basis`` (its ``<band>_basis_function_id``, when the export has that column)."""
    name = f"{band}_basis_function_id"
    if name not in raw.colnames:
        return
    ids = float_column(raw[name], path)
    bad = present & (ids != basis["basis_function_id"])
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise ValueError(
            f"{path}: column {name!r}, row {row} (source_id {source_id[row]}): basis {ids[row]:g}, but the model "
            f"reads {band.upper()} coefficients in basis {basis['basis_function_id']} ({basis['n_coefficients']} "
            "coefficients; Gaia DR3's); coefficients of another basis (another Gaia release) need a model whose "
            "vocabulary declares it (xp_bases)"
        )


def read_gaia_xp(
    path: str | Path, *, correlations: bool = True, xp_bases: Mapping[str, Mapping[str, int]] | None = None
):
    """Read a Gaia DR3 archive ``xp_continuous_mean_spectrum`` file (CSV, ECSV, FITS or VOTable; .gz).

    Parameters
    ----------
    path : str or Path
        The exported file. The format comes from the suffix (``.csv``, ``.ecsv``, ``.fits``/``.fit``/
        ``.fts``, ``.vot``/``.votable``/``.xml``, each optionally followed by ``.gz``); a ``.csv`` whose
        first line is the ECSV signature (the bulk-download files) is read as ECSV.
    correlations : bool, optional, default True
        Keep ``bp_coefficient_correlations`` and ``rp_coefficient_correlations`` when the file has them
        (1485 float32 per band and star: by far the largest columns).
    xp_bases : mapping, optional, default `GAIA_DR3_XP_BASES`
        Per band, the ``basis_function_id`` and ``n_coefficients`` the coefficients must be expressed in (a
        model's ``StarTokenizer.xp_bases``): a row of another basis is refused, and the array columns must hold
        that many coefficients.

    Returns
    -------
    astropy.table.Table
        One row per source, in file order:

        - ``source_id`` (int64): Gaia DR3 source identifier.
        - ``bp_coefficients``, ``rp_coefficients`` ((n, 55) float64): continuous-representation
          coefficients, in the archive's flux units (e-/s per basis function); NaN for a band
          without a solution.
        - ``bp_coefficient_errors``, ``rp_coefficient_errors`` ((n, 55) float64): their 1-sigma
          uncertainties (archive float32, widened exactly); NaN for a missing band.
        - ``bp_n_relevant_bases``, ``rp_n_relevant_bases`` (int16): number of relevant basis functions;
          `MISSING_N_RELEVANT_BASES` (0) for a missing band.
        - when present in the file: ``bp_standard_deviation``, ``bp_chi_squared``,
          ``bp_relative_shrinking`` and the RP ones (float32, NaN for a missing band);
          ``bp_coefficient_correlations``, ``rp_coefficient_correlations`` ((n, 1485) float32,
          lower triangle packed as by the archive; only with ``correlations=True``); and the
          `GAIA_SOURCE_COLUMNS` an ADQL join added (float64, NaN when null).

    Raises
    ------
    ValueError
        Naming the file and, where it applies, the column and row: unknown format, empty, truncated or
        corrupt file, a required column missing, an array cell of the wrong length or unparsable,
        a duplicated ``source_id``, a ``*_basis_function_id`` other than ``xp_bases``' for a band with a
        solution, an ``n_relevant_bases`` that is not a whole number in 0..n_coefficients for a band with
        a solution, an infinite coefficient, a negative or infinite coefficient error, a correlation outside
        -1..1, a column of text where numbers belong. Compressed and plain files get the same checks.

    Examples
    --------
    >>> xp = read_gaia_xp("XP_CONTINUOUS_RAW.csv")  # doctest: +SKIP
    >>> xp["bp_coefficients"].shape  # doctest: +SKIP
    (2, 55)
    """
    from astropy.table import Table

    path = Path(path)
    raw = read_gaia_table(path)
    missing = [name for name in _REQUIRED if name not in raw.colnames]
    if missing:
        raise ValueError(
            f"{path}: missing column(s) {', '.join(missing)} (not an xp_continuous_mean_spectrum file?)"
        )

    source_column = raw["source_id"]
    if np.ma.is_masked(source_column):
        row = int(np.flatnonzero(np.ma.getmaskarray(source_column))[0])
        raise ValueError(f"{path}: column 'source_id', row {row}: empty")
    if source_column.dtype.kind not in "iu":
        raise ValueError(f"{path}: column 'source_id' is {source_column.dtype}, expected integers")
    source_id = np.asarray(source_column, dtype=np.int64)
    unique, counts = np.unique(source_id, return_counts=True)
    if np.any(counts > 1):
        raise ValueError(f"{path}: column 'source_id': source {unique[counts > 1][0]} appears more than once")

    out = Table()
    out["source_id"] = source_id
    xp_bases = xp_bases or GAIA_DR3_XP_BASES
    for band in XP_BANDS:
        if band not in xp_bases:
            raise ValueError(
                f"{path}: no XP basis declared for band {band!r} (xp_bases has {sorted(xp_bases)})"
            )
        n_coefficients = xp_bases[band]["n_coefficients"]
        coefficients, present = _array_column(raw, band, "coefficients", path, source_id, n_coefficients)
        _check_basis(raw, band, xp_bases[band], present, path, source_id)
        out[f"{band}_coefficients"] = coefficients
        for suffix in ("coefficient_errors", "coefficient_correlations"):
            name = f"{band}_{suffix}"
            if name in raw.colnames and (correlations or suffix != "coefficient_correlations"):
                values, _ = _array_column(raw, band, suffix, path, source_id, n_coefficients)
                values[~present] = np.nan  # errors of a band without coefficients carry no information
                out[name] = values
        out[f"{band}_n_relevant_bases"] = _n_relevant_bases(
            raw[f"{band}_n_relevant_bases"], present, path, source_id, n_coefficients
        )
        for suffix in _FLOAT_COLUMNS:
            name = f"{band}_{suffix}"
            if name in raw.colnames:
                values = _scalar_column(raw, name, np.float32, path)
                values[~present] = np.nan
                out[name] = values
    for name in GAIA_SOURCE_COLUMNS:
        if name in raw.colnames:
            out[name] = _scalar_column(raw, name, np.float64, path)
    out.meta["source_file"] = str(path)
    return out
