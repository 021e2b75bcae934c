"""One model, every task of the paper, measured: the evaluation report.

``make demo`` runs

    python -m stellar_tasks.report --model pretrained/stellar-foundation-apogee-xp --dataset data/apogee-gaia-xp \
        --output reports

which loads the model with ``AutoModel`` / ``AutoFeatureExtractor`` (``trust_remote_code=True``), evaluates it on the
test split next to XGBoost trained on the train split in the same run, and writes ``reports/report.md`` (tables),
``reports/results.json`` (every number) and PNG figures. ``--full`` trains the baselines with the anchor's 4000 trees
instead of the quick budget; ``--write-card`` also renders the model card into ``<model>/README.md``.
``--max-stars N`` runs every step on the first N stars of each split only, the baselines on `SUBSET_BUDGET` (minutes
become seconds): the check that the whole job still runs end to end (``tests/test_demo.py``), not a report to compare.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch

from datasets_builder.atomic import atomic_write

from .baselines import BUDGETS, BaselineBudget, XGBoostSettings
from .card import fmt, write_model_card
from .data import load_split, split_overlap
from .embeddings import neighbour_summary
from .evaluation import INPUT_SETTINGS, assess_goals, parameter_rows, population_rows, predict_labels
from .extinction import POPULATIONS, extinction_curve, extinction_summary
from .generation import SPECTRUM_TASKS, predict_spectra, spectrum_summary
from .inputs import REPORT_LABELS
from .loci import loci_summary, stellar_loci
from .model_folder import load_model
from .plots import (
    plot_calibration,
    plot_coefficient_scatter,
    plot_extinction,
    plot_kiel,
    plot_parameters,
    plot_spectra,
)

__all__ = ["add_evaluate_arguments", "evaluate", "main", "render_markdown", "run_report"]

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_TEST_IDS = REPO_ROOT.parent / "shared" / "data" / "test_split_gaia_dr3_source_ids.txt"
"""The project's test split (``DESIGN.md``); checked against the dataset's test split when the file exists."""

REPORT_FILE, RESULTS_FILE = "report.md", "results.json"

SUBSET_BUDGET = BaselineBudget(
    "subset",
    XGBoostSettings(n_estimators=50, learning_rate=0.3),
    XGBoostSettings(n_estimators=4, learning_rate=0.5, max_depth=3, multi_strategy="multi_output_tree"),
    "labels: 50 trees per label, learning rate 0.3; XP coefficients: 4 vector-leaf trees of depth 3 over every "
    "output, learning rate 0.5 (a --max-stars run's: a smoke test of the baseline, not a baseline to compare)",
)
"""The baselines of a ``--max-stars`` run (unless ``--full``). XGBoost's time goes with its boosting rounds and tree
size far more than with its training stars: on 400 stars the quick budget's 1000 rounds per label take ~3 CPU minutes
over the five input settings, and one vector-leaf round over the 90 outputs of BP/RP 0-9 -> 10-54 about a second even
at depth 3. So a subset run boosts 20x fewer rounds per label and a few shallow rounds per spectrum task."""


class Progress:
    """Numbered, timed steps printed to stderr, so a 10-minute run shows where it is."""

    def __init__(self, total: int) -> None:
        self.total, self.done, self.started = total, 0, time.monotonic()
        self.seconds: dict[str, float] = {}
        self.cpu_seconds: dict[str, float] = {}

    @contextmanager
    def step(self, name: str) -> Iterator[None]:
        self.done += 1
        print(f"[{self.done}/{self.total}] {name} ...", file=sys.stderr, flush=True)
        started, cpu = time.monotonic(), time.process_time()
        yield
        self.seconds[name] = time.monotonic() - started
        self.cpu_seconds[name] = time.process_time() - cpu
        elapsed = time.monotonic() - self.started
        print(
            f"[{self.done}/{self.total}] {name}: {self.seconds[name]:.1f} s, CPU {self.cpu_seconds[name]:.1f} s "
            f"(total {elapsed:.0f} s)",
            file=sys.stderr,
            flush=True,
        )


def _json_ready(value):
    """Non-finite floats become None (strict JSON); numpy scalars become Python numbers."""
    if isinstance(value, dict):
        return {str(k): _json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_ready(v) for v in value]
    if isinstance(value, (np.floating, float)):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.bool_):
        return bool(value)
    return value


def run_report(
    model_dir: str | Path,
    dataset: str | Path,
    output: str | Path,
    budget: BaselineBudget = BUDGETS["quick"],
    max_spectrum_stars: int | None = None,
    extinction_stars: int = 1000,
    neighbour_queries: int = 1000,
    test_ids_file: str | Path | None = None,
    max_stars: int | None = None,
) -> dict:
    """Run every task and write the report folder; returns the results (what ``results.json`` holds).

    Parameters
    ----------
    model_dir : path
        A saved model folder (``save_pretrained``: config with ``auto_map``, weights, tokenizer, remote code).
    dataset : path or str
        Dataset folder or Hub id with ``train`` and ``test`` splits.
    output : path
        Report folder (created).
    budget : BaselineBudget
        XGBoost budget (`stellar_tasks.baselines.BUDGETS`).
    max_spectrum_stars : int, optional
        At most this many test stars per generation / inpainting task (seeded draw); default all.
    extinction_stars, neighbour_queries : int
        Test stars for the extinction curve and for the embedding neighbours.
    test_ids_file : path, optional
        The project's list of test source ids, to check the dataset's test split against.
    max_stars : int, optional
        Only the first ``max_stars`` stars of each split: test stars evaluated, train stars the baselines learn from
        and the neighbours are drawn from (the split checks still read the whole splits). Every step runs, in seconds
        instead of minutes, so it checks the job end to end; its numbers do not compare with a whole run's.
    """
    if max_stars is not None and max_stars < 1:
        raise ValueError(f"max_stars must be at least 1, got {max_stars}")
    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    progress = Progress(total=4 + len(INPUT_SETTINGS) + len(SPECTRUM_TASKS) + 4)
    results: dict = {}
    with progress.step("load model and dataset"):
        model, tokenizer = load_model(model_dir)
        train = load_split(dataset, "train", tokenizer)
        test = load_split(dataset, "test", tokenizer)
        split = split_overlap(train, test, test_ids_file)
        if max_stars is not None:
            train, test = (part.subset(np.arange(min(max_stars, len(part)))) for part in (train, test))
    figures: dict[str, str] = {}
    parameters, label_predictions = [], {}
    for setting in INPUT_SETTINGS:
        with progress.step(f"stellar parameters, setting ({setting.key})"):
            predictions = predict_labels(model, tokenizer, train, test, setting, budget.labels, REPORT_LABELS)
            label_predictions[setting.key] = predictions
            parameters += parameter_rows(predictions, tokenizer)
    results["parameters"] = parameters
    results["goals"] = assess_goals(parameters)
    headline = label_predictions["a"]
    with progress.step("populations and parameter figures"):
        results["populations"] = population_rows(headline, tokenizer)
        headline_rows = [r for r in parameters if r["setting"] == "a"]
        figures["parameters"] = plot_parameters(headline, headline_rows, output / "parameters_a.png").name
        figures["calibration"] = plot_calibration(headline, headline_rows, output / "calibration_a.png").name
    spectra, summaries = [], []
    for task in SPECTRUM_TASKS:
        with progress.step(f"spectra: {task.key}"):
            predictions = predict_spectra(
                model, tokenizer, train, test, task, budget.coefficients, max_spectrum_stars
            )
            spectra.append(predictions)
            summaries.append(spectrum_summary(predictions))
    results["spectra"] = summaries
    with progress.step("spectrum figures"):
        figures["spectra"] = plot_spectra(spectra, output / "spectra.png").name
        figures["coefficients"] = plot_coefficient_scatter(summaries, output / "coefficient_scatter.png").name
    del spectra
    with progress.step("stellar loci"):
        loci = stellar_loci(model, tokenizer, test)
        results["loci"] = loci_summary(loci)
        figures["kiel"] = plot_kiel(loci, output / "kiel_loci.png").name
    with progress.step("extinction curve"):
        curve = extinction_curve(model, tokenizer, test, n_stars=extinction_stars)
        results["extinction"] = extinction_summary(curve)
        results["extinction"]["colour_excess"] = curve.colour_excess().tolist()
        figures["extinction"] = plot_extinction(
            curve, results["extinction"], output / "extinction_curve.png"
        ).name
    with progress.step("embedding neighbours"):
        results["embeddings"] = neighbour_summary(model, tokenizer, train, test, n_query=neighbour_queries)
    results["meta"] = {
        "model": str(model_dir),
        "dataset": str(dataset),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "baseline": {"mode": budget.name, "description": budget.description, **asdict(budget)},
        "split": split,
        "max_stars": max_stars,
        "hardware": describe_machine(),
        "timings_s": progress.seconds,
        "cpu_s": progress.cpu_seconds,
        "total_s": time.monotonic() - progress.started,
        "total_cpu_s": time.process_time(),
        "figures": figures,
        "model_parameters": int(model.num_parameters()),
    }
    results = _json_ready(results)
    atomic_write(output / RESULTS_FILE, json.dumps(results, indent=1))
    atomic_write(output / REPORT_FILE, render_markdown(results))
    return results


def describe_machine() -> str:
    """CPU cores and torch threads, or the GPU, that the report ran on."""
    if torch.cuda.is_available():
        return f"GPU {torch.cuda.get_device_name(0)}"
    return f"CPU, {os.cpu_count()} cores, {torch.get_num_threads()} torch threads"


# ------------------------------------------------------------------------------------------------ Markdown
def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def parameter_table(rows: list[dict], key: str = "setting") -> str:
    """Model beside XGBoost, one line per (setting or population, label)."""
    paired: dict[tuple, dict] = {}
    for row in rows:
        paired.setdefault((row[key], row["label"]), {})[row["method"]] = row
    lines = []
    for (group, label), pair in paired.items():
        model, xgboost = pair["model"], pair["xgboost"]
        ratio = model["scatter"] / xgboost["scatter"] if model["scatter"] and xgboost["scatter"] else None
        lines.append(
            [
                f"({group})" if key == "setting" else group,
                f"{label} [{model['unit']}]",
                str(model["n"]),
                fmt(model["scatter"]),
                fmt(model["bias"], 2),
                fmt(xgboost["scatter"]),
                fmt(xgboost["bias"], 2),
                fmt(ratio, 3),
                fmt(model.get("z_std"), 3),
                fmt(model.get("coverage_68"), 3),
                fmt(model.get("coverage_95"), 3),
            ]
        )
    header = [key, "label", "n", "model scatter", "model bias", "XGBoost scatter", "XGBoost bias", "ratio"]
    return _table(header + ["z std", "68 % cov.", "95 % cov."], lines)


def render_markdown(results: dict) -> str:
    """The report's Markdown from ``results.json``."""
    meta = results["meta"]
    settings = "\n".join(f"- ({s.key}) {s.description}" for s in INPUT_SETTINGS)
    goals = _table(
        ["label", "goal", "value", "met", "margin"],
        [
            [g["label"], g["goal"], fmt(g["value"]), "met" if g["met"] else "NOT met", fmt(g["margin"], 2)]
            for g in results["goals"]
        ],
    )
    spectra = _table(
        [
            "task",
            "stars",
            "pixels [nm]",
            "median coef. scatter model / XGBoost (signal-dominated)",
            "outputs better",
            "flux chi2 model",
            "flux chi2 XGBoost",
            "flux frac. scatter model",
            "flux frac. scatter XGBoost",
            "beats XGBoost",
        ],
        [
            [
                s["description"],
                str(s["n_stars"]),
                f"{s['flux_range_nm'][0]:g}-{s['flux_range_nm'][1]:g}",
                f"{fmt(s['median_scatter_ratio'])} ({fmt(s['median_scatter_ratio_signal'])}, "
                f"{s['n_signal_outputs']} outputs)",
                fmt(s["fraction_outputs_better"], 2),
                fmt(s["model"]["flux"]["chi2_reduced"]),
                fmt(s["xgboost"]["flux"]["chi2_reduced"]),
                fmt(s["model"]["flux_fraction_scatter"]),
                fmt(s["xgboost"]["flux_fraction_scatter"]),
                "yes" if s["beats_xgboost"] else "no",
            ]
            for s in results["spectra"]
        ],
    )
    branches = results["loci"]["branches"]
    loci = _table(
        [
            "branch",
            "log g range",
            "median abs dTeff [K]",
            "bias data - model [K]",
            "grid points",
            "per [Fe/H]",
        ],
        [
            [
                name,
                f"{b['logg_range'][0]}-{b['logg_range'][1]}",
                fmt(b["median_abs_delta_teff"]),
                fmt(b["bias"]),
                str(b["n_grid_points"]),
                ", ".join(f"{k}: {fmt(v['median_abs'])}" for k, v in b["per_fe_h"].items()),
            ]
            for name, b in branches.items()
        ],
    )
    extinction = results["extinction"]
    kinds = list(POPULATIONS)
    laws = _table(
        ["law", "mean abs deviation", *(f"{kind} only" for kind in kinds)],
        [
            [
                v["description"],
                fmt(v["mean_abs_deviation"]),
                *(fmt(v["populations"][kind]["mean_abs_deviation"]) for kind in kinds),
            ]
            for v in extinction["laws"].values()
        ],
    )
    embeddings = results["embeddings"]
    neighbours = _table(
        ["label", "neighbour scatter", "random scatter", "ratio"],
        [
            [
                label,
                fmt(embeddings[label]["neighbours"]["scatter"]),
                fmt(embeddings[label]["random"]["scatter"]),
                fmt(embeddings[label]["scatter_ratio"]),
            ]
            for label in ("teff", "logg", "fe_h")
        ],
    )
    timings = _table(
        ["step", "wall s", "CPU s"],
        [[k, f"{v:.1f}", f"{meta['cpu_s'][k]:.1f}"] for k, v in meta["timings_s"].items()],
    )
    split = ", ".join(f"{k} = {v}" for k, v in meta["split"].items())
    if meta.get("max_stars"):  # absent from the results of reports written before the option
        split += (
            f".\n**Subset run** (`--max-stars {meta['max_stars']}`): only the first {meta['max_stars']:,} stars of "
            "each split were evaluated and trained on; these numbers do not compare with a whole report's"
        )
    figures = meta["figures"]
    return f"""# stellar-foundation: one model, every task, measured

Model `{meta["model"]}` ({meta["model_parameters"]:,} parameters) on dataset `{meta["dataset"]}`, test split only;
created {meta["created"]} on {meta["hardware"]} in {meta["total_s"]:.0f} s ({meta["total_cpu_s"]:.0f} CPU s).
Split checks: {split}.

Every number is the project's `stellar_regression` metric (`stellar_tasks/metrics`): scatter = `mad_std(true - predicted)`,
bias = `median(true - predicted)`; calibration from `z = (true - mean) / sqrt(sigma^2 + err^2)` (robust std of z, and
the fraction of stars inside the central 68 % / 95 % Gaussian intervals). The baseline is XGBoost trained **in this
run** on the train split with the same inputs: **{meta["baseline"]["mode"]}** budget ({meta["baseline"]["description"]}).

## Stellar parameters by input setting

{settings}

{parameter_table(results["parameters"])}

ratio = model scatter / XGBoost scatter. Setting (e) cannot show a label to itself (a requested name is never an input
of the same star), so each label is predicted from the other two.

### Goals (setting a)

{goals}

### By population (setting a)

{parameter_table(results["populations"], key="population")}

![predicted vs true]({figures["parameters"]})

![calibration]({figures["calibration"]})

## Generation and inpainting of XP spectra

Flux: gaiaxpy sampled spectra (336-1020 nm, 2 nm) over the pixels where the requested coefficients carry at least 1 %
of the flux (inpainted spectra keep the real input coefficients); chi2 = mean over those pixels and stars of
((predicted - real) / flux error)^2, the flux errors propagated from the coefficient errors; fractional scatter =
`mad_std(predicted / real - 1)` over those pixels within 400-950 nm. Signal-dominated coefficients: XGBoost's
scatter exceeds twice their median measurement error (higher orders are noise, where both methods tie). "beats
XGBoost" = lower chi2 and a signal-dominated median scatter ratio < 1.

{spectra}

![spectra]({figures["spectra"]})

![per-coefficient scatter]({figures["coefficients"]})

## Stellar loci

Teff requested from (log g, [Fe/H]) only, against the running median Teff of the test stars within
+-0.1 dex in log g and +-0.15 dex in [Fe/H] (at least 20 stars).

{loci}

![Kiel diagram]({figures["kiel"]})

## Extinction curve

XP spectra requested for {extinction["n_stars"]} test stars (their Teff, log g, [Fe/H]) at A_K = {extinction["ak_grid"]} mag.
The coefficients are normalised by the G-band flux, so the predicted spectra carry extinction only up to a grey term;
the curve is compared as {extinction["normalisation"]}, over {extinction["range_nm"][0]:g}-{extinction["range_nm"][1]:g} nm.
The model's curve is the {extinction["statistic"]} ({extinction["n_not_reddening"]} stars whose predicted spectra do not
redden between 550 and 440 nm have none); giants (log g < {POPULATIONS["giants"][1]:g}) and dwarfs are also scored alone.

{laws}

![extinction curve]({figures["extinction"]})

## Embeddings

Nearest neighbours (cosine, k = {embeddings["k"]}) of {embeddings["n_query"]} test stars among {embeddings["n_reference"]}
train stars in the encoder's embedding of the headline inputs; scatter of (star - neighbour) labels.

{neighbours}

## Timings

{timings}
"""


def add_evaluate_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The options of ``stellar-foundation evaluate`` (also ``python -m stellar_tasks.report``)."""
    parser.add_argument("--model", required=True, help="saved model folder (or Hub id)")
    parser.add_argument("--dataset", default=None, help="dataset folder or Hub dataset id")
    parser.add_argument("--output", default="reports", help="report folder")
    parser.add_argument(
        "--full",
        action="store_true",
        help="XGBoost with the anchor's 4000 trees (slow) instead of the quick budget",
    )
    parser.add_argument("--max-spectrum-stars", type=int, default=None, help="test stars per spectrum task")
    parser.add_argument(
        "--max-stars",
        type=int,
        default=None,
        help="only the first N stars of each split (evaluated, and the baselines' training stars), XGBoost with "
        "far fewer trees unless --full: an end-to-end check in seconds, not a report to compare",
    )
    parser.add_argument("--test-ids", default=None, help="file of test source ids to check the split against")
    parser.add_argument(
        "--write-card", action="store_true", help="also write the model card to <model>/README.md"
    )
    parser.add_argument(
        "--results",
        default=None,
        help="a previous run's results.json: render from it instead of evaluating (with --write-card, the card only)",
    )
    parser.set_defaults(handler=evaluate)
    return parser


def evaluate(args: argparse.Namespace) -> dict:
    """Run ``evaluate`` for parsed arguments: the report (or a previous ``results.json``) and, when asked, the card."""
    if args.results is not None:
        results = json.loads(Path(args.results).read_text())
    elif args.dataset is None:
        raise SystemExit("evaluate: --dataset is required (or --results to render a previous report's card)")
    else:
        test_ids = args.test_ids or (DEFAULT_TEST_IDS if DEFAULT_TEST_IDS.is_file() else None)
        if args.full:
            budget = BUDGETS["full"]
        else:
            budget = BUDGETS["quick"] if args.max_stars is None else SUBSET_BUDGET
        results = run_report(
            args.model,
            args.dataset,
            args.output,
            budget,
            args.max_spectrum_stars,
            test_ids_file=test_ids,
            max_stars=args.max_stars,
        )
        print(f"report written to {Path(args.output) / REPORT_FILE}", file=sys.stderr)
    if args.write_card:
        print(f"model card written to {write_model_card(args.model, results)}", file=sys.stderr)
    return results


def main(argv: list[str] | None = None) -> dict:
    """``python -m stellar_tasks.report``: the same as ``stellar-foundation evaluate``."""
    parser = add_evaluate_arguments(argparse.ArgumentParser(description=__doc__.split("\n\n")[0]))
    return evaluate(parser.parse_args(argv))


if __name__ == "__main__":
    main()
