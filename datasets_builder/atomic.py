"""Atomic writes: the one way this project puts a file or a folder in place.

``DESIGN.md`` ("Units and conventions"): files are written to a temporary name and renamed into place, so that a
stopped build, training run, report or benchmark never leaves half a file where a reader expects a whole one.
Temporary names are siblings of the target (same file system, so the rename is atomic), unique per process and
call (two processes writing the same target cannot collide), and end in ``.tmp`` (what resumable builds and
`datasets_builder.publish` recognise as unfinished).

    >>> atomic_write("results.json", json.dumps(results))  # doctest: +SKIP
    >>> with atomic_path("table.fits") as staging:  # any writer that takes a path  # doctest: +SKIP
    ...     table.write(staging, format="fits")
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["TEMPORARY_SUFFIX", "atomic_path", "atomic_write", "move_into_place", "temporary_sibling"]

TEMPORARY_SUFFIX = ".tmp"
"""Every temporary name ends in this (``datasets_builder.publish.UNFINISHED_PATTERNS`` refuses such files)."""


def temporary_sibling(path: str | os.PathLike) -> Path:
    """A fresh hidden name beside ``path``: ``.<name>.<pid>.<random>.tmp``."""
    path = Path(path)
    return path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}{TEMPORARY_SUFFIX}")


def _fsync_folder(folder: Path) -> None:
    """Make a rename inside ``folder`` durable (POSIX: the directory entry lives in the folder)."""
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def move_into_place(staging: str | os.PathLike, path: str | os.PathLike) -> Path:
    """Rename a finished file or folder ``staging`` onto ``path``, replacing what is there, and fsync the parent.

    A folder cannot be renamed onto a non-empty folder, so a previous one is first renamed aside (a reader sees
    the old folder, then the new one; never a mixture) and removed afterwards.
    """
    staging, path = Path(staging), Path(path)
    previous = None
    if path.is_dir() and not path.is_symlink():
        previous = temporary_sibling(path)
        os.replace(path, previous)
    os.replace(staging, path)
    if previous is not None:
        _remove(previous)
    _fsync_folder(path.parent)
    return path


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary sibling of ``path`` to write (a file or a folder, by any writer); when the block ends
    without an error, move it onto ``path`` (`move_into_place`); on an error, remove it. Parents are created."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = temporary_sibling(path)
    try:
        yield staging
        if staging.is_file():
            with open(staging, "rb+") as stream:
                os.fsync(stream.fileno())
        move_into_place(staging, path)
    finally:
        if staging.exists():
            _remove(staging)


def atomic_write(path: str | os.PathLike, data: str | bytes, encoding: str = "utf-8") -> Path:
    """Write ``data`` (text in ``encoding``, or bytes) to ``path`` atomically; returns ``path``."""
    payload = data.encode(encoding) if isinstance(data, str) else data
    with atomic_path(path) as staging:
        staging.write_bytes(payload)
    return Path(path)
