"""Gaia archive XP rows -> dataset rows (G-flux normalisation, relevant bases) and the archive build path."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
from allstar_factory import allstar_table, write_allstar
from astropy.table import Table

from datasets_builder.archive import archive_rows, iter_archive_rows
from datasets_builder.constants import G_ZERO_POINT
from datasets_builder.gaia_archive import read_gaia_xp
from datasets_builder.xp import g_band_flux

SOURCES = [5853498713190525696, 5405570973190252288, 5762406957886626816]  # the missing-BP fixture, in order


@pytest.fixture(scope="module")
def archive_dir(shared_dir):
    return shared_dir / "fixtures" / "gaia_archive"


@pytest.fixture(scope="module")
def xp(archive_dir):
    return read_gaia_xp(archive_dir / "XP_CONTINUOUS_RAW_with_missing_BP.csv", correlations=False)


def test_g_band_flux():
    assert g_band_flux(np.array([G_ZERO_POINT.value]))[0] == pytest.approx(1.0)
    np.testing.assert_allclose(
        g_band_flux(np.array([G_ZERO_POINT.value - 2.5, 15.0])),
        [10.0, 10 ** (-0.4 * (15.0 - G_ZERO_POINT.value))],
    )


def test_archive_rows_normalise_and_mask(xp):
    g = np.array([12.0, 14.0, np.nan])
    rows = archive_rows(xp, phot_g_mean_mag=g)
    assert rows["gaia_dr3_source_id"].tolist() == SOURCES[:2]  # the third star has no G
    assert rows.meta["counts"] == {"no_phot_g_mean_mag": 1}
    flux = 10 ** ((G_ZERO_POINT.value - 12.0) / 2.5)
    n_bp = int(xp["bp_n_relevant_bases"][0])
    n_rp = int(xp["rp_n_relevant_bases"][0])
    assert 0 < n_bp < 55 and 0 < n_rp < 55
    for i in range(55):
        expected = np.float32(xp["bp_coefficients"][0, i] / flux) if i < n_bp else np.nan
        np.testing.assert_equal(rows[f"bp{i}"][0], expected)
        expected = np.float32(xp["rp_coefficient_errors"][0, i] / flux) if i < n_rp else np.nan
        np.testing.assert_equal(rows[f"rp{i}_err"][0], expected)
    # The second star has no BP solution: all of BP is missing, RP is there.
    assert all(np.isnan(rows[f"bp{i}"][1]) and np.isnan(rows[f"bp{i}_err"][1]) for i in range(55))
    assert np.isfinite(rows["rp0"][1])
    assert rows["bp0"].dtype == np.float32 and rows["bp_n_relevant_bases"].dtype == np.int16
    assert rows["phot_g_mean_mag"].tolist() == [12.0, 14.0]
    # G-normalised coefficients of a real star are O(0.1-1) for BP0/RP0.
    assert 0.01 < rows["bp0"][0] < 10 and 0.01 < rows["rp0"][0] < 10


def test_archive_rows_take_g_and_colour_from_columns(xp):
    table = xp.copy()
    table["phot_g_mean_mag"] = [12.0, 13.0, 14.0]
    table["phot_bp_mean_mag"] = [12.5, 13.4, 14.9]
    table["phot_rp_mean_mag"] = [11.3, 12.6, 13.2]
    table["phot_bp_mean_flux_over_error"] = [1000.0, 500.0, 100.0]
    table["phot_rp_mean_flux_over_error"] = [2000.0, 800.0, 300.0]
    rows = archive_rows(table)
    assert len(rows) == 3
    np.testing.assert_allclose(rows["bprp"], [1.2, 0.8, 1.7], rtol=1e-6)
    bp_err = np.hypot(2.5 / np.log(10) / 1000.0, 0.0027901700)
    rp_err = np.hypot(2.5 / np.log(10) / 2000.0, 0.0037793818)
    assert rows["bprp_err"][0] == pytest.approx(np.hypot(bp_err, rp_err), rel=1e-6)


def test_archive_rows_need_g(xp):
    with pytest.raises(ValueError, match="no Gaia G magnitude"):
        archive_rows(xp)
    with pytest.raises(ValueError, match="shape"):
        archive_rows(xp, phot_g_mean_mag=np.array([12.0]))


@pytest.fixture(scope="module")
def allstar_with_xp_stars(tmp_path_factory):
    """An allStar whose first three primary stars are the fixture's Gaia sources (with other G values)."""
    table = allstar_table(60)
    primary = np.flatnonzero((np.asarray(table["EXTRATARG"]) == 0) & (np.asarray(table["TEFF"]) > 0))[:3]
    table["GAIAEDR3_SOURCE_ID"][primary] = SOURCES
    table["GAIAEDR3_PHOT_G_MEAN_MAG"][primary] = [11.0, 11.5, 12.5]
    path = write_allstar(tmp_path_factory.mktemp("allstar") / "allStar.fits", table)
    return path, table, primary


def _gaia_source_file(path, ids, g):
    Table({"source_id": np.asarray(ids, dtype=np.int64), "phot_g_mean_mag": np.asarray(g, float)}).write(path)
    return path


def test_iter_archive_rows_joins_labels_and_picks_g(archive_dir, allstar_with_xp_stars, tmp_path):
    allstar, table, primary = allstar_with_xp_stars
    # The gaia_source table knows G of the first two stars only: the third takes the allStar's G.
    gaia_source = _gaia_source_file(tmp_path / "gaia_source.fits", SOURCES[:2], [12.0, 13.0])
    files = [archive_dir / "XP_CONTINUOUS_RAW_with_missing_BP.csv", archive_dir / "XP_CONTINUOUS_RAW.fits"]
    chunks = list(
        iter_archive_rows(
            [str(f) for f in files], str(allstar), chunk_size=2, gaia_source_path=str(gaia_source)
        )
    )
    assert [len(c) for c in chunks] == [2, 1]
    rows = Table(np.concatenate([np.asarray(c) for c in chunks]))
    counts = chunks[-1].meta["counts"]
    assert rows["gaia_dr3_source_id"].tolist() == SOURCES
    assert counts["xp_rows_read"] == 5 and counts["xp_duplicate"] == 2
    assert counts["matched_source_id"] == 3 and counts["without_apogee"] == 0
    assert counts["rows_written"] == 3 and counts["apogee_rows_read"] == 60
    assert rows["phot_g_mean_mag"].tolist() == [12.0, 13.0, 12.5]
    for k, i in enumerate(primary):
        assert rows["apogee_id"][k] == str(table["APOGEE_ID"][i]).strip()
        assert rows["teff"][k] == table["TEFF"][i]
    assert rows["source"][0] == "gaia_dr3_xp_continuous+apogee_dr17_allstar"
    xp = read_gaia_xp(files[0])
    flux = g_band_flux(np.array([12.5]))[0]
    assert rows["rp3"][2] == np.float32(xp["rp_coefficients"][2, 3] / flux)


def test_iter_archive_rows_without_apogee(archive_dir, tmp_path):
    gaia_source = _gaia_source_file(tmp_path / "gaia_source.csv", SOURCES[::-1], [14.0, np.nan, 12.0])
    paths = [str(archive_dir / "XP_CONTINUOUS_RAW_with_missing_BP.csv")]
    chunks = list(iter_archive_rows(paths, None, gaia_source_path=str(gaia_source)))
    assert len(chunks) == 1
    rows = chunks[0]
    assert rows["gaia_dr3_source_id"].tolist() == [SOURCES[0], SOURCES[2]]  # the middle star has no G
    assert rows["phot_g_mean_mag"].tolist() == [12.0, 14.0]
    assert Counter(rows.meta["counts"])["no_phot_g_mean_mag"] == 1
    assert "teff" not in rows.colnames
    with pytest.raises(ValueError, match="no Gaia G magnitude"):
        list(iter_archive_rows(paths, None))


def test_files_with_different_columns_stack_without_masks(archive_dir, tmp_path):
    # The first export joined gaia_source's BP and RP magnitudes in the archive query; the second did not.
    joined = Table.read(archive_dir / "XP_CONTINUOUS_RAW.fits")
    joined["phot_bp_mean_mag"] = np.array([13.1, 15.2], dtype=np.float32)
    joined["phot_rp_mean_mag"] = np.array([11.9, 14.0], dtype=np.float32)
    joined.write(tmp_path / "with_colours.fits")
    gaia_source = _gaia_source_file(tmp_path / "gaia_source.ecsv", SOURCES, [12.0, 13.0, 14.0])
    paths = [str(tmp_path / "with_colours.fits"), str(archive_dir / "XP_CONTINUOUS_RAW_with_missing_BP.csv")]
    (rows,) = iter_archive_rows(paths, None, gaia_source_path=str(gaia_source))
    assert rows["gaia_dr3_source_id"].tolist() == [SOURCES[0], SOURCES[2], SOURCES[1]]
    assert not rows.has_masked_columns
    np.testing.assert_allclose(rows["bprp"][:2], [1.2, 1.2], atol=1e-6)
    assert np.isnan(rows["bprp"][2]) and np.isnan(rows["bprp_err"]).all()
