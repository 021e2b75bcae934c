"""Publish a built dataset folder to the Hugging Face Hub.

The folder is what the build writes (`DESIGN.md`, House style 10): ``README.md`` (the dataset card, whose
YAML ``configs`` block tells ``datasets.load_dataset`` which Parquet files form which config and split),
Parquet shards under ``data/`` and the typed metadata under ``meta/`` (``info.json``, ``stats.json``).
`publish` checks the folder first, so that a half-written build or a card that points at no file is
refused locally instead of producing a repository that ``load_dataset`` cannot read, then creates the
dataset repository if needed and uploads the folder with one ``upload_folder`` call (one commit when
the upload goes through the Hub's HTTP commit API; ``huggingface_hub`` may split very large folders into
several commits when it uploads through Xet storage).

Shards from an earlier publication that the new build no longer has are deleted in the same commit, so
the card's ``data_files`` globs never pick up stale files.
"""

from __future__ import annotations

import json
from pathlib import Path

from .atomic import TEMPORARY_SUFFIX
from .layout import CARD_PATH, DATA_DIR, INFO_PATH, META_DIR

REQUIRED_FILES = (INFO_PATH,)
"""Metadata files that must exist (layout paths); every ``meta/*.json`` must parse."""

UPLOADED_PATTERNS = [CARD_PATH, f"{DATA_DIR}/*", f"{META_DIR}/*"]
"""What is uploaded (``fnmatch`` patterns, ``*`` crossing ``/``); anything else in the folder stays local."""

REPLACED_PATTERNS = [f"{DATA_DIR}/*", f"{META_DIR}/*"]
"""Remote files deleted before the upload unless re-uploaded: stale shards of an earlier build."""

UNFINISHED_PATTERNS = (f"*{TEMPORARY_SUFFIX}", "*.partial", "*.incomplete")
"""Names of files still being written (the build writes to a temporary name, then renames)."""


def _card_configs(readme: Path, problems: list[str]) -> list[dict]:
    """The ``configs`` list of the card's YAML front matter; problems are appended, never raised."""
    import yaml
    from huggingface_hub import metadata_load

    try:
        metadata = metadata_load(readme)
    except (yaml.YAMLError, ValueError) as exc:
        problems.append(f"{readme}: YAML front matter does not parse: {exc}")
        return []
    if metadata is None:
        problems.append(f"{readme}: no YAML front matter (a block between '---' lines at the top)")
        return []
    configs = metadata.get("configs") if isinstance(metadata, dict) else None
    if not isinstance(configs, list) or not configs:
        problems.append(f"{readme}: front matter has no non-empty 'configs' list")
        return []
    return configs


def _config_patterns(config: dict) -> list[str]:
    """Every ``data_files`` glob of one card config (a string, a list of strings or of ``{split, path}``)."""
    data_files = config.get("data_files")
    entries = data_files if isinstance(data_files, list) else [data_files]
    patterns: list[str] = []
    for entry in entries:
        paths = entry.get("path") if isinstance(entry, dict) else entry
        patterns.extend(paths if isinstance(paths, list) else [paths])
    return [p for p in patterns if isinstance(p, str)]


def validate_dataset_folder(dataset_dir: str | Path) -> list[str]:
    """Check that a built dataset folder is complete and loadable before it is published.

    Checks: ``README.md`` has YAML front matter with a non-empty ``configs`` list; every config has a
    ``config_name`` and ``data_files`` globs that each match at least one file; ``data/`` holds Parquet
    shards that pyarrow can open, that have rows (``datasets`` 5.2 cannot read a zero-row shard) and,
    within one config, share one schema; ``meta/`` holds
    ``info.json`` and every ``meta/*.json`` parses; no unfinished (``*.tmp``) file is left.

    Parameters
    ----------
    dataset_dir : str or Path
        The folder written by the build.

    Returns
    -------
    list of str
        Repository paths (POSIX, relative to ``dataset_dir``) of the files that will be uploaded.

    Raises
    ------
    ValueError
        Naming the folder and every problem found, one per line.
    """
    import pyarrow.parquet as pq

    root = Path(dataset_dir)
    if not root.is_dir():
        raise ValueError(f"{root}: not a dataset folder (no such directory)")
    problems: list[str] = []

    readme = root / CARD_PATH
    configs = _card_configs(readme, problems) if readme.is_file() else []
    if not readme.is_file():
        problems.append(f"{readme}: missing dataset card")

    shards = sorted((root / DATA_DIR).rglob("*.parquet")) if (root / DATA_DIR).is_dir() else []
    if not shards:
        problems.append(f"{root / DATA_DIR}: no Parquet shards")
    schemas = {}
    for shard in shards:
        try:
            parquet = pq.ParquetFile(shard)
        except Exception as exc:  # pyarrow raises ArrowInvalid, OSError, ... for a damaged file
            problems.append(f"{shard}: not a readable Parquet file ({exc})")
            continue
        schemas[shard] = parquet.schema_arrow.remove_metadata()
        if parquet.metadata.num_rows == 0:
            # datasets' Parquet reader fails on it ("BatchSize must be greater than 0"): leave empty
            # splits out of the card instead of writing empty shards.
            problems.append(f"{shard}: has no rows; datasets.load_dataset cannot read an empty shard")

    for index, config in enumerate(configs):
        if not isinstance(config, dict) or not isinstance(config.get("config_name"), str):
            problems.append(f"{readme}: configs[{index}] has no 'config_name'")
            continue
        patterns = _config_patterns(config)
        if not patterns:
            problems.append(f"{readme}: config {config['config_name']!r} has no 'data_files'")
        matched: list[Path] = []
        for pattern in patterns:
            found = sorted(p for p in root.glob(pattern) if p.is_file())
            if not found:
                problems.append(
                    f"{readme}: config {config['config_name']!r}: data_files {pattern!r} matches no file"
                )
            matched.extend(found)
        distinct = {str(schemas[p]) for p in matched if p in schemas}
        if len(distinct) > 1:
            problems.append(
                f"{readme}: config {config['config_name']!r}: its Parquet shards have different schemas"
            )

    meta = root / META_DIR
    problems.extend(f"{root / name}: missing" for name in REQUIRED_FILES if not (root / name).is_file())
    for path in sorted(meta.glob("*.json")) if meta.is_dir() else []:
        try:
            json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            problems.append(f"{path}: not valid JSON ({exc})")

    unfinished = sorted({p for pattern in UNFINISHED_PATTERNS for p in root.rglob(pattern)})
    problems.extend(f"{p}: unfinished file left by an interrupted build" for p in unfinished)

    if problems:
        raise ValueError(f"{root}: not ready to publish:\n  " + "\n  ".join(problems))
    uploaded = [readme, *shards, *(p for p in sorted(meta.rglob("*")) if p.is_file())]
    return [p.relative_to(root).as_posix() for p in uploaded]


def publish(
    dataset_dir: str | Path,
    repo_id: str,
    token: str | None = None,
    private: bool = False,
    revision: str | None = None,
) -> str:
    """Validate a built dataset folder and push it to a Hub dataset repository.

    Parameters
    ----------
    dataset_dir : str or Path
        The folder written by the build (card, ``data/`` shards, ``meta/``); see
        `validate_dataset_folder`.
    repo_id : str
        ``namespace/name`` of the dataset repository; created if it does not exist.
    token : str, optional, default None
        Hub access token with write access; None uses the locally saved token or ``HF_TOKEN``.
    private : bool, optional, default False
        Visibility when the repository is created; an existing repository keeps its visibility.
    revision : str, optional, default None
        Branch to commit to; created from ``main`` if missing. None commits to ``main``.

    Returns
    -------
    str
        URL of the commit that holds the published files.

    Raises
    ------
    ValueError
        When the folder fails validation (nothing is uploaded then).
    huggingface_hub.errors.HfHubHTTPError
        When the Hub refuses a request (authentication, permissions, ...).

    Examples
    --------
    >>> url = publish("data/apogee-gaia-xp", "user/apogee-gaia-xp")  # doctest: +SKIP
    >>> from datasets import load_dataset  # doctest: +SKIP
    >>> ds = load_dataset("user/apogee-gaia-xp")  # doctest: +SKIP
    """
    from huggingface_hub import HfApi

    files = validate_dataset_folder(dataset_dir)
    api = HfApi(token=token)
    api.create_repo(repo_id, repo_type="dataset", private=private, exist_ok=True)
    if revision is not None:
        api.create_branch(repo_id, branch=revision, repo_type="dataset", exist_ok=True)
    commit = api.upload_folder(
        repo_id=repo_id,
        repo_type="dataset",
        folder_path=str(dataset_dir),
        revision=revision,
        allow_patterns=UPLOADED_PATTERNS,
        delete_patterns=REPLACED_PATTERNS,
        commit_message=f"Publish dataset ({len(files)} files)",
    )
    return commit.commit_url
