"""A training recipe: the whole training of a model in one file, run by one command.

A recipe (``configs/recipe.json`` is the shipped model's) is one base of `TrainingConfig` settings and a list of
phases, each written as the settings it changes from the phase before it. Phase 1 starts from random weights; each
later phase is a warm restart (a fresh schedule and optimiser) on the weights its predecessor saved. A phase may stop
at ``stop_at_step``, before the end of its schedule. Every phase runs into ``<output>/<phase name>``; the last one's
folder is the model.

    stellar-foundation train --recipe configs/recipe.json --dataset data/apogee-gaia-xp --output runs/shipped

The output keeps a copy of the recipe (`RECIPE_FILE`); ``stellar-foundation export <output> FOLDER`` exports the last
phase's model. Run again after a stop, the command skips the finished phases (their ``training_facts.json`` is written) and resumes
the stopped one from its newest checkpoint, so ``make train`` picks up where it was.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

from datasets_builder.atomic import atomic_write

from .model_folder import FACTS_FILE
from .training import TrainingConfig, checkpoints_in, training_function
from .training import build_parser as training_parser
from .training import train as train_one_run

__all__ = ["RECIPE_FILE", "Phase", "build_parser", "final_folder", "load_recipe", "run_recipe", "train"]

RECIPE_FILE = "recipe.json"
"""The copy of its recipe a recipe run keeps in its output folder (what it was, and how `final_folder` finds the model)."""


@dataclass(frozen=True)
class Phase:
    """One phase of a recipe: its name, the full settings it trains with, and where it stops (None: ``max_steps``)."""

    name: str
    config: TrainingConfig
    stop_at_step: int | None = None


def load_recipe(path: str | Path) -> list[Phase]:
    """The phases of the recipe at ``path``, each with its accumulated settings (base, then every change up to it)."""
    recipe = json.loads(Path(path).read_text())
    unknown = set(recipe) - {"model", "base", "phases"}
    if unknown or "base" not in recipe or not recipe.get("phases"):
        raise ValueError(
            f"{path}: a recipe needs 'base' and 'phases' (and optionally 'model'), got {sorted(recipe)}"
        )
    settings = dict(recipe["base"])
    phases = []
    for position, phase in enumerate(recipe["phases"]):
        extra = set(phase) - {"name", "why", "changes", "stop_at_step"}
        if "name" not in phase or extra:
            raise ValueError(f"{path}: phase {position + 1} needs a 'name' and may only add {sorted(extra)} as why, "
                             "changes or stop_at_step")  # fmt: skip
        if "init_from" in phase.get("changes", {}):
            raise ValueError(
                f"{path}: phase {phase['name']!r}: init_from is the previous phase, not a setting"
            )
        settings.update(phase.get("changes", {}))
        try:
            config = TrainingConfig.from_json(None, **settings)
        except (TypeError, ValueError) as error:
            raise ValueError(f"{path}: phase {phase['name']!r}: {error}") from error
        phases.append(Phase(phase["name"], config, phase.get("stop_at_step")))
    return phases


def run_recipe(path: str | Path, args: argparse.Namespace) -> Path:
    """Train every phase of the recipe at ``path`` into ``args.output``/<phase>; returns the last phase's folder."""
    root = Path(args.output)
    phases = load_recipe(path)
    root.mkdir(parents=True, exist_ok=True)
    recorded = root / RECIPE_FILE
    if recorded.is_file() and recorded.read_text() != Path(path).read_text():
        raise ValueError(
            f"{root} holds a run of another recipe (its {RECIPE_FILE} differs): use a new --output"
        )
    atomic_write(recorded, Path(path).read_text())
    previous = None
    for phase in phases:
        folder = root / phase.name
        config = (
            phase.config if previous is None else dataclasses.replace(phase.config, init_from=str(previous))
        )
        if not (folder / FACTS_FILE).is_file():
            run = argparse.Namespace(
                **{
                    **vars(args),
                    "output": str(folder),
                    "resume": bool(checkpoints_in(folder)),
                    "stop_at_step": phase.stop_at_step,
                }
            )
            training_function(config, run)
        previous = folder
    return previous


def final_folder(run: str | Path) -> Path:
    """The model folder of a recipe run (its last phase's), or ``run`` itself when it is a single training run."""
    run = Path(run)
    recorded = run / RECIPE_FILE
    return run / load_recipe(recorded)[-1].name if recorded.is_file() else run


def build_parser(parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    """``train.py``'s and ``stellar-foundation train``'s command line: one run (``--config``) or a recipe."""
    parser = training_parser(parser)
    parser.add_argument(
        "--recipe",
        default=None,
        help="a recipe JSON (configs/recipe.json: the shipped model's): every phase into --output/<phase>",
    )
    parser.set_defaults(handler=train)
    return parser


def train(args: argparse.Namespace) -> Path:
    """Run a recipe (``--recipe``; a stopped phase always resumes) or one training run; returns the model's folder."""
    if args.recipe is None:
        return train_one_run(args)
    clashing = [flag for flag in ("config", "init_from", "stop_at_step", "max_steps") if getattr(args, flag)]
    if clashing:
        raise ValueError(f"--recipe sets every phase's settings: drop --{clashing[0].replace('_', '-')}")
    return run_recipe(args.recipe, args)


def main(argv: list[str] | None = None) -> Path:
    """``python train.py ...``: parse the command line and train."""
    return train(build_parser().parse_args(argv))
