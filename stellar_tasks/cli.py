"""``stellar-foundation``: predict stellar parameters for catalogues, push a model to the Hub.

Predict Teff, log g and [Fe/H] (or ``--requests``) with their sigma for every star of Gaia archive XP exports
or star tables, streamed in chunks; the output (Parquet, FITS or ECSV by its suffix) has the identifier
columns, ``<name>`` and ``<name>_std`` with units, and ``reason`` for rows that could not be predicted:

    stellar-foundation predict XP_CONTINUOUS_RAW.csv --gaia-source gaia_source.csv \\
        --model pretrained/stellar-foundation-apogee-xp --output predictions.parquet
    stellar-foundation predict data/apogee-gaia-xp/data/test-*.parquet --model user/model --output test.fits

Under ``accelerate launch`` every process takes every n-th input file (or, with fewer files than processes,
every n-th chunk of each) and the main process writes all rows in input order (NB: ``--cpu --num_processes 2`` silently starts one process; use ``--multi_gpu`` with
``ACCELERATE_USE_CPU=1`` for several CPU processes):

    ACCELERATE_USE_CPU=1 accelerate launch --multi_gpu --num_processes 2 -m stellar_tasks.cli predict ...
    accelerate launch --num_processes 8 -m stellar_tasks.cli predict ...   # 8 GPUs

Push a model folder (and its dataset) to the Hub:

    stellar-foundation push pretrained/stellar-foundation-apogee-xp --repo user/stellar-foundation-apogee-xp \\
        --dataset data/apogee-gaia-xp --dataset-repo user/apogee-gaia-xp
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path

import numpy as np

from stellar_tasks.catalogue import (
    ID_COLUMNS,
    REASON_COLUMN,
    iter_file_chunks,
    predict_table,
    write_table,
)

DEFAULT_CHUNK_SIZE = 8192
"""Rows read, predicted and handed out per chunk: the unit of work of one process."""


def predict(args: argparse.Namespace) -> Path | None:
    """Run ``predict``; returns the output path on the main process, None on the others."""
    from accelerate import Accelerator
    from accelerate.utils import gather_object
    from astropy.table import vstack
    from tqdm.auto import tqdm
    from transformers import pipeline

    from datasets_builder.archive import read_gaia_source

    state = Accelerator()  # reads accelerate launch's settings (ACCELERATE_USE_CPU included)
    output = Path(args.output)
    if output.exists() and not args.overwrite:
        raise SystemExit(f"{output} exists: pass --overwrite to replace it")
    predictor = pipeline(model=args.model, trust_remote_code=True, device=state.device)
    requests = args.requests or predictor.default_requests()
    names = predictor.feature_extractor.observation_names
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
            for chunk_index, chunk in enumerate(iter_file_chunks(path, names, args.chunk_size, side)):
                if not by_file and chunk_index % world != rank:
                    continue
                parts.append(
                    ((file_index, chunk_index), predict_chunk(predictor, chunk, requests, args.batch_size))
                )
                progress.update(len(chunk))
    if state.num_processes > 1:
        print(f"process {state.process_index}/{state.num_processes}: {len(parts)} chunks", file=sys.stderr)
    parts = gather_object(parts)
    if not state.is_main_process:
        return None
    if not parts:
        raise SystemExit("no rows in the input files")
    parts.sort(key=lambda part: part[0])
    table = vstack([part for _, part in parts])
    write_table(table, output, overwrite=args.overwrite)
    reasons = Counter(str(r) for r in table[REASON_COLUMN] if r)
    predicted_rows = len(table) - sum(reasons.values())
    print(f"{output}: {len(table)} rows, {predicted_rows} predicted", file=sys.stderr)
    for reason, count in reasons.most_common():
        print(f"  {count} not predicted: {reason}", file=sys.stderr)
    return output


def predict_chunk(predictor, chunk, requests: list[str], batch_size: int):
    """The output rows of one input chunk: its identifier columns, then `predict_table`'s columns; a reason the
    reader already gave (e.g. no G) wins over the model's "nothing to read"."""
    from astropy.table import QTable

    predicted = predict_table(predictor, chunk, requests, batch_size)
    known = np.asarray(chunk[REASON_COLUMN]) != ""
    predicted[REASON_COLUMN] = np.where(known, chunk[REASON_COLUMN], predicted[REASON_COLUMN])
    part = QTable()
    for name in [name for name in ID_COLUMNS if name in chunk.colnames]:
        part[name] = chunk[name]
    for name in predicted.colnames:
        part[name] = predicted[name]
    return part


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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="stellar-foundation", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser("predict", help="predict stellar parameters for catalogues")
    run.add_argument(
        "inputs", nargs="+", help="Gaia archive XP exports and/or Parquet, FITS, ECSV star tables"
    )
    run.add_argument("--model", required=True, help="model folder or Hub id (loaded with trust_remote_code)")
    run.add_argument("--output", required=True, help="output table: .parquet, .fits or .ecsv")
    run.add_argument("--requests", nargs="+", default=None, help="names to predict (default: teff logg fe_h)")
    run.add_argument(
        "--gaia-source", default=None, help="gaia_source export giving G (and BP, RP) by source_id"
    )
    run.add_argument("--batch-size", type=int, default=1024, help="stars per model pass")
    run.add_argument("--chunk-size", type=int, default=DEFAULT_CHUNK_SIZE, help="rows per unit of work")
    run.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    run.set_defaults(handler=predict)

    upload = commands.add_parser("push", help="push a model folder (and its dataset) to the Hub")
    upload.add_argument("folder", help="model folder (config, weights, tokenizer, code, README.md)")
    upload.add_argument("--repo", required=True, help="model repository id, namespace/name")
    upload.add_argument("--dataset", default=None, help="built dataset folder to publish first")
    upload.add_argument("--dataset-repo", default=None, help="its dataset repository id")
    upload.add_argument("--private", action="store_true", help="create private repositories")
    upload.set_defaults(handler=push)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    args.handler(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
