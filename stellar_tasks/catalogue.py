"""Catalogue-scale prediction: star tables and Gaia archive XP files in, a table of predictions with units out.

`predict_table` is the table form of the ``tabular-regression`` pipeline: the same numbers, as an astropy
``QTable`` with ``<name>`` and ``<name>_std`` columns in physical units and a ``reason`` column that says why a
row could not be predicted (empty when it was). `iter_file_chunks` reads an input in chunks, `write_table`
writes the result atomically; ``stellar-foundation predict`` (`stellar_tasks.cli`) puts them together.

Inputs:
    * Gaia DR3 archive ``xp_continuous_mean_spectrum`` files, in every format
      `datasets_builder.gaia_archive.read_gaia_xp` reads (CSV, ECSV, FITS, VOTable, optionally .gz). Their
      coefficients are divided by the G-band flux (`datasets_builder.archive.archive_rows`), which needs
      ``phot_g_mean_mag``: a column of the file (an ADQL join with ``gaiadr3.gaia_source``) or a separate
      ``gaia_source`` table; a source without G gets a reason, never a guessed G.
    * Star tables (Parquet, FITS, ECSV) whose columns are vocabulary names in physical units plus optional
      ``<name>_err``, like the dataset's own shards. Parquet is streamed by record batches.
"""

from __future__ import annotations

import copy
import gzip
import re
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import torch

from datasets_builder.atomic import atomic_path
from modeling_stellar import StarInputError
from modeling_stellar.pipeline_stellar import DEFAULT_BATCH_SIZE, positive_integer
from stellar_tasks.distillation import DistilledPredictor
from stellar_tasks.inference import mask_to_inputs, predict_arrays

__all__ = [
    "AUTO_PRECISION",
    "ID_COLUMNS",
    "PRECISIONS",
    "REASON_COLUMN",
    "archive_chunk",
    "is_gaia_xp_file",
    "iter_file_chunks",
    "model_precision",
    "native_bfloat16",
    "precision_dtype",
    "predict_chunk",
    "predict_table",
    "write_table",
]

REASON_COLUMN = "reason"
"""Why a row has no prediction; empty when it has one."""

ID_COLUMNS = ("gaia_dr3_source_id", "source_id", "apogee_id")
"""Identifier columns copied from a star table to the output when present."""

NO_INPUT = "nothing to read: every observation is NaN or requested"
NOT_FINITE = "the model's answer is not finite (an input far outside its training range?)"
NO_G = "no phot_g_mean_mag: the XP coefficients cannot be normalised (give --gaia-source)"

PRECISIONS = {"float32": torch.float32, "bfloat16": torch.bfloat16}
"""Arithmetic of the model's pass -> the dtype of its weights and activations: float32 (the weights' own) or
bfloat16 (a bfloat16 copy of the model: AMX / AVX-512-BF16 CPUs and GPUs; 1.2x faster on the model stage than
``torch.autocast``, which keeps float32 activations between the products, and 1.7x faster than float32). Int8
(ONNX Runtime dynamic quantisation) is not offered: no faster than float32 here and far less accurate. What each one
costs and gives is measured by ``benchmarks/bench_catalogue.py``; ``tests/test_fast_path.py`` guards bfloat16's
accuracy."""

DEFAULT_PRECISION = "float32"
"""The library's default (`predict_table`): the weights' own arithmetic."""

AUTO_PRECISION = "auto"
"""bfloat16 where the model's device multiplies in it natively (`native_bfloat16`), float32 elsewhere: the predict
command's default, as bfloat16 makes the whole command 1.4x faster on such CPUs within the accuracy guard."""

OUTPUT_FORMATS = {".parquet": "parquet", ".fits": "fits", ".fit": "fits", ".ecsv": "ascii.ecsv"}
"""Output file suffix -> astropy writer format."""

_TABLE_SUFFIXES = (".parquet", ".fits", ".fit", ".fts", ".ecsv")
_XP_ONLY_SUFFIXES = (".csv", ".vot", ".votable", ".xml")


def predict_table(
    predictor,
    table,
    requests: Sequence[str] | None = None,
    batch_size: int | None = None,
    precision: str = DEFAULT_PRECISION,
    distilled: DistilledPredictor | None = None,
    inputs: Sequence[str] | None = None,
):
    """Predict ``requests`` for every row of a star table; rows that cannot be predicted get a reason.

    Parameters
    ----------
    predictor : StellarParameterPipeline
        ``pipeline(model=..., trust_remote_code=True)``; its model and tokenizer are used.
    table : astropy.table.Table or pandas.DataFrame
        One row per star, columns named as the vocabulary in physical units (plus ``<name>_err``); other
        columns are ignored. NaN (or a masked entry) = not observed.
    requests : sequence of str, optional
        Names to predict; default the pipeline's (Teff, log g, metallicity).
    batch_size : int, optional, default 1024
        Stars per model pass.
    precision : {"float32", "bfloat16", "auto"}, optional, default "float32"
        Arithmetic of the model's pass (`PRECISIONS`, or `AUTO_PRECISION`); the answers are float64 either way.
    distilled : stellar_tasks.distillation.DistilledPredictor, optional
        The model's distilled fast path (on the CPU, its products in ``precision`` too): it answers the rows it
        serves (`DistilledPredictor.serves`: exactly its inputs observed, inside its training range), the model
        the others.
    inputs : sequence of str, optional
        The only observations read (`stellar_tasks.inference.mask_to_inputs`); default every observed one. A row
        observing more than the distilled predictor's inputs is served once ``inputs`` are exactly those.

    Returns
    -------
    astropy.table.QTable
        One row per input row, in order: ``<name>`` and ``<name>_std`` (float64 Quantity in the name's unit; NaN
        when not predicted) for each request, and ``reason`` (str): empty, or the tokenizer's message for a bad
        value of that row (e.g. "observation 'bp3': value inf is not finite ..."), or that the row has nothing to
        read once the requests are removed.
    """
    import astropy.units as u
    from astropy.table import QTable, Table

    tokenizer = predictor.feature_extractor
    requests = list(requests or predictor.default_requests())
    is_pandas = hasattr(table, "iloc") and not hasattr(table, "colnames")
    stars = Table.from_pandas(table) if is_pandas else Table(table, copy=False)
    values, errors, reasons = _standardise(tokenizer, stars)
    if inputs is not None:
        values = mask_to_inputs(tokenizer, values, inputs)
    served = np.zeros(len(stars), dtype=bool)
    if distilled is not None:
        served = distilled.serves(tokenizer, values, errors, requests)
    mean = np.full((len(stars), len(requests)), np.nan)
    std, usable = np.full_like(mean, np.nan), served.copy()
    if served.any():
        mean[served], std[served] = distilled.predict_arrays(
            tokenizer,
            values[served],
            errors[served],
            requests,
            precision_dtype(precision, torch.device("cpu")),
        )
    rest = ~served
    if rest.any():
        mean[rest], std[rest], usable[rest] = predict_arrays(
            model_precision(predictor.model, precision),
            tokenizer,
            values[rest],
            errors[rest],
            requests,
            batch_size=DEFAULT_BATCH_SIZE if batch_size is None else batch_size,
        )
    reasons = np.where((reasons == "") & ~usable, NO_INPUT, reasons)
    unanswered = ~(np.isfinite(mean).all(axis=1) & np.isfinite(std).all(axis=1))
    reasons = np.where((reasons == "") & unanswered, NOT_FINITE, reasons)  # every row: an answer or a reason
    result = QTable()
    for j, name in enumerate(requests):
        unit = u.Unit(tokenizer.units[name])
        result[name] = mean[:, j] * unit
        result[f"{name}_std"] = std[:, j] * unit
    result[REASON_COLUMN] = reasons
    return result


def predict_chunk(
    predictor,
    chunk,
    requests: list[str],
    batch_size: int,
    precision: str = DEFAULT_PRECISION,
    distilled: DistilledPredictor | None = None,
    inputs: Sequence[str] | None = None,
):
    """The output rows of one input chunk: its identifier columns, then `predict_table`'s columns; a reason the
    reader already gave (e.g. no G) wins over the model's "nothing to read"."""
    from astropy.table import QTable

    predicted = predict_table(predictor, chunk, requests, batch_size, precision, distilled, inputs)
    known = np.asarray(chunk[REASON_COLUMN]) != ""
    predicted[REASON_COLUMN] = np.where(known, chunk[REASON_COLUMN], predicted[REASON_COLUMN])
    part = QTable()
    for name in [name for name in ID_COLUMNS if name in chunk.colnames]:
        part[name] = chunk[name]
    for name in predicted.colnames:
        part[name] = predicted[name]
    return part


def native_bfloat16(device: torch.device) -> bool:
    """Whether ``device`` multiplies in bfloat16 natively: a CUDA GPU that supports it, or a CPU with AMX or
    AVX-512-BF16 (torch's own CPU checks, which pick its bfloat16 kernels)."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        return torch.cpu._is_amx_tile_supported() or torch.cpu._is_avx512_bf16_supported()
    return False


def model_precision(model: torch.nn.Module, precision: str) -> torch.nn.Module:
    """The model that runs the pass in ``precision`` (one of `PRECISIONS` or `AUTO_PRECISION`; ``ValueError``
    otherwise): ``model`` itself when its weights already have that dtype, else a copy cast to it (``model`` is
    left as it is; copying the few hundred thousand weights takes milliseconds, against seconds for a chunk's
    pass)."""
    dtype = precision_dtype(precision, next(model.parameters()).device)
    if model.dtype == dtype:
        return model
    return copy.deepcopy(model).to(dtype)


def precision_dtype(precision: str, device: torch.device) -> torch.dtype:
    """The dtype of ``precision`` (one of `PRECISIONS` or `AUTO_PRECISION`; ``ValueError`` otherwise) on ``device``."""
    if precision == AUTO_PRECISION:
        precision = "bfloat16" if native_bfloat16(device) else "float32"
    if precision not in PRECISIONS:
        raise ValueError(
            f"precision must be one of {', '.join(PRECISIONS)}, {AUTO_PRECISION}; got {precision!r}"
        )
    return PRECISIONS[precision]


def _standardise(tokenizer, stars) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``tokenizer.to_arrays`` of every row that it accepts; the others stay NaN with its message as reason.

    The tokenizer stops at the first bad row; only then are rows read one by one to find every bad one. Its
    errors name star 0 of the one-row table they were raised for, so the reason is their ``reason``.
    """
    reasons = np.full(len(stars), "", dtype=object)
    try:
        values, errors = tokenizer.to_arrays(stars, ignore_unknown=True)
    except ValueError:
        values = np.full((len(stars), tokenizer.vocab_size), np.nan)
        errors = np.zeros_like(values)
        for row in range(len(stars)):
            try:
                values[row : row + 1], errors[row : row + 1] = tokenizer.to_arrays(
                    stars[row : row + 1], ignore_unknown=True
                )
            except ValueError as error:
                reasons[row] = error.reason if isinstance(error, StarInputError) else str(error)
    return values, errors, reasons.astype(str)


# ------------------------------------------------------------------------------------------------ reading
def is_gaia_xp_file(path: str | Path) -> bool:
    """Whether ``path`` is a Gaia archive XP export (has ``bp_coefficients``) rather than a star table.

    CSV and VOTable are only read as XP exports; FITS and ECSV are told apart by their column names (header
    only); Parquet is always a star table.
    """
    path = Path(path)
    name = path.name.lower()
    suffix = Path(name[:-3] if name.endswith(".gz") else name).suffix
    if suffix in _XP_ONLY_SUFFIXES:
        return True
    if suffix == ".parquet":
        return False
    if suffix in (".fits", ".fit", ".fts"):
        from astropy.io import fits

        header = fits.getheader(path, 1)
        return "bp_coefficients" in {
            str(header.get(f"TTYPE{i}", "")).lower() for i in range(1, header["TFIELDS"] + 1)
        }
    if suffix == ".ecsv":
        opener = gzip.open if name.endswith(".gz") else open
        with opener(path, "rt", encoding="utf-8", errors="replace") as stream:
            for line in stream:
                if not line.startswith("#"):
                    return False
                if re.search(r"\bname: bp_coefficients\b", line):
                    return True
        return False
    known = ", ".join(sorted({*_XP_ONLY_SUFFIXES, *_TABLE_SUFFIXES}))
    raise ValueError(f"{path}: unknown input format {suffix!r} (known: {known}, text formats optionally .gz)")


def iter_file_chunks(
    path: str | Path, vocabulary: Sequence[str], chunk_size: int, gaia_source=None
) -> Iterator:
    """Every row of one input file once, in file order, as astropy Tables of at most ``chunk_size`` rows.

    Parameters
    ----------
    path : str or Path
        A Gaia archive XP export or a star table (see the module docstring).
    vocabulary : sequence of str
        Observation names to read (with their ``_err`` columns) from a star table.
    chunk_size : int
        Rows per yielded table.
    gaia_source : astropy.table.Table, optional
        `datasets_builder.archive.read_gaia_source` of a ``gaia_source`` export: G (and BP-RP) for XP sources whose file lacks it.

    Yields
    ------
    astropy.table.Table
        Identifier columns (`ID_COLUMNS` present; ``gaia_dr3_source_id`` for XP sources), observation columns,
        and ``reason`` (str): non-empty for rows that cannot be predicted whatever the model (no G).

    Raises
    ------
    ValueError
        Naming the file (and, for Gaia archive exports, the column and row): missing, empty, damaged, not a table;
        or a ``chunk_size`` that is not a positive integer.
    """
    positive_integer(chunk_size, "chunk_size")
    path = Path(path)
    wanted = [*vocabulary, *(f"{name}_err" for name in vocabulary), *ID_COLUMNS]
    try:
        if is_gaia_xp_file(path):
            yield from _xp_chunks(path, chunk_size, gaia_source)
        elif path.name.lower().endswith(".parquet"):
            yield from _parquet_chunks(path, wanted, chunk_size)
        else:
            yield from _table_chunks(path, wanted, chunk_size)
    except (
        Exception
    ) as error:  # pyarrow, astropy, gzip and the OS raise many types for a missing or damaged file
        if isinstance(error, ValueError) and str(path) in str(error):
            raise  # the Gaia archive readers' own message, naming the file and the row
        raise ValueError(f"{path}: cannot read as a star table: {type(error).__name__}: {error}") from error


def _xp_chunks(path: Path, chunk_size: int, side) -> Iterator:
    """Dataset rows of an XP export, chunk by chunk (`archive_chunk`)."""
    from datasets_builder.gaia_archive import read_gaia_xp

    xp = read_gaia_xp(path, correlations=False)
    for start in range(0, len(xp), chunk_size):
        yield archive_chunk(xp[start : start + chunk_size], side)


def archive_chunk(xp, gaia_source=None):
    """Gaia archive XP rows -> one chunk of star rows, every source kept in order; one without G gets `NO_G`.

    Parameters
    ----------
    xp : astropy.table.Table
        Rows as `datasets_builder.gaia_archive.read_gaia_xp` returns them, optionally with ``gaia_source`` columns
        (``phot_g_mean_mag``, ...), which win over those of ``gaia_source``.
    gaia_source : astropy.table.Table, optional
        `datasets_builder.archive.read_gaia_source` of a ``gaia_source`` export, matched on ``source_id``.

    Returns
    -------
    astropy.table.Table
        ``gaia_dr3_source_id``, the float observation columns of `datasets_builder.archive.archive_rows` (NaN for
        a source without G) and ``reason``.
    """
    from astropy.table import Table

    from datasets_builder.archive import GAIA_SOURCE_COLUMNS, archive_rows, fill_missing_columns

    xp = Table(xp, copy=False)  # a new table: the columns filled below replace its own, not the caller's
    if gaia_source is not None:
        fill_missing_columns(xp, gaia_source, gaia_source["source_id"], GAIA_SOURCE_COLUMNS)
    if "phot_g_mean_mag" not in xp.colnames:
        xp["phot_g_mean_mag"] = np.full(len(xp), np.nan)
    has_g = np.isfinite(np.asarray(xp["phot_g_mean_mag"], dtype=np.float64))
    converted = archive_rows(xp)  # the rows with a G, in order
    chunk = Table({"gaia_dr3_source_id": np.asarray(xp["source_id"], dtype=np.int64)})
    for name in converted.colnames:
        if converted[name].dtype.kind == "f":
            column = np.full(len(xp), np.nan)
            column[has_g] = converted[name]
            chunk[name] = column
    chunk[REASON_COLUMN] = np.where(has_g, "", NO_G)
    return chunk


def _parquet_chunks(path: Path, wanted: list[str], chunk_size: int) -> Iterator:
    """Record batches of a Parquet star table (only the wanted columns are read)."""
    import pyarrow.parquet as pq
    from astropy.table import Table

    parquet = pq.ParquetFile(path)
    columns = [name for name in parquet.schema_arrow.names if name in set(wanted)]
    for batch in parquet.iter_batches(batch_size=chunk_size, columns=columns):
        chunk = Table({name: _numpy(batch.column(name)) for name in columns})
        chunk[REASON_COLUMN] = np.full(batch.num_rows, "", dtype=object).astype(str)
        yield chunk


def _numpy(column) -> np.ndarray:
    """A pyarrow column as numpy: numbers as they are (null = NaN), text as str (null = "", which astropy's writers
    take; they refuse Python objects)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
        return np.asarray(pc.fill_null(column, "").to_pylist(), dtype=str)
    return column.to_numpy(zero_copy_only=False)


def _table_chunks(path: Path, wanted: list[str], chunk_size: int) -> Iterator:
    """Slices of a FITS (memory-mapped) or ECSV star table."""
    from astropy.table import Table

    table = (
        Table.read(path, memmap=True)
        if path.suffix.lower() in (".fits", ".fit", ".fts")
        else Table.read(path)
    )
    table = table[[name for name in table.colnames if name in set(wanted)]]
    for start in range(0, len(table), chunk_size):
        chunk = table[start : start + chunk_size]
        chunk[REASON_COLUMN] = np.full(len(chunk), "", dtype=object).astype(str)
        yield chunk


# ------------------------------------------------------------------------------------------------ writing
def write_table(table, path: str | Path, overwrite: bool = False) -> Path:
    """Write ``table`` to ``path`` (Parquet, FITS or ECSV by suffix) through a temporary name and a rename.

    Raises
    ------
    ValueError
        For an unknown suffix, or when ``path`` exists and ``overwrite`` is false.
    """
    path = Path(path)
    fmt = OUTPUT_FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise ValueError(f"{path}: output must end in one of {', '.join(OUTPUT_FORMATS)}")
    if path.exists() and not overwrite:
        raise ValueError(f"{path} exists: pass overwrite=True (--overwrite) to replace it")
    with atomic_path(path) as staging:
        table.write(staging, format=fmt)
    return path
