"""Catalogue-scale prediction on HATS catalogues: LSDB reads them, a Dask cluster runs the model on every partition.

A HATS catalogue (HEALPix-partitioned Parquet; https://hats.readthedocs.io) is a folder with a ``hats.properties``
(or older ``properties``) file, or a collection with a ``collection.properties`` file. ``stellar-foundation predict
CATALOGUE --model M --output OUT`` opens it with ``lsdb.open_catalog`` and runs the model on each partition
(``Catalog.map_partitions``), the model loaded once per Dask worker process, on a local cluster of ``--workers``
processes or on a running cluster (``--scheduler ADDRESS``: then the same command runs on many machines).

Input columns, either
    * vocabulary names in physical units (plus ``<name>_err``), like the dataset's own shards; or
    * Gaia archive ``xp_continuous_mean_spectrum`` columns (``bp_coefficients`` ... as list columns, ``source_id``),
      normalised by G exactly as for archive files (`stellar_tasks.catalogue.archive_chunk`). G comes from a
      ``phot_g_mean_mag`` column of the catalogue or from ``--gaia-source``: a ``gaia_source`` HATS catalogue
      (joined per partition on ``source_id`` with ``Catalog.join``; both catalogues place a source at its Gaia
      position, so matching rows share a partition) or a file (read once, sent to the workers: small tables only).

Output: the identifier columns, the catalogue's position columns, ``<name>`` and ``<name>_std`` per request and
``reason`` -- the numbers of the single-process path (`stellar_tasks.catalogue.predict_chunk`). A folder
``--output`` (no suffix) gets a HATS catalogue (open it with ``lsdb.open_catalog`` to cross-match or join it; the
units are in its ``stellar_foundation_units`` property; it passes hats' strict ``is_valid_catalog`` and hats-import's
verifier); a ``.parquet``/``.fits``/``.ecsv`` one a single table in partition (HEALPix) order, with units. Either
appears only when complete: partitions are written under ``.<output>.partial.tmp`` (lsdb's
``write_catalog(resume=True)``), so a killed run started again with the same arguments predicts only the partitions
that were not written yet.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from datasets_builder.atomic import TEMPORARY_SUFFIX, move_into_place
from datasets_builder.constants import GAIA_DR3_XP_BASES, XP_N_COEFFICIENTS
from datasets_builder.gaia_archive import GAIA_SOURCE_COLUMNS, MISSING_N_RELEVANT_BASES
from datasets_builder.xp import XP_BANDS
from stellar_tasks.catalogue import (
    HINT_COLUMN,
    ID_COLUMNS,
    OUT_OF_RANGE_COLUMN,
    OUTPUT_FORMATS,
    REASON_COLUMN,
    archive_chunk,
    check_column_names,
    check_output,
    load_predictor,
    model_precision,
    predict_chunk,
    summary_lines,
    write_table,
)
from stellar_tasks.distillation import load_distilled

__all__ = ["is_hats_catalogue", "predict_catalogue", "sky_position_of_source_id", "write_hats_catalogue"]

PROPERTIES_FILES = ("hats.properties", "properties", "collection.properties")
"""A folder holding one of these is a HATS catalogue (``hats.read_hats`` looks for the same names)."""

XP_COLUMNS = (
    "source_id",
    *(
        f"{band}_{name}"
        for band in XP_BANDS
        for name in ("coefficients", "coefficient_errors", "n_relevant_bases")
    ),
)
"""Gaia archive XP columns read from a catalogue that has ``bp_coefficients`` (correlations are not needed)."""

SOURCE_ID_HEALPIX_ORDER = 12
"""Gaia DR3 ``source_id`` carries the nested HEALPix level-12 index of the source: ``source_id // 2**35`` (Gaia DR3
documentation, ``gaia_source.source_id``)."""

SOURCE_ID_HEALPIX_SHIFT = 2**35
"""``source_id // SOURCE_ID_HEALPIX_SHIFT`` is the level-12 pixel (derived: 64-bit id = pixel * 2**35 + the rest)."""

GAIA_SOURCE_SUFFIX = "_gaia_source"
"""Suffix of the ``--gaia-source`` catalogue's columns that the input also has (``source_id``, positions)."""

_RESUME_NAME = ".{name}.partial" + TEMPORARY_SUFFIX
_JOB_FILE = "job.json"
_CATALOGUE_FOLDER = "catalogue"
_COMPLETE = "hats.properties"  # lsdb writes it last, once every partition is in place


def is_hats_catalogue(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a HATS catalogue or collection folder (it holds one of `PROPERTIES_FILES`)."""
    path = Path(path)
    return path.is_dir() and any((path / name).is_file() for name in PROPERTIES_FILES)


def sky_position_of_source_id(source_id: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(ra, dec) [deg] of the centre of the level-12 HEALPix pixel that a Gaia DR3 ``source_id`` encodes.

    Parameters
    ----------
    source_id : numpy.ndarray of int64, shape (n,)

    Returns
    -------
    tuple of numpy.ndarray of float64, shape (n,)
        Right ascension and declination [deg], within 0.9 arcmin (the pixel's half-size) of the true position:
        enough to place a source in its HATS partition, not to cross-match it.
    """
    import astropy.units as u
    from cdshealpix.nested import healpix_to_lonlat

    pixels = (np.asarray(source_id, dtype=np.int64) // SOURCE_ID_HEALPIX_SHIFT).astype(np.uint64)
    lon, lat = healpix_to_lonlat(pixels, depth=SOURCE_ID_HEALPIX_ORDER)
    return lon.to_value(u.deg), lat.to_value(u.deg)


def write_hats_catalogue(frame, path: str | os.PathLike, name: str, partition_rows: int = 100_000) -> Path:
    """Write a table as a HATS catalogue folder (``lsdb.from_dataframe``), atomically.

    Parameters
    ----------
    frame : pandas.DataFrame
        One row per star. Without ``ra``/``dec`` columns, positions are taken from the Gaia DR3 source id
        (``gaia_dr3_source_id`` or ``source_id``; `sky_position_of_source_id`), and a line on stderr says so.
    path : str or PathLike
        The catalogue folder to create; it must not exist.
    name : str
        The catalogue's name (``obs_collection``).
    partition_rows : int, optional, default 100_000
        Most rows per partition (HEALPix pixels are split until they hold fewer).

    Returns
    -------
    pathlib.Path
    """
    import lsdb

    from datasets_builder.atomic import atomic_path

    path = Path(path)
    if path.exists():
        raise ValueError(f"{path} exists")
    frame = frame.copy()
    if not {"ra", "dec"} <= set(frame.columns):
        id_column = next((c for c in ("gaia_dr3_source_id", "source_id") if c in frame.columns), None)
        if id_column is None:
            raise ValueError("no ra/dec columns and no Gaia source id to place the stars on the sky")
        frame["ra"], frame["dec"] = sky_position_of_source_id(frame[id_column].to_numpy())
        print(
            f"{path}: positions from the HEALPix level-12 pixel in {id_column} (no ra/dec)", file=sys.stderr
        )
    catalogue = lsdb.from_dataframe(
        frame,
        ra_column="ra",
        dec_column="dec",
        catalog_name=name,
        partition_rows=partition_rows,
        margin_threshold=None,
    )
    with atomic_path(path) as staging:
        catalogue.write_catalog(staging, as_collection=False, progress_bar=False)
    return path


# ------------------------------------------------------------------------------------------------ workers
@dataclass(frozen=True)
class PartitionJob:
    """What every partition task needs; sent to the workers with the task graph.

    Attributes
    ----------
    model : str
        Model folder or Hub id, loaded once per worker process (`_worker_predictor`).
    requests : tuple of str
        Names to predict.
    batch_size : int
        Stars per model pass.
    precision : str
        One of `stellar_tasks.catalogue.PRECISIONS`.
    distilled : bool
        Rows it serves are answered by the model's distilled predictor (`stellar_tasks.distillation`).
    input_names : tuple of str or None
        The only observations read (``--input-names``); None: every observed one.
    threads : int or None
        torch threads per worker (None: torch's default).
    archive : bool
        The input has Gaia archive XP columns (else vocabulary names).
    columns : tuple of str
        Input columns to read: observations, identifiers (or `XP_COLUMNS` and G columns).
    positions : tuple of str
        The catalogue's ra and dec columns, copied to the output.
    """

    model: str
    requests: tuple[str, ...]
    batch_size: int
    precision: str
    distilled: bool
    input_names: tuple[str, ...] | None
    threads: int | None
    archive: bool
    columns: tuple[str, ...]
    positions: tuple[str, ...]


_PREDICTORS: dict[tuple[str, int | None, str], object] = {}
_DISTILLED: dict[str, object] = {}
_LOADING = threading.Lock()


def _worker_predictor(model: str, threads: int | None, precision: str):
    """The ``tabular-regression`` pipeline of ``model`` in ``precision``, loaded (and cast) on the first partition of
    this process only."""
    with _LOADING:
        key = (model, threads, precision)
        if key not in _PREDICTORS:
            import torch
            from transformers import pipeline

            if threads is not None:
                torch.set_num_threads(threads)
            device = "cuda" if torch.cuda.is_available() else "cpu"
            predictor = pipeline(model=model, trust_remote_code=True, device=device)
            predictor.model = model_precision(predictor.model, precision)
            _PREDICTORS[key] = predictor
        return _PREDICTORS[key]


def _worker_distilled(model: str):
    """The distilled predictor of ``model`` (`stellar_tasks.distillation.load_distilled`), loaded once per process."""
    with _LOADING:
        if model not in _DISTILLED:
            _DISTILLED[model] = load_distilled(model)
        return _DISTILLED[model]


def predict_partition(frame, job: PartitionJob, gaia_source=None):
    """One partition in, its predictions out (what ``map_partitions`` runs on a worker).

    Parameters
    ----------
    frame : nested_pandas.NestedFrame
        A partition of the input catalogue (index ``_healpix_29``).
    job : PartitionJob
    gaia_source : astropy.table.Table, optional
        A ``--gaia-source`` file's rows (archive input only).

    Returns
    -------
    nested_pandas.NestedFrame
        Same index and row order: identifiers, positions, ``<name>``/``<name>_std`` (float64, physical units),
        ``reason``.
    """
    from astropy.table import Table

    chunk = _archive_table(frame, gaia_source) if job.archive else _star_table(frame, job.columns)
    if len(frame):
        predictor = _worker_predictor(job.model, job.threads, job.precision)
        distilled = _worker_distilled(job.model) if job.distilled else None
        predicted = predict_chunk(
            predictor, chunk, list(job.requests), job.batch_size, job.precision, distilled, job.input_names
        )
    else:  # lsdb and dask hand out empty partitions too; no model is needed for them
        predicted = Table({name: chunk[name] for name in ID_COLUMNS if name in chunk.colnames})
        for name in job.requests:
            predicted[name] = predicted[f"{name}_std"] = np.zeros(0)
        for name in (REASON_COLUMN, OUT_OF_RANGE_COLUMN, HINT_COLUMN):
            predicted[name] = np.zeros(0, dtype=str)
    return _output_frame(predicted, frame, job)


def _output_frame(predicted, frame, job: PartitionJob):
    """Plain-typed output columns (int64 ids, float64 values, string reasons) on the partition's index."""
    import nested_pandas as npd
    import pandas as pd

    columns = {}
    for name in predicted.colnames:
        values = np.asarray(getattr(predicted[name], "value", predicted[name]))
        if values.dtype.kind in "USO":
            columns[name] = pd.array(values.astype(str), dtype="string[pyarrow]")
        else:
            columns[name] = values.astype(np.int64 if values.dtype.kind in "iu" else np.float64)
    for name in job.positions:
        columns[name] = frame[name].to_numpy(dtype=np.float64)
    order = [name for name in predicted.colnames if name in ID_COLUMNS]
    order += list(job.positions) + [name for name in predicted.colnames if name not in order]
    return npd.NestedFrame({name: columns[name] for name in order}, index=frame.index)


def _text(series) -> np.ndarray:
    """A text column as numpy str; nulls are "" (as `stellar_tasks.catalogue` reads Parquet text)."""
    return np.asarray(series.fillna("").astype(str).to_numpy(), dtype=str)


def _float(series) -> np.ndarray:
    """A float64 numpy copy of a (possibly Arrow-backed) column; nulls are NaN."""
    return series.to_numpy(dtype=np.float64, na_value=np.nan)


def _star_table(frame, columns: tuple[str, ...]):
    """A partition of a vocabulary-named catalogue as the star table `predict_chunk` reads."""
    from astropy.table import Table
    from pandas.api.types import is_integer_dtype

    table = Table()
    for name in columns:
        series = frame[name]
        if name not in ID_COLUMNS:
            table[name] = _float(series)
        elif is_integer_dtype(series.dtype):
            table[name] = series.to_numpy(dtype=np.int64)
        else:
            table[name] = _text(series)
    table[REASON_COLUMN] = np.full(len(frame), "", dtype=str)
    return table


def _archive_table(frame, gaia_source):
    """A partition of a Gaia archive XP catalogue as `archive_chunk` rows (``read_gaia_xp``'s layout)."""
    from astropy.table import Table

    xp = Table({"source_id": frame["source_id"].to_numpy(dtype=np.int64)})
    for band in XP_BANDS:
        values, present = _list_column(frame[f"{band}_coefficients"], f"{band}_coefficients")
        errors, _ = _list_column(frame[f"{band}_coefficient_errors"], f"{band}_coefficient_errors")
        xp[f"{band}_coefficients"] = values
        xp[f"{band}_coefficient_errors"] = errors
        relevant = frame[f"{band}_n_relevant_bases"].to_numpy(dtype=np.float64, na_value=np.nan)
        xp[f"{band}_n_relevant_bases"] = np.where(
            present & np.isfinite(relevant), np.nan_to_num(relevant), MISSING_N_RELEVANT_BASES
        ).astype(np.int16)
    for name in GAIA_SOURCE_COLUMNS:
        if name in frame.columns:
            xp[name] = _float(frame[name])
    joined = f"source_id{GAIA_SOURCE_SUFFIX}"  # the right side's key of a joined gaia_source catalogue
    listed = frame[joined].notna().to_numpy() if joined in frame.columns else None
    return archive_chunk(xp, gaia_source, listed)


def _list_column(series, name: str) -> tuple[np.ndarray, np.ndarray]:
    """A list column of `XP_N_COEFFICIENTS` floats per row -> ((n, 55) float64, NaN where the band has no
    solution: a null or empty list; (n,) bool, the rows that have one). Any other length raises ``ValueError``."""
    import pyarrow as pa
    import pyarrow.compute as pc

    array = pa.array(series)
    lengths = pc.fill_null(pc.list_value_length(array), 0).to_numpy(zero_copy_only=False)
    present = lengths == XP_N_COEFFICIENTS
    bad = (lengths != 0) & ~present
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise ValueError(f"column {name!r}, row {row}: {lengths[row]} values, expected {XP_N_COEFFICIENTS}")
    out = np.full((len(array), XP_N_COEFFICIENTS), np.nan)
    if present.any():
        flat = pc.list_flatten(array.filter(pa.array(present))).to_numpy(zero_copy_only=False)
        out[present] = np.asarray(flat, dtype=np.float64).reshape(-1, XP_N_COEFFICIENTS)
    return out, present


# ------------------------------------------------------------------------------------------------ the command
@contextmanager
def dask_client(workers: int | None, scheduler: str | None) -> Iterator[tuple[object, int | None]]:
    """A Dask client, and the torch threads each worker should use.

    ``scheduler`` connects to a running cluster (its workers keep torch's default threads); otherwise a local
    cluster of ``workers`` processes (default: one per core) with one Dask thread each, the cores shared out
    between them so that the workers do not oversubscribe the machine.
    """
    from distributed import Client, LocalCluster

    if scheduler:
        with Client(scheduler) as client:
            yield client, None
        return
    cores = os.cpu_count() or 1
    workers = workers or cores
    with (
        LocalCluster(
            n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None
        ) as cluster,
        Client(cluster) as client,
    ):
        yield client, max(1, cores // workers)


def predict_catalogue(args: argparse.Namespace) -> Path:
    """``stellar-foundation predict`` for a HATS input (see the module docstring); returns the output path.

    ``args`` are the command's: ``inputs`` (one catalogue), ``model``, ``output``, ``requests``, ``gaia_source``,
    ``batch_size``, ``precision``, ``distilled``, ``input_names``, ``overwrite``, ``workers``, ``scheduler``.
    """
    try:
        import lsdb
    except ImportError as error:
        raise ValueError(
            f"a HATS input needs lsdb: pip install 'stellar-foundation[catalogue]' ({error})"
        ) from None
    if len(args.inputs) != 1:
        raise ValueError(f"a HATS catalogue must be the only input, got {len(args.inputs)} inputs")
    source = Path(args.inputs[0])
    output = Path(args.output)
    as_table = output.suffix.lower() in OUTPUT_FORMATS
    if as_table:
        check_output(output, args.overwrite)
    elif output.suffix:
        raise ValueError(
            f"{output}: output must end in one of {', '.join(OUTPUT_FORMATS)}, or be a folder (no suffix) for a "
            "HATS catalogue"
        )
    elif not output.parent.is_dir():
        raise ValueError(f"{output}: the output folder {output.parent} does not exist")
    elif output.exists() and not args.overwrite:
        raise ValueError(f"{output} exists: pass --overwrite to replace it")

    # the client loads the model too: a wrong model or request fails here, before any cluster starts
    predictor = load_predictor(args.model)
    tokenizer = predictor.feature_extractor
    requests = list(args.requests or predictor.default_requests())
    tokenizer.request_ids_for(requests, 1)
    tokenizer.convert_names_to_ids(args.input_names or [])
    opened = lsdb.open_catalog(source)
    available = opened.all_columns
    archive = "bp_coefficients" in available
    if archive:
        missing = [name for name in XP_COLUMNS if name not in available]
        if missing:
            raise ValueError(f"{source}: a Gaia archive XP catalogue needs the columns {missing}")
        _check_xp_basis(source, opened, tokenizer.xp_bases)
        wanted = [*XP_COLUMNS, *(name for name in GAIA_SOURCE_COLUMNS if name in available)]
    else:
        names = tokenizer.observation_names
        readable = {*names, *(f"{name}_err" for name in names), *ID_COLUMNS}
        wanted = [name for name in available if name in readable]
        ignored = check_column_names(tokenizer, available, source, args.ignore_unknown)
        if ignored:
            print(f"ignored columns (not observation names): {', '.join(ignored)}", file=sys.stderr)
    job = {
        "input": str(source.resolve()),
        "model": str(args.model),
        "requests": requests,
        "precision": args.precision,
        "distilled": args.distilled,
        "input_names": list(args.input_names) if args.input_names else None,
        "gaia_source": str(Path(args.gaia_source).resolve()) if args.gaia_source else None,
    }
    staging = output.with_name(_RESUME_NAME.format(name=output.name))
    _prepare_staging(staging, job, overwrite=args.overwrite)
    written = staging / _CATALOGUE_FOLDER

    with dask_client(args.workers, args.scheduler) as (_, threads):
        if not (written / _COMPLETE).is_file():
            catalogue = lsdb.open_catalog(source, columns=wanted)
            info = catalogue.hc_structure.catalog_info
            side, catalogue = (
                _gaia_source(args.gaia_source, catalogue, wanted) if archive else (None, catalogue)
            )
            partition_job = PartitionJob(
                model=str(args.model),
                requests=tuple(requests),
                batch_size=args.batch_size,
                precision=args.precision,
                distilled=args.distilled,
                input_names=args.input_names,
                threads=threads,
                archive=archive,
                columns=tuple(wanted),
                positions=(info.ra_column, info.dec_column),
            )
            meta = predict_partition(catalogue.meta, partition_job, side)
            predicted = catalogue.map_partitions(predict_partition, partition_job, side, meta=meta)
            done = _clear_unfinished_partitions(written)
            if done:
                print(
                    f"resuming: {done} of {predicted.npartitions} partitions already written", file=sys.stderr
                )
            units = " ".join(f"{name}={tokenizer.units[name]}" for name in requests)
            predicted.write_catalog(
                written,
                catalog_name=output.stem,
                as_collection=False,
                resume=True,
                progress_bar=False,
                addl_hats_properties={
                    "stellar_foundation_model": str(args.model),
                    "stellar_foundation_units": units,
                    "stellar_foundation_xp_bases": xp_bases_property(tokenizer.xp_bases or GAIA_DR3_XP_BASES),
                },
            )
        if as_table:
            result = lsdb.open_catalog(written, columns="all").compute(progress_bar=False)
            write_table(_with_units(result, tokenizer, requests), output, overwrite=args.overwrite)
    summary = _summary_columns(written)
    if not as_table:
        move_into_place(written, output)
    shutil.rmtree(staging)
    _report(output, summary)
    return output


def xp_bases_property(xp_bases: dict[str, dict[str, int]]) -> str:
    """The XP basis the model read, as the output catalogue's ``stellar_foundation_xp_bases`` property:
    ``band=basis_function_id/n_coefficients`` per band, e.g. ``bp=56/55 rp=57/55`` (Gaia DR3)."""
    return " ".join(
        f"{band}={basis['basis_function_id']}/{basis['n_coefficients']}" for band, basis in xp_bases.items()
    )


def _check_xp_basis(source: Path, catalogue, xp_bases: dict) -> None:
    """ValueError naming the catalogue, column and value when its ``<band>_basis_function_id`` (when it has that
    column) is not the model's (``StarTokenizer.xp_bases``; Gaia DR3's when it declares none), from the columns'
    footer statistics: before any partition is read."""
    xp_bases = xp_bases or GAIA_DR3_XP_BASES
    columns = [
        f"{band}_basis_function_id"
        for band in XP_BANDS
        if f"{band}_basis_function_id" in catalogue.all_columns
    ]
    if not columns:
        return
    statistics = catalogue.hc_structure.aggregate_column_statistics(include_columns=columns)
    for band in XP_BANDS:
        name = f"{band}_basis_function_id"
        if name not in statistics.index:
            continue
        expected = xp_bases[band]["basis_function_id"]
        for value in (statistics.loc[name, "min_value"], statistics.loc[name, "max_value"]):
            if value is not None and value == value and int(value) != expected:  # NaN: an all-null column
                raise ValueError(
                    f"{source}: column {name!r} holds basis {int(value)}, but the model reads {band.upper()} "
                    f"coefficients in basis {expected} ({xp_bases[band]['n_coefficients']} coefficients); "
                    "coefficients of another basis (another Gaia release) need a model whose vocabulary declares it"
                )


def _gaia_source(path: str | None, catalogue, wanted: list[str]):
    """G (and BP, RP, ...) for an archive catalogue that lacks them: ``(file rows or None, catalogue)``.

    A HATS ``gaia_source`` is left-joined per partition on ``source_id`` (only the columns the input lacks); a file
    is read once and its rows are matched inside each partition (`archive_chunk`)."""
    from datasets_builder.archive import read_gaia_source

    if path is None:
        return None, catalogue
    if not is_hats_catalogue(path):
        return read_gaia_source(path), catalogue
    import lsdb

    other = lsdb.open_catalog(path)
    lacking = [name for name in GAIA_SOURCE_COLUMNS if name not in wanted and name in other.all_columns]
    if "source_id" not in other.all_columns or "phot_g_mean_mag" not in other.all_columns:
        raise ValueError(f"{path}: a gaia_source catalogue needs 'source_id' and 'phot_g_mean_mag' columns")
    other = lsdb.open_catalog(path, columns=["source_id", *lacking])
    joined = catalogue.join(
        other,
        left_on="source_id",
        right_on="source_id",
        how="left",
        suffixes=("", GAIA_SOURCE_SUFFIX),
        suffix_method="overlapping_columns",
        log_changes=False,
    )
    return None, joined


def _prepare_staging(staging: Path, job: dict, overwrite: bool) -> None:
    """Create ``staging`` for ``job``, or keep it (resume) when a killed run of the same job left it.

    A staging folder of another job is refused (with ``overwrite``: removed)."""
    record = staging / _JOB_FILE
    if staging.exists():
        previous = json.loads(record.read_text()) if record.is_file() else None
        if previous == job:
            return
        if not overwrite:
            raise SystemExit(
                f"{staging} holds an unfinished run with other settings ({previous}); pass --overwrite to "
                "discard it"
            )
        shutil.rmtree(staging)
    staging.mkdir(parents=True)
    record.write_text(json.dumps(job, indent=1))


def _clear_unfinished_partitions(written: Path) -> int:
    """How many partitions a previous, killed run has written (lsdb's per-partition ``done`` markers).

    lsdb writes a partition's count histogram, then its ``done`` marker, and on resume reads every histogram: a run
    killed between the two (or during the histogram's write) leaves a histogram without a marker, which lsdb refuses
    or fails to read. Those histograms are removed here, so their partitions are simply written again."""
    from lsdb.io.to_hats import DONE_DIR_NAME, HISTOGRAM_DIR_NAME

    if not written.is_dir():
        return 0
    done = {path.name.removesuffix("_done") for path in (written / DONE_DIR_NAME).glob("*_done")}
    for histogram in (written / HISTOGRAM_DIR_NAME).glob("*_histogram.npz"):
        if histogram.name.removesuffix("_histogram.npz") not in done:
            histogram.unlink()
    return len(done)


def _with_units(frame, tokenizer, requests: list[str]):
    """The computed catalogue as a ``QTable``: HEALPix order, the requests' units, no index."""
    import astropy.units as u
    from astropy.table import QTable
    from pandas.api.types import is_integer_dtype, is_numeric_dtype

    table = QTable()
    for name in frame.columns:
        base = name[: -len("_std")] if name.endswith("_std") else name
        column = frame[name]
        if base in requests:
            table[name] = column.to_numpy(dtype=np.float64) * u.Unit(tokenizer.units[base])
        elif is_numeric_dtype(column.dtype):
            table[name] = column.to_numpy(dtype=np.int64 if is_integer_dtype(column.dtype) else np.float64)
        else:
            table[name] = _text(column)
    return table


def _summary_columns(written: Path) -> dict[str, list[str]]:
    """The ``reason``, ``out_of_range`` and ``hint`` columns of a written catalogue, read one batch at a time."""
    import pyarrow.dataset as ds

    names = [REASON_COLUMN, OUT_OF_RANGE_COLUMN, HINT_COLUMN]
    columns: dict[str, list[str]] = {name: [] for name in names}
    for batch in ds.dataset(written / "dataset", format="parquet").to_batches(columns=names):
        for name in names:
            columns[name] += [str(value or "") for value in batch.column(name).to_pylist()]
    return columns


def _report(output: Path, summary: dict[str, list[str]]) -> None:
    """The command's closing lines on stderr (`stellar_tasks.catalogue.summary_lines`)."""
    lines = summary_lines(summary[REASON_COLUMN], summary[OUT_OF_RANGE_COLUMN], summary[HINT_COLUMN])
    print(f"{output}: {lines[0]}", *lines[1:], sep="\n", file=sys.stderr)
