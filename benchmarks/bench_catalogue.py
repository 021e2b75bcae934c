"""Catalogue throughput: the whole ``stellar-foundation predict`` command against XGBoost's ``inplace_predict`` on
the same rows, in the same run; the LSDB/HATS path with 1 and 2 Dask workers; and the command's stages.

The input is the test split repeated ``--repeat`` times (10: 39,850 stars) with the 63 headline columns and their
``_err`` uncertainties (what a Gaia XP + 2MASS catalogue holds, and what the model and its distilled student read), as
a Parquet table and as a HATS catalogue of the same rows (positions from the level-12 HEALPix pixel in the source id).
Rows, all stars/s on the same CPU threads:

    * command default (float32) / bfloat16: ``stellar-foundation predict TABLE.parquet --model M --output OUT.parquet
      [--precision bfloat16]``, timed as a user would -- the whole process, from start to exit; the default is the
      weights' float32 (the pipeline's numbers), bfloat16 an opt-in copy of the model (native on AMX / AVX-512-BF16
      CPUs and bfloat16 GPUs, emulated and slower elsewhere);
    * command --distilled (with / without _err): the same with ``--distilled``, the model's distilled MLP
      (`stellar_tasks.distillation`) answering every row that observes exactly the headline inputs (here all), the
      model the others; on the table and on its 63 values alone (no uncertainties: the student, like the model, does
      not read them, so both are served alike);
    * lsdb (1 / 2 workers): ``stellar-foundation predict CATALOGUE --workers N --output OUT.parquet``, whole process;
    * xgboost: ``Booster.inplace_predict`` on the same rows' 63 features (``--xgb-trees`` rounds per target, depth
      ``--xgb-depth``, trained here on ``--xgb-train-stars`` train stars: its speed depends on the trees' number
      and depth, not on how many stars built them): the baseline of ``ratio_to_xgboost``;
    * xgboost whole process: that booster as a command (`xgboost_predict.py`: load it, read the table, predict,
      write Parquet), timed as the commands are -- the like-for-like comparison with them;
    * stage (read, tokenise, model float32 / bfloat16, distilled float32 / bfloat16, write): each stage of the
      command in this process, for the profile and the GPU projection.

Whole-command rows are the fastest of ``--command-repeats`` runs, in-process rows of ``--repeats`` (both 3: the machine
may be shared, and a whole run of the command varies by +-0.5 s here).

``ratio_to_xgboost`` compares rows of this run. Writes benchmarks/results/catalogue.csv.

    python benchmarks/bench_catalogue.py --dataset data/apogee-gaia-xp --model pretrained/stellar-foundation-apogee-xp
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from modeling_stellar import StarTokenizer, StellarForObservationPrediction
from results_table import RESULTS_DIR, write_results
from stellar_tasks.catalogue import PRECISIONS, model_precision, native_bfloat16
from stellar_tasks.distillation import load_distilled
from stellar_tasks.hats import write_hats_catalogue
from stellar_tasks.inference import predict_arrays
from stellar_tasks.inputs import HEADLINE_COLUMNS, HEADLINE_INPUTS, LABELS

RESULTS = RESULTS_DIR / "catalogue.csv"
ROOT = Path(__file__).resolve().parents[1]


def split_table(dataset: str, split: str) -> pa.Table:
    """One split of a dataset folder: every Parquet shard of it, concatenated."""
    return pa.concat_tables(
        pq.read_table(path) for path in sorted(Path(dataset).glob(f"data/{split}-*.parquet"))
    )


def whole_command(arguments: list[str]) -> float:
    """Wall seconds of ``stellar-foundation predict ARGUMENTS`` in a fresh process (imports and loading included),
    started as ``python -m stellar_tasks``: the console command's own entry point, with this repository's code."""
    return process_seconds([sys.executable, "-m", "stellar_tasks", "predict", *arguments])


def process_seconds(command: list[str]) -> float:
    """Wall seconds of ``command`` run to its exit, with this repository on the path and the Hub offline."""
    started = time.perf_counter()
    result = subprocess.run(
        command,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"},
    )
    elapsed = time.perf_counter() - started
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{result.stderr[-3000:]}")
    return elapsed


def best_seconds(run, repeats: int) -> float:
    """The fastest of ``repeats`` timed calls after one warm-up (the machine may be shared)."""
    run()
    timings = []
    for _ in range(repeats):
        started = time.perf_counter()
        run()
        timings.append(time.perf_counter() - started)
    return min(timings)


def stage_seconds(parquet: Path, model: str, batch_size: int, repeats: int) -> dict[str, float]:
    """Seconds of each stage of the command on the whole table, in this process."""
    from stellar_tasks.catalogue import write_table

    network = StellarForObservationPrediction.from_pretrained(model).eval()
    student = load_distilled(model)
    tokenizer = StarTokenizer.from_pretrained(model)
    table = pq.read_table(parquet)
    columns = {name: table.column(name).to_numpy() for name in table.column_names if name in HEADLINE_COLUMNS}
    values, errors = tokenizer.to_arrays(columns)
    shown = values.copy()

    def tokenise():
        standardised, standardised_errors = tokenizer.to_arrays(columns)
        for start in range(0, len(standardised), batch_size):
            rows = slice(start, start + batch_size)
            tokenizer.encode_arrays(standardised[rows], standardised_errors[rows], list(LABELS))

    def model_pass(precision: str):
        runner = model_precision(network, precision)  # cast once, as the command does

        def run():
            return predict_arrays(runner, tokenizer, shown, errors, list(LABELS), batch_size)

        return run

    mean, std, _ = model_pass("float32")()
    from astropy.table import QTable

    output = QTable({name: mean[:, j] for j, name in enumerate(LABELS)})
    for j, name in enumerate(LABELS):
        output[f"{name}_std"] = std[:, j]
    with tempfile.TemporaryDirectory() as folder:
        target = Path(folder) / "out.parquet"
        return {
            "read": best_seconds(lambda: pq.read_table(parquet, columns=list(HEADLINE_INPUTS)), repeats),
            "tokenise": best_seconds(tokenise, repeats),
            "model float32": best_seconds(model_pass("float32"), repeats),
            "model bfloat16": best_seconds(model_pass("bfloat16"), repeats),
            **{
                f"distilled {precision}": best_seconds(
                    lambda precision=precision: student.predict_arrays(
                        tokenizer, values, list(LABELS), PRECISIONS[precision]
                    ),
                    repeats,
                )
                for precision in ("float32", "bfloat16")
            },
            "write": best_seconds(lambda: write_table(output, target, overwrite=True), repeats),
        }


def xgboost_seconds(dataset: str, parquet: Path, folder: Path, args: argparse.Namespace) -> dict[str, float]:
    """Seconds of ``inplace_predict`` on the table's 63 headline features (booster trained here), and of
    `xgboost_predict.py` with that booster: XGBoost as a whole command (load, read, predict, write)."""
    import xgboost

    train = split_table(dataset, "train").slice(0, args.xgb_train_stars)
    labels = np.column_stack([train.column(name).to_numpy(zero_copy_only=False) for name in LABELS])
    keep = np.isfinite(labels.astype(np.float64)).all(axis=1)
    features = np.column_stack(
        [train.column(name).to_numpy(zero_copy_only=False) for name in HEADLINE_INPUTS]
    )
    booster = xgboost.train(
        {"tree_method": "hist", "max_depth": args.xgb_depth, "eta": 0.05, "multi_strategy": "one_output_per_tree",
         "nthread": torch.get_num_threads()},
        xgboost.DMatrix(features[keep].astype(np.float32), label=labels[keep].astype(np.float32)),
        num_boost_round=args.xgb_trees,
    )  # fmt: skip
    rows = pq.read_table(parquet, columns=list(HEADLINE_INPUTS))
    test = np.column_stack([rows.column(name).to_numpy(zero_copy_only=False) for name in HEADLINE_INPUTS])
    test = test.astype(np.float32)
    saved = folder / "xgboost.ubj"
    booster.save_model(saved)
    script = [sys.executable, str(ROOT / "benchmarks" / "xgboost_predict.py"), str(saved), str(parquet)]
    return {
        "xgboost": best_seconds(lambda: booster.inplace_predict(test), args.repeats),
        "xgboost whole process": min(
            process_seconds([*script, str(folder / "xgboost.parquet")]) for _ in range(args.command_repeats)
        ),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", required=True, help="dataset folder (train and test splits)")
    parser.add_argument("--model", required=True, help="model folder")
    parser.add_argument("--stars", type=int, default=None, help="first test stars taken (default: all)")
    parser.add_argument("--repeat", type=int, default=10, help="copies of those stars in the table")
    parser.add_argument("--repeats", type=int, default=3, help="timed repeats of the in-process measures")
    parser.add_argument("--command-repeats", type=int, default=3, help="timed runs of each whole command")
    parser.add_argument("--batch-size", type=int, default=1024)
    parser.add_argument(
        "--xgb-trees", type=int, default=2000, help="boosting rounds (one tree per target each)"
    )
    parser.add_argument("--xgb-depth", type=int, default=6)
    parser.add_argument("--xgb-train-stars", type=int, default=5000)
    parser.add_argument("--partition-rows", type=int, default=5000, help="rows per HATS partition")
    args = parser.parse_args()

    test = (
        split_table(args.dataset, "test")
        .select(["gaia_dr3_source_id", *HEADLINE_COLUMNS])
        .slice(0, args.stars)
    )
    table = pa.concat_tables([test] * args.repeat)
    stars = table.num_rows
    load = os.getloadavg()[0]
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        parquet, values_only = folder / "stars.parquet", folder / "stars_values_only.parquet"
        pq.write_table(table, parquet)
        pq.write_table(table.select(["gaia_dr3_source_id", *HEADLINE_INPUTS]), values_only)
        catalogue = write_hats_catalogue(
            table.to_pandas(), folder / "stars_hats", "stars", args.partition_rows
        )

        def output(name: str) -> list[str]:
            return [
                "--model",
                args.model,
                "--output",
                str(folder / name),
                "--batch-size",
                str(args.batch_size),
                "--overwrite",  # the repeats write it again
            ]

        bfloat16 = "native" if native_bfloat16(torch.device("cpu")) else "emulated"
        timed = {
            "command default (float32)": (
                [str(parquet), *output("default.parquet")],
                f"stellar-foundation predict TABLE --model {args.model} --output OUT.parquet",
            ),
            f"command bfloat16 ({bfloat16})": (
                [str(parquet), *output("bfloat16.parquet"), "--precision", "bfloat16"],
                f"stellar-foundation predict TABLE --model {args.model} --output OUT.parquet --precision bfloat16",
            ),
            "command --distilled": (
                [str(parquet), *output("distilled.parquet"), "--distilled"],
                f"stellar-foundation predict TABLE --model {args.model} --output OUT.parquet --distilled",
            ),
            "command --distilled, no _err": (
                [str(values_only), *output("distilled_values.parquet"), "--distilled"],
                f"stellar-foundation predict VALUES_ONLY_TABLE --model {args.model} --output OUT.parquet --distilled",
            ),
        }
        for workers in (1, 2):
            timed[f"lsdb {workers} worker{'s' if workers > 1 else ''}"] = (
                [str(catalogue), *output(f"lsdb{workers}.parquet"), "--workers", str(workers)],
                f"stellar-foundation predict CATALOGUE --model {args.model} --output OUT.parquet --workers {workers}",
            )
        seconds = {
            name: min(whole_command(arguments) for _ in range(args.command_repeats))
            for name, (arguments, _) in timed.items()
        }
        seconds.update(xgboost_seconds(args.dataset, parquet, folder, args))
        commands = {name: command for name, (_, command) in timed.items()}
        commands["xgboost"] = (
            f"Booster.inplace_predict, {args.xgb_trees} rounds x 3 targets, depth {args.xgb_depth}, in process"
        )
        commands["xgboost whole process"] = "python benchmarks/xgboost_predict.py BOOSTER TABLE OUT.parquet"
        for stage, elapsed in stage_seconds(parquet, args.model, args.batch_size, args.repeats).items():
            seconds[f"stage: {stage}"] = elapsed
            commands[f"stage: {stage}"] = f"in process, batch {args.batch_size}"
    xgboost_rate = stars / seconds["xgboost"]
    for name, elapsed in seconds.items():
        rows.append({
            "row": name,
            "stars": stars,
            "seconds": round(elapsed, 3),
            "stars_per_s": round(stars / elapsed, 1),
            "ratio_to_xgboost": round(stars / elapsed / xgboost_rate, 3),
            "threads": torch.get_num_threads(),
            "load_average": round(load, 2),
            "command": commands[name],
        })  # fmt: skip
        print(rows[-1])
    write_results(RESULTS, rows)


if __name__ == "__main__":
    main()
