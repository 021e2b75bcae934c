# ruff: noqa: F811  (test arguments named after the imported `model_folder` fixture)
"""Issue 12's examples, one test each: every entry point gives a right, finite answer or a clear error.

The entry points: the tokenizer, the pipeline, the README path (tokenizer -> model -> ``decode``), ``read_gaia_xp``,
``stellar-foundation predict`` and ``python -m datasets_builder build``. A clear error is a ``ValueError`` naming the
star (index) and the observation, or the file (and the column and row where they are known); the commands print
``error: ...`` without a traceback, exit non-zero and leave nothing partial behind.
"""

from __future__ import annotations

import gzip
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from astropy.table import QTable, Table

from datasets_builder.__main__ import main as build_main
from datasets_builder.gaia_archive import read_gaia_xp
from datasets_builder.writer import staging_dir
from modeling_stellar import StarTokenizer, StellarParameterPipeline
from stellar_tasks.cli import main as cli_main
from tests.conftest import create_test_tokenizer
from tests.test_cli import model_folder  # noqa: F401  (a module fixture, used by name: the lively model, saved)
from tests.test_gaia_archive import FIXTURE, _csv_lines, _edit_field
from tests.test_pipeline import lively_model

STAR = {"bprp": 1.21, "jh": 0.55, "jk": 0.68, "bp0": 0.031, "rp0": 0.058}
"""The README's star, physical units."""

FIXTURE_IDS = [5853498713190525696, 5762406957886626816]
"""``source_id`` of the two stars of ``XP_CONTINUOUS_RAW.csv``, in file order (neither is a test star)."""


@pytest.fixture(scope="module")
def tokenizer():
    return create_test_tokenizer()


@pytest.fixture(scope="module")
def pipe(tokenizer):
    return StellarParameterPipeline(model=lively_model(), feature_extractor=tokenizer, device="cpu")


@pytest.fixture(scope="module")
def archive_dir(shared_dir) -> Path:
    return shared_dir / "fixtures" / "gaia_archive"


def raises(call, *culprits: str) -> str:
    """Run ``call``, which must raise ValueError whose message holds every one of ``culprits``; its message."""
    with pytest.raises(ValueError) as caught:
        call()
    for culprit in culprits:
        assert culprit in str(caught.value), (culprit, str(caught.value))
    return str(caught.value)


# ------------------------------------------------------------------------------------------ tokenizer, pipeline
@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("bp3", 1e20),
        ("bprp", 1e30),
        ("bprp", float(np.finfo(np.float32).max)),
        ("bp3", 1e308),
        ("jh", -1e300),
    ],
)
def test_a_finite_but_huge_value_is_named_not_answered_with_nan(pipe, name, value):
    raises(lambda: pipe([STAR, {**STAR, name: value}]), "star 1", f"observation {name!r}", "out of range")


def test_a_value_just_inside_the_limit_gets_a_finite_answer(pipe, tokenizer):
    bprp = tokenizer.convert_names_to_ids(["bprp"])
    for fraction in (-0.99, 0.99):
        value = tokenizer.decode([bprp], [[fraction * tokenizer.max_standardised_value]])[0][0, 0]
        answer = pipe({**STAR, "bprp": value})
        assert all(np.isfinite([a["mean"], a["std"]]).all() for a in answer.values())


def test_teff_at_or_below_zero_kelvin_is_impossible(pipe):
    raises(lambda: pipe([STAR, {**STAR, "teff": 0.0}], requests=["logg"]), "star 1", "'teff'", "impossible")
    raises(lambda: pipe({**STAR, "teff": -3000.0}, requests=["logg"]), "star 0", "'teff'")


def test_nat_in_a_dataframe_column_is_not_observed(pipe):
    frame = pd.DataFrame([STAR, {**STAR, "bprp": pd.NaT}])
    assert frame["bprp"].dtype == object  # pandas keeps NaT and floats side by side
    answers = pipe(frame)
    expected = pipe([STAR, {k: v for k, v in STAR.items() if k != "bprp"}])
    assert answers == expected


def test_a_datetime_column_with_nat_is_not_observed_where_nat(pipe):
    frame = pd.DataFrame({"bprp": pd.to_datetime([pd.NaT, pd.NaT]), "jh": [0.5, 0.6]})
    assert frame["bprp"].dtype.kind == "M"
    assert pipe(frame) == pipe([{"jh": 0.5}, {"jh": 0.6}])


def test_a_date_in_an_error_column_names_its_own_star(pipe):
    frame = pd.DataFrame([STAR, STAR, {**STAR, "bprp_err": pd.Timestamp("2020-01-01")}])
    raises(lambda: pipe(frame), "star 2", "'bprp_err'", "date")
    frame = pd.DataFrame({"bprp": [1.2, 1.3], "bprp_err": pd.to_timedelta([None, "1s"])})
    raises(lambda: pipe(frame), "star 1", "'bprp_err'", "duration")


def test_an_astropy_row_and_a_pandas_series_are_one_star(pipe):
    expected = pipe(STAR)
    assert set(expected) == {"teff", "logg", "fe_h"}
    assert pipe(Table([STAR, STAR])[0]) == expected
    assert pipe(Table([STAR, {**STAR, "bprp": 9.0}])[0]) == expected
    assert pipe(pd.Series(STAR)) == expected


@pytest.mark.parametrize(
    ("value", "what"),
    [
        (0.001 + 5j, "complex"),
        (True, "boolean"),
        (np.bool_(False), "boolean"),
        (10**400, "beyond the float range"),
    ],
)
def test_a_value_that_is_not_a_real_number_is_named(pipe, value, what):
    raises(lambda: pipe([STAR, {**STAR, "jh": value}]), "star 1", "'jh'", what)


def test_a_complex_value_with_no_imaginary_part_is_its_real_part(pipe):
    assert pipe({**STAR, "jh": 0.55 + 0j}) == pipe(STAR)
    assert pipe(pd.DataFrame({k: [complex(v)] for k, v in STAR.items()})) == [pipe(STAR)]


def test_a_boolean_column_is_refused(pipe):
    raises(
        lambda: pipe(pd.DataFrame({"bprp": [True, False], "jh": [0.5, 0.5]})), "star 0", "'bprp'", "boolean"
    )


def test_a_non_string_key_is_a_column_of_its_star(pipe, caplog):
    # not like any observation name: ignored, and listed (issue 29: an unrelated column is normal in a catalogue)
    with caplog.at_level("WARNING"):
        assert pipe([STAR, {**STAR, 55555: 1.0}]) == pipe([STAR, STAR])
    assert "ignored columns that are not observation names: 55555" in caplog.text
    raises(lambda: pipe([STAR, {**STAR, "Jh": 1.0}]), "star 1", "unknown observation name 'Jh'", "'jh'")
    raises(lambda: pipe({**STAR, 5: 1.0, "5": 2.0}), "column '5' appears more than once")


def test_duplicated_and_two_dimensional_columns_are_named(pipe):
    duplicated = pd.DataFrame([[1.2, 1.3, 0.5]], columns=["bprp", "bprp", "jh"])
    raises(lambda: pipe(duplicated), "column 'bprp' appears more than once")
    raises(lambda: pipe(Table({"bprp": np.ones((2, 3)), "jh": [0.5, 0.5]})), "column 'bprp'", "(2, 3)")
    raises(
        lambda: pipe({"bprp": [[1.2, 1.3], [1.2, 1.3]], "jh": [0.5, 0.5]}), "star 0", "'bprp'", "not a number"
    )


def test_requests_that_are_not_names_are_named(pipe, tokenizer):
    raises(lambda: pipe(STAR, requests=[None]), "None is not an observation name")
    raises(lambda: tokenizer(STAR, requests=[None]), "None is not an observation name")
    raises(lambda: tokenizer(STAR, requests=["teff", 3]), "3 is not an observation name")
    raises(lambda: pipe(STAR, requests=["teff", "tef"]), "unknown observation name 'tef'", "'teff'")


@pytest.mark.parametrize("requests", [{"teff", "logg"}, np.array(["teff", "logg"]), ("teff", "logg")])
def test_any_iterable_of_requests_works_in_the_tokenizer_as_in_the_pipeline(pipe, tokenizer, requests):
    ids = tokenizer(STAR, requests=requests)["request_ids"][0].tolist()
    assert sorted(tokenizer.convert_ids_to_names(ids)) == ["logg", "teff"]
    assert pipe(STAR, requests=requests) == pipe(STAR, requests=["teff", "logg"])


def test_ids_outside_the_vocabulary_are_refused(tokenizer):
    raises(lambda: tokenizer.decode([[1, 500]], [[0.0, 0.0]], [[0.0, 0.0]]), "token id 500", "(0, 1)")
    raises(lambda: tokenizer.convert_ids_to_names([-1]), "token id -1")
    raises(lambda: tokenizer.decode([[1, 2]], [[0.0]]), "mean has shape (1, 1)")


def test_the_readme_path_gives_finite_physical_answers_or_the_tokenizers_error(tokenizer):
    model = lively_model()
    batch = tokenizer([STAR, {**STAR, "teff": 5000.0}], requests=["teff", "logg", "fe_h"])
    with torch.no_grad():
        output = model(**batch)
    mean, std = tokenizer.decode(batch["request_ids"], output.mean, output.log_variance)
    assert mean.shape == std.shape == (2, 3) and np.isfinite(mean).all() and (std > 0).all()
    raises(lambda: tokenizer({**STAR, "jh": 10**400}, requests=["teff"]), "star 0", "'jh'")


@pytest.mark.parametrize("batch_size", [0, -1, 2.5, True])
def test_a_batch_size_that_is_not_a_positive_integer_is_refused(pipe, batch_size):
    raises(lambda: pipe(STAR, batch_size=batch_size), "batch_size must be a positive integer")


# ------------------------------------------------------------------------------------------------ read_gaia_xp
def _write_csv(tmp_path: Path, name: str, lines: list[str], compress: bool = False) -> Path:
    content = "".join(lines).encode()
    path = tmp_path / (name + ".gz" if compress else name)
    path.write_bytes(gzip.compress(content) if compress else content)
    return path


def _edit_array(line: str, header: list[str], column: str, value: str) -> str:
    """``line`` with the first number of array cell ``column`` replaced by ``value``."""
    from csv import reader

    cell = next(reader([line]))[header.index(column)]
    return _edit_field(line, header.index(column), "(" + value + "," + cell.split(",", 1)[1])


@pytest.mark.parametrize("compress", [False, True])
def test_a_text_export_cut_inside_its_last_number_is_truncated_plain_or_gzipped(
    archive_dir, tmp_path, compress
):
    content = (archive_dir / f"{FIXTURE}.csv").read_bytes()
    assert content[-3:-1] == b".0"  # cut to "1.": a number that still parses, to another value
    path = tmp_path / ("cut.csv.gz" if compress else "cut.csv")
    path.write_bytes(gzip.compress(content[:-2]) if compress else content[:-2])
    raises(lambda: read_gaia_xp(path), str(path), "truncated")


@pytest.mark.parametrize("compress", [False, True])
@pytest.mark.parametrize(
    ("column", "value", "message"),
    [
        ("bp_coefficients", "inf", "must be finite"),
        ("rp_coefficient_errors", "-0.5", "must be finite and >= 0"),
        ("bp_coefficient_errors", "inf", "must be finite and >= 0"),
        ("rp_coefficient_correlations", "1.5", "within -1 .. 1"),
    ],
)
def test_bad_array_values_are_named_by_file_column_and_row(
    archive_dir, tmp_path, compress, column, value, message
):
    lines = _csv_lines(archive_dir)
    header = lines[0].rstrip("\n").split(",")
    lines[2] = _edit_array(lines[2], header, column, value)
    path = _write_csv(tmp_path, "bad.csv", lines, compress)
    raises(lambda: read_gaia_xp(path), str(path), f"column '{column}', row 1", str(FIXTURE_IDS[1]), message)


@pytest.mark.parametrize("count", ["50.5", "abc"])
def test_a_count_of_relevant_bases_that_is_not_a_whole_number_is_named(archive_dir, tmp_path, count):
    lines = _csv_lines(archive_dir)
    header = lines[0].rstrip("\n").split(",")
    lines[1] = _edit_field(lines[1], header.index("bp_n_relevant_bases"), count)
    path = _write_csv(tmp_path, "bases.csv", lines)
    raises(lambda: read_gaia_xp(path), str(path), "bp_n_relevant_bases")


# ----------------------------------------------------------------------------------------- stellar-foundation
def _run_cli(capsys, *arguments) -> tuple[int, str]:
    """Exit status and stderr of ``stellar-foundation`` (argparse's exits 2 included)."""
    capsys.readouterr()
    try:
        status = cli_main([str(a) for a in arguments])
    except SystemExit as exit_:
        status = exit_.code
    return status, capsys.readouterr().err


@pytest.mark.parametrize(
    ("option", "value"), [("--batch-size", -1), ("--batch-size", 0), ("--chunk-size", 0)]
)
def test_cli_refuses_a_size_that_is_not_positive_before_any_work(
    model_folder, tmp_path, capsys, option, value
):
    source = tmp_path / "s.ecsv"
    Table([STAR, STAR]).write(source)
    output = tmp_path / "o.ecsv"
    status, printed = _run_cli(
        capsys, "predict", source, "--model", model_folder, "--output", output, option, value
    )
    assert status == 2 and option in printed and "positive integer" in printed
    assert not output.exists()


def test_cli_gives_a_reason_to_every_row_it_cannot_answer(model_folder, tmp_path, capsys):
    source = tmp_path / "s.ecsv"
    Table([STAR, {**STAR, "bp3": 1e20}, {**STAR, "bprp": -math.inf}]).write(source)
    output = tmp_path / "o.ecsv"
    status, _ = _run_cli(capsys, "predict", source, "--model", model_folder, "--output", output)
    assert status == 0
    table = QTable.read(output)
    reasons = [str(r) for r in np.ma.filled(table["reason"], "")]
    assert reasons[0] == "" and np.isfinite(table["teff"][0].value)
    assert "'bp3'" in reasons[1] and "out of range" in reasons[1] and "not finite" in reasons[2]


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("stars.fits", b"not a FITS file at all" * 200),  # astropy: "No SIMPLE card found"
        ("stars.parquet", b""),  # pyarrow: "Parquet file size is 0 bytes"
        ("stars.ecsv", b"\xff\xfe\x00binary\x80" * 50),  # UnicodeDecodeError
        ("missing.parquet", None),
    ],
)
def test_cli_names_a_bad_star_table_without_a_traceback(model_folder, tmp_path, capsys, name, content):
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    output = tmp_path / "o.parquet"
    status, printed = _run_cli(capsys, "predict", path, "--model", model_folder, "--output", output)
    assert status == 1 and f"error: {path}" in printed and "Traceback" not in printed
    assert sorted(p.name for p in tmp_path.iterdir()) == ([name] if content is not None else [])


def test_cli_names_a_fits_file_without_a_table(model_folder, tmp_path, capsys):
    from astropy.io import fits

    path = tmp_path / "image.fits"
    fits.PrimaryHDU(np.zeros((2, 2))).writeto(path)  # astropy: IndexError, no HDU 1
    status, printed = _run_cli(
        capsys, "predict", path, "--model", model_folder, "--output", tmp_path / "o.ecsv"
    )
    assert status == 1 and f"error: {path}" in printed


# ------------------------------------------------------------------------- issue 29's misleading and smaller ones
def test_a_model_folder_that_does_not_exist_is_named_as_such(tmp_path, capsys):
    source = tmp_path / "s.ecsv"
    Table([STAR]).write(source)
    missing = tmp_path / "pretrained" / "no-such-model"
    status, printed = _run_cli(capsys, "predict", source, "--model", missing, "--output", tmp_path / "o.ecsv")
    assert status == 1 and f"error: {missing}: no such model folder" in printed
    assert "couldn't connect" not in printed.lower()


def test_bad_rows_that_differ_only_in_their_values_are_summarised_in_one_line(model_folder, tmp_path, capsys):
    source = tmp_path / "s.ecsv"
    Table([STAR] + [{**STAR, "bp3": 1e20 * (k + 2)} for k in range(20)]).write(source)
    status, printed = _run_cli(
        capsys, "predict", source, "--model", model_folder, "--output", tmp_path / "o.ecsv"
    )
    assert status == 0 and "21 rows, 1 predicted (1 by the model)" in printed
    lines = [line for line in printed.splitlines() if "not predicted" in line]
    assert len(lines) == 1 and lines[0].startswith("  20 not predicted: observation 'bp3': value 2e+20"), (
        lines
    )


def test_ids_that_are_not_ids_are_named_as_given(tokenizer):
    raises(lambda: tokenizer.convert_ids_to_names([3, 1.5]), "token id 1.5 at position (1,)")
    raises(lambda: tokenizer.convert_ids_to_names(["bprp"]), "token id 'bprp' at position (0,)")
    raises(lambda: tokenizer.decode([[1, 7.25]], [[0.0, 0.0]]), "token id 7.25 at position (0, 1)")
    raises(lambda: tokenizer.decode([[1, 500]], [[0.0, 0.0]]), "token id 500 at position (0, 1)")


@pytest.mark.parametrize(
    ("setting", "value", "culprit"),
    [
        ("context_length", "abc", "context_length must be a whole number > 0, got 'abc'"),
        ("context_length", 2.5, "context_length must be a whole number > 0, got 2.5"),
        ("context_length", True, "context_length must be a whole number > 0, got True"),
        ("max_standardised_value", "big", "max_standardised_value must be a number > 0, got 'big'"),
        ("xp_bases", {"bp": {"basis_function_id": 56}}, "xp_bases['bp'] must be"),
    ],
)
def test_tokenizer_settings_of_the_wrong_type_are_named(tokenizer, setting, value, culprit):
    raises(lambda: StarTokenizer(tokenizer.vocabulary, **{setting: value}), culprit)


def test_input_names_given_as_one_string_are_refused_not_read_as_letters(tokenizer):
    raises(lambda: tokenizer(STAR, input_names="bprp"), "input_names must be an iterable", "'bprp'")
    assert tokenizer(STAR, input_names=["bprp"])["input_ids"].shape == (1, 1)


def test_a_cut_ecsv_star_table_is_named_by_the_command(model_folder, tmp_path, capsys):
    whole = tmp_path / "whole.ecsv"
    Table([STAR] * 40).write(whole)
    text = whole.read_text()
    cut = tmp_path / "cut.ecsv"
    cut.write_text(text[: len(text) - len(text.splitlines()[-1]) // 2 - 1])  # the last row, half of it
    status, printed = _run_cli(
        capsys, "predict", cut, "--model", model_folder, "--output", tmp_path / "o.ecsv"
    )
    assert status == 1 and f"error: {cut}" in printed and "Traceback" not in printed
    assert not (tmp_path / "o.ecsv").exists()


# ---------------------------------------------------------------------------------- python -m datasets_builder
@pytest.fixture(scope="module")
def test_split(shared_dir) -> Path:
    return shared_dir / "data" / "test_split_gaia_dr3_source_ids.txt"


def _build(capsys, output: Path, test_split: Path, *arguments) -> tuple[int, str]:
    capsys.readouterr()
    argv = ["build", "--output", str(output), "--test-split", str(test_split), "--no-progress"]
    status = build_main([*argv, *map(str, arguments)])
    return status, capsys.readouterr().err


def _gaia_source(path: Path, g: list[float]) -> Path:
    Table({"source_id": FIXTURE_IDS, "phot_g_mean_mag": g}).write(path, overwrite=True)
    return path


def test_build_refuses_a_g_that_cannot_normalise_and_the_retry_runs_as_is(
    archive_dir, tmp_path, test_split, capsys
):
    xp = archive_dir / f"{FIXTURE}.csv"
    side = _gaia_source(tmp_path / "gaia_source.csv", [12.0, 1e308])
    output = tmp_path / "out"
    status, printed = _build(capsys, output, test_split, "--gaia-xp", xp, "--gaia-source", side)
    assert (
        status == 1
        and printed.startswith("error: ")
        and str(xp) in printed
        and str(FIXTURE_IDS[1]) in printed
    )
    assert not output.exists() and not staging_dir(output).exists()
    _gaia_source(side, [12.0, 13.0])  # corrected: the same command, no --overwrite
    status, _ = _build(capsys, output, test_split, "--gaia-xp", xp, "--gaia-source", side)
    assert status == 0 and (output / "meta" / "stats.json").is_file()


def test_build_names_the_file_of_an_infinite_coefficient(archive_dir, tmp_path, test_split, capsys):
    lines = _csv_lines(archive_dir)
    header = lines[0].rstrip("\n").split(",")
    lines[1] = _edit_array(lines[1], header, "rp_coefficients", "inf")
    xp = _write_csv(tmp_path, "inf.csv", lines)
    side = _gaia_source(tmp_path / "gaia_source.csv", [12.0, 13.0])
    status, printed = _build(capsys, tmp_path / "out", test_split, "--gaia-xp", xp, "--gaia-source", side)
    assert status == 1 and f"error: {xp}: column 'rp_coefficients', row 0" in printed
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gaia_source.csv", "inf.csv"]


def test_build_names_a_binary_test_split_file(tmp_path, capsys):
    split = tmp_path / "split.txt"
    split.write_bytes(b"\x89PNG\r\n\x1a\n\x00\xff")
    status, printed = _build(capsys, tmp_path / "out", split, "--max-rows", 10)
    assert status == 1 and f"error: {split}" in printed and "not a text file" in printed
