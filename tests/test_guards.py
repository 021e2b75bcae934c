"""Issue 28's guards that had no test of their own, each with the break it must catch (`tests.guard_breaks`).

"The CLI never leaves partial output" was only tested with inputs that fail before any output exists (a file that
cannot be opened, a bad header): a command that wrote ``--output`` after each chunk passed. Here the second input has
a good header and a damaged body, so that it fails while being read, after the first input's chunks were predicted.
The other guards of the issue (a training run and a HATS run resume where they were killed) are in
``tests/test_train.py`` and ``tests/test_hats.py``, next to their breaks' tests.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from astropy.table import QTable, Table

from stellar_tasks.cli import main
from stellar_tasks.hub import prepare_model_folder
from tests.conftest import create_test_tokenizer
from tests.guard_breaks import output_written_after_each_chunk
from tests.test_pipeline import lively_model

STAR = {"bprp": 1.21, "jh": 0.55, "jk": 0.68, "bp0": 0.031, "rp0": 0.058}
"""The README's star, physical units."""

GOOD_ROWS = 5
"""Rows of the good input: three chunks of ``--chunk-size 2`` are predicted before the bad input is read."""


@pytest.fixture(scope="module")
def model_folder(tmp_path_factory) -> Path:
    """A tiny model folder whose answers differ from star to star."""
    return prepare_model_folder(
        lively_model(), create_test_tokenizer(), tmp_path_factory.mktemp("model") / "m"
    )


@pytest.fixture
def inputs(tmp_path) -> tuple[Path, Path]:
    """A good ECSV star table, and a Parquet one whose header (footer) is whole and whose data pages are zeros.

    The command checks every input's columns before any work; pyarrow reads the Parquet schema from the footer only,
    so the bad file passes that check and fails on its first record batch ("Deserializing page header failed")."""
    good = tmp_path / "good.ecsv"
    Table([{**STAR, "bprp": 1.0 + 0.1 * k} for k in range(GOOD_ROWS)]).write(good)
    bad = tmp_path / "bad.parquet"
    pq.write_table(pa.table({name: np.full(4, value) for name, value in STAR.items()}), bad)
    data = bytearray(bad.read_bytes())
    footer = int.from_bytes(data[-8:-4], "little")  # file = "PAR1", pages, footer, its length, "PAR1"
    data[4 : len(data) - 8 - footer] = bytes(len(data) - 12 - footer)
    bad.write_bytes(bytes(data))
    assert pq.read_schema(bad).names == list(STAR)
    return good, bad


def _predict(model_folder: Path, output: Path, *paths: Path) -> int:
    """``stellar-foundation predict PATHS... --output OUTPUT --chunk-size 2``; its exit status."""
    arguments = ["predict", *map(str, paths), "--model", str(model_folder), "--output", str(output)]
    return main([*arguments, "--chunk-size", "2"])


def test_a_file_that_fails_after_chunks_were_predicted_leaves_no_output(
    model_folder, inputs, tmp_path, capsys
):
    good, bad = inputs
    results = tmp_path / "results"
    results.mkdir()
    output = results / "out.ecsv"
    capsys.readouterr()
    assert _predict(model_folder, output, good, bad) == 1
    printed = capsys.readouterr().err
    assert f"error: {bad}: cannot read as a star table" in printed and "Traceback" not in printed
    assert not output.exists() and list(results.iterdir()) == []  # no output, no temporary file


def test_output_written_after_each_chunk_is_caught(model_folder, inputs, tmp_path, capsys):
    """The break (`tests.guard_breaks.output_written_after_each_chunk`) writes the same table as today from good
    inputs, and leaves the first input's rows behind when the second one fails: what the test above asserts absent."""
    good, bad = inputs
    whole, partial = tmp_path / "whole.ecsv", tmp_path / "partial.ecsv"
    with output_written_after_each_chunk(whole):
        assert _predict(model_folder, whole, good) == 0
    with output_written_after_each_chunk(partial):
        assert _predict(model_folder, partial, good, bad) == 1
    assert f"error: {bad}" in capsys.readouterr().err
    assert len(QTable.read(whole)) == GOOD_ROWS
    assert partial.exists() and len(QTable.read(partial)) == GOOD_ROWS
