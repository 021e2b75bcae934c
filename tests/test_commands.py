"""The one command, ``stellar-foundation``: its subcommands, the functions behind them, and the public names."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

import pytest

from stellar_tasks import recipe
from stellar_tasks.cli import build_parser, main
from stellar_tasks.hub import prepare_model_folder, validate_model_folder
from stellar_tasks.model_folder import RUN_FILES
from tests.conftest import REPO_ROOT, create_test_model, create_test_tokenizer

SUBCOMMANDS = {"build", "train", "evaluate", "predict", "distill", "export", "finetune", "push"}


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    (action,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return action.choices


def test_one_command_with_every_subcommand():
    assert set(_subparsers(build_parser())) == SUBCOMMANDS


def test_predict_does_not_import_the_other_commands_libraries():
    # build / train / evaluate bring datasets, matplotlib and the training loop (seconds on every predict)
    probe = (
        "import sys; from stellar_tasks.cli import build_parser; "
        "build_parser('predict').parse_args(['predict', 'x.parquet', '--model', 'm', '--output', 'o.parquet']); "
        "print(sorted(m for m in ('matplotlib', 'stellar_tasks.report', 'stellar_tasks.training', "
        "'datasets') if m in sys.modules))"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", probe], cwd=REPO_ROOT, capture_output=True, text=True, check=True
    )
    assert loaded.stdout.strip() == "[]", loaded.stdout
    # every command is still listed, and the one run gets its arguments
    assert set(_subparsers(build_parser("predict"))) == SUBCOMMANDS
    assert build_parser("evaluate").parse_args(["evaluate", "--model", "m", "--dataset", "d"]).model == "m"
    with pytest.raises(SystemExit):
        build_parser("predict").parse_args(["evaluate", "--model", "m"])


def test_console_command_is_the_tuned_entry_point_and_runs_the_cli(tmp_path):
    from importlib.metadata import entry_points

    import stellar_tasks.__main__

    (script,) = [e for e in entry_points(group="console_scripts") if e.name == "stellar-foundation"]
    assert script.load() is stellar_tasks.__main__.main  # what pip installs as `stellar-foundation`
    usage = subprocess.run(
        [sys.executable, "-m", "stellar_tasks", "predict", "--help"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
    )
    assert usage.returncode == 0 and "--distilled" in usage.stdout, usage.stderr[-2000:]
    # in a fresh process: the CLI's answer and exit status come through, and the collector is back on afterwards
    # with the modules' objects frozen (what saves the import and exit time)
    probe = (
        "import gc, sys; from stellar_tasks.__main__ import main; "
        f"status = main(['predict', {str(tmp_path / 'missing.parquet')!r}, '--model', {str(tmp_path)!r}, "
        f"'--output', {str(tmp_path / 'out.parquet')!r}]); "
        "print(status, gc.isenabled(), gc.get_freeze_count() > 100_000)"
    )
    ran = subprocess.run([sys.executable, "-c", probe], cwd=REPO_ROOT, capture_output=True, text=True)
    assert ran.stdout.split() == ["1", "True", "True"], (ran.stdout, ran.stderr[-2000:])
    assert "error:" in ran.stderr and not (tmp_path / "out.parquet").exists()


def test_train_subcommand_takes_train_py_flags_and_calls_the_same_code():
    arguments = ["--dataset", "d", "--output", "o", "--resume", "--max-minutes", "1", "--stop-at-step", "3"]
    through_cli = build_parser().parse_args(["train", *arguments])
    through_script = recipe.build_parser().parse_args(arguments)  # what train.py parses
    assert through_cli.handler is through_script.handler is recipe.train
    assert {k: v for k, v in vars(through_cli).items() if k != "command"} == vars(through_script)


def test_export_writes_the_hub_ready_folder(tmp_path):
    run = prepare_model_folder(create_test_model(), create_test_tokenizer(), tmp_path / "run")
    for name in RUN_FILES:
        (run / name).write_text(json.dumps({"steps": 1}) + "\n")
    (run / "checkpoints").mkdir()
    assert main(["export", str(run), str(tmp_path / "model")]) == 0
    exported = {p.name for p in (tmp_path / "model").iterdir()}
    assert set(RUN_FILES) <= exported and "checkpoints" not in exported
    (tmp_path / "model" / "README.md").write_text("---\npipeline_tag: tabular-regression\n---\n")
    validate_model_folder(tmp_path / "model")


def test_evaluate_needs_a_dataset_or_a_previous_report(tmp_path):
    with pytest.raises(SystemExit, match="--dataset"):
        main(["evaluate", "--model", str(tmp_path)])


def test_public_readers_are_exported_where_users_look():
    import datasets_builder

    for name in ("read_gaia_xp", "read_gaia_source", "read_allstar_rows", "load_stats", "load_info"):
        assert name in datasets_builder.__all__ and callable(getattr(datasets_builder, name))


def test_tokenizer_errors_say_which_star_and_name():
    from modeling_stellar import StarInputError

    tokenizer = create_test_tokenizer()
    with pytest.raises(StarInputError) as caught:
        tokenizer.to_arrays([{"teff": 5000.0}, {"teff": float("inf")}])
    assert (caught.value.star, caught.value.name) == (1, "teff")
    assert str(caught.value) == f"star 1, {caught.value.reason}" and caught.value.reason.startswith(
        "observation"
    )
    with pytest.raises(StarInputError) as caught:
        tokenizer.convert_names_to_ids(["tef"], star=2)
    assert (caught.value.star, caught.value.name) == (2, "tef") and "did you mean 'teff'" in str(caught.value)
    assert tokenizer.requestable_mask[0] == False and tokenizer.requestable_mask.sum() == len(  # noqa: E712
        tokenizer.requestable_names
    )
    assert tokenizer.scales_of(["teff", "logg"]).tolist() == [500.0, 1.2]
