"""``stellar-foundation predict`` on HATS catalogues: LSDB partitions on Dask workers give the Parquet path's numbers.

The catalogues are built here with the real `lsdb.from_dataframe` from real rows: the test split of the tiny
dataset (the real builder on the first 1,500 library rows) and the Gaia archive XP fixtures. Neither has ``ra``/
``dec``, so each star is placed at the centre of the HEALPix level-12 pixel that its Gaia DR3 ``source_id`` encodes.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import astropy.units as u
import distributed
import lsdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from astropy.table import QTable, Table
from hats.io.paths import pixel_catalog_file
from hats.io.validation import is_valid_catalog
from hats_import.verification.arguments import VerificationArguments
from hats_import.verification.run_verification import run as run_verification

from datasets_builder.gaia_archive import read_gaia_xp
from stellar_tasks.catalogue import NOT_IN_GAIA_SOURCE
from stellar_tasks.cli import main
from stellar_tasks.hats import is_hats_catalogue, sky_position_of_source_id, write_hats_catalogue
from stellar_tasks.hub import prepare_model_folder
from stellar_tasks.inputs import HEADLINE_COLUMNS
from tests.conftest import REPO_ROOT, create_test_tokenizer
from tests.test_pipeline import lively_model

PREDICTED = [f"{name}{suffix}" for name in ("teff", "logg", "fe_h") for suffix in ("", "_std")]
XP_FILES = ("XP_CONTINUOUS_RAW.csv", "XP_CONTINUOUS_RAW_with_missing_BP.csv")


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    """A tiny model folder whose answers differ visibly from star to star."""
    return prepare_model_folder(
        lively_model(), create_test_tokenizer(), tmp_path_factory.mktemp("model") / "m"
    )


@pytest.fixture(scope="module")
def cluster():
    """Two worker processes (one thread each), shared by the tests that pass ``--scheduler``."""
    with distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
    ) as local:
        yield local


@pytest.fixture(scope="module")
def test_stars(tiny_dataset, tmp_path_factory) -> tuple[Path, Path]:
    """The tiny dataset's test split as a Parquet table and as a HATS catalogue of several partitions."""
    folder = tmp_path_factory.mktemp("stars")
    table = pa.concat_tables(pq.read_table(path) for path in sorted(tiny_dataset.glob("data/test-*.parquet")))
    parquet = folder / "test.parquet"
    pq.write_table(table, parquet)
    catalogue = write_hats_catalogue(table.to_pandas(), folder / "test_hats", "test", partition_rows=40)
    return parquet, catalogue


@pytest.fixture(scope="module")
def parquet_prediction(model, test_stars, tmp_path_factory) -> QTable:
    """What the single-process path writes for the test split."""
    output = tmp_path_factory.mktemp("reference") / "reference.parquet"
    predict(test_stars[0], "--model", model, "--output", output)
    return QTable.read(output)


def predict(*arguments) -> None:
    assert main(["predict", *map(str, arguments)]) == 0


def by_source(table, key: str = "gaia_dr3_source_id"):
    table = QTable(table)
    table.sort(key)
    return table


def assert_same_predictions(table, reference) -> None:
    """Same stars, same reasons, same numbers up to float32 rounding (batches hold other stars)."""
    table, reference = by_source(table), by_source(reference)
    np.testing.assert_array_equal(table["gaia_dr3_source_id"], reference["gaia_dr3_source_id"])
    np.testing.assert_array_equal(np.asarray(table["reason"]), np.asarray(reference["reason"]))
    for name in PREDICTED:
        assert table[name].unit == reference[name].unit, name
        np.testing.assert_allclose(
            table[name].value, reference[name].value, rtol=1e-5, atol=1e-5, err_msg=name
        )


def test_positions_come_from_the_level_12_pixel_in_the_source_id():
    # Gaia DR3 documentation: source_id // 2**35 is the nested level-12 HEALPix index. The first sub-pixel of a base
    # pixel is its southern corner: (ra 45, dec 0) for base pixel 0, the south pole for base pixel 11.
    ra, dec = sky_position_of_source_id(np.array([0, 11 * 4**12 * 2**35 + 12345]))
    assert ra[0] == pytest.approx(45.0, abs=0.02) and dec[0] == pytest.approx(0.0, abs=0.02)
    assert dec[1] < -89.9


def test_star_catalogue_on_two_workers_gives_the_parquet_path_numbers(
    model, test_stars, parquet_prediction, tmp_path
):
    _, catalogue = test_stars
    assert is_hats_catalogue(catalogue) and not is_hats_catalogue(test_stars[0])
    assert lsdb.open_catalog(catalogue).npartitions > 1
    output = tmp_path / "predicted.parquet"
    predict(catalogue, "--model", model, "--output", output, "--workers", "2", "--batch-size", "16")
    table = QTable.read(output)
    assert table.colnames == [
        "gaia_dr3_source_id",
        "apogee_id",
        "ra",
        "dec",
        *PREDICTED,
        "reason",
        "out_of_range",
        "hint",
    ]
    assert table["teff"].unit == u.K and table["logg_std"].unit == u.dex
    assert_same_predictions(table, parquet_prediction)
    assert sorted(path.name for path in tmp_path.iterdir()) == ["predicted.parquet"]  # nothing left behind


@pytest.fixture(scope="module")
def hats_output(model, test_stars, cluster, tmp_path_factory) -> Path:
    """What the command writes for the test split's catalogue to a folder ``--output``: a HATS catalogue."""
    output = tmp_path_factory.mktemp("hats_output") / "predicted"
    predict(test_stars[1], "--model", model, "--output", output, "--scheduler", cluster.scheduler_address)
    return output


def test_hats_output_opens_with_lsdb_and_holds_the_same_rows(hats_output, parquet_prediction, cluster):
    assert is_hats_catalogue(hats_output)
    catalogue = lsdb.open_catalog(hats_output)
    properties = catalogue.hc_structure.catalog_info
    assert (properties.ra_column, properties.dec_column) == ("ra", "dec")
    properties_text = (hats_output / "hats.properties").read_text()
    assert "teff=K" in properties_text and "stellar_foundation_xp_bases=bp=56/55 rp=57/55" in properties_text
    frame = catalogue.compute(progress_bar=False)
    table = QTable({"gaia_dr3_source_id": frame["gaia_dr3_source_id"].to_numpy()})
    for name in PREDICTED:
        table[name] = frame[name].to_numpy() * parquet_prediction[name].unit
    table["reason"] = frame["reason"].astype(str).to_numpy()
    assert_same_predictions(table, parquet_prediction)
    # the model is loaded once per worker process, whatever the number of partitions
    from stellar_tasks import hats

    with distributed.Client(cluster.scheduler_address) as client:
        loaded = client.run(lambda: len(hats._PREDICTORS))
    assert set(loaded.values()) <= {0, 1} and sum(loaded.values()) >= 1
    assert sorted(path.name for path in hats_output.parent.iterdir()) == ["predicted"]


def test_hats_output_passes_the_strict_hats_validation(hats_output, caplog):
    # hats reports what is wrong or missing (an optional file too) only through logging warnings, so those are
    # asserted absent as well as the verdict: a catalogue that is valid with a warning is not what is asked for
    caplog.set_level(logging.INFO)
    valid = is_valid_catalog(hats_output, strict=True)
    warnings = [record.getMessage() for record in caplog.records if record.levelno >= logging.WARNING]
    assert valid and not warnings, warnings
    assert any(
        f"Validating catalog at path {hats_output}" in record.getMessage() for record in caplog.records
    )


def test_hats_import_verifier_passes_on_the_hats_output(hats_output, test_stars, tmp_path):
    # hats-import's own pipeline: strict validity, _metadata against the files, row counts (footers, _metadata,
    # hats.properties and the input's rows), and every schema (footers' and _metadata's, with their metadata)
    input_rows = pq.ParquetFile(test_stars[0]).metadata.num_rows
    assert lsdb.open_catalog(test_stars[1]).hc_structure.catalog_info.total_rows == input_rows
    arguments = VerificationArguments(
        input_catalog_path=hats_output,
        output_path=tmp_path,
        truth_total_rows=input_rows,
        check_metadata=True,
        verbose=False,
    )
    results = run_verification(arguments).results_df
    assert results["passed"].all(), results.loc[~results["passed"]].to_string()
    assert {"valid hats", "file sets", "num rows", "schema"} == set(results["test"])
    assert "file footers vs truth" in set(results.loc[results["test"] == "num rows", "target"])
    assert len(results.loc[results["test"] == "schema"]) == 3


@pytest.fixture(scope="module")
def archive_sources(shared_dir, tmp_path_factory) -> tuple[Path, Path, Path, int]:
    """The Gaia archive XP fixtures as an XP catalogue (archive list columns), and a gaia_source table (file and
    catalogue) giving G to every source but one; returns both, the XP catalogue and that source."""
    folder = tmp_path_factory.mktemp("archive")
    rows = {}
    for name in XP_FILES:
        xp = read_gaia_xp(shared_dir / "fixtures" / "gaia_archive" / name, correlations=False)
        for k in range(len(xp)):
            rows.setdefault(int(xp["source_id"][k]), xp[k])
    ids = sorted(rows)
    columns = {"source_id": pa.array(ids, pa.int64())}
    for band in ("bp", "rp"):
        for suffix, kind in (("coefficients", pa.float64()), ("coefficient_errors", pa.float32())):
            cells = [rows[i][f"{band}_{suffix}"] for i in ids]
            columns[f"{band}_{suffix}"] = pa.array(
                [None if np.isnan(cell).all() else cell.tolist() for cell in cells], pa.list_(kind)
            )
        columns[f"{band}_n_relevant_bases"] = pa.array(
            [int(rows[i][f"{band}_n_relevant_bases"]) for i in ids]
        )
    xp_catalogue = write_hats_catalogue(
        pa.table(columns).to_pandas(types_mapper=pd.ArrowDtype), folder / "xp", "xp"
    )
    without_g = ids[-1]
    side = Table(
        rows=[(i, 11.0 + k, 11.6 + k, 10.5 + k) for k, i in enumerate(ids) if i != without_g],
        names=["source_id", "phot_g_mean_mag", "phot_bp_mean_mag", "phot_rp_mean_mag"],
    )
    side_file = folder / "gaia_source.csv"
    side.write(side_file)
    side_catalogue = write_hats_catalogue(side.to_pandas(), folder / "gaia_source", "gaia_source")
    return xp_catalogue, side_file, side_catalogue, without_g


@pytest.mark.parametrize("side", ["file", "catalogue"])
def test_archive_xp_catalogue_with_gaia_source_gives_the_file_path_numbers(
    model, archive_sources, shared_dir, cluster, tmp_path, side
):
    xp_catalogue, side_file, side_catalogue, without_g = archive_sources
    reference = tmp_path / "reference.ecsv"
    exports = [shared_dir / "fixtures" / "gaia_archive" / name for name in XP_FILES]
    predict(*exports, "--gaia-source", side_file, "--model", model, "--output", reference)
    output = tmp_path / "predicted.ecsv"
    gaia_source = side_file if side == "file" else side_catalogue
    predict(xp_catalogue, "--gaia-source", gaia_source, "--model", model, "--output", output,
            "--scheduler", cluster.scheduler_address)  # fmt: skip
    expected = Table.read(reference)
    expected = expected[np.unique(np.asarray(expected["gaia_dr3_source_id"]), return_index=True)[1]]
    table = QTable.read(output)
    for t in (table, expected):
        t["reason"] = np.ma.filled(t["reason"], "")
    assert_same_predictions(table, QTable(expected))
    no_g = np.asarray(by_source(table)["gaia_dr3_source_id"]) == without_g
    assert list(np.asarray(by_source(table)["reason"])[no_g]) == [NOT_IN_GAIA_SOURCE]


def _kill_after_a_partition_and_run_again(
    model: Path, stars: pd.DataFrame, folder: Path, program: tuple[str, ...] = ("-m", "stellar_tasks")
) -> tuple[Path, Path, int, subprocess.CompletedProcess]:
    """Predict a catalogue of ``stars`` (partitions of 10 rows) into ``folder / "predicted.parquet"`` on 2 workers,
    SIGKILL the whole command (client, scheduler and both workers) once a partition is written, and run the same
    command again (``python PROGRAM predict ...``).

    Before the second run, a truncated count histogram is left for an unwritten partition (a kill while it was being
    written), and the input files of the written partitions are removed: a second run that predicted them again would
    have to read them. Returns the catalogue, the output, the number of partitions written before the kill, and the
    second run."""
    catalogue = write_hats_catalogue(stars, folder / "stars", "stars", partition_rows=10)
    output = folder / "predicted.parquet"
    arguments = ["predict", str(catalogue), "--model", str(model), "--output", str(output),
                 "--workers", "2", "--batch-size", "4"]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    done = folder / ".predicted.parquet.partial.tmp" / "catalogue" / "done"
    run = subprocess.Popen(
        [sys.executable, "-m", "stellar_tasks", *arguments],
        env=env,
        start_new_session=True,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 600
        while (
            not (done.is_dir() and any(done.iterdir())) and run.poll() is None and time.monotonic() < deadline
        ):
            time.sleep(0.02)
        assert run.poll() is None, (
            "the run ended before a partition was written: " + run.stderr.read()[-2000:]
        )
    finally:
        os.killpg(run.pid, signal.SIGKILL)
        run.wait()
    assert not output.exists()
    # a kill while a partition's count histogram is written, before its done marker, leaves a truncated file
    finished = {path.name.removesuffix("_done") for path in done.iterdir()}
    pixels = {
        f"{pixel.order}_{pixel.pixel}": pixel for pixel in lsdb.open_catalog(catalogue).get_healpix_pixels()
    }
    unfinished = [name for name in pixels if name not in finished]
    assert unfinished, "every partition was written before the kill"
    (done.parent / "hists").mkdir(exist_ok=True)
    (done.parent / "hists" / f"{unfinished[0]}_histogram.npz").write_bytes(b"PK\x03\x04")
    for name in finished:
        Path(str(pixel_catalog_file(catalogue, pixels[name]))).unlink()
    again = subprocess.run(
        [sys.executable, *program, *arguments], env=env, capture_output=True, text=True, timeout=600
    )
    return catalogue, output, len(finished), again


@pytest.mark.slow
def test_killed_run_resumes_with_the_partitions_it_had_written(
    model, test_stars, parquet_prediction, tmp_path
):
    """The same command again after a SIGKILL predicts only the partitions not written yet (it runs without the
    written ones' input; a half-written histogram of an unfinished one is dropped), and the table is the one an
    uninterrupted run writes."""
    stars = pq.read_table(test_stars[0]).to_pandas()
    catalogue, output, finished, resumed = _kill_after_a_partition_and_run_again(model, stars, tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    written, total = (int(word) for word in resumed.stderr.split("resuming: ")[1].split()[:3:2])
    assert written == finished < total == lsdb.open_catalog(catalogue).npartitions
    assert_same_predictions(QTable.read(output), parquet_prediction)
    assert sorted(path.name for path in tmp_path.iterdir()) == ["predicted.parquet", "stars"]


@pytest.mark.slow
def test_a_resume_that_predicts_finished_partitions_again_is_caught(model, test_stars, tmp_path):
    """Issue 28's break of the resume (`tests.guard_breaks.finished_partitions_recomputed`) in the resume test's
    scenario: it says "resuming: N of M" as a real resume does (all that test asked before), but it reads the input
    of the partitions written before the kill, which the test removed: the run fails, naming one of them."""
    stars = pq.read_table(test_stars[0]).to_pandas()
    broken = ("-m", "tests.guard_breaks", "finished_partitions_recomputed")
    catalogue, output, finished, resumed = _kill_after_a_partition_and_run_again(
        model, stars, tmp_path, program=broken
    )
    written = int(resumed.stderr.split("resuming: ")[1].split()[0])
    assert written == finished < lsdb.open_catalog(catalogue).npartitions
    assert resumed.returncode == 1 and "error: " in resumed.stderr, resumed.stderr[-3000:]
    assert str(catalogue / "dataset") in resumed.stderr and not output.exists()


def test_distilled_on_workers_gives_the_parquet_path_numbers(tiny_dataset, cluster, tmp_path):
    # the shipped model and its student; a table of the headline inputs and BP/RP 30, read as the headline inputs
    # only (--input-names headline), so the student answers: the workers must read only those too
    shipped = REPO_ROOT / "pretrained" / "stellar-foundation-apogee-xp"
    columns = ["gaia_dr3_source_id", *HEADLINE_COLUMNS, "bp30", "bp30_err", "rp30", "rp30_err"]
    table = pa.concat_tables(
        pq.read_table(p, columns=columns) for p in sorted(tiny_dataset.glob("data/test-*.parquet"))
    )
    parquet = tmp_path / "headline.parquet"
    pq.write_table(table, parquet)
    catalogue = write_hats_catalogue(
        table.to_pandas(), tmp_path / "headline_hats", "headline", partition_rows=40
    )
    outputs = {}
    for name, source, extra in (
        ("file", parquet, []),
        ("hats", catalogue, ["--scheduler", cluster.scheduler_address]),
    ):
        outputs[name] = tmp_path / f"{name}.parquet"
        predict(
            source,
            "--model",
            shipped,
            "--output",
            outputs[name],
            "--distilled",
            "--input-names",
            "headline",
            "--precision",
            "float32",
            *extra,
        )
    assert_same_predictions(QTable.read(outputs["hats"]), QTable.read(outputs["file"]))
    model_only = tmp_path / "model.parquet"
    predict(parquet, "--model", shipped, "--output", model_only, "--precision", "float32")
    assert (
        QTable.read(outputs["file"])["teff"] != QTable.read(model_only)["teff"]
    ).mean() > 0.9  # the student's


def test_refusals(model, test_stars, tmp_path, capsys):
    catalogue = test_stars[1]
    refusals = {
        "must be the only input": [catalogue, test_stars[0], "--output", tmp_path / "out.parquet"],
        "or be a folder (no suffix) for a HATS catalogue": [catalogue, "--output", tmp_path / "out.txt"],
    }
    for message, arguments in refusals.items():
        assert main(["predict", *map(str, arguments), "--model", str(model)]) == 1
        assert message in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []
