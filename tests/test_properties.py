"""Property-based tests (hypothesis) of issue 12's promise, over every entry point.

For arbitrary stars, tables, requests, token ids and byte-level corruptions of the real fixture files, every call
either returns finite answers or raises the documented error with the culprit in its message; NaN (and every other
"not observed" spelling) is the same as omitting the observation; a star's answer does not depend on the other stars
of its batch; no partial output is ever left behind. Profiles (``fast`` for `make test`, ``thorough`` for
`make test-thorough`) are registered in ``tests/conftest.py``: both draw fresh examples every run and print how to
replay a failure; the file-level properties run a fraction of the profile's examples (`fewer`).
"""

from __future__ import annotations

import datetime
import gzip
import json
import math
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from astropy.table import Table, vstack
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from datasets_builder.__main__ import main as build_main
from datasets_builder.gaia_archive import XP_N_COEFFICIENTS, read_gaia_xp
from datasets_builder.writer import staging_dir
from modeling_stellar import StarTokenizer, StellarParameterPipeline
from modeling_stellar.tokenization_stellar import ERROR_SUFFIX, POSITIVE_UNITS
from stellar_tasks.catalogue import REASON_COLUMN, iter_file_chunks, predict_table
from stellar_tasks.cli import main as cli_main
from stellar_tasks.hub import prepare_model_folder
from tests.conftest import create_test_tokenizer
from tests.test_pipeline import lively_model

INPUTS = ["bprp", "jh", "jk", "bp0", "bp1", "bp7", "rp0", "rp3", "ak_targ"]
"""Observation names the properties give as inputs (never requested by default)."""

NAMES = [*INPUTS, "teff", *(name + ERROR_SUFFIX for name in ("bprp", "jh", "bp0", "teff"))]
"""Keys of the arbitrary stars: inputs, a label in kelvin (``teff``: must be > 0) and some uncertainties."""

MISSING = [math.nan, None, pd.NA, pd.NaT, np.float32("nan"), np.datetime64("NaT")]
"""Every spelling of "not observed"."""

FIXTURES = ["XP_CONTINUOUS_RAW.csv", "XP_CONTINUOUS_RAW.ecsv", "XP_CONTINUOUS_RAW.fits"]
FIXTURES += ["XP_CONTINUOUS_RAW_with_missing_BP.csv"]


def fewer(fraction: float) -> settings:
    """The loaded profile's settings with ``fraction`` of its examples (at least 3): for properties that read or
    write files, load a model or run a command per example."""
    return settings(
        max_examples=max(3, int(settings.default.max_examples * fraction)),
        suppress_health_check=[HealthCheck.function_scoped_fixture],  # capsys: each example reads (resets) it
    )


def test_each_run_draws_fresh_examples_and_a_failure_says_how_to_replay_it(request):
    """The loaded profile is not derandomised: two runs of one property draw different examples, so every CI run tries
    new cases instead of replaying the same few, and a failing example comes with the ``@reproduce_failure`` line
    that replays it (the example database is off, so that line is the only record)."""
    assert not settings.default.derandomize and settings.default.print_blob
    runs: list[list[int]] = []

    @given(st.integers(0, 2**62))
    def record(value: int) -> None:
        runs[-1].append(value)

    for _ in range(2):
        runs.append([])
        record()
    if (
        request.config.getoption("hypothesis_seed", None) is None
    ):  # a seed given on the command line replays its
        assert (
            runs[0] != runs[1]
        )  # examples on purpose; the profile's own setting is checked above either way

    @given(st.integers(0, 2**62))
    def fails_above_ten(value: int) -> None:
        assert value <= 10

    with pytest.raises(AssertionError) as caught:
        fails_above_ten()
    assert "@reproduce_failure(" in "\n".join(getattr(caught.value, "__notes__", []))


@pytest.fixture(scope="module")
def tokenizer() -> StarTokenizer:
    return create_test_tokenizer()


@pytest.fixture(scope="module")
def pipe(tokenizer) -> StellarParameterPipeline:
    return StellarParameterPipeline(model=lively_model(), feature_extractor=tokenizer, device="cpu")


@pytest.fixture(scope="module")
def archive_dir(shared_dir) -> Path:
    return shared_dir / "fixtures" / "gaia_archive"


# -------------------------------------------------------------------------------------------------- the oracle
def verdict(tokenizer: StarTokenizer, column: str, value) -> str:
    """What the promise says of ``value`` in ``column``: "missing", "ok" or "bad" (an error naming it).

    Written from the promise (README, "The promise"), not from the tokenizer's code."""
    if value is None or value is pd.NA or value is pd.NaT:
        return "missing"
    if isinstance(value, np.datetime64) and np.isnat(value):
        return "missing"
    if isinstance(
        value, bool | np.bool_ | datetime.date | datetime.timedelta | np.datetime64 | np.timedelta64
    ):
        return "bad"
    if isinstance(value, complex):
        if value.imag:
            return "bad"
        value = value.real
    try:
        x = float(value)
    except (OverflowError, ValueError):  # an int beyond float range; text that is not a number
        return "bad"
    if math.isnan(x):
        return "missing"
    is_error = column.endswith(ERROR_SUFFIX)
    name = column[: -len(ERROR_SUFFIX)] if is_error else column
    entry = tokenizer.vocabulary[tokenizer.convert_names_to_ids([name])[0] - 1]
    if math.isinf(x) or (is_error and x < 0) or (not is_error and entry["unit"] in POSITIVE_UNITS and x <= 0):
        return "bad"
    standardised = x / entry["scale"] if is_error else (x - entry["center"]) / entry["scale"]
    return "bad" if abs(standardised) > tokenizer.max_standardised_value else "ok"


def physical(tokenizer: StarTokenizer, name: str, standardised: float) -> float:
    """The physical value of ``name`` at ``standardised`` scales from its centre."""
    return float(tokenizer.decode([tokenizer.convert_names_to_ids([name])], [[standardised]])[0][0, 0])


ANY_VALUE = st.one_of(
    st.floats(-3.0, 3.0),
    st.floats(allow_nan=True, allow_infinity=True),  # huge, tiny, +-inf, NaN
    st.integers(min_value=-(10**400), max_value=10**400),
    st.booleans(),
    st.sampled_from(MISSING),
    st.datetimes(),
    st.timedeltas(),
    st.complex_numbers(max_magnitude=1e6, allow_nan=False, allow_infinity=False),
    st.just(2.5 + 0j),
    st.sampled_from(["red", "1.5", "nan", "-inf", " 2e3 ", ""]),
)
"""Any Python value a user may put in a star."""

ANY_STAR = st.dictionaries(st.sampled_from(NAMES), ANY_VALUE, min_size=1, max_size=5)


@st.composite
def valid_star(draw, tokenizer: StarTokenizer) -> dict:
    """A star the promise says must get a finite answer: up to 5 inputs anywhere within the accepted range."""
    names = draw(st.lists(st.sampled_from(INPUTS), min_size=1, max_size=5, unique=True))
    limit = tokenizer.max_standardised_value
    typical = st.floats(-5.0, 5.0)
    return {
        name: physical(tokenizer, name, draw(st.one_of(typical, st.floats(-limit, limit)))) for name in names
    }


# ------------------------------------------------------------------------------------------ stars and tables
@given(stars=st.lists(ANY_STAR, min_size=1, max_size=4))
def test_any_stars_give_finite_arrays_or_an_error_naming_a_bad_star_and_observation(tokenizer, stars):
    present = {column for star in stars for column in star}
    bad = {
        (i, column)
        for i, star in enumerate(stars)
        for column, value in star.items()
        if (
            not column.endswith(ERROR_SUFFIX) or column[: -len(ERROR_SUFFIX)] in present
        )  # an error needs its value
        and verdict(tokenizer, column, value) == "bad"
    }
    try:
        values, errors = tokenizer.to_arrays(stars)
    except ValueError as error:
        assert any(f"star {i}, observation {column!r}" in str(error) for i, column in bad), (bad, str(error))
        return
    assert not bad, f"accepted bad values {bad}"
    observed = ~np.isnan(values)
    assert np.all(np.abs(values[observed]) <= tokenizer.max_standardised_value)
    assert np.all(np.isfinite(errors)) and np.all(errors >= 0)
    for i, star in enumerate(stars):  # NaN (every spelling) == omitted
        kept = {k: v for k, v in star.items() if verdict(tokenizer, k, v) != "missing"}
        if kept:
            alone = tokenizer.to_arrays([kept])
            np.testing.assert_array_equal(values[i], alone[0][0])
            np.testing.assert_array_equal(errors[i], alone[1][0])
        else:
            assert not observed[i].any()


@given(data=st.data(), n_stars=st.integers(1, 4), batch_size=st.integers(1, 5))
def test_answers_are_finite_and_do_not_depend_on_the_other_stars_or_on_missing_entries(
    pipe, tokenizer, data, n_stars, batch_size
):
    stars = [data.draw(valid_star(tokenizer)) for _ in range(n_stars)]
    together = pipe(stars, batch_size=batch_size)
    assert len(together) == n_stars
    for star, answer in zip(stars, together, strict=True):
        alone = pipe(star)
        assert set(answer) == set(alone) == {"teff", "logg", "fe_h"}
        for name, value in answer.items():
            assert math.isfinite(value["mean"]) and value["std"] > 0 and math.isfinite(value["std"]), (
                star,
                value,
            )
            np.testing.assert_allclose(value["mean"], alone[name]["mean"], rtol=1e-4, atol=1e-6)
            np.testing.assert_allclose(value["std"], alone[name]["std"], rtol=1e-4, atol=1e-6)
    missing = {name: data.draw(st.sampled_from(MISSING)) for name in INPUTS if name not in stars[0]}
    assert pipe([{**stars[0], **missing}, *stars[1:]], batch_size=batch_size) == together


@given(
    data=st.data(), n_stars=st.integers(1, 4), names=st.lists(st.sampled_from(INPUTS), min_size=1, max_size=4)
)
def test_every_table_shape_reads_the_same_stars(tokenizer, data, n_stars, names):
    names = list(dict.fromkeys(names))
    standardised = st.floats(-50, 50)
    cells = {  # the first name is observed in every star, so that no star is empty
        name: [
            data.draw(standardised if k == 0 else st.one_of(st.none(), standardised)) for _ in range(n_stars)
        ]
        for k, name in enumerate(names)
    }
    cells = {
        n: [None if z is None else physical(tokenizer, n, z) for z in column] for n, column in cells.items()
    }
    as_dicts = [{n: cells[n][i] for n in names if cells[n][i] is not None} for i in range(n_stars)]
    expected = tokenizer.to_arrays(as_dicts)
    with_nan = {n: [math.nan if v is None else v for v in column] for n, column in cells.items()}
    masked = Table({n: np.ma.array(with_nan[n], mask=[v is None for v in cells[n]]) for n in names})
    nullable = pd.DataFrame({n: pd.array(cells[n], dtype="Float64") for n in names})  # pd.NA where missing
    shapes = {
        "dict of lists with None": cells,
        "DataFrame": pd.DataFrame(with_nan),
        "nullable DataFrame": nullable,
        "masked Table": masked,
        "Table": Table(with_nan),
    }
    for shape, stars in shapes.items():
        got = tokenizer.to_arrays(stars)
        np.testing.assert_array_equal(got[0], expected[0], err_msg=shape)
        np.testing.assert_array_equal(got[1], expected[1], err_msg=shape)
    for i in range(n_stars):  # a Row and a Series are one star
        np.testing.assert_array_equal(tokenizer.to_arrays(masked[i])[0][0], expected[0][i])
        np.testing.assert_array_equal(tokenizer.to_arrays(nullable.iloc[i])[0][0], expected[0][i])


# ------------------------------------------------------------------------------------------ requests and ids
@pytest.fixture(scope="module")
def picky_tokenizer() -> StarTokenizer:
    """The test vocabulary with ``ak_targ`` not requestable."""
    vocabulary = [
        {**entry, "requestable": entry["name"] != "ak_targ"} for entry in create_test_tokenizer().vocabulary
    ]
    return StarTokenizer(vocabulary=vocabulary, context_length=128)


REQUEST = st.one_of(
    st.sampled_from(["teff", "logg", "fe_h", "bp3", "jh", "ak_targ"]),
    st.sampled_from(["tef", "bprp_err", "<pad>", "", "TEFF"]),
    st.none(),
    st.integers(-3, 200),
    st.floats(allow_nan=True),
)
CONTAINERS = {
    "list": list,
    "tuple": tuple,
    "set": set,
    "array": lambda items: np.array(items, dtype=object),
    "generator": lambda items: (item for item in items),
    "dict keys": lambda items: dict.fromkeys(items).keys(),
}


@given(items=st.lists(REQUEST, max_size=4), container=st.sampled_from(sorted(CONTAINERS)))
def test_any_iterable_of_requests_is_answered_or_its_bad_entry_named(picky_tokenizer, items, container):
    try:
        hashable = CONTAINERS[container](items)
    except TypeError:  # e.g. a set of unhashable items: not a request container anyone can build
        return
    names = list(dict.fromkeys(items)) if container in ("set", "dict keys") else items
    star = {"bprp": 1.2}
    try:
        ids = picky_tokenizer.request_ids_for(hashable, 1)
    except ValueError as error:
        message = str(error)
        if not names:
            assert "requests is empty" in message
        else:
            culprits = [
                repr(item)
                for item in names
                if not isinstance(item, str)
                or item not in picky_tokenizer.observation_names
                or item == "ak_targ"
            ]
            assert culprits and any(culprit in message for culprit in culprits), (names, message)
        return
    assert sorted(picky_tokenizer.convert_ids_to_names(ids[0])) == sorted(names)
    assert picky_tokenizer(star, requests=names)["request_ids"].shape == (1, len(names))


@given(ids=st.lists(st.lists(st.integers(-3, 125), min_size=2, max_size=2), min_size=1, max_size=3))
def test_decode_gives_physical_values_for_vocabulary_ids_and_names_any_other(tokenizer, ids):
    ids = np.array(ids)
    zeros = np.zeros(ids.shape)
    outside = (ids < 0) | (ids >= tokenizer.vocab_size)
    try:
        mean, std = tokenizer.decode(ids, zeros, zeros)
    except ValueError as error:
        assert outside.any() and f"token id {ids[outside][0]}" in str(error)
        return
    assert not outside.any()
    assert (
        np.all(np.isnan(mean[ids == 0])) and np.all(np.isfinite(mean[ids > 0])) and np.all(std[ids > 0] > 0)
    )


# ------------------------------------------------------------------------------- byte-level file corruptions
@st.composite
def corruption(draw, content: bytes) -> bytes:
    """``content`` after 1 to 3 byte-level edits: cut, flip, delete, insert, or change a digit."""
    for _ in range(draw(st.integers(1, 3))):
        if not content:
            break
        at = draw(st.integers(0, len(content) - 1))
        edit = draw(st.sampled_from(["cut", "flip", "delete", "insert", "digit"]))
        if edit == "cut":
            content = content[:at]
        elif edit == "flip":
            content = content[:at] + bytes([draw(st.integers(0, 255))]) + content[at + 1 :]
        elif edit == "delete":
            content = content[:at] + content[at + draw(st.integers(1, 64)) :]
        elif edit == "insert":
            content = content[:at] + draw(st.binary(min_size=1, max_size=16)) + content[at:]
        else:  # the corruption a parser cannot see: one digit for another, or for a sign or a letter
            digits = [i for i, byte in enumerate(content) if chr(byte).isdigit()]
            if digits:
                at = draw(st.sampled_from(digits))
                content = (
                    content[:at] + draw(st.sampled_from([b"0", b"9", b"-", b"e", b"x"])) + content[at + 1 :]
                )
    return content


def _fresh_folder(tmp_path_factory) -> Path:
    return Path(tempfile.mkdtemp(dir=tmp_path_factory.getbasetemp()))


@fewer(2.0)
@given(data=st.data(), fixture=st.sampled_from(FIXTURES), compress=st.booleans())
def test_a_corrupted_archive_export_is_read_right_or_named(
    archive_dir, tmp_path_factory, data, fixture, compress
):
    content = data.draw(corruption((archive_dir / fixture).read_bytes()))
    if compress and fixture.endswith("fits"):
        compress = False  # the archive compresses its text formats only
    path = _fresh_folder(tmp_path_factory) / (fixture + (".gz" if compress else ""))
    path.write_bytes(gzip.compress(content) if compress else content)
    try:
        xp = read_gaia_xp(path)
    except ValueError as error:
        assert str(path) in str(error), str(error)
        return
    assert len(np.unique(xp["source_id"])) == len(xp)
    for band in ("bp", "rp"):
        coefficients = np.asarray(xp[f"{band}_coefficients"])
        assert not np.isinf(coefficients).any()
        assert not (np.asarray(xp[f"{band}_coefficient_errors"]) < 0).any()
        assert not np.isinf(xp[f"{band}_coefficient_errors"]).any()
        if f"{band}_coefficient_correlations" in xp.colnames:  # optional: a damaged header can lose it
            assert not (np.abs(np.asarray(xp[f"{band}_coefficient_correlations"])) > 1).any()
        bases = np.asarray(xp[f"{band}_n_relevant_bases"])
        assert bases.dtype == np.int16 and ((bases >= 0) & (bases <= XP_N_COEFFICIENTS)).all()


@pytest.fixture(scope="module")
def star_tables(tokenizer, tmp_path_factory) -> dict[str, bytes]:
    """A 3-star table in each star-table format, as bytes: what the catalogue reader and the CLI get."""
    rng = np.random.default_rng(0)
    columns = {name: [physical(tokenizer, name, z) for z in rng.normal(size=3)] for name in INPUTS[:5]}
    columns["bprp_err"] = [0.01, 0.02, np.nan]
    columns["gaia_dr3_source_id"] = [11, 12, 13]
    folder = tmp_path_factory.mktemp("star_tables")
    Table(columns).write(folder / "stars.ecsv")
    Table(columns).write(folder / "stars.fits")
    pq.write_table(pa.table(columns), folder / "stars.parquet")
    return {path.name: path.read_bytes() for path in folder.iterdir()}


def _check_predictions(table, n_rows: int | None = None) -> None:
    """Every row has a finite answer and sigma, or a non-empty reason."""
    reasons = np.asarray([str(r) for r in np.ma.filled(table[REASON_COLUMN], "")])
    answered = np.ones(len(table), dtype=bool)
    for name in ("teff", "logg", "fe_h"):
        for column in (name, f"{name}_std"):
            answered &= np.isfinite(np.asarray(getattr(table[column], "value", table[column]), dtype=float))
    assert np.all(answered | (reasons != "")), table
    assert not np.any(answered & (reasons != "")), table
    if n_rows is not None:
        assert len(table) == n_rows


@fewer(1.0)
@given(data=st.data(), name=st.sampled_from(["stars.ecsv", "stars.fits", "stars.parquet"]))
def test_a_corrupted_star_table_gives_an_answer_or_a_reason_per_row_or_names_the_file(
    pipe, tokenizer, star_tables, tmp_path_factory, data, name
):
    path = _fresh_folder(tmp_path_factory) / name
    path.write_bytes(data.draw(corruption(star_tables[name])))
    try:
        chunks = list(iter_file_chunks(path, tokenizer.observation_names, 2))
    except ValueError as error:
        assert str(path) in str(error), str(error)
        return
    if chunks:
        _check_predictions(predict_table(pipe, vstack(chunks)), sum(len(c) for c in chunks))


@pytest.fixture(scope="module")
def model_dir(tokenizer, tmp_path_factory) -> Path:
    return prepare_model_folder(lively_model(), tokenizer, tmp_path_factory.mktemp("model") / "m")


@fewer(0.2)
@given(data=st.data(), name=st.sampled_from(["stars.ecsv", "stars.fits", "stars.parquet"]))
def test_the_predict_command_writes_a_whole_table_or_nothing_and_says_why(
    model_dir, star_tables, tmp_path_factory, capsys, data, name
):
    folder = _fresh_folder(tmp_path_factory)
    path = folder / name
    path.write_bytes(data.draw(corruption(star_tables[name])))
    output = folder / "out" / "predicted.ecsv"
    capsys.readouterr()
    status = cli_main(["predict", str(path), "--model", str(model_dir), "--output", str(output)])
    printed = capsys.readouterr().err
    assert "Traceback" not in printed
    if status == 0:
        _check_predictions(Table.read(output))
    else:
        assert status == 1 and "error: " in printed and not output.exists(), printed
    assert sorted(p.name for p in folder.rglob("*")) == sorted(
        [name, *(["out", output.name] if status == 0 else [])]
    )


@fewer(0.12)  # two builds per failing example, a few seconds each
@given(data=st.data())
def test_a_failed_build_leaves_nothing_and_the_corrected_build_runs_as_is(
    archive_dir, shared_dir, tmp_path_factory, capsys, data
):
    folder = _fresh_folder(tmp_path_factory)
    original = (archive_dir / "XP_CONTINUOUS_RAW.csv").read_bytes()
    xp = folder / "xp.csv"
    xp.write_bytes(data.draw(corruption(original)))
    side = folder / "gaia_source.csv"
    side.write_text("source_id,phot_g_mean_mag\n5853498713190525696,12.0\n5762406957886626816,13.0\n")
    output = folder / "dataset"
    split = shared_dir / "data" / "test_split_gaia_dr3_source_ids.txt"
    argv = ["build", "--output", str(output), "--test-split", str(split), "--no-progress"]
    argv += ["--gaia-xp", str(xp), "--gaia-source", str(side)]
    capsys.readouterr()
    status = build_main(argv)
    printed = capsys.readouterr().err
    if status == 0:
        text = (output / "meta" / "stats.json").read_text()
        assert "NaN" not in text and "Infinity" not in text, text  # strict JSON
        # a coefficient no kept star observes (beyond both stars' n_relevant_bases) has null statistics; every
        # observed one has finite ones
        for name, entry in json.loads(text).items():
            numbers = [value for key, value in entry.items() if key not in ("count", "unit")]
            if entry["count"] == 0:
                assert numbers == [None] * len(numbers), (name, entry)
            else:
                assert all(isinstance(x, float) and math.isfinite(x) for x in numbers), (name, entry)
        return
    assert status == 1 and f"error: {xp}" in printed, printed
    assert not output.exists() and not staging_dir(output).exists()
    xp.write_bytes(original)  # corrected, then the same command: no --overwrite needed
    assert build_main(argv) == 0, capsys.readouterr().err
    assert (output / "meta" / "info.json").is_file()
