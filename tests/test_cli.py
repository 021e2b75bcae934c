"""``stellar-foundation predict``: Gaia archive exports and star tables in, predictions with units out, 1 or 2 processes."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import astropy.units as u
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from astropy.table import QTable, Table

from datasets_builder.gaia_archive import read_gaia_xp
from stellar_tasks.catalogue import NOT_IN_GAIA_SOURCE, is_gaia_xp_file
from stellar_tasks.cli import main
from stellar_tasks.hub import prepare_model_folder
from tests.conftest import REPO_ROOT, create_test_stars, create_test_tokenizer
from tests.test_pipeline import lively_model

PARAMETERS = ["teff", "logg", "fe_h"]
PREDICTED = [column for name in PARAMETERS for column in (name, f"{name}_std")]


@pytest.fixture(scope="module")
def model_folder(tmp_path_factory) -> Path:
    return prepare_model_folder(
        lively_model(), create_test_tokenizer(), tmp_path_factory.mktemp("model") / "m"
    )


@pytest.fixture(scope="module")
def archive(shared_dir) -> Path:
    return shared_dir / "fixtures" / "gaia_archive"


@pytest.fixture
def gaia_source(archive, tmp_path) -> tuple[Path, int]:
    """A gaia_source export with G, BP and RP for every fixture source but one; returns it and that source."""
    ids = sorted({int(i) for name in ("XP_CONTINUOUS_RAW.csv", "XP_CONTINUOUS_RAW_with_missing_BP.csv")
                  for i in read_gaia_xp(archive / name, correlations=False)["source_id"]})  # fmt: skip
    without_g = ids[-1]
    rows = [(i, 11.0 + k, 11.6 + k, 10.5 + k) for k, i in enumerate(ids) if i != without_g]
    path = tmp_path / "gaia_source.csv"
    Table(rows=rows, names=["source_id", "phot_g_mean_mag", "phot_bp_mean_mag", "phot_rp_mean_mag"]).write(
        path
    )
    return path, without_g


def predict(*arguments) -> None:
    assert main(["predict", *map(str, arguments)]) == 0


def reasons_of(table) -> list[str]:
    """The reason column as text; an empty reason reads back masked (ECSV, FITS) and FITS text as bytes."""
    table.convert_bytestring_to_unicode()
    return [str(reason) for reason in np.ma.filled(table["reason"], "")]


def test_gaia_archive_exports_in_every_format_give_the_same_predictions(
    model_folder, archive, gaia_source, tmp_path
):
    side, without_g = gaia_source
    exports = [archive / f"XP_CONTINUOUS_RAW.{ext}" for ext in ("csv", "ecsv", "fits")]
    exports.append(archive / "XP_CONTINUOUS_RAW_with_missing_BP.csv")
    assert all(is_gaia_xp_file(path) for path in exports)
    output = tmp_path / "out.ecsv"
    predict(*exports, "--gaia-source", side, "--model", model_folder, "--output", output, "--chunk-size", 3)

    table = QTable.read(output)
    expected_ids = np.concatenate([read_gaia_xp(path, correlations=False)["source_id"] for path in exports])
    np.testing.assert_array_equal(table["gaia_dr3_source_id"], expected_ids)  # input order, every row
    assert table.colnames == ["gaia_dr3_source_id", *PREDICTED, "reason", "out_of_range", "hint"]
    assert table["teff"].unit == u.K and table["teff_std"].unit == u.K and table["logg"].unit == u.dex
    no_g = table["gaia_dr3_source_id"] == without_g
    reasons = np.array(reasons_of(table))
    assert no_g.any() and set(reasons[no_g]) == {NOT_IN_GAIA_SOURCE}
    assert np.all(np.isnan(table["teff"][no_g].value))
    predicted = ~no_g
    assert np.all(np.isfinite(table["teff"][predicted].value)) and np.all(
        table["teff_std"][predicted].value > 0
    )
    assert set(reasons[predicted]) == {""}
    # the same two sources from CSV, ECSV and FITS: the same numbers (the missing-BP star has RP only)
    first = {name: table[name][:2].value for name in PREDICTED}
    for offset in (2, 4):
        for name in PREDICTED:
            np.testing.assert_array_equal(table[name][offset : offset + 2].value, first[name], err_msg=name)


@pytest.mark.parametrize("suffix", [".parquet", ".fits", ".ecsv"])
def test_star_tables_in_and_out_keep_ids_units_and_reasons(model_folder, tmp_path, suffix):
    stars = create_test_stars(5)
    table = Table(rows=[list(star.values()) for star in stars], names=list(stars[0]))
    table["gaia_dr3_source_id"] = np.arange(100, 105, dtype=np.int64)
    table["bprp"][2] = -np.inf  # that row only gets a reason
    path = tmp_path / f"stars{suffix}"
    if suffix == ".parquet":
        pq.write_table(pa.table({name: np.asarray(table[name]) for name in table.colnames}), path)
    else:
        table.write(path)
    output = tmp_path / f"predicted{suffix}"
    predict(path, "--model", model_folder, "--output", output, "--chunk-size", 2, "--requests", "teff", "jh")

    result = QTable.read(output)
    np.testing.assert_array_equal(result["gaia_dr3_source_id"], np.arange(100, 105))
    assert result["teff"].unit == u.K and result["jh_std"].unit == u.mag
    reasons = reasons_of(result)
    assert reasons[2].startswith("observation 'bprp': value -inf is not finite")
    assert [r for k, r in enumerate(reasons) if k != 2] == ["", "", "", ""]
    assert np.isnan(result["teff"][2].value) and np.all(np.isfinite(np.delete(result["teff"].value, 2)))


def test_outputs_in_all_formats_hold_the_same_table(model_folder, tmp_path):
    stars = create_test_stars(3)
    source = tmp_path / "stars.ecsv"
    Table(rows=[list(star.values()) for star in stars], names=list(stars[0])).write(source)
    tables = {}
    for suffix in (".parquet", ".fits", ".ecsv"):
        predict(source, "--model", model_folder, "--output", tmp_path / f"out{suffix}")
        tables[suffix] = QTable.read(tmp_path / f"out{suffix}")
    for name in PREDICTED:
        units = {str(t[name].unit) for t in tables.values()}
        assert len(units) == 1, (name, units)
        np.testing.assert_array_equal(tables[".fits"][name].value, tables[".parquet"][name].value)
        np.testing.assert_allclose(tables[".ecsv"][name].value, tables[".parquet"][name].value, rtol=1e-15)


def test_refusals(model_folder, tmp_path, capsys):
    source = tmp_path / "stars.ecsv"
    Table(rows=[[1.2, 0.5]], names=["bprp", "jh"]).write(source)
    output = tmp_path / "out.parquet"
    predict(source, "--model", model_folder, "--output", output)
    before = output.read_bytes()
    capsys.readouterr()
    assert main(["predict", str(source), "--model", str(model_folder), "--output", str(output)]) == 1
    assert "exists: pass overwrite=True (--overwrite)" in capsys.readouterr().err
    assert output.read_bytes() == before
    predict(source, "--model", model_folder, "--output", output, "--overwrite", "--requests", "logg")
    assert QTable.read(output).colnames == ["logg", "logg_std", "reason", "out_of_range", "hint"]
    capsys.readouterr()
    assert (
        main(["predict", str(source), "--model", str(model_folder), "--output", str(tmp_path / "out.txt")])
        == 1
    )
    assert "output must end in one of" in capsys.readouterr().err
    arguments = [
        "predict",
        str(tmp_path / "stars.txt"),
        "--model",
        str(model_folder),
        "--output",
        str(tmp_path / "x.ecsv"),
    ]
    assert main(arguments) == 1
    assert "error: " in (printed := capsys.readouterr().err) and "unknown input format '.txt'" in printed
    assert "Traceback" not in printed
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.parquet", "stars.ecsv"]  # no temporary left


@pytest.mark.slow
def test_two_processes_write_what_one_process_writes(model_folder, archive, gaia_source, tmp_path):
    side, _ = gaia_source
    exports = [
        str(archive / "XP_CONTINUOUS_RAW_with_missing_BP.csv"),
        str(archive / "XP_CONTINUOUS_RAW.fits"),
    ]
    common = ["--gaia-source", str(side), "--model", str(model_folder), "--chunk-size", "1"]
    env = {**os.environ, "ACCELERATE_USE_CPU": "1", "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO_ROOT)}
    accelerate = shutil.which("accelerate", path=str(Path(sys.executable).parent))
    one_process = [sys.executable]
    two_processes = [
        accelerate,
        "launch",
        "--multi_gpu",
        "--num_processes",
        "2",
        "--main_process_port",
        "29563",
    ]
    runs = {  # name: (launcher, inputs, what each process did)
        "one": (one_process, exports, []),
        "by_file": (
            two_processes,
            exports,
            ["process 0/2: 3 chunks", "process 1/2: 2 chunks"],
        ),  # a file each
        "by_chunk": (
            two_processes,
            exports[:1],
            ["process 0/2: 2 chunks", "process 1/2: 1 chunks"],
        ),  # 1 file
    }
    tables = {}
    for name, (launcher, inputs, shares) in runs.items():
        output = tmp_path / f"{name}.parquet"
        command = [*launcher, "-m", "stellar_tasks", "predict", *inputs, *common, "--output", str(output)]
        result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
        assert result.returncode == 0, (name, result.stderr[-3000:])
        assert all(share in result.stderr for share in shares), (name, result.stderr[-2000:])
        tables[name] = QTable.read(output)
    one = tables["one"]
    assert len(one) == 5
    for name, expected in (("by_file", one), ("by_chunk", one[:3])):
        assert tables[name].colnames == expected.colnames
        for column in expected.colnames:
            np.testing.assert_array_equal(
                np.asarray(tables[name][column]), np.asarray(expected[column]), err_msg=name
            )
