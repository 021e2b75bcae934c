"""Demo Space of stellar-foundation: Teff, log g and [Fe/H] with sigma for a star, its place on a Kiel diagram,
and its Gaia XP spectrum beside the one the model generates from the predicted parameters.

The Hub's inference widget runs no custom code, so the model card points here. A star comes from the dataset's
test split, from observations typed one per line (``name value [error]``, physical units), or from a Gaia
archive ``xp_continuous_mean_spectrum`` export (its first source; G from the file or the box).

Settings (environment):
    STELLAR_MODEL: model folder or Hub id, loaded with ``pipeline(model=..., trust_remote_code=True)``.
    STELLAR_DATASET: dataset folder or Hub id (``train`` split for the Kiel diagram, ``test`` for the examples).
    GRADIO_SERVER_NAME, GRADIO_SERVER_PORT: where to serve (Gradio's own variables).

Spectra: the 110 XP coefficients, which the dataset stores divided by the G-band flux, are multiplied by that flux
(when G is known) and sampled with gaiaxpy's calibration design matrix (`datasets_builder.xp.sampled_flux`,
343 wavelengths, 336-1020 nm); without G the spectrum is shown in units of the G-band flux.
"""

from __future__ import annotations

import os
from functools import lru_cache

import gradio as gr
import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402 - after choosing the non-interactive backend

from datasets_builder.archive import archive_rows  # noqa: E402
from datasets_builder.constants import XP_SAMPLING_NM  # noqa: E402
from datasets_builder.gaia_archive import read_gaia_xp  # noqa: E402
from datasets_builder.xp import XP_NAMES, design_matrix, sampled_flux  # noqa: E402

MODEL = os.environ.get("STELLAR_MODEL", "stellar-foundation/stellar-foundation-apogee-xp")
DATASET = os.environ.get("STELLAR_DATASET", "stellar-foundation/apogee-gaia-xp")
PARAMETERS = {"teff": ("Teff", "{:.0f}"), "logg": ("log g", "{:.2f}"), "fe_h": ("[Fe/H]", "{:.2f}")}
"""Requested names -> (label, number format)."""
N_EXAMPLES = 50
"""Test stars offered in the menu."""
KIEL_POINTS = 20_000
"""Training stars drawn on the Kiel diagram (a fixed random subset keeps the plot light)."""
EXAMPLE_OBSERVATIONS = "bprp 1.21 0.01\njh 0.55 0.03\njk 0.68 0.03"


@lru_cache(maxsize=1)
def predictor():
    from transformers import pipeline

    return pipeline(model=MODEL, trust_remote_code=True, device="cpu")


@lru_cache(maxsize=1)
def test_stars() -> dict[str, dict[str, float]]:
    """The first `N_EXAMPLES` test stars, by Gaia DR3 source_id: every observation column with its error."""
    from datasets import load_dataset

    split = load_dataset(DATASET, split="test")
    split = split.select(range(min(N_EXAMPLES, len(split))))
    names = set(predictor().feature_extractor.observation_names)
    keep = [
        c
        for c in split.column_names
        if c in names or c.removesuffix("_err") in names or c == "phot_g_mean_mag"
    ]
    return {str(row["gaia_dr3_source_id"]): {c: row[c] for c in keep} for row in split}


@lru_cache(maxsize=1)
def kiel_sample() -> tuple[np.ndarray, np.ndarray]:
    """Teff [K] and log g [dex] of up to `KIEL_POINTS` training stars with both."""
    from datasets import load_dataset

    train = load_dataset(DATASET, split="train", columns=["teff", "logg"]).with_format("numpy")[:]
    teff, logg = np.asarray(train["teff"], float), np.asarray(train["logg"], float)
    good = np.flatnonzero(np.isfinite(teff) & np.isfinite(logg))
    chosen = np.random.default_rng(0).permutation(good)[:KIEL_POINTS]
    return teff[chosen], logg[chosen]


def parse_observations(text: str) -> dict[str, float]:
    """``name value [error]`` per line (blank lines and ``#`` comments ignored) -> a star mapping."""
    star: dict[str, float] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        fields = line.split("#")[0].replace(",", " ").replace("±", " ").split()
        if not fields:
            continue
        if len(fields) not in (2, 3):
            raise gr.Error(f"line {number}: write 'name value' or 'name value error', got {line.strip()!r}")
        try:
            star[fields[0]] = float(fields[1])
            if len(fields) == 3:
                star[f"{fields[0]}_err"] = float(fields[2])
        except ValueError:
            raise gr.Error(f"line {number}: {line.strip()!r} does not hold numbers") from None
    if not star:
        raise gr.Error("type at least one observation, e.g. 'bprp 1.2'")
    return star


def star_from_xp_file(path: str, phot_g_mean_mag: float | None) -> dict[str, float]:
    """The first source of a Gaia archive XP export as a star mapping (coefficients / G-band flux)."""
    try:
        xp = read_gaia_xp(path, correlations=False)[:1]
    except ValueError as error:
        raise gr.Error(str(error)) from None
    if phot_g_mean_mag:
        xp["phot_g_mean_mag"] = [float(phot_g_mean_mag)]
    if "phot_g_mean_mag" not in xp.colnames or not np.isfinite(xp["phot_g_mean_mag"][0]):
        raise gr.Error("this file has no phot_g_mean_mag: type the source's G magnitude")
    row = archive_rows(xp)[0]
    names = set(predictor().feature_extractor.observation_names)
    return {c: float(row[c]) for c in row.colnames if c in names or c.removesuffix("_err") in names} | {
        "phot_g_mean_mag": float(row["phot_g_mean_mag"])
    }


def spectrum(coefficients: dict[str, float], phot_g_mean_mag: float | None) -> np.ndarray:
    """Flux on `XP_SAMPLING_NM` of normalised coefficients (missing ones as 0, i.e. truncated), times the G flux."""
    vector = np.nan_to_num(np.array([coefficients.get(name, np.nan) for name in XP_NAMES], dtype=float))
    return sampled_flux(vector[None, :], np.array([phot_g_mean_mag]) if phot_g_mean_mag else None)[0]


PLAIN_TEXT = {"text.usetex": False}
"""Figures are drawn without LaTeX: importing gaiaxpy switches ``text.usetex`` on globally, and a Space has no TeX."""


@plt.rc_context(PLAIN_TEXT)
def kiel_figure(teff: float, logg: float, teff_std: float, logg_std: float):
    figure, axes = plt.subplots(figsize=(5, 4.5))
    train_teff, train_logg = kiel_sample()
    axes.scatter(train_teff, train_logg, s=1, c="0.6", alpha=0.3, rasterized=True, label="training stars")
    axes.errorbar(
        [teff], [logg], xerr=[teff_std], yerr=[logg_std], fmt="*", color="crimson", ms=14, label="this star"
    )
    axes.invert_xaxis()
    axes.invert_yaxis()
    axes.set(xlabel="Teff [K]", ylabel="log g [dex]", title="Kiel diagram")
    axes.legend(loc="lower left")
    figure.tight_layout()
    return figure


@plt.rc_context(PLAIN_TEXT)
def spectrum_figure(star: dict[str, float], generated: dict[str, float]):
    g = star.get("phot_g_mean_mag")
    g = g if g is not None and np.isfinite(g) else None
    figure, axes = plt.subplots(figsize=(7, 4.5))
    if any(np.isfinite(star.get(name, np.nan)) for name in XP_NAMES):
        axes.plot(XP_SAMPLING_NM, spectrum(star, g), color="k", label="Gaia XP (observed)")
    axes.plot(
        XP_SAMPLING_NM,
        spectrum(generated, g),
        color="crimson",
        label="generated from predicted Teff, log g, [Fe/H]",
    )
    unit = "W m$^{-2}$ nm$^{-1}$" if g else "per unit G-band flux"
    axes.set(xlabel="wavelength [nm]", ylabel=f"flux [{unit}]", title="XP spectrum")
    axes.legend()
    figure.tight_layout()
    return figure


def describe(star: dict[str, float]):
    """Everything the page shows for one star: three result boxes, the Kiel diagram and the spectra."""
    observations = {k: v for k, v in star.items() if k != "phot_g_mean_mag"}
    try:
        result = predictor()(observations, requests=list(PARAMETERS))
    except ValueError as error:  # the tokenizer's message names the observation
        raise gr.Error(str(error)) from None
    texts = [
        f"{fmt.format(result[name]['mean'])} ± {fmt.format(result[name]['std'])} {result[name]['unit']}".rstrip()
        for name, (_, fmt) in PARAMETERS.items()
    ]
    parameters = {name: result[name]["mean"] for name in PARAMETERS}
    generated = predictor()(parameters, requests=XP_NAMES)
    coefficients = {name: generated[name]["mean"] for name in XP_NAMES}
    kiel = kiel_figure(
        result["teff"]["mean"], result["logg"]["mean"], result["teff"]["std"], result["logg"]["std"]
    )
    return (*texts, kiel, spectrum_figure(star, coefficients))


THEME = gr.themes.Default(
    font=["ui-sans-serif", "system-ui", "sans-serif"], font_mono=["ui-monospace", "monospace"]
)
"""System fonts: the page needs nothing from outside the Space."""


def build_demo() -> gr.Blocks:
    with gr.Blocks(title="stellar-foundation") as demo:
        gr.Markdown(
            "# stellar-foundation\nOne Transformer for stars (after Leung & Bovy 2023): give any observations of a "
            "star, get Teff, log g and [Fe/H] with their uncertainty."
        )
        with gr.Row():
            with gr.Column():
                with gr.Tab("Test star"):
                    examples = list(test_stars())
                    choice = gr.Dropdown(
                        examples, value=examples[0] if examples else None, label="Gaia DR3 source_id"
                    )
                    from_test = gr.Button("Predict test star", elem_id="predict-test-star")
                with gr.Tab("Type observations"):
                    typed = gr.Textbox(
                        EXAMPLE_OBSERVATIONS,
                        lines=6,
                        label="one per line: name value [error]",
                        elem_id="observations",
                    )
                    from_text = gr.Button("Predict", elem_id="predict-typed")
                with gr.Tab("Gaia XP file"):
                    upload = gr.File(
                        label="xp_continuous_mean_spectrum export (CSV, ECSV, FITS, VOTable)",
                        elem_id="xp-file",
                    )
                    g_mag = gr.Number(label="G [mag], when the file has no phot_g_mean_mag", elem_id="g-mag")
                    from_file = gr.Button("Predict first source", elem_id="predict-file")
            with gr.Column():
                outputs = [
                    gr.Textbox(label=label, elem_id=f"result-{name}")
                    for name, (label, _) in PARAMETERS.items()
                ]
        with gr.Row():
            outputs += [
                gr.Plot(label="Kiel diagram", elem_id="kiel-plot"),
                gr.Plot(label="XP spectrum", elem_id="spectrum-plot"),
            ]
        from_test.click(lambda source_id: describe(test_stars()[source_id]), choice, outputs)
        from_text.click(lambda text: describe(parse_observations(text)), typed, outputs)
        from_file.click(lambda path, g: describe(star_from_xp_file(path, g)), [upload, g_mag], outputs)
    return demo


if __name__ == "__main__":
    design_matrix()  # gaiaxpy's calibration, once, before the first visitor
    build_demo().launch(theme=THEME, show_error=True)
