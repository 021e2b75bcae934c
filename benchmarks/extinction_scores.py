"""The extinction curve's deviation from the published laws, for saved models side by side, with both statistics.

`stellar_tasks.extinction` takes the median over stars of each star's colour-excess curve; until 2026-12-06 it took
the colour-excess curve of the median slope d(-ln F)/dA_K, which mixes the scales of giants and dwarfs wavelength by
wavelength. This table shows both (and giants and dwarfs alone) for the same stars, so a release's number can be read
beside the older reports', and ``--data-reference`` adds the curve that the train split's own labels give
(`data_scores`). ``--split validation`` is the training hold-out (what choices are made on; all of its ~1,600
stars with the three labels by default), ``--split test`` the test split (final reports only).

    python benchmarks/extinction_scores.py --dataset data/apogee-gaia-xp --split validation \
        stage4=pretrained/candidate-d96-stage4 shipped=pretrained/stellar-foundation-apogee-xp

Writes benchmarks/results/extinction_scores_<split>.csv (one row per score, one column per model).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from datasets_builder.xp import XP_NAMES, sampled_flux
from modeling_stellar import StarTokenizer, StellarForObservationPrediction
from results_table import RESULTS_DIR, write_results
from stellar_tasks.data import Split, load_split, load_training_arrays, split_holdout
from stellar_tasks.extinction import (
    EXTINCTION_NAME,
    LAWS,
    POPULATIONS,
    colour_excess_curve,
    extinction_curve,
    extinction_summary,
    in_population,
    law_score,
)
from stellar_tasks.inputs import LABELS
from stellar_tasks.recipe import load_recipe

REPO_ROOT = Path(__file__).resolve().parents[1]


def stars_of(split: str, dataset: str, tokenizer: StarTokenizer) -> Split:
    """The stars scored: the test split, or the hold-out of the shipped recipe's seed and fraction."""
    if split == "test":
        return load_split(dataset, "test", tokenizer)
    values, errors, source_ids = load_training_arrays(dataset, tokenizer)
    config = load_recipe(REPO_ROOT / "configs" / "recipe.json")[0].config
    return split_holdout(values, errors, source_ids, config.seed, config.validation_fraction)[2]


def scores(folder: Path, stars: Split, n_stars: int) -> dict[str, float]:
    """Deviation from each law of the per-star median curve (all, giants, dwarfs) and of the normalised median slope."""
    tokenizer = StarTokenizer.from_pretrained(str(folder))
    model = StellarForObservationPrediction.from_pretrained(str(folder)).eval()
    curve = extinction_curve(model, tokenizer, stars, n_stars=n_stars)
    summary = extinction_summary(curve)
    median_slope = colour_excess_curve(curve.per_unit_ak)
    row: dict[str, float] = {"stars": curve.n_stars, "stars not reddening": summary["n_not_reddening"]}
    for law, result in summary["laws"].items():
        row[f"{law}: median of per-star curves"] = result["mean_abs_deviation"]
        for kind, population in result["populations"].items():
            row[f"{law}: {kind} only"] = population["mean_abs_deviation"]
        row[f"{law}: normalised median slope (before 2026-12-06)"] = law_score(median_slope, law)["mean_abs"]
    return row


def data_scores(dataset: str, tokenizer: StarTokenizer) -> dict[str, float]:
    """The curve the train split's own labels give, as a reference for the models' (no model involved).

    Per wavelength, a least-squares fit of -ln F (the stars' measured XP flux per unit G-band flux) on a cubic in
    Teff, log g and [Fe/H] plus a linear term in A_K; the A_K coefficient is the extinction per unit A_K, scored
    as the models' curves are, for all stars and for each of `POPULATIONS` fitted alone."""
    values, errors, source_ids = load_training_arrays(dataset, tokenizer)
    train = Split("train", values, errors, source_ids, np.full(len(values), np.nan))
    labels, _ = train.physical(tokenizer, [*LABELS, EXTINCTION_NAME])
    flux = sampled_flux(train.physical(tokenizer, list(XP_NAMES))[0])
    usable = np.isfinite(labels).all(axis=1) & np.isfinite(flux).all(axis=1) & (flux > 0).all(axis=1)
    teff, logg, fe_h = (labels[:, 0] - 5000.0) / 1000.0, labels[:, 1] - 3.0, labels[:, 2]
    terms = [
        teff**i * logg**j * fe_h**k for i in range(4) for j in range(4) for k in range(4) if i + j + k <= 3
    ]
    design = np.column_stack([*terms, labels[:, 3]])
    row: dict[str, float] = {"stars": int(usable.sum()), "stars not reddening": 0}
    kinds = {"all": usable} | {kind: usable & in_population(labels[:, 1], kind) for kind in POPULATIONS}
    curves = {}
    for kind, stars in kinds.items():
        coefficients, *_ = np.linalg.lstsq(design[stars], -np.log(flux[stars]), rcond=None)
        curves[kind] = colour_excess_curve(coefficients[-1])
    for law in LAWS:
        row[f"{law}: median of per-star curves"] = law_score(curves["all"], law)["mean_abs"]
        for kind in POPULATIONS:
            row[f"{law}: {kind} only"] = law_score(curves[kind], law)["mean_abs"]
        row[f"{law}: normalised median slope (before 2026-12-06)"] = row[f"{law}: median of per-star curves"]
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("models", nargs="+", help="NAME=FOLDER of a saved model, in column order")
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--split", choices=("validation", "test"), default="validation")
    parser.add_argument("--stars", type=int, default=5000, help="at most this many stars (seeded draw)")
    parser.add_argument(
        "--data-reference",
        action="store_true",
        help="add the curve the train split's labels give (`data_scores`)",
    )
    parser.add_argument(
        "--output", help="CSV path (default benchmarks/results/extinction_scores_<split>.csv)"
    )
    args = parser.parse_args()
    torch.set_grad_enabled(False)
    first_folder = Path(args.models[0].partition("=")[2])
    stars = stars_of(args.split, args.dataset, StarTokenizer.from_pretrained(str(first_folder)))
    columns = {}
    for entry in args.models:
        name, _, folder = entry.partition("=")
        columns[name] = scores(Path(folder), stars, args.stars)
        print(name, {key: round(value, 4) for key, value in columns[name].items()}, flush=True)
    if args.data_reference:
        columns["train-split labels"] = data_scores(
            args.dataset, StarTokenizer.from_pretrained(str(first_folder))
        )
        print("train-split labels", columns["train-split labels"], flush=True)
    rows = [
        {"score": key, **{name: row[key] for name, row in columns.items()}}
        for key in next(iter(columns.values()))
    ]
    output = args.output or RESULTS_DIR / f"extinction_scores_{args.split}.csv"
    write_results(Path(output), rows)


if __name__ == "__main__":
    main()
