"""The distilled fast path (`stellar_tasks.distillation`, ``predict --distilled``): the shipped student keeps the
model's Teff / log g / [Fe/H] scatter on the whole test split within 2 %, answers only the rows it was made for (the
model answers the others, to the digit), belongs to the weights it was distilled from, and its training resumes.
"""

from __future__ import annotations

import shutil

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from astropy.stats import mad_std
from astropy.table import QTable, Table
from transformers import pipeline

from stellar_tasks.catalogue import predict_table
from stellar_tasks.cli import main
from stellar_tasks.distillation import (
    DistillationConfig,
    DistilledPredictor,
    distill,
    load_distilled,
)
from stellar_tasks.inputs import HEADLINE_COLUMNS, HEADLINE_INPUTS, LABELS
from stellar_tasks.model_folder import DISTILLED_FOLDER
from tests.conftest import REPO_ROOT

MODEL = REPO_ROOT / "pretrained" / "stellar-foundation-apogee-xp"
SCATTER_TOLERANCE = 0.02
"""The distilled answers' scatter may exceed the model's by 2 % of it (issue 14's accuracy guard)."""
TINY = DistillationConfig(
    noise_copies=1, mixture_copies=1, hidden_dims=(16,), members=2, epochs=2, batch_size=256
)


def split_rows(dataset, split: str, columns: list[str]) -> pa.Table:
    return pa.concat_tables(
        pq.read_table(path, columns=columns) for path in sorted(dataset.glob(f"data/{split}-*.parquet"))
    )


@pytest.fixture(scope="module")
def predictor():
    return pipeline(model=str(MODEL), trust_remote_code=True)


@pytest.fixture(scope="module")
def student() -> DistilledPredictor:
    return load_distilled(MODEL)


@pytest.mark.slow
def test_distilled_keeps_the_test_split_scatter_within_2_percent(full_dataset, student, tmp_path):
    # the whole test split, as a catalogue would hold it: the headline inputs with their uncertainties
    table = split_rows(full_dataset, "test", ["gaia_dr3_source_id", *HEADLINE_COLUMNS, *LABELS])
    stars = tmp_path / "test.parquet"
    pq.write_table(table, stars)
    predictions = {}
    # the pipeline's float32 answers against the fast path as the command runs it by default (--precision auto:
    # the student's products in bfloat16 on this AMX CPU)
    for mode, flags in {"model": ["--precision", "float32"], "distilled": ["--distilled"]}.items():
        output = tmp_path / f"{mode}.parquet"
        assert main(["predict", str(stars), "--model", str(MODEL), "--output", str(output), *flags]) == 0
        predictions[mode] = QTable.read(output)
    tokenizer = pipeline(model=str(MODEL), trust_remote_code=True).feature_extractor
    values, errors = tokenizer.to_arrays(Table(table.select(list(HEADLINE_COLUMNS)).to_pydict()))
    served = student.serves(tokenizer, values, LABELS)
    assert served.mean() > 0.99, served.mean()  # the student answered (nearly) every row
    for name in LABELS:
        truth = table.column(name).to_numpy(zero_copy_only=False).astype(np.float64)
        fast, exact = predictions["distilled"][name].value, predictions["model"][name].value
        known = np.isfinite(truth) & np.isfinite(exact)
        assert np.isfinite(fast[known]).all() and np.isfinite(predictions["distilled"][f"{name}_std"]).all()
        scatter, distilled_scatter = mad_std(truth[known] - exact[known]), mad_std(truth[known] - fast[known])
        assert distilled_scatter <= (1 + SCATTER_TOLERANCE) * scatter, (name, distilled_scatter, scatter)
        assert not np.allclose(fast[served], exact[served]), name  # it is the student's answer
        # its sigma is the model's sigma, learned: same median within 10 %
        ratio = np.median(
            predictions["distilled"][f"{name}_std"].value / predictions["model"][f"{name}_std"].value
        )
        assert ratio == pytest.approx(1.0, abs=0.1), name


def test_only_rows_with_exactly_its_inputs_are_served(tiny_dataset, predictor, student):
    rows = split_rows(tiny_dataset, "test", list(HEADLINE_COLUMNS))
    complete = np.all(
        [np.isfinite(rows.column(name).to_numpy(zero_copy_only=False)) for name in HEADLINE_INPUTS], 0
    )
    stars = Table(rows.filter(pa.array(complete)).slice(0, 6).to_pydict())
    stars["alpha_m"], stars["logg"] = np.full(6, np.nan), np.full(6, np.nan)
    stars["alpha_m"][1] = 0.1  # an observation it does not read
    stars["logg"][4] = 2.5  # a requested name is no input: the model would not read it either
    stars["bp3"][2] = np.nan  # one of its inputs missing
    tokenizer = predictor.feature_extractor
    (beyond,) = tokenizer.decode(  # a value just beyond the range it was trained on, in physical units
        [tokenizer.convert_names_to_ids(["bp0"])], [[float(student.feature_high[0]) + 0.1]]
    )[0][0]
    stars["bp0"][3] = beyond
    values, _ = tokenizer.to_arrays(stars, ignore_unknown=True)
    np.testing.assert_array_equal(
        student.serves(tokenizer, values, LABELS), [True, False, False, False, True, True]
    )
    assert not student.serves(tokenizer, values, ["teff", "alpha_m"]).any()  # not its question

    fast = predict_table(predictor, stars, LABELS, distilled=student)
    exact = predict_table(predictor, stars, LABELS)
    for name in LABELS:
        for column in (name, f"{name}_std"):
            # the model's own answer (to float32 rounding: it ran in a batch of other stars), and the student's
            np.testing.assert_allclose(fast[column][1:4].value, exact[column][1:4].value, rtol=1e-5)
            served = fast[column][[0, 4, 5]].value, exact[column][[0, 4, 5]].value
            assert np.isfinite(fast[column].value).all() and not np.allclose(*served, rtol=1e-4), column
    assert list(fast["reason"]) == [""] * 6


def test_rows_with_or_without_uncertainties_are_served_alike(
    tiny_dataset, predictor, student, tmp_path, capsys
):
    # issue 29: a catalogue of the 63 headline values without `_err` columns is served like one with them, as the
    # model (which does not read uncertainties) answers both alike; the command says how many rows each answered
    rows = split_rows(tiny_dataset, "test", list(HEADLINE_COLUMNS))
    complete = np.all(
        [np.isfinite(rows.column(name).to_numpy(zero_copy_only=False)) for name in HEADLINE_INPUTS], 0
    )
    with_errors = rows.filter(pa.array(complete)).slice(0, 40)
    tables = {"with": with_errors, "without": with_errors.select(list(HEADLINE_INPUTS))}
    answers = {}
    for name, table in tables.items():
        source, output = tmp_path / f"{name}.parquet", tmp_path / f"{name}-out.parquet"
        pq.write_table(table, source)
        capsys.readouterr()
        assert (
            main(["predict", str(source), "--model", str(MODEL), "--output", str(output), "--distilled"]) == 0
        )
        assert "40 rows, 40 predicted (40 by the distilled)" in capsys.readouterr().err, name
        answers[name] = QTable.read(output)
    for name in LABELS:
        for column in (name, f"{name}_std"):
            np.testing.assert_array_equal(answers["with"][column].value, answers["without"][column].value)


def test_input_names_limit_what_is_read_so_rows_with_more_are_served(
    tiny_dataset, predictor, student, tmp_path, capsys
):
    extra = [
        "bp30",
        "bp30_err",
        "rp30",
        "rp30_err",
    ]  # what a dataset shard or a full XP table holds beyond them
    rows = split_rows(tiny_dataset, "test", ["gaia_dr3_source_id", *HEADLINE_COLUMNS, *extra])
    complete = np.all(
        [
            np.isfinite(rows.column(name).to_numpy(zero_copy_only=False))
            for name in [*HEADLINE_INPUTS, *extra]
        ],
        0,
    )
    rows = rows.filter(pa.array(complete)).slice(0, 8)
    stars, headline_only = Table(rows.to_pydict()), Table(rows.drop_columns(extra).to_pydict())
    tokenizer = predictor.feature_extractor
    values, _ = tokenizer.to_arrays(stars, ignore_unknown=True)
    assert not student.serves(tokenizer, values, LABELS).any()  # BP/RP 30 are read too: the model's rows

    everything = predict_table(predictor, stars, LABELS, distilled=student)
    limited = predict_table(predictor, stars, LABELS, distilled=student, inputs=HEADLINE_INPUTS)
    expected = predict_table(predictor, headline_only, LABELS, distilled=student)
    model_limited = predict_table(predictor, stars, LABELS, inputs=HEADLINE_INPUTS)
    model_headline = predict_table(predictor, headline_only, LABELS)
    for column in [*LABELS, *(f"{name}_std" for name in LABELS)]:
        np.testing.assert_array_equal(limited[column].value, expected[column].value)  # the student's answers
        assert not np.allclose(limited[column].value, everything[column].value, rtol=1e-4), column
        np.testing.assert_allclose(model_limited[column].value, model_headline[column].value, rtol=1e-5)

    # the command: 'headline' stands for the 63 names; an unknown name fails before any output, naming it
    source = tmp_path / "stars.parquet"
    pq.write_table(rows, source)
    output = tmp_path / "out.parquet"
    common = ["predict", str(source), "--model", str(MODEL), "--distilled", "--precision", "float32"]
    assert main([*common, "--output", str(output), "--input-names", "headline"]) == 0
    command = QTable.read(output)
    for name in LABELS:
        np.testing.assert_allclose(command[name].value, expected[name].value, rtol=1e-6)
    bad = tmp_path / "bad.parquet"
    capsys.readouterr()
    assert main([*common, "--output", str(bad), "--input-names", "headline", "bp_30"]) == 1
    assert "'bp_30'" in capsys.readouterr().err and not bad.exists()


def test_a_student_of_other_weights_or_none_is_refused(tmp_path, capsys):
    copied = shutil.copytree(MODEL, tmp_path / "model")
    weights = copied / "model.safetensors"
    original = weights.read_bytes()
    weights.write_bytes(original + b" ")  # other weights than the student's teacher
    with pytest.raises(ValueError, match="distilled from other weights"):
        load_distilled(copied)
    weights.write_bytes(original)
    shutil.rmtree(copied / DISTILLED_FOLDER)
    stars = tmp_path / "stars.parquet"
    pq.write_table(pa.table({name: [0.1] for name in HEADLINE_INPUTS}), stars)
    status = main(
        [
            "predict",
            str(stars),
            "--model",
            str(copied),
            "--output",
            str(tmp_path / "o.parquet"),
            "--distilled",
        ]
    )
    assert status == 1
    assert "no distilled predictor" in capsys.readouterr().err and not (tmp_path / "o.parquet").exists()


def test_distill_resumes_after_an_interruption_to_the_same_student(tiny_dataset, tmp_path):
    finished, interrupted = (shutil.copytree(MODEL, tmp_path / name, ignore=shutil.ignore_patterns(f"{DISTILLED_FOLDER}*"))
                             for name in ("finished", "interrupted"))  # fmt: skip
    distill(finished, str(tiny_dataset), TINY, log=lambda _: None)

    def stop_after_the_first_epoch(message: str) -> None:
        if message.startswith("distill: member 2/2, epoch 1/"):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        distill(interrupted, str(tiny_dataset), TINY, log=stop_after_the_first_epoch)
    assert not (interrupted / DISTILLED_FOLDER).exists()  # nothing half-landed
    messages = []
    distill(interrupted, str(tiny_dataset), TINY, log=messages.append)
    assert "distill: resuming after member 2, epoch 1" in messages
    assert not any(
        message.startswith("distill: the model answers") for message in messages
    )  # kept, not redone
    assert not (interrupted / f"{DISTILLED_FOLDER}.partial").exists()
    first, second = load_distilled(finished), load_distilled(interrupted)
    for (name, a), b in zip(first.state_dict().items(), second.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0, msg=name)
    assert first.holdout == second.holdout and first.holdout["stars"] > 0
    assert set(first.holdout) == {"stars", *(f"{name}_scatter_ratio" for name in LABELS)}
