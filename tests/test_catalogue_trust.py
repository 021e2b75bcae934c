# ruff: noqa: F811  (test arguments named after the imported `model_folder` fixture)
"""Answers a catalogue can trust (issue 29): the XP basis is part of the vocabulary, every front door gives the same
numbers by default, every answer says whether its inputs lie in the training range, the output is checked before any
work, and a table means the same thing to the command as to the pipeline.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from astropy.table import QTable, Table
from transformers import pipeline

from datasets_builder.constants import GAIA_DR3_XP_BASES
from datasets_builder.gaia_archive import read_gaia_xp
from datasets_builder.layout import load_stats
from modeling_stellar import StarTokenizer, StellarParameterPipeline
from modeling_stellar.tokenization_stellar import XP_NORMALISATION_HINT
from stellar_tasks.catalogue import DEFAULT_PRECISION
from stellar_tasks.cli import build_parser, main
from stellar_tasks.hub import prepare_model_folder
from tests.conftest import REPO_ROOT, create_test_tokenizer
from tests.test_bad_input import STAR
from tests.test_gaia_archive import _csv_lines, _edit_field
from tests.test_pipeline import lively_model

SHIPPED = REPO_ROOT / "pretrained" / "stellar-foundation-apogee-xp"
XP_FIXTURE_HEADER = "XP_CONTINUOUS_RAW.csv"
RP_BASIS_COLUMN = 14
"""Field index of ``rp_basis_function_id`` in the fixture's header."""
PROXIMA_CENTAURI = 5853498713190525696
"""Gaia DR3 source_id of Proxima Centauri, the first row of ``XP_CONTINUOUS_RAW.csv``; G = 8.98 (Gaia DR3)."""


def enveloped_tokenizer() -> StarTokenizer:
    """The test tokenizer with a training envelope on the README star's names: each value within +-50 % of it."""
    tokenizer = create_test_tokenizer()
    statistics = {
        entry["name"]: {"center": entry["center"], "scale": entry["scale"]} for entry in tokenizer.vocabulary
    }
    for name, value in STAR.items():
        statistics[name] |= {"low": value - 0.5 * abs(value), "high": value + 0.5 * abs(value)}
    tokenizer.set_normalization(statistics)
    return tokenizer


@pytest.fixture(scope="module")
def model_folder(tmp_path_factory):
    return prepare_model_folder(lively_model(), enveloped_tokenizer(), tmp_path_factory.mktemp("model") / "m")


@pytest.fixture(scope="module")
def archive(shared_dir):
    return shared_dir / "fixtures" / "gaia_archive"


def run(*arguments) -> int:
    return main([str(argument) for argument in arguments])


# ------------------------------------------------------------------------------------------------ 1. the XP basis
def test_the_vocabularies_declare_the_dr3_basis_and_the_shipped_model_carries_it():
    for vocabulary in (REPO_ROOT / "modeling_stellar" / "vocabularies").glob("*.json"):
        assert json.loads(vocabulary.read_text())["xp_bases"] == GAIA_DR3_XP_BASES, vocabulary
    shipped = StarTokenizer.from_pretrained(str(SHIPPED))
    assert shipped.xp_bases == GAIA_DR3_XP_BASES
    assert shipped.xp_names("rp")[-1] == "rp54"


def other_basis_export(archive, folder, basis: str = "99"):
    """The fixture export with its first row's RP in another basis (as a Gaia DR4 export would be)."""
    lines = _csv_lines(archive)
    lines[1] = _edit_field(lines[1], RP_BASIS_COLUMN, basis)
    path = folder / "XP_OTHER_BASIS.csv"
    path.write_text("".join(lines))
    return path


def test_an_export_in_another_basis_is_refused_naming_file_column_row_and_value(archive, tmp_path):
    assert _csv_lines(archive)[0].split(",")[RP_BASIS_COLUMN] == "rp_basis_function_id"
    path = other_basis_export(archive, tmp_path)
    with pytest.raises(ValueError) as caught:
        read_gaia_xp(path)
    message = str(caught.value)
    for culprit in (str(path), "'rp_basis_function_id'", "row 0", "basis 99", "basis 57"):
        assert culprit in message, (culprit, message)
    assert len(read_gaia_xp(archive / XP_FIXTURE_HEADER)) == 2  # DR3's own basis reads as before


def test_a_vocabulary_that_declares_another_basis_reads_it_with_no_code_change(archive, tmp_path):
    path = other_basis_export(archive, tmp_path, basis="57")  # every row DR3's basis ...
    other = {
        "bp": {"basis_function_id": 56, "n_coefficients": 55},
        "rp": {"basis_function_id": 57, "n_coefficients": 54},
    }
    with pytest.raises(ValueError, match="55 values, expected 54"):  # ... but the count is the vocabulary's
        read_gaia_xp(path, xp_bases=other)
    path = other_basis_export(archive, tmp_path, basis="99")
    declared = {**GAIA_DR3_XP_BASES, "rp": {"basis_function_id": 99, "n_coefficients": 55}}
    with pytest.raises(ValueError, match="basis 57"):  # the second row is still DR3's
        read_gaia_xp(path, xp_bases=declared)
    tokenizer = StarTokenizer(create_test_tokenizer().vocabulary, xp_bases=declared)
    assert tokenizer.xp_bases == declared and StarTokenizer(**tokenizer.to_dict()).xp_bases == declared


def test_predict_refuses_an_export_in_another_basis_before_any_output(
    model_folder, archive, tmp_path, capsys
):
    path = other_basis_export(archive, tmp_path)
    output = tmp_path / "out.parquet"
    assert run("predict", path, "--model", model_folder, "--output", output) == 1
    assert "'rp_basis_function_id'" in capsys.readouterr().err and not output.exists()


# ----------------------------------------------------------------------- 2. the same numbers from every front door
def test_predict_defaults_to_the_pipelines_arithmetic():
    args = build_parser("predict").parse_args(
        ["predict", "x.parquet", "--model", "m", "--output", "o.parquet"]
    )
    assert args.precision == DEFAULT_PRECISION == "float32"


def test_predict_on_a_file_gives_the_pipelines_numbers_star_for_star(tiny_dataset, tmp_path):
    shards = sorted(tiny_dataset.glob("data/test-*.parquet"))
    output = tmp_path / "out.parquet"
    assert (
        run("predict", shards[0], "--model", SHIPPED, "--output", output) == 0
    )  # the default: no --precision
    command = QTable.read(output)
    stars = Table.read(shards[0])
    names = set(StarTokenizer.from_pretrained(str(SHIPPED)).observation_names)
    stars = stars[[name for name in stars.colnames if name.removesuffix("_err") in names]]
    for name in ("teff", "logg", "fe_h"):
        stars[name] = np.nan  # what the command reads of a labelled table: the labels are requested, not read
    answers = pipeline(model=str(SHIPPED), trust_remote_code=True)(stars)
    for name in ("teff", "logg", "fe_h"):
        mean = np.array([answer[name]["mean"] for answer in answers])
        sigma = np.array([answer[name]["std"] for answer in answers])
        shift = np.abs(command[name].value - mean) / sigma
        assert np.isfinite(shift).all() and shift.max() < 0.05, (name, shift.max())


# ------------------------------------------------------------------------------- 4. inputs outside the envelope
def test_every_answer_says_which_inputs_lie_outside_the_training_range(model_folder, tmp_path, capsys):
    pipe = StellarParameterPipeline(
        model=lively_model(), feature_extractor=enveloped_tokenizer(), device="cpu"
    )
    inside, outside = pipe(STAR), pipe({**STAR, "bp0": 30 * STAR["bp0"]})
    assert all(answer["out_of_range"] == [] for answer in inside.values())
    assert all(answer["out_of_range"] == ["bp0"] for answer in outside.values())

    far = {
        **STAR,
        "bp0": 1e3 * STAR["bp0"],
        "rp0": 1e3 * STAR["rp0"],
    }  # every coefficient times a G-band flux
    source = tmp_path / "stars.ecsv"
    Table(rows=[STAR, {**STAR, "jh": 3 * STAR["jh"]}, far]).write(source)
    output = tmp_path / "out.ecsv"
    assert run("predict", source, "--model", model_folder, "--output", output) == 0
    table = QTable.read(output)
    flags = [str(value) for value in np.ma.filled(table["out_of_range"], "")]
    assert flags == ["", "jh", "bp0,rp0"]
    assert [str(value) for value in np.ma.filled(table["hint"], "")] == ["", "", XP_NORMALISATION_HINT]
    printed = capsys.readouterr().err
    assert "2 answered from inputs outside the training stars' range" in printed
    assert f"1 with every XP coefficient of a band outside it: {XP_NORMALISATION_HINT}" in printed


def test_a_far_out_coefficient_is_refused_naming_the_likely_cause(tokenizer):
    with pytest.raises(ValueError, match="divided by the G-band flux"):
        tokenizer({**STAR, "bp0": 1e7})
    with pytest.raises(ValueError) as caught:
        tokenizer({**STAR, "jh": 1e7})
    assert "G-band flux" not in str(caught.value)  # a colour is no XP coefficient


@pytest.mark.slow
def test_the_shipped_model_flags_proxima_centauri(tmp_path):
    gaia_source = tmp_path / "gaia_source.csv"
    Table(rows=[(PROXIMA_CENTAURI, 8.98)], names=["source_id", "phot_g_mean_mag"]).write(gaia_source)
    output = tmp_path / "out.ecsv"
    export = REPO_ROOT.parent / "shared" / "fixtures" / "gaia_archive" / XP_FIXTURE_HEADER
    assert run("predict", export, "--gaia-source", gaia_source, "--model", SHIPPED, "--output", output) == 0
    table = QTable.read(output)
    proxima = table[table["gaia_dr3_source_id"] == PROXIMA_CENTAURI][0]
    assert str(np.ma.filled(proxima["out_of_range"], "")), (
        "no training star is as cool as Proxima Centauri: its row must say so"
    )


# ---------------------------------------------------------------------------------- 5. checked before any work
def test_the_output_is_checked_before_the_model_is_even_loaded(tmp_path, capsys):
    source = tmp_path / "stars.ecsv"
    Table(rows=[STAR]).write(source)
    for output, culprit in (("out.csv", "output must end in one of"), ("missing/out.ecsv", "does not exist")):
        assert (
            run("predict", source, "--model", tmp_path / "no-such-model", "--output", tmp_path / output) == 1
        )
        assert culprit in capsys.readouterr().err


# ------------------------------------------------------------------------- 7. the same table means the same thing
def test_a_misspelt_column_is_refused_by_the_command_as_by_the_pipeline(model_folder, tmp_path, capsys):
    source = tmp_path / "stars.ecsv"
    Table(rows=[{**STAR, "Teff": 5000.0}]).write(source)
    output = tmp_path / "out.ecsv"
    assert run("predict", source, "--model", model_folder, "--output", output) == 1
    printed = capsys.readouterr().err
    assert str(source) in printed and "'Teff'" in printed and "did you mean 'teff'?" in printed
    assert not output.exists()
    pipe = StellarParameterPipeline(
        model=lively_model(), feature_extractor=enveloped_tokenizer(), device="cpu"
    )
    with pytest.raises(ValueError, match="did you mean 'teff'"):
        pipe({**STAR, "Teff": 5000.0})
    assert run("predict", source, "--model", model_folder, "--output", output, "--ignore-unknown") == 0


def test_unrelated_columns_are_ignored_and_listed_once(model_folder, tmp_path, capsys):
    rows = [{**STAR, "ra": 10.0, "dec": -5.0, "quality_flag": 0}] * 3
    sources = [tmp_path / "a.ecsv", tmp_path / "b.parquet"]
    for source in sources:
        Table(rows=rows).write(source)
    output = tmp_path / "out.ecsv"
    assert run("predict", *sources, "--model", model_folder, "--output", output) == 0
    printed = capsys.readouterr().err
    assert printed.count("ignored columns (not observation names): ra, dec, quality_flag") == 1
    plain = tmp_path / "plain.ecsv"
    Table(rows=[STAR] * 3).write(plain)
    assert run("predict", plain, "--model", model_folder, "--output", tmp_path / "plain-out.ecsv") == 0
    ours, reference = QTable.read(output), QTable.read(tmp_path / "plain-out.ecsv")
    np.testing.assert_array_equal(ours["teff"][:3].value, reference["teff"].value)


@pytest.mark.slow
def test_the_shipped_envelope_is_its_training_stars(full_dataset):
    statistics = load_stats(full_dataset)
    for entry in StarTokenizer.from_pretrained(str(SHIPPED)).vocabulary:
        assert (entry["low"], entry["high"]) == (
            statistics[entry["name"]]["low"],
            statistics[entry["name"]]["high"],
        )
