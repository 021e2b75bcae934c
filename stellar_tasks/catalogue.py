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
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
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
    "BFLOAT16_SHIFT",
    "DEFAULT_PRECISION",
    "HINT_COLUMN",
    "ID_COLUMNS",
    "OUT_OF_RANGE_COLUMN",
    "PRECISIONS",
    "REASON_COLUMN",
    "archive_chunk",
    "check_column_names",
    "check_columns",
    "check_output",
    "is_gaia_xp_file",
    "iter_file_chunks",
    "load_predictor",
    "model_precision",
    "native_bfloat16",
    "precision_dtype",
    "predict_chunk",
    "predict_table",
    "reason_summary",
    "summary_lines",
    "table_columns",
    "write_table",
]

REASON_COLUMN = "reason"
"""Why a row has no prediction; empty when it has one."""

OUT_OF_RANGE_COLUMN = "out_of_range"
"""The inputs of a row outside the training stars' envelope (`StarTokenizer.out_of_range`), comma-separated; empty
when every input lies inside it. An answer resting on an extrapolation is never unflagged."""

HINT_COLUMN = "hint"
"""The likely cause of a row's inputs lying outside the envelope (`StarTokenizer.range_hints`); mostly empty."""

ID_COLUMNS = ("gaia_dr3_source_id", "source_id", "apogee_id")
"""Identifier columns copied from a star table to the output when present."""

NO_INPUT = "nothing to read: every observation is NaN or requested"
NOT_FINITE = "the model's answer is not finite (an input far outside its training range?)"
NO_G = "no phot_g_mean_mag: the XP coefficients cannot be normalised (give a phot_g_mean_mag column or --gaia-source)"
EMPTY_G = "phot_g_mean_mag is empty in the --gaia-source table: the XP coefficients cannot be normalised"
NOT_IN_GAIA_SOURCE = (
    "source_id not in the --gaia-source table: no phot_g_mean_mag to normalise the XP coefficients"
)

PRECISIONS = {"float32": torch.float32, "bfloat16": torch.bfloat16}
"""Arithmetic of the model's pass -> the dtype of its weights and activations: float32 (the weights' own) or
bfloat16 (a bfloat16 copy of the model: AMX / AVX-512-BF16 CPUs and GPUs; 1.2x faster on the model stage than
``torch.autocast``, which keeps float32 activations between the products, and 1.7x faster than float32). Int8
(ONNX Runtime dynamic quantisation) is not offered: no faster than float32 here and far less accurate. What each one
costs and gives is measured by ``benchmarks/bench_catalogue.py``; ``tests/test_fast_path.py`` guards bfloat16's
accuracy."""

DEFAULT_PRECISION = "float32"
"""The default of `predict_table` and of the predict command: the weights' own arithmetic, the pipeline's numbers."""

BFLOAT16_SHIFT = "0.55 of the model's sigma (99th percentile 0.22; Teff by up to 137 K)"
"""How far bfloat16 moves a star's answer from float32's: the largest |difference| / sigma over Teff, log g and
[Fe/H] of the 3,985 test-split stars (``benchmarks/bench_agreement.py``, 2 CPU cores); quoted in ``--help``."""

AUTO_PRECISION = "auto"
"""bfloat16 where the model's device multiplies in it natively (`native_bfloat16`), float32 elsewhere: an opt-in of the
predict command (1.4x faster on such CPUs, within the accuracy guard, but each star's answer moves; the default is
float32, so that the command and the pipeline give the same numbers)."""

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
        when not predicted) for each request, ``reason`` (str): empty, or the tokenizer's message for a bad
        value of that row (e.g. "observation 'bp3': value inf is not finite ..."), or that the row has nothing to
        read once the requests are removed; ``out_of_range`` (str, `OUT_OF_RANGE_COLUMN`): the inputs read outside
        the training stars' envelope, comma-separated (empty when none); ``hint`` (str, `HINT_COLUMN`): their likely
        cause. ``meta["served"]`` counts the rows each predictor answered (``model``, ``distilled``).
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
        served = distilled.serves(tokenizer, values, requests)
    mean = np.full((len(stars), len(requests)), np.nan)
    std, usable = np.full_like(mean, np.nan), served.copy()
    if served.any():
        mean[served], std[served] = distilled.predict_arrays(
            tokenizer,
            values[served],
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
    read = values.copy()
    read[:, tokenizer.convert_names_to_ids(requests)] = np.nan  # a requested name is never read
    result = QTable()
    for j, name in enumerate(requests):
        unit = u.Unit(tokenizer.units[name])
        result[name] = mean[:, j] * unit
        result[f"{name}_std"] = std[:, j] * unit
    result[REASON_COLUMN] = reasons
    result[OUT_OF_RANGE_COLUMN] = np.array(
        [",".join(names) for names in tokenizer.out_of_range_names(read)], str
    )
    result[HINT_COLUMN] = np.array(tokenizer.range_hints(read), dtype=str)
    answered = reasons == ""
    result.meta["served"] = {
        "model": int((answered & ~served).sum()),
        "distilled": int((answered & served).sum()),
    }
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
    part.meta["served"] = predicted.meta[
        "served"
    ]  # a row the reader gave a reason has nothing to read: not counted
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
    path: str | Path,
    vocabulary: Sequence[str],
    chunk_size: int,
    gaia_source=None,
    xp_bases: Mapping[str, Mapping[str, int]] | None = None,
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
    xp_bases : mapping, optional
        The model's ``StarTokenizer.xp_bases``: an XP export in another basis is refused (default: Gaia DR3's).

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
    with _read_errors_named(path):
        if is_gaia_xp_file(path):
            yield from _xp_chunks(path, chunk_size, gaia_source, xp_bases)
        elif path.name.lower().endswith(".parquet"):
            yield from _parquet_chunks(path, wanted, chunk_size)
        else:
            yield from _table_chunks(path, wanted, chunk_size)


def _xp_chunks(path: Path, chunk_size: int, side, xp_bases) -> Iterator:
    """Dataset rows of an XP export in the basis ``xp_bases``, chunk by chunk (`archive_chunk`)."""
    from datasets_builder.gaia_archive import read_gaia_xp

    xp = read_gaia_xp(path, correlations=False, xp_bases=xp_bases)
    for start in range(0, len(xp), chunk_size):
        yield archive_chunk(xp[start : start + chunk_size], side)


def archive_chunk(xp, gaia_source=None, listed: np.ndarray | None = None):
    """Gaia archive XP rows -> one chunk of star rows, every source kept in order; one without G gets `NO_G`.

    Parameters
    ----------
    xp : astropy.table.Table
        Rows as `datasets_builder.gaia_archive.read_gaia_xp` returns them, optionally with ``gaia_source`` columns
        (``phot_g_mean_mag``, ...), which win over those of ``gaia_source``. A source without G gets `NO_G`, or
        with a ``gaia_source``, `NOT_IN_GAIA_SOURCE` (absent from it) or `EMPTY_G` (listed without G).
    gaia_source : astropy.table.Table, optional
        `datasets_builder.archive.read_gaia_source` of a ``gaia_source`` export, matched on ``source_id``.
    listed : numpy.ndarray, optional
        (n,) bool, whether each source is in a ``gaia_source`` table that was joined into ``xp`` already (a HATS
        join): what its reason says when it has no G. Derived from ``gaia_source`` when that is given.

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
    if gaia_source is not None:
        listed = np.isin(chunk["gaia_dr3_source_id"], np.asarray(gaia_source["source_id"], dtype=np.int64))
    if listed is not None:
        chunk[REASON_COLUMN] = np.where(has_g, "", np.where(listed, EMPTY_G, NOT_IN_GAIA_SOURCE))
    else:
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


@contextmanager
def _read_errors_named(path: str | Path) -> Iterator[None]:
    """Any error while reading ``path`` as a ``ValueError`` naming it (pyarrow, astropy, gzip and the OS raise many
    types for a missing or damaged file); a ``ValueError`` that names it already (the Gaia archive readers' own, with
    the row) passes as it is."""
    try:
        yield
    except Exception as error:
        if isinstance(error, ValueError) and str(path) in str(error):
            raise
        raise ValueError(f"{path}: cannot read as a star table: {type(error).__name__}: {error}") from error


def load_predictor(model: str, device=None):
    """``pipeline(model=model, trust_remote_code=True)`` on ``device``; ``ValueError`` naming ``model`` when it is
    neither a model folder nor a Hub id the Hub gives (instead of the Hub client's "couldn't connect")."""
    from transformers import pipeline

    folder = Path(model)
    if folder.exists() and not (folder / "config.json").is_file():
        raise ValueError(f"{model}: not a model folder (no config.json)")
    try:
        return pipeline(model=str(model), trust_remote_code=True, device=device)
    except (OSError, ValueError) as error:
        if folder.exists():
            raise
        raise ValueError(
            f"{model}: no such model folder, and no Hub model of that id could be loaded "
            f"({type(error).__name__}: {str(error).splitlines()[0]})"
        ) from error


def table_columns(path: str | Path) -> list[str]:
    """The column names of a star table (Parquet, FITS, ECSV; read from its header), for `check_columns`."""
    path = Path(path)
    suffix = path.suffix.lower()
    with _read_errors_named(path):
        if suffix == ".parquet":
            import pyarrow.parquet as pq

            return list(pq.read_schema(path).names)
        if suffix in (".fits", ".fit", ".fts"):
            from astropy.io import fits

            header = fits.getheader(path, 1)
            return [str(header[f"TTYPE{i}"]) for i in range(1, header["TFIELDS"] + 1)]
        from astropy.table import Table

        return list(Table.read(path, format="ascii.ecsv").colnames)


def check_columns(tokenizer, paths: Sequence[str | Path], ignore_unknown: bool = False) -> list[str]:
    """The columns of the star tables among ``paths`` that are read as nothing (identifiers aside), once each
    (`check_column_names` of each; Gaia archive XP exports are not checked: their columns are the archive's)."""
    ignored: dict[str, None] = {}
    for path in paths:
        with _read_errors_named(path):
            archive = is_gaia_xp_file(path)
        if not archive:
            ignored.update(
                dict.fromkeys(check_column_names(tokenizer, table_columns(path), path, ignore_unknown))
            )
    return list(ignored)


def check_column_names(tokenizer, columns: Sequence[str], where, ignore_unknown: bool = False) -> list[str]:
    """The ``columns`` of the table ``where`` (a file or catalogue, for messages) that are read as nothing:
    neither an observation name, its ``_err``, nor an identifier (`ID_COLUMNS`).

    One that looks like a misspelt observation name (`StarTokenizer.near_miss`: ``Teff``, ``BPRP``) raises
    ``ValueError`` naming ``where``, the column and the name it is likely meant to be, unless ``ignore_unknown``: the
    pipeline refuses the same table, and a misspelt input must not be dropped without a word.
    """
    ignored = [name for name in tokenizer.unknown_columns(columns) if name not in ID_COLUMNS]
    for name in ignored:
        suggestion = tokenizer.near_miss(name)
        if suggestion is not None and not ignore_unknown:
            raise ValueError(
                f"{where}: column {name!r} is not an observation name; did you mean {suggestion!r}? (rename it, or "
                "pass --ignore-unknown to ignore it)"
            )
    return ignored


def summary_lines(
    reasons: Sequence[str],
    out_of_range: Sequence[str],
    hints: Sequence[str],
    served: Mapping[str, int] | None = None,
) -> list[str]:
    """What a run did, for its closing lines: rows and rows predicted (by each predictor, when ``served`` counts
    them), one line per kind of reason (`reason_summary`), and the rows answered from inputs outside the training
    range with their likely cause. The three sequences are the output's `REASON_COLUMN`, `OUT_OF_RANGE_COLUMN` and
    `HINT_COLUMN`."""
    predicted = sum(1 for reason in reasons if not reason)
    by = ", ".join(f"{count} by the {name}" for name, count in (served or {}).items() if count)
    lines = [f"{len(reasons)} rows, {predicted} predicted" + (f" ({by})" if by else "")]
    lines += [f"  {count} not predicted: {reason}" for count, reason in reason_summary(reasons)]
    flagged = sum(1 for names in out_of_range if names)
    if flagged:
        lines.append(
            f"  {flagged} answered from inputs outside the training stars' range (column {OUT_OF_RANGE_COLUMN})"
        )
    counts: dict[str, int] = {}
    for hint in hints:
        if hint:
            counts[hint] = counts.get(hint, 0) + 1
    lines += [
        f"  {count} with every XP coefficient of a band outside it: {hint}" for hint, count in counts.items()
    ]
    return lines


def check_output(path: str | Path, overwrite: bool = False) -> Path:
    """``path`` as the output table of a run, checked before any work: a known suffix (`OUTPUT_FORMATS`), an
    existing folder, and not an existing file unless ``overwrite``; ``ValueError`` naming what is wrong."""
    path = Path(path)
    if path.suffix.lower() not in OUTPUT_FORMATS:
        raise ValueError(f"{path}: output must end in one of {', '.join(OUTPUT_FORMATS)}")
    if not path.parent.is_dir():
        raise ValueError(f"{path}: the output folder {path.parent} does not exist")
    if path.exists() and not overwrite:
        raise ValueError(f"{path} exists: pass overwrite=True (--overwrite) to replace it")
    return path


def reason_summary(reasons: Sequence[str]) -> list[tuple[int, str]]:
    """``(count, reason)`` per kind of reason, commonest first: reasons that differ only in their numbers (the
    value of each bad row) are one kind, shown by its first row's reason."""
    kinds: dict[str, list] = {}
    for reason in reasons:
        if reason:
            kind = re.sub(r"(?<![A-Za-z_])[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?", "#", reason)
            kinds.setdefault(kind, [0, reason])[0] += 1
    return sorted(((count, first) for count, first in kinds.values()), key=lambda item: -item[0])


# ------------------------------------------------------------------------------------------------ writing
def write_table(table, path: str | Path, overwrite: bool = False) -> Path:
    """Write ``table`` to ``path`` (Parquet, FITS or ECSV by suffix) through a temporary name and a rename.

    Raises
    ------
    ValueError
        `check_output`'s: an unknown suffix, a missing folder, or ``path`` existing and ``overwrite`` false.
    """
    path = check_output(path, overwrite)
    with atomic_path(path) as staging:
        table.write(staging, format=OUTPUT_FORMATS[path.suffix.lower()])
    return path
