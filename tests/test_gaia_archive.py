"""Reading Gaia DR3 archive ``xp_continuous_mean_spectrum`` exports: every format, same numbers."""

from __future__ import annotations

import csv
import gzip
import io
import shutil
from pathlib import Path

import numpy as np
import pytest
from astropy.table import Table

from datasets_builder.gaia_archive import MISSING_N_RELEVANT_BASES, XP_N_CORRELATIONS, read_gaia_xp

FIXTURE = "XP_CONTINUOUS_RAW"
MISSING_BP = "XP_CONTINUOUS_RAW_with_missing_BP.csv"


@pytest.fixture(scope="module")
def archive_dir(shared_dir) -> Path:
    return shared_dir / "fixtures" / "gaia_archive"


def _gzip(source: Path, target: Path) -> Path:
    with open(source, "rb") as src, gzip.open(target, "wb") as dst:
        shutil.copyfileobj(src, dst)
    return target


def _as_archive_arrays(csv_path: Path) -> Table:
    """The CSV export re-typed as the archive's FITS/VOTable writer types it: array cells become numpy
    arrays (zero-length for a band without a solution), float64 coefficients, float32 errors."""
    raw = Table.read(csv_path, format="ascii.basic", delimiter=",", guess=False)
    out = Table()
    for name in raw.colnames:
        column = raw[name]
        if column.dtype.kind != "U":
            out[name] = column
            continue
        dtype = np.float64 if name.endswith("_coefficients") else np.float32
        cells = np.empty(len(column), dtype=object)
        cells[:] = [
            np.array([], dtype) if np.ma.is_masked(v) else np.array(v.strip("()").split(","), dtype=dtype)
            for v in column
        ]
        out[name] = cells
    return out


def _assert_same(a: Table, b: Table) -> None:
    assert a.colnames == b.colnames
    for name in a.colnames:
        x, y = np.asarray(a[name]), np.asarray(b[name])
        assert x.dtype == y.dtype, name
        np.testing.assert_array_equal(x, y, err_msg=name)  # NaN == NaN here


@pytest.fixture(scope="module")
def exports(archive_dir, tmp_path_factory) -> dict[str, Path]:
    """The fixture in every export format the archive offers, plus the compressed variants."""
    tmp = tmp_path_factory.mktemp("exports")
    votable = tmp / f"{FIXTURE}.vot"
    Table.read(archive_dir / f"{FIXTURE}.fits").write(votable, format="votable")
    bulk = tmp / "XpContinuousMeanSpectrum_000000-003111.csv.gz"  # bulk-download naming: ECSV inside
    return {
        "csv": archive_dir / f"{FIXTURE}.csv",
        "ecsv": archive_dir / f"{FIXTURE}.ecsv",
        "fits": archive_dir / f"{FIXTURE}.fits",
        "votable": votable,
        "csv.gz": _gzip(archive_dir / f"{FIXTURE}.csv", tmp / f"{FIXTURE}.csv.gz"),
        "ecsv.gz": _gzip(archive_dir / f"{FIXTURE}.ecsv", tmp / f"{FIXTURE}.ecsv.gz"),
        "bulk ecsv as .csv.gz": _gzip(archive_dir / f"{FIXTURE}.ecsv", bulk),
    }


def test_csv_values_and_types(exports):
    xp = read_gaia_xp(exports["csv"])
    assert xp["source_id"].tolist() == [5853498713190525696, 5762406957886626816]
    assert xp["source_id"].dtype == np.int64
    assert xp["bp_coefficients"].shape == (2, 55) and xp["bp_coefficients"].dtype == np.float64
    assert xp["rp_coefficient_errors"].shape == (2, 55) and xp["rp_coefficient_errors"].dtype == np.float64
    assert xp["bp_coefficient_correlations"].shape == (2, XP_N_CORRELATIONS)
    # First and last BP values of the first source, as written in the CSV text.
    assert xp["bp_coefficients"][0, 0] == 56947.03696840172
    assert xp["bp_coefficients"][0, -1] == pytest.approx(-0.777176394, rel=1e-8)
    # Errors are float32 in the archive: the CSV's "55.701263" is that float32, widened exactly.
    assert xp["bp_coefficient_errors"][0, 0] == np.float64(np.float32(55.701263))
    assert xp["bp_n_relevant_bases"].tolist() == [53, 53]
    assert xp["bp_n_relevant_bases"].dtype == np.int16
    assert not np.isnan(xp["rp_coefficients"]).any()


@pytest.mark.parametrize("fmt", ["ecsv", "fits", "votable", "csv.gz", "ecsv.gz", "bulk ecsv as .csv.gz"])
def test_every_format_gives_identical_arrays(exports, fmt):
    _assert_same(read_gaia_xp(exports["csv"]), read_gaia_xp(exports[fmt]))


def test_correlations_can_be_left_out(exports):
    xp = read_gaia_xp(exports["fits"], correlations=False)
    assert "bp_coefficient_correlations" not in xp.colnames
    assert "rp_coefficient_correlations" not in xp.colnames
    assert "bp_coefficients" in xp.colnames


def test_missing_band_is_nan_in_every_format(archive_dir, tmp_path):
    csv = archive_dir / MISSING_BP
    xp = read_gaia_xp(csv)
    assert len(xp) == 3
    missing = xp["source_id"] == 5405570973190252288
    assert np.isnan(xp["bp_coefficients"][missing]).all()
    assert np.isnan(xp["bp_coefficient_errors"][missing]).all()
    assert np.isnan(xp["bp_standard_deviation"][missing]).all()
    assert xp["bp_n_relevant_bases"][missing].tolist() == [MISSING_N_RELEVANT_BASES]
    assert not np.isnan(xp["rp_coefficients"][missing]).any()
    assert not np.isnan(xp["bp_coefficients"][~missing]).any()

    # The same rows as the archive writes them in FITS (zero-length PD(55) cells, TNULL integers)
    # and in VOTable (empty arraysize="*" cells).
    arrays = _as_archive_arrays(csv)
    arrays.write(tmp_path / "missing.fits")
    arrays.write(tmp_path / "missing.vot", format="votable")
    _assert_same(xp, read_gaia_xp(tmp_path / "missing.fits"))
    _assert_same(xp, read_gaia_xp(tmp_path / "missing.vot"))


def _csv_lines(archive_dir) -> list[str]:
    return (archive_dir / f"{FIXTURE}.csv").read_text().splitlines(keepends=True)


def _edit_field(line: str, column: int, value: str | None) -> str:
    """The CSV line with field ``column`` replaced by ``value`` (removed when None)."""
    fields = next(csv.reader([line]))
    if value is None:
        del fields[column]
    else:
        fields[column] = value
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerow(fields)
    return out.getvalue()


@pytest.mark.filterwarnings("ignore:File may have been truncated")
def test_bad_files_raise_value_error_naming_file_and_place(archive_dir, tmp_path):
    lines = _csv_lines(archive_dir)
    csv_bytes = (archive_dir / f"{FIXTURE}.csv").read_bytes()
    fits_bytes = (archive_dir / f"{FIXTURE}.fits").read_bytes()
    header = lines[0].rstrip("\n").split(",")
    end = lines[2].index(")")  # second star: drop the last of its BP coefficients
    short = lines[2][: lines[2].rindex(",", 0, end)] + lines[2][end:]
    cases = {
        "empty.csv": (b"", "empty file"),
        "cut.csv": (csv_bytes[: len(csv_bytes) // 2], "truncated"),
        "cut_at_newline.csv": (csv_bytes[: len(csv_bytes) // 2] + b"\n", "inconsistent"),
        "cut.fits": (fits_bytes[: len(fits_bytes) - 3000], "FITS"),
        "cut.csv.gz": (gzip.compress(csv_bytes)[:-200], "CSV"),
        "not_gzip.csv.gz": (csv_bytes, "CSV"),
        "no_errors.csv": (
            "".join(
                _edit_field(line, header.index("rp_coefficient_errors"), None) for line in lines
            ).encode(),
            "rp_coefficient_errors",
        ),
        "short.csv": ((lines[0] + lines[1] + short).encode(), "column 'bp_coefficients', row 1"),
        "garbled.csv": (
            (lines[0] + lines[1].replace("56947.03696840172", "5694x.0", 1) + lines[2]).encode(),
            "column 'bp_coefficients', row 0 (source_id 5853498713190525696)",
        ),
        "too_many_bases.csv": (
            (lines[0] + lines[1] + _edit_field(lines[2], header.index("rp_n_relevant_bases"), "56")).encode(),
            "column 'rp_n_relevant_bases', row 1 (source_id 5762406957886626816): 56",
        ),
        "twice.csv": (
            (lines[0] + lines[1] + lines[1]).encode(),
            "5853498713190525696 appears more than once",
        ),
        "spectra.txt": (csv_bytes, "unknown Gaia archive export format"),
    }
    for name, (content, expected) in cases.items():
        path = tmp_path / name
        path.write_bytes(content)
        with pytest.raises(ValueError) as error:
            read_gaia_xp(path)
        assert str(path) in str(error.value), name
        assert expected in str(error.value), (name, str(error.value))


def test_truncated_votable_raises(exports, tmp_path):
    text = exports["votable"].read_bytes()
    path = tmp_path / "cut.vot"
    path.write_bytes(text[: len(text) // 2])
    with pytest.raises(ValueError, match="cut.vot"):
        read_gaia_xp(path)


def test_header_only_csv_is_an_empty_result(archive_dir, tmp_path):
    path = tmp_path / "no_rows.csv"
    path.write_text(_csv_lines(archive_dir)[0])
    xp = read_gaia_xp(path)
    assert len(xp) == 0
    assert xp["bp_coefficients"].shape == (0, 55)
