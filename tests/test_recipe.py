"""The one recipe: ``configs/recipe.json`` says the shipped model's whole training, and the runner trains it phase by
phase, each a warm restart on the one before, skipping finished phases and resuming a stopped one."""

from __future__ import annotations

import dataclasses
import json

import pytest

from stellar_tasks import recipe as recipe_module
from stellar_tasks.model_folder import FACTS_FILE
from stellar_tasks.recipe import RECIPE_FILE, final_folder, load_recipe, main
from stellar_tasks.training import TrainingConfig
from tests.conftest import REPO_ROOT
from tests.test_train import TINY_TRAINING

SHIPPED = REPO_ROOT / "pretrained" / "stellar-foundation-apogee-xp"
RECIPE = REPO_ROOT / "configs" / "recipe.json"
ARCHITECTURE = (
    "d_model",
    "encoder_ffn_dims",
    "decoder_ffn_dims",
    "head_hidden_dims",
    "encoder_attention_heads",
)


def _shipped_phases() -> list[dict]:
    """The shipped model's training settings, first phase first, from its facts (each phase keeps its parent's)."""
    facts, chain = json.loads((SHIPPED / FACTS_FILE).read_text()), []
    while facts is not None:
        chain.append(facts["training"])
        facts = facts.get("initialised_from")
    return chain[::-1]


def test_the_recipe_is_the_shipped_models_training():
    phases, shipped = load_recipe(RECIPE), _shipped_phases()
    assert len(phases) == len(shipped) == 6
    vocab_size = json.loads((SHIPPED / "config.json").read_text())["vocab_size"]
    for phase, settings in zip(phases, shipped, strict=True):
        recorded = TrainingConfig.from_json(None, **{k: v for k, v in settings.items() if k != "init_from"})
        ours, theirs = phase.config.model_config(vocab_size), recorded.model_config(vocab_size)
        assert all(getattr(ours, key) == getattr(theirs, key) for key in ARCHITECTURE), phase.name
        model_keys = {"model_preset", "model_overrides", "init_from"}
        mine = {k: v for k, v in dataclasses.asdict(phase.config).items() if k not in model_keys}
        recorded_settings = {k: v for k, v in dataclasses.asdict(recorded).items() if k not in model_keys}
        assert mine == recorded_settings, phase.name
    assert phases[-1].stop_at_step == json.loads((SHIPPED / FACTS_FILE).read_text())["steps"] == 3000


def test_a_recipe_without_phases_or_with_an_unknown_setting_is_refused_naming_it(tmp_path):
    empty = tmp_path / "empty.json"
    empty.write_text(json.dumps({"base": {}, "phases": []}))
    with pytest.raises(ValueError, match="needs 'base' and 'phases'"):
        load_recipe(empty)
    unknown = tmp_path / "unknown.json"
    unknown.write_text(
        json.dumps({"base": {}, "phases": [{"name": "one", "changes": {"learning_rat": 0.1}}]})
    )
    with pytest.raises(ValueError, match="phase 'one'.*learning_rat"):
        load_recipe(unknown)
    chained = tmp_path / "chained.json"
    chained.write_text(json.dumps({"base": {}, "phases": [{"name": "one", "changes": {"init_from": "x"}}]}))
    with pytest.raises(ValueError, match="init_from is the previous phase"):
        load_recipe(chained)


TINY = {**TINY_TRAINING, "max_steps": 6, "warmup_steps": 2, "checkpoint_every": 2, "validation_every": 1000}
"""The training tests' tiny model and settings, six steps long."""


def test_the_runner_trains_each_phase_on_the_last_and_resumes_a_stopped_one(
    tiny_dataset, tmp_path, monkeypatch
):
    recipe = tmp_path / "recipe.json"
    phases = [{"name": "first"}, {"name": "second", "changes": {"learning_rate": 1e-4}, "stop_at_step": 4}]
    recipe.write_text(json.dumps({"base": TINY, "phases": phases}))
    output = tmp_path / "run"
    arguments = ["--recipe", str(recipe), "--dataset", str(tiny_dataset), "--output", str(output)]
    trained = []
    original = recipe_module.training_function

    def stop_in_the_second_phase(config, args):
        trained.append((args.output, args.resume, config.init_from))
        if len(trained) == 2:
            args.stop_at_step = 2  # a stop mid-phase: the phase has a checkpoint and no facts
        return original(config, args)

    monkeypatch.setattr(recipe_module, "training_function", stop_in_the_second_phase)
    main(arguments)
    first, second = output / "first", output / "second"
    assert (first / FACTS_FILE).is_file() and json.loads((second / FACTS_FILE).read_text())["steps"] == 2
    (second / FACTS_FILE).unlink()  # as if stopped before the end: checkpoints, no facts
    assert trained == [(str(first), False, ""), (str(second), False, str(first))]
    assert main(arguments) == second == final_folder(output)
    assert trained[2:] == [
        (str(second), True, str(first))
    ]  # the finished phase skipped, the stopped one resumed
    facts = json.loads((second / FACTS_FILE).read_text())
    assert facts["steps"] == 4 and facts["training"]["learning_rate"] == 1e-4
    assert facts["initialised_from"]["training"]["learning_rate"] == TrainingConfig().learning_rate
    assert (output / RECIPE_FILE).read_text() == recipe.read_text()
    recipe.write_text(json.dumps({"base": {**TINY, "max_steps": 8}, "phases": phases}))
    with pytest.raises(ValueError, match="holds a run of another recipe"):
        main(arguments)
