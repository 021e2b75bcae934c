"""Validation hold-out scores of saved model folders side by side: what a recipe is chosen on (never the test split).

The scores are training's own (`stellar_tasks.training.validate`): headline Teff / log g / [Fe/H] scatter, flux
chi-square of parameters + colours -> spectra, coefficient chi-square of BP -> RP and RP -> BP inpainting, the
giant-branch and main-sequence loci against the hold-out's running median Teff, and the extinction curve's deviation
from Fitzpatrick (1999). Lower is better for all. The hold-out is the seeded draw of the training settings given
(each model's own, from its facts: `stellar_tasks.model_folder.holdout_settings`).

    python benchmarks/holdout_scores.py --dataset data/apogee-gaia-xp \
        first=runs/stellar-foundation-apogee-xp/stage1 shipped=pretrained/stellar-foundation-apogee-xp

Writes benchmarks/results/holdout_scores.csv (one row per score, one column per model).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from accelerate import Accelerator
from torch.utils.data import DataLoader

from modeling_stellar import StarTokenizer, StellarForObservationPrediction
from results_table import RESULTS_DIR, write_results
from stellar_tasks.data import load_training_arrays, split_holdout
from stellar_tasks.model_folder import holdout_settings
from stellar_tasks.training import validate

REPO_ROOT = Path(__file__).resolve().parents[1]


def holdout_scores(folder: Path, dataset: str) -> dict[str, float]:
    """`validate`'s scores of the model saved in ``folder`` on its own training hold-out of ``dataset``'s train split
    (the seed and fraction of its facts)."""
    tokenizer = StarTokenizer.from_pretrained(str(folder))
    model = StellarForObservationPrediction.from_pretrained(str(folder))
    values, errors, source_ids = load_training_arrays(dataset, tokenizer)
    _, valid_index, holdout = split_holdout(values, errors, source_ids, *holdout_settings(folder))
    loader = DataLoader(torch.from_numpy(valid_index), batch_size=1024)
    return validate(Accelerator(cpu=True), model, tokenizer, values, errors, loader, holdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("models", nargs="+", help="NAME=FOLDER of a saved model, in column order")
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--output", default=str(RESULTS_DIR / "holdout_scores.csv"))
    args = parser.parse_args()
    columns = {}
    for entry in args.models:
        name, _, folder = entry.partition("=")
        columns[name] = holdout_scores(Path(folder), args.dataset)
        print(name, {key: round(value, 4) for key, value in columns[name].items()}, flush=True)
    score_names = next(iter(columns.values()))
    rows = [{"score": key, **{name: scores[key] for name, scores in columns.items()}} for key in score_names]
    write_results(Path(args.output), rows)


if __name__ == "__main__":
    main()
