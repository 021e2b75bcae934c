"""StarTokenizer: every input shape through one code path, the round trip, and clear errors."""

import math

import numpy as np
import pytest
import torch

from modeling_stellar import StarTokenizer
from tests.conftest import VOCABULARY_FILE, create_test_stars, create_test_tokenizer


def test_output_contract(tokenizer):
    batch = tokenizer(create_test_stars(3), requests=["teff", "logg"], return_labels=True)
    assert set(batch) == {
        "input_ids",
        "input_values",
        "input_errors",
        "attention_mask",
        "request_ids",
        "labels",
        "label_errors",
    }
    assert batch["input_ids"].dtype == torch.int64 and batch["input_values"].dtype == torch.float32
    assert batch["request_ids"].shape == batch["labels"].shape == (3, 2)
    # the requested names never appear among the same star's inputs
    requested = set(tokenizer.convert_names_to_ids(["teff", "logg"]))
    assert not requested & set(batch["input_ids"].flatten().tolist())
    # labels are the standardised true values, errors standardised by the same scale
    assert batch["labels"][0, 0].item() == pytest.approx(
        (create_test_stars(3)[0]["teff"] - 4800) / 500, rel=1e-6
    )
    assert batch["label_errors"][0, 0].item() == pytest.approx(50 / 500)


@pytest.mark.parametrize("shape", ["mapping", "list", "columns", "pandas", "astropy", "datasets"])
def test_every_input_shape_gives_the_same_tensors(tokenizer, shape):
    stars = create_test_stars(3)
    reference = tokenizer(stars, requests=["teff"])
    names = list(stars[0])
    if shape == "mapping":
        given = [tokenizer(star, requests=["teff"]) for star in stars]
        for key in reference:
            assert torch.equal(torch.cat([g[key] for g in given]), reference[key])
        return
    if shape == "list":
        given = stars
    elif shape == "columns":
        given = {name: [star[name] for star in stars] for name in names}
    elif shape == "pandas":
        pandas = pytest.importorskip("pandas")
        given = pandas.DataFrame(stars)
    elif shape == "astropy":
        table = pytest.importorskip("astropy.table")
        given = table.Table(rows=[[star[n] for n in names] for star in stars], names=names)
    else:
        datasets = pytest.importorskip("datasets")
        given = datasets.Dataset.from_list(stars)[:]
    batch = tokenizer(given, requests=["teff"])
    for key in reference:
        assert torch.equal(batch[key], reference[key]), key


def test_astropy_quantity_units_are_checked(tokenizer):
    units = pytest.importorskip("astropy.units")
    table = pytest.importorskip("astropy.table")
    good = table.QTable({"teff": [4800.0] * units.K, "jh": [0.5] * units.mag})
    assert tokenizer(good)["input_ids"].shape == (1, 2)
    bad = table.QTable({"teff": [4526.85] * units.deg_C, "jh": [0.5] * units.mag})
    with pytest.raises(ValueError, match="teff.*unit"):
        tokenizer(bad)


def test_encode_decode_round_trip_returns_the_input(tokenizer):
    stars = create_test_stars(5)
    batch = tokenizer(stars)
    values, _ = tokenizer.decode(batch["input_ids"], batch["input_values"])
    names = [tokenizer.convert_ids_to_names(row) for row in batch["input_ids"].tolist()]
    for star, row_names, row_values in zip(stars, names, values, strict=True):
        decoded = {n: v for n, v in zip(row_names, row_values, strict=True) if n != "<pad>"}
        expected = {n: v for n, v in star.items() if not n.endswith("_err")}
        assert decoded.keys() == expected.keys()
        for name, value in expected.items():
            assert decoded[name] == pytest.approx(value, rel=1e-5, abs=1e-7)


def test_decode_gives_physical_mean_and_std(tokenizer):
    ids = torch.tensor([tokenizer.convert_names_to_ids(["teff", "logg"])])
    mean, std = tokenizer.decode(ids, torch.tensor([[1.0, -0.5]]), torch.tensor([[math.log(0.04), 0.0]]))
    assert mean[0].tolist() == pytest.approx([5300.0, 2.0])
    assert std[0].tolist() == pytest.approx([100.0, 1.2])


def test_nan_is_not_observed_and_missing_error_is_zero(tokenizer):
    batch = tokenizer([{"teff": 5000.0, "jh": math.nan, "logg": 2.0, "logg_err": math.nan}])
    assert tokenizer.convert_ids_to_names(batch["input_ids"][0].tolist()) == ["teff", "logg"]
    assert batch["input_errors"].tolist() == [[0.0, 0.0]]


def test_padding_and_mask(tokenizer):
    batch = tokenizer([{"teff": 5000.0, "logg": 2.0, "jh": 0.5}, {"teff": 4000.0}])
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]
    assert batch["input_ids"][1, 1:].tolist() == [0, 0]


def test_context_overflow_keeps_lowest_priority_deterministically(tokenizer):
    small = create_test_tokenizer(context_length=3)
    star = {"jh": 0.5, "bp0": 0.01, "teff": 5000.0, "rp0": 0.02, "bprp": 1.2}
    first = small(star)["input_ids"]
    assert first.shape == (1, 3)
    assert small.convert_ids_to_names(first[0].tolist()) == ["bp0", "rp0", "bprp"]  # vocabulary order
    assert torch.equal(small(dict(reversed(list(star.items()))))["input_ids"], first)


def test_save_and_reload(tmp_path, tokenizer):
    tokenizer.save_pretrained(tmp_path)
    reloaded = StarTokenizer.from_pretrained(tmp_path)
    assert reloaded.observation_names == tokenizer.observation_names
    assert reloaded.units == tokenizer.units
    stars = create_test_stars(2)
    for key, value in tokenizer(stars, requests=["teff"]).items():
        assert torch.equal(reloaded(stars, requests=["teff"])[key], value)


def test_statistics_set_the_normalisation():
    tokenizer = StarTokenizer.from_pretrained(str(VOCABULARY_FILE))
    tokenizer.set_normalization({"teff": {"center": 5000.0, "scale": 250.0, "count": 10}})
    assert tokenizer({"teff": 5500.0})["input_values"].item() == pytest.approx(2.0)


@pytest.mark.parametrize(
    ("stars", "requests", "message"),
    [
        ({"tef": 5000.0}, None, r"unknown observation name 'tef'; did you mean 'teff'"),
        ([{"teff": 1.0}, {"teff": 2.0, "lgg": 1.0}], None, r"star 1: unknown observation name 'lgg'.*'logg'"),
        ([{"teff": 1.0}, {"teff": math.inf}], None, r"star 1, observation 'teff'.*not finite"),
        ([{"teff": -math.inf}], None, r"star 0, observation 'teff'.*not finite"),
        ([{"teff": 1.0}, {"teff": "hot"}], None, r"star 1, observation 'teff': 'hot' is not a number"),
        (
            [{"teff": 1.0, "teff_err": 1.0}, {"teff": 1.0, "teff_err": -3.0}],
            None,
            r"star 1, observation 'teff_err': uncertainty .*>= 0",
        ),
        ({"teff": 5000.0}, ["tefff"], r"unknown observation name 'tefff'"),
        ([{"teff": 1.0}, {"jh": math.nan}], None, r"star 1 has no observations"),
        ({"teff": 5000.0}, ["teff"], r"star 0 has no observations"),
        ({"teff": 5000.0}, "logg", r"not a bare string"),
        ([], None, r"no stars"),
    ],
)
def test_bad_input_names_star_and_observation(tokenizer, stars, requests, message):
    with pytest.raises(ValueError, match=message):
        tokenizer(stars, requests=requests)


def test_non_requestable_name_is_refused():
    tokenizer = StarTokenizer.from_pretrained(str(VOCABULARY_FILE))
    tokenizer.vocabulary[tokenizer.convert_names_to_ids(["ak_targ"])[0] - 1]["requestable"] = False
    tokenizer.set_normalization({})
    with pytest.raises(ValueError, match="'ak_targ' is in the vocabulary but cannot be requested"):
        tokenizer({"teff": 5000.0}, requests=["ak_targ"])


def test_vocabulary_is_data_not_code():
    # A hypothetical Gaia DR4 vocabulary with 3 coefficients per band is just another list of entries.
    entry = {"unit": "", "requestable": True, "center": 0.0, "scale": 1.0}
    names = [f"bp{i}" for i in range(3)] + [f"rp{i}" for i in range(3)] + ["teff"]
    tokenizer = StarTokenizer(vocabulary=[{"name": n, **entry} for n in names], context_length=8)
    batch = tokenizer({"bp0": 1.0, "rp2": 2.0}, requests=["teff"])
    assert tokenizer.vocab_size == 8
    assert batch["input_ids"].tolist() == [[1, 6]]
    assert np.isnan(tokenizer.decode(torch.tensor([[0]]), torch.tensor([[1.0]]))[0]).all()


def test_bad_vocabulary_is_refused():
    entry = {"name": "teff", "unit": "K", "requestable": True, "center": 0.0, "scale": 0.0}
    with pytest.raises(ValueError, match="positive scale"):
        StarTokenizer(vocabulary=[entry])
    with pytest.raises(ValueError, match="not unique"):
        StarTokenizer(vocabulary=[{**entry, "scale": 1.0}, {**entry, "scale": 1.0}])
