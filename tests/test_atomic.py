"""datasets_builder.atomic: the one way files and folders are put in place."""

from __future__ import annotations

import os

import pytest

from datasets_builder.atomic import (
    TEMPORARY_SUFFIX,
    atomic_path,
    atomic_write,
    move_into_place,
    temporary_sibling,
)


def test_temporary_names_are_hidden_siblings_and_unique(tmp_path):
    names = {temporary_sibling(tmp_path / "results.json") for _ in range(100)}
    assert len(names) == 100
    for name in names:
        assert name.parent == tmp_path and name.name.startswith(".results.json.")
        assert name.name.endswith(TEMPORARY_SUFFIX) and f".{os.getpid()}." in name.name


def test_atomic_write_replaces_a_file_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "sub" / "results.json"
    atomic_write(path, "old")
    assert atomic_write(path, b"new") == path
    assert path.read_text() == "new"
    assert sorted(p.name for p in path.parent.iterdir()) == ["results.json"]


def test_a_failed_write_keeps_the_previous_file(tmp_path):
    path = tmp_path / "table.csv"
    atomic_write(path, "previous")
    with pytest.raises(RuntimeError), atomic_path(path) as staging:
        staging.write_text("half a ta")
        raise RuntimeError("writer stopped")
    assert path.read_text() == "previous"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["table.csv"]


def test_folders_are_replaced_whole(tmp_path):
    target = tmp_path / "step_4"
    target.mkdir()
    (target / "old.bin").write_text("old")
    with atomic_path(target) as staging:
        staging.mkdir()
        (staging / "new.bin").write_text("new")
    assert [p.name for p in target.iterdir()] == ["new.bin"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["step_4"]
    staged = tmp_path / "step_8.tmp"
    staged.mkdir()
    move_into_place(staged, tmp_path / "step_8")
    assert (tmp_path / "step_8").is_dir() and not staged.exists()
