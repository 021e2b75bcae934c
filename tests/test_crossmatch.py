"""Joining survey rows by Gaia source id and by sky position."""

from __future__ import annotations

import numpy as np
import pytest
from allstar_factory import allstar_table, write_allstar
from astropy.table import Table

from datasets_builder.apogee import NO_SOURCE_ID, read_allstar_rows
from datasets_builder.crossmatch import (
    GAIA_DR3_EPOCH,
    TWOMASS_EPOCH,
    join_rows,
    match_by_position,
    match_by_source_id,
)

ARCSEC = 1 / 3600


@pytest.fixture(scope="module")
def apogee_rows(tmp_path_factory):
    path = write_allstar(tmp_path_factory.mktemp("allstar") / "allStar.fits", allstar_table(120))
    rows, _ = read_allstar_rows(path)
    return rows


def test_match_by_source_id():
    right = np.array([30, 10, NO_SOURCE_ID, 20, 0], dtype=np.int64)
    left = np.array([20, 99, 10, NO_SOURCE_ID, 0, 30], dtype=np.int64)
    assert match_by_source_id(left, right).tolist() == [3, -1, 1, -1, -1, 0]
    assert match_by_source_id(left, np.array([], dtype=np.int64)).tolist() == [-1] * 6
    with pytest.raises(ValueError, match="20 appears more than once"):
        match_by_source_id(left, np.array([20, 5, 20]))


def test_match_by_position_is_one_to_one_within_radius():
    right_ra, right_dec = np.array([10.0, 50.0, 200.0]), np.array([-30.0, 20.0, 60.0])
    left_ra = np.array([10.0 + 0.3 * ARCSEC / np.cos(np.deg2rad(30)), 10.0, 50.0, 200.0, np.nan])
    left_dec = np.array([-30.0, -30.0 + 0.1 * ARCSEC, 20.0 + 1.5 * ARCSEC, 60.0, 0.0])
    index, separation = match_by_position(left_ra, left_dec, right_ra, right_dec, radius_arcsec=1.0)
    # Rows 0 and 1 both have right row 0 nearest: the closer (row 1, 0.1") keeps it.
    assert index.tolist() == [-1, 0, -1, 2, -1]
    assert separation[1] == pytest.approx(0.1, abs=1e-6)
    assert np.isnan(separation[[0, 2, 4]]).all()
    index, _ = match_by_position(left_ra, left_dec, right_ra, right_dec, radius_arcsec=2.0)
    assert index.tolist() == [-1, 0, 1, 2, -1]


def _xp_like(apogee_rows, n: int) -> Table:
    """Gaia-side rows for the first ``n`` APOGEE stars: same ids, Gaia-epoch positions, a G column."""
    xp = Table()
    xp["gaia_dr3_source_id"] = np.asarray(apogee_rows["gaia_dr3_source_id"][:n])
    xp["source"] = np.full(n, "gaia_dr3_xp_continuous")
    xp["phot_g_mean_mag"] = np.full(n, np.nan, dtype=np.float32)
    xp["bprp"] = np.full(n, 1.25, dtype=np.float32)
    xp["bprp_err"] = np.full(n, 0.01, dtype=np.float32)
    xp["ra"] = np.asarray(apogee_rows["ra"][:n], dtype=float)
    xp["dec"] = np.asarray(apogee_rows["dec"][:n], dtype=float)
    xp["bp0"] = np.linspace(0.1, 0.2, n).astype(np.float32)
    return xp


def test_join_by_source_id_attaches_labels_and_merges_shared_columns(apogee_rows):
    xp = _xp_like(apogee_rows, 10)
    xp["gaia_dr3_source_id"][3] = 123  # a Gaia star APOGEE never observed
    xp["bprp"][4] = np.nan  # unknown on the Gaia side: the APOGEE value (and its error) fills it
    xp["bprp_err"][4] = np.nan
    joined = join_rows(xp, apogee_rows)
    assert len(joined) == 10
    assert joined["crossmatch"].tolist().count("source_id") == 9
    assert joined["crossmatch"][3] == ""
    index = match_by_source_id(xp["gaia_dr3_source_id"], apogee_rows["gaia_dr3_source_id"])
    hit = index >= 0
    for name in ("apogee_id", "teff", "teff_err", "logg", "jh", "jk_err", "ak_targ", "snr"):
        np.testing.assert_array_equal(
            np.asarray(joined[name][hit]), np.asarray(apogee_rows[name][index[hit]])
        )
    expected = apogee_rows[index[0]]
    assert np.isnan(joined["teff"][3]) and joined["apogee_id"][3] == ""
    assert joined["source"][0] == "gaia_dr3_xp_continuous+apogee_dr17_allstar"
    assert joined["source"][3] == "gaia_dr3_xp_continuous"
    # phot_g_mean_mag was NaN on the Gaia side: taken from APOGEE.
    assert joined["phot_g_mean_mag"][0] == expected["phot_g_mean_mag"]
    # bprp: the Gaia-side value wins where it exists; where it is NaN, APOGEE's value with APOGEE's error.
    assert joined["bprp"][0] == 1.25 and joined["bprp_err"][0] == np.float32(0.01)
    row4 = apogee_rows[
        match_by_source_id(xp["gaia_dr3_source_id"][4:5], apogee_rows["gaia_dr3_source_id"])[0]
    ]
    assert joined["bprp"][4] == row4["bprp"]
    assert np.isnan(joined["bprp_err"][4]) == np.isnan(row4["bprp_err"])
    np.testing.assert_array_equal(np.asarray(joined["bp0"]), np.asarray(xp["bp0"]))


def test_rows_without_id_match_by_position_with_proper_motion(apogee_rows):
    apogee = apogee_rows.copy()
    xp = _xp_like(apogee, 6)
    apogee["gaia_dr3_source_id"][:2] = NO_SOURCE_ID  # APOGEE lost the Gaia id of the first two stars
    # Star 1 moves fast: 120 mas/yr in Dec, so its Gaia (J2016) position is ~1.9" from the 2MASS one.
    pmdec = 120.0
    xp["dec"][1] = apogee["dec"][1] + pmdec * (GAIA_DR3_EPOCH - TWOMASS_EPOCH) / 3.6e6
    joined = join_rows(xp, apogee)
    assert joined["crossmatch"].tolist() == [
        "position",
        "",
        "source_id",
        "source_id",
        "source_id",
        "source_id",
    ]
    assert joined["apogee_id"][0] == apogee["apogee_id"][0]
    assert joined["crossmatch_separation_arcsec"][0] < 0.01
    # With the proper motion the Gaia position is moved back to the 2MASS epoch and it matches.
    xp["pmra"] = np.zeros(6)
    xp["pmdec"] = np.zeros(6)
    xp["pmdec"][1] = pmdec
    joined = join_rows(xp, apogee)
    assert joined["crossmatch"][1] == "position"
    assert joined["apogee_id"][1] == apogee["apogee_id"][1]
    assert joined["crossmatch_separation_arcsec"][1] < 0.05


def test_join_needs_the_key_and_unique_right_ids(apogee_rows):
    xp = _xp_like(apogee_rows, 3)
    with pytest.raises(ValueError, match="no 'gaia_dr3_source_id'"):
        join_rows(xp, Table({"teff": [1.0]}))
    doubled = apogee_rows[:3].copy()
    doubled["gaia_dr3_source_id"][1] = doubled["gaia_dr3_source_id"][0]
    with pytest.raises(ValueError, match="more than once"):
        join_rows(xp, doubled)


def test_join_with_empty_tables(apogee_rows):
    xp = _xp_like(apogee_rows, 4)
    joined = join_rows(xp, apogee_rows[:0])
    assert len(joined) == 4 and joined["crossmatch"].tolist() == [""] * 4
    assert joined["source"].tolist() == ["gaia_dr3_xp_continuous"] * 4 and np.isnan(joined["teff"]).all()
    assert len(join_rows(xp[:0], apogee_rows)) == 0
