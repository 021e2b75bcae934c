"""Calibrate a trained model's uncertainties on its validation hold-out (never on the test split).

The Gaussian NLL fits each sigma to the mean squared residual, which heavy tails (hot dwarfs, blends) inflate,
so the bulk of the stars gets sigmas that are too wide: the first shipped model's Teff had a robust std of
z = (truth - mean) / sqrt(sigma**2 + error**2) of 0.83 on the test split. One factor per requested name, chosen so
that this robust std is 1 on the hold-out for the headline inputs, is stored in the tokenizer (each vocabulary
entry's ``sigma_scale``, applied by ``StarTokenizer.decode``), so every user of the saved folder gets it.

    python -m stellar_tasks.calibration --model runs/stellar-foundation-apogee-xp --dataset data/apogee-gaia-xp

The hold-out is the training run's own (``validation_mask`` with the seed and fraction of the run's
``training_facts.json``).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from astropy.stats import mad_std

from datasets_builder.atomic import atomic_write
from modeling_stellar import StarTokenizer, StellarForObservationPrediction

from .data import load_split, validation_mask
from .inference import mask_to_inputs, predict_arrays
from .inputs import HEADLINE_INPUTS
from .model_folder import TOKENIZER_FILE, holdout_settings, load_model

__all__ = ["CALIBRATED_NAMES", "calibrate_folder", "fit_sigma_scales"]

CALIBRATED_NAMES = ("teff", "logg", "fe_h", "alpha_m")
"""The stellar labels whose sigmas are calibrated (the names users ask for)."""

MIN_STARS = 30
"""Fewest hold-out stars knowing a name for its factor to be fitted (fewer: the name keeps its factor)."""

SCALE_RANGE = (0.05, 20.0)
"""Search interval of a factor; a value at either end means the hold-out cannot calibrate that name."""


def _solve_scale(residual: np.ndarray, sigma: np.ndarray, error: np.ndarray) -> float:
    """The factor f with mad_std(residual / sqrt((f sigma)**2 + error**2)) = 1, by bisection in log f (the
    robust std falls as f grows). Inputs are (n,) arrays in one physical unit."""
    low, high = np.log(SCALE_RANGE[0]), np.log(SCALE_RANGE[1])
    for _ in range(60):
        middle = 0.5 * (low + high)
        z = residual / np.sqrt((np.exp(middle) * sigma) ** 2 + error**2)
        low, high = (middle, high) if mad_std(z) > 1.0 else (low, middle)
    return float(np.exp(0.5 * (low + high)))


def fit_sigma_scales(
    model: StellarForObservationPrediction,
    tokenizer: StarTokenizer,
    values: np.ndarray,
    errors: np.ndarray,
    inputs: Sequence[str],
    names: Sequence[str] = CALIBRATED_NAMES,
) -> dict[str, float]:
    """Per name, the sigma factor that makes the robust std of z equal to 1 on these stars.

    Args:
        model, tokenizer: the trained model and its tokenizer (a factor it already holds is refined, not
            stacked: the result is relative to the model's own sigma).
        values, errors: (n_stars, vocab_size) standardised arrays of the hold-out stars (NaN = not observed).
        inputs: the observation names the model reads (the others are hidden).
        names: the requested names to calibrate; a name fewer than `MIN_STARS` stars know is left out.

    Returns:
        ``{name: factor}``: the ``sigma_scale`` to give the tokenizer (`StarTokenizer.set_sigma_scales`).
    """
    shown = mask_to_inputs(tokenizer, values, inputs)
    mean, sigma, _ = predict_arrays(model, tokenizer, shown, errors, names)
    ids = np.array(tokenizer.convert_names_to_ids(names))
    truth, _ = tokenizer.decode(np.broadcast_to(ids, mean.shape), values[:, ids])
    error = np.nan_to_num(errors[:, ids]) * tokenizer.scales_of(names)
    current = tokenizer.sigma_scales_of(names)
    scales = {}
    for j, name in enumerate(names):
        known = np.isfinite(truth[:, j]) & np.isfinite(mean[:, j])
        if known.sum() < MIN_STARS:
            continue
        factor = _solve_scale(truth[known, j] - mean[known, j], sigma[known, j], error[known, j])
        scales[name] = float(current[j] * factor)
    return scales


def calibrate_folder(model_dir: str | Path, dataset: str | Path, inputs: Sequence[str] | None = None) -> dict:
    """Fit the sigma factors of a saved training run's model on that run's hold-out and save them into its
    tokenizer configuration; returns ``{name: factor}``."""
    model_dir = Path(model_dir)
    model, tokenizer = load_model(model_dir)
    train = load_split(dataset, "train", tokenizer)
    holdout = validation_mask(len(train), *holdout_settings(model_dir))
    headline = HEADLINE_INPUTS if inputs is None else inputs
    scales = fit_sigma_scales(model, tokenizer, train.values[holdout], train.errors[holdout], headline)
    tokenizer.set_sigma_scales(scales)
    atomic_write(model_dir / TOKENIZER_FILE, tokenizer.to_json_string())  # what save_pretrained writes
    return scales


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="a training run's saved model folder")
    parser.add_argument("--dataset", required=True, help="the dataset it was trained on")
    args = parser.parse_args(argv)
    scales = calibrate_folder(args.model, args.dataset)
    print(json.dumps(scales, indent=1))
    return scales


if __name__ == "__main__":
    main()
