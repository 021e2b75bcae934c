"""Reading an APOGEE DR17 allStar file: data model, quality cuts, mapping to dataset rows."""

from __future__ import annotations

import numpy as np
import pytest
from allstar_factory import TWOMASS_ERRORS, allstar_table, write_allstar

from datasets_builder.apogee import (
    NO_SOURCE_ID,
    deduplicate_source_ids,
    iter_allstar_rows,
    read_allstar_rows,
)

N_ROWS = 300
LABELS = ("teff", "logg", "fe_h", "alpha_m", "m_h")


@pytest.fixture(scope="module")
def base_table():
    return allstar_table(N_ROWS)


def _flagged(base):
    """The base table with flags and sentinels on chosen rows; returns (table, rows by case)."""
    table = base.copy()
    primary = np.flatnonzero(np.asarray(table["EXTRATARG"]) == 0)
    # Rows with labels, a Gaia id and good photometry, to put one case on each.
    good = [
        i
        for i in primary
        if table["TEFF"][i] > 0 and table["FE_H"][i] > -9000 and table["GAIAEDR3_SOURCE_ID"][i] > 0
    ]
    names = [
        "star_bad",
        "m_h_bad",
        "high_aspcap_bits",
        "starflag_low_snr",
        "starflag_bit31",
        "duplicate",
        "not_main",
        "j_missing",
        "k_err_sentinel",
        "ak_sentinel",
        "ak_below_min",
        "no_gaia_id",
        "teff_sentinel",
        "clean",
    ]
    rows = dict(zip(names, good, strict=False))
    table["ASPCAPFLAG"][rows["star_bad"]] = np.uint64(1 << 23)
    table["ASPCAPFLAG"][rows["m_h_bad"]] = np.uint64(1 << 19)
    table["ASPCAPFLAG"][rows["high_aspcap_bits"]] = np.uint64((1 << 63) | (1 << 33) | (1 << 7))
    table["STARFLAG"][rows["starflag_low_snr"]] = 1 << 4
    table["STARFLAG"][rows["starflag_bit31"]] = 1 << 31
    table["EXTRATARG"][rows["duplicate"]] = 1 << 4
    table["EXTRATARG"][rows["not_main"]] = 1 << 0
    table["J"][rows["j_missing"]] = 99.999
    table["K_ERR"][rows["k_err_sentinel"]] = -9999.0
    table["AK_TARG"][rows["ak_sentinel"]] = -9999.99
    table["AK_TARG"][rows["ak_below_min"]] = -60.0
    table["GAIAEDR3_SOURCE_ID"][rows["no_gaia_id"]] = 0
    table["TEFF"][rows["teff_sentinel"]] = -9999.0
    return table, rows


@pytest.fixture(scope="module")
def flagged(base_table, tmp_path_factory):
    table, rows = _flagged(base_table)
    path = write_allstar(tmp_path_factory.mktemp("allstar") / "allStar-dr17-synspec_rev1.fits", table)
    return path, table, rows


def _row(out, table, i):
    """The output row of allStar row ``i`` (matched on APOGEE_ID and Gaia id)."""
    apogee_id = str(table["APOGEE_ID"][i]).strip()
    hits = np.flatnonzero(np.asarray(out["apogee_id"]) == apogee_id)
    assert len(hits) >= 1, apogee_id
    return out[hits[0]]


def test_allstar_is_written_in_the_dr17_data_model(flagged):
    from astropy.io import fits

    path, _, _ = flagged
    columns = fits.getheader(path, 1)
    forms = {columns[f"TTYPE{i}"]: columns[f"TFORM{i}"].strip() for i in range(1, columns["TFIELDS"] + 1)}
    assert forms["ASPCAPFLAG"] == "K" and columns.get(f"TZERO{list(forms).index('ASPCAPFLAG') + 1}") == 2**63
    assert forms["STARFLAG"] == "K" and forms["EXTRATARG"] == "I" and forms["GAIAEDR3_SOURCE_ID"] == "K"
    assert forms["TEFF"] == "E" and forms["RA"] == "D" and forms["APOGEE_ID"] == "30A"


def test_cuts_and_counts(flagged):
    path, table, rows = flagged
    out, counts = read_allstar_rows(path, chunk_size=64)
    duplicates_in_library = int(((np.asarray(table["EXTRATARG"]) & 16) != 0).sum())
    assert counts["rows_read"] == N_ROWS
    assert counts["extratarg_duplicate"] == duplicates_in_library
    assert counts["rows_written"] == len(out) == N_ROWS - duplicates_in_library
    assert counts["aspcapflag_star_bad"] == 1
    assert counts["aspcapflag_m_h_bad"] == 1
    assert counts["starflag_set"] == 2
    assert counts["labels_dropped"] == 4
    assert counts["no_gaia_source_id"] >= 1
    assert counts["missing_J"] == 1 and counts["missing_K"] == 1
    assert counts["sentinel_K_ERR"] == 1 and counts["sentinel_TEFF"] >= 1
    assert counts["ak_targ_below_min"] == 1

    removed = str(table["APOGEE_ID"][rows["duplicate"]]).strip()
    assert removed not in set(out["apogee_id"])
    assert _row(out, table, rows["not_main"])["teff"] == table["TEFF"][rows["not_main"]]

    for case in ("star_bad", "m_h_bad", "starflag_low_snr", "starflag_bit31"):
        row = _row(out, table, rows[case])
        for label in LABELS:
            assert np.isnan(row[label]) and np.isnan(row[f"{label}_err"]), (case, label)
        assert np.isfinite(row["jh"]) and np.isfinite(row["bprp"]), case  # photometry is kept
    row = _row(out, table, rows["high_aspcap_bits"])  # bits 7, 33, 63 are no label cut
    assert all(np.isfinite(row[label]) for label in LABELS)

    row = _row(out, table, rows["j_missing"])
    assert np.isnan(row["jh"]) and np.isnan(row["jk"]) and np.isnan(row["jh_err"])
    row = _row(out, table, rows["k_err_sentinel"])
    assert np.isfinite(row["jh"]) and np.isnan(row["jk"]) and np.isnan(row["jk_err"])
    assert np.isnan(_row(out, table, rows["ak_sentinel"])["ak_targ"])
    assert np.isnan(_row(out, table, rows["ak_below_min"])["ak_targ"])
    assert _row(out, table, rows["no_gaia_id"])["gaia_dr3_source_id"] == NO_SOURCE_ID
    row = _row(out, table, rows["teff_sentinel"])
    assert np.isnan(row["teff"]) and np.isnan(row["teff_err"]) and np.isfinite(row["logg"])


def test_mapping_to_dataset_rows(flagged):
    path, table, rows = flagged
    out, _ = read_allstar_rows(path)
    i = rows["clean"]
    row = _row(out, table, i)
    assert row["gaia_dr3_source_id"] == table["GAIAEDR3_SOURCE_ID"][i]
    assert row["source"] == "apogee_dr17_allstar"
    for label, column in (("teff", "TEFF"), ("logg", "LOGG"), ("fe_h", "FE_H"), ("alpha_m", "ALPHA_M")):
        assert row[label] == table[column][i]
        assert row[f"{label}_err"] == table[f"{column}_ERR"][i]
    assert row["m_h"] == table["M_H"][i]
    assert row["jh"] == np.float32(np.float64(table["J"][i]) - np.float64(table["H"][i]))
    assert row["jk"] == np.float32(np.float64(table["J"][i]) - np.float64(table["K"][i]))
    assert row["jh_err"] == np.float32(
        np.hypot(np.float32(TWOMASS_ERRORS["J"]), np.float32(TWOMASS_ERRORS["H"]))
    )
    bp, rp = table["GAIAEDR3_PHOT_BP_MEAN_MAG"][i], table["GAIAEDR3_PHOT_RP_MEAN_MAG"][i]
    assert row["bprp"] == np.float32(np.float64(bp) - np.float64(rp))
    assert row["phot_g_mean_mag"] == table["GAIAEDR3_PHOT_G_MEAN_MAG"][i]
    assert row["ra"] == table["RA"][i] and row["dec"] == table["DEC"][i]
    for name in ("teff", "jh", "bprp", "ak_targ", "bprp_err"):
        assert out[name].dtype == np.float32, name
    assert out["gaia_dr3_source_id"].dtype == np.int64


def test_chunking_does_not_change_rows(flagged):
    path, _, _ = flagged
    whole, counts_whole = read_allstar_rows(path, chunk_size=10_000)
    chunked, counts_chunked = read_allstar_rows(path, chunk_size=37)
    assert counts_whole == counts_chunked
    assert len(list(iter_allstar_rows(path, chunk_size=37))) == -(-N_ROWS // 37)
    for name in whole.colnames:
        np.testing.assert_array_equal(np.asarray(whole[name]), np.asarray(chunked[name]), err_msg=name)


@pytest.mark.parametrize(("starflag", "aspcapflag"), [(np.uint32, np.uint64), (np.int64, np.int64)])
def test_flag_column_types(base_table, tmp_path, starflag, aspcapflag):
    table = base_table.copy()
    table["STARFLAG"] = np.zeros(len(table), dtype=starflag)
    table["ASPCAPFLAG"] = np.zeros(len(table), dtype=aspcapflag)
    table["STARFLAG"][0] = 1 << 31
    table["ASPCAPFLAG"][1] = 1 << 23
    _, counts = read_allstar_rows(write_allstar(tmp_path / "allStar.fits", table))
    assert counts["starflag_set"] == 1 and counts["aspcapflag_star_bad"] == 1


def test_bad_files(base_table, tmp_path):
    table = base_table.copy()
    table.remove_column("ASPCAPFLAG")
    path = write_allstar(tmp_path / "no_flags.fits", table)
    with pytest.raises(ValueError, match=r"no_flags.fits.*ASPCAPFLAG"):
        read_allstar_rows(path)
    garbage = tmp_path / "garbage.fits"
    garbage.write_bytes(b"SIMPLE? no." * 300)
    with pytest.raises(ValueError, match="garbage.fits"):
        read_allstar_rows(garbage)


def test_lower_case_column_names_are_accepted(base_table, tmp_path):
    table = base_table.copy()
    table.rename_columns(table.colnames, [name.lower() for name in table.colnames])
    out, counts = read_allstar_rows(write_allstar(tmp_path / "lower.fits", table))
    assert counts["rows_read"] == N_ROWS and np.isfinite(out["teff"]).any()


def test_deduplicate_source_ids_keeps_highest_snr():
    from astropy.table import Table

    rows = Table(
        {
            "gaia_dr3_source_id": np.array([7, 9, 7, NO_SOURCE_ID, NO_SOURCE_ID], dtype=np.int64),
            "snr": np.array([50.0, 80.0, 120.0, 10.0, 20.0], dtype=np.float32),
            "teff": np.array([4000, 4100, 4200, 4300, 4400], dtype=np.float32),
        }
    )
    kept, dropped = deduplicate_source_ids(rows)
    assert dropped == 1
    assert kept["teff"].tolist() == [4100, 4200, 4300, 4400]
