"""The tabular-regression pipeline: a copied folder in a fresh process, every input shape, errors, the table helper."""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
import textwrap

import astropy.units as u
import numpy as np
import pandas as pd
import pytest
import torch
from astropy.table import Table
from transformers import pipeline

from modeling_stellar import StellarParameterPipeline
from stellar_tasks.catalogue import NO_INPUT, predict_table
from stellar_tasks.hub import prepare_model_folder
from tests.conftest import create_test_model, create_test_stars, create_test_tokenizer

PARAMETERS = ["teff", "logg", "fe_h"]


def lively_model(seed: int = 0):
    """The tiny test model with weights large enough that each star gets visibly different answers."""
    model = create_test_model(seed)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.4)
    return model


def expected(model, tokenizer, stars, requests=PARAMETERS) -> tuple[np.ndarray, np.ndarray]:
    """Physical mean and std straight from the model: what the pipeline must return."""
    batch = tokenizer(stars, requests=requests)
    with torch.no_grad():
        output = model(**batch)
    return tokenizer.decode(batch["request_ids"], output.mean, output.log_variance)


def as_arrays(results: list[dict], requests=PARAMETERS) -> tuple[np.ndarray, np.ndarray]:
    mean = np.array([[star[name]["mean"] for name in requests] for star in results])
    std = np.array([[star[name]["std"] for name in requests] for star in results])
    return mean, std


@pytest.fixture(scope="module")
def model_and_tokenizer():
    return lively_model(), create_test_tokenizer()


@pytest.fixture(scope="module")
def predictor(model_and_tokenizer):
    model, tokenizer = model_and_tokenizer
    return StellarParameterPipeline(model=model, feature_extractor=tokenizer, device="cpu")


FRESH_PROCESS = textwrap.dedent(
    """
    import importlib.abc, json, sys

    class BlockRepository(importlib.abc.MetaPathFinder):
        # The pipeline must come from the folder's remote code, not from this repository.
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in {"modeling_stellar", "datasets_builder", "stellar_tasks", "train", "tests"}:
                raise ImportError(f"{name} is blocked")

    sys.meta_path.insert(0, BlockRepository())
    import pandas as pd
    from astropy.table import Table
    from transformers import pipeline

    source, stars = sys.argv[1], json.load(open(sys.argv[2]))
    predictor = pipeline(model=source, trust_remote_code=True, device="cpu")
    answers = {
        "class": type(predictor).__module__ + "." + type(predictor).__name__,
        "task": predictor.task,
        "single": predictor(stars[0]),
        "list": predictor(stars),
        "pandas": predictor(pd.DataFrame(stars), batch_size=2),
        "astropy": predictor(Table(rows=[[s[k] for k in stars[0]] for s in stars], names=list(stars[0]))),
    }
    errors = {}
    for label, bad in {"unknown": [stars[0], {"tef": 4000.0}], "inf": [stars[0], {"bprp": float("inf")}]}.items():
        try:
            predictor(bad)
        except ValueError as error:
            errors[label] = str(error)
    answers["errors"] = errors
    print(json.dumps(answers))
    """
)


def run_fresh(source: str, stars: list[dict], tmp_path, env_extra: dict | None = None) -> dict:
    """Run `FRESH_PROCESS` on ``source`` (folder or repo id) in a new interpreter that cannot see this repository."""
    (tmp_path / "stars.json").write_text(json.dumps(stars))
    workdir = tmp_path / "empty"
    workdir.mkdir(exist_ok=True)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update({"HF_HOME": str(tmp_path / "hf_home"), "HF_HUB_OFFLINE": "1", **(env_extra or {})})
    result = subprocess.run(
        [sys.executable, "-I", "-c", FRESH_PROCESS, source, str(tmp_path / "stars.json")],
        cwd=workdir, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-4000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def check_fresh_answers(answers: dict, model, tokenizer, stars: list[dict]) -> None:
    """What `FRESH_PROCESS` printed equals the model run here; errors are the tokenizer's, unchanged."""
    assert answers["class"].startswith("transformers_modules.")
    assert answers["class"].endswith("pipeline_stellar.StellarParameterPipeline")
    assert answers["task"] == "tabular-regression"
    mean, std = expected(model, tokenizer, stars)
    assert set(answers["single"]) == set(PARAMETERS)
    assert answers["single"]["teff"]["unit"] == "K" and answers["single"]["logg"]["unit"] == "dex"
    np.testing.assert_allclose(as_arrays([answers["single"]])[0], mean[:1], rtol=1e-5)
    for shape in ("list", "pandas", "astropy"):
        got_mean, got_std = as_arrays(answers[shape])
        np.testing.assert_allclose(got_mean, mean, rtol=1e-5, err_msg=shape)
        np.testing.assert_allclose(got_std, std, rtol=1e-5, err_msg=shape)
    assert answers["errors"]["unknown"] == "star 1: unknown observation name 'tef'; did you mean 'teff'?"
    assert answers["errors"]["inf"].startswith("star 1, observation 'bprp': value inf is not finite")


def test_copied_folder_loads_the_pipeline_with_no_task_in_a_fresh_process(model_and_tokenizer, tmp_path):
    model, tokenizer = model_and_tokenizer
    folder = prepare_model_folder(model, tokenizer, tmp_path / "saved")
    config = json.loads((folder / "config.json").read_text())
    assert config["custom_pipelines"]["tabular-regression"] == {
        "impl": "pipeline_stellar.StellarParameterPipeline",
        "pt": ["AutoModel"],
    }
    copied = shutil.copytree(folder, tmp_path / "elsewhere" / "model")
    stars = [{k: v for k, v in star.items() if k not in PARAMETERS} for star in create_test_stars(3)]
    check_fresh_answers(run_fresh(str(copied), stars, tmp_path), model, tokenizer, stars)


@pytest.mark.parametrize("shape", ["list", "columns", "pandas", "astropy"])
def test_every_input_shape_gives_the_model_numbers(predictor, model_and_tokenizer, shape):
    model, tokenizer = model_and_tokenizer
    stars = create_test_stars(5)
    given = {
        "list": stars,
        "columns": {name: [star[name] for star in stars] for name in stars[0]},
        "pandas": pd.DataFrame(stars),
        "astropy": Table(rows=[list(star.values()) for star in stars], names=list(stars[0])),
    }[shape]
    results = predictor(given, batch_size=2)
    assert isinstance(results, list) and len(results) == 5
    mean, std = expected(model, tokenizer, stars)
    got_mean, got_std = as_arrays(results)
    np.testing.assert_allclose(got_mean, mean, rtol=1e-5)
    np.testing.assert_allclose(got_std, std, rtol=1e-5)
    assert len({round(star["teff"]["mean"], 3) for star in results}) == 5  # answers differ star to star


def test_one_star_gives_one_dict_and_requests_are_never_inputs(predictor):
    star = create_test_stars(1)[0]
    result = predictor(star, requests=["teff", "bprp"])
    assert set(result) == {"teff", "bprp"}
    assert result["bprp"]["unit"] == "mag" and result["teff"]["unit"] == "K"
    assert math.isfinite(result["teff"]["mean"]) and result["teff"]["std"] > 0
    # the star's own teff and bprp are requested, so they cannot change the answer
    changed = predictor({**star, "teff": 9999.0, "bprp": 3.0}, requests=["teff", "bprp"])
    assert changed == result
    assert predictor(star, requests="teff") == predictor(star, requests=["teff"]) != {"teff": result["teff"]}


def test_registered_task_and_construction_parameters(model_and_tokenizer):
    model, tokenizer = model_and_tokenizer
    made = pipeline(
        "tabular-regression", model=model, feature_extractor=tokenizer, device="cpu", requests=["logg"]
    )
    assert isinstance(made, StellarParameterPipeline)
    assert set(made(create_test_stars(1)[0])) == {"logg"}  # given at construction
    assert set(made(create_test_stars(1)[0], requests=["jh"])) == {"jh"}  # the call wins
    with pytest.raises(ValueError, match="batch_size must be a positive integer"):
        made(create_test_stars(1)[0], batch_size=-1)


@pytest.mark.parametrize(
    ("stars", "message"),
    [
        (
            [{"bprp": 1.0}, {"bprp": 1.0, "jh": -math.inf}],
            "star 1, observation 'jh': value -inf is not finite",
        ),
        (
            [{"bprp": 1.0, "bprp_err": -0.1}],
            "star 0, observation 'bprp_err': uncertainty -0.1 must be finite and >= 0",
        ),
        ([{"bprp": 1.0}, {"bp_rp": 1.0}], "star 1: unknown observation name 'bp_rp'; did you mean 'bprp'?"),
        ([{"bprp": 1.0}, {"teff": 4000.0}], "star 1 has no observations to encode"),
        ([{"bprp": "red"}], "star 0, observation 'bprp': 'red' is not a number"),
    ],
)
def test_bad_input_raises_the_tokenizers_error(predictor, stars, message):
    with pytest.raises(ValueError) as caught:
        predictor(stars)
    assert str(caught.value).startswith(message)


def test_table_helper_gives_the_pipeline_numbers_with_units_and_reasons(predictor):
    stars = create_test_stars(4)
    table = Table(rows=[list(star.values()) for star in stars], names=list(stars[0]))
    table["gaia_dr3_source_id"] = np.arange(4, dtype=np.int64)  # not an observation: ignored
    table["jh"][1] = np.inf  # bad value: a reason for that row only
    for name in table.colnames:
        if name not in ("teff", "logg", "gaia_dr3_source_id", "teff_err", "logg_err"):
            table[name][3] = np.nan  # nothing left once teff, logg, fe_h are requested
    result = predict_table(predictor, table, batch_size=2)
    assert result.colnames == [
        *("teff", "teff_std", "logg", "logg_std", "fe_h", "fe_h_std"),
        *("reason", "out_of_range", "hint"),
    ]
    assert result["teff"].unit == u.K and result["logg_std"].unit == u.dex and result["fe_h"].unit == u.dex
    assert list(result["reason"][[0, 2]]) == ["", ""]
    assert result["reason"][1].startswith("observation 'jh': value inf is not finite")
    assert result["reason"][3] == NO_INPUT
    assert np.all(np.isnan(result["teff"][[1, 3]].value))
    pipeline_results = predictor([stars[0], stars[2]])
    mean, std = as_arrays(pipeline_results)
    np.testing.assert_allclose(np.stack([result[n][[0, 2]].value for n in PARAMETERS], 1), mean, rtol=1e-5)
    np.testing.assert_allclose(
        np.stack([result[f"{n}_std"][[0, 2]].value for n in PARAMETERS], 1), std, rtol=1e-5
    )
    from_pandas = predict_table(predictor, table.to_pandas(), batch_size=3)
    np.testing.assert_allclose(from_pandas["teff"].value, result["teff"].value, rtol=1e-6)
    assert list(from_pandas["reason"]) == list(result["reason"])
