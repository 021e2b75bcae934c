"""The report's figures (PNG), drawn with matplotlib's object API (no pyplot state, no display needed).

Each function takes a task's result and a path and writes one figure.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from pathlib import Path

import matplotlib
import numpy as np
from matplotlib.figure import Figure

from datasets_builder.constants import XP_SAMPLING_NM
from datasets_builder.xp import sampled_flux

from .evaluation import LabelPredictions
from .extinction import LAWS, POPULATIONS, ExtinctionCurve, in_population, law_curve
from .generation import SpectrumPredictions
from .inputs import LABELS
from .loci import Loci

__all__ = [
    "plot_calibration",
    "plot_coefficient_scatter",
    "plot_extinction",
    "plot_kiel",
    "plot_parameters",
    "plot_spectra",
]

TITLES = {"teff": "Teff [K]", "logg": "log g [dex]", "fe_h": "[Fe/H] [dex]"}
DPI = 110


def _plain_text(plot: Callable[..., Path]) -> Callable[..., Path]:
    """Draw with matplotlib's own text rendering: importing gaiaxpy sets ``text.usetex = True`` globally, which
    needs a LaTeX installation."""

    @functools.wraps(plot)
    def wrapper(*args, **kwargs) -> Path:
        with matplotlib.rc_context({"text.usetex": False}):
            return plot(*args, **kwargs)

    return wrapper


def _save(figure: Figure, path: Path) -> Path:
    figure.savefig(path, dpi=DPI, bbox_inches="tight")
    return path


@_plain_text
def plot_parameters(predictions: LabelPredictions, rows: Sequence[dict], path: Path) -> Path:
    """Predicted vs true (top) and residual true - predicted vs true (bottom) per label, scatter in the titles."""
    figure = Figure(figsize=(13, 7.5), layout="constrained")
    axes = figure.subplots(2, 3, gridspec_kw={"height_ratios": [2, 1]})
    table = {(r["label"], r["method"]): r for r in rows}
    for j, label in enumerate(LABELS):
        truth, mean = predictions.truth[:, j], predictions.model_mean[:, j]
        ok = np.isfinite(truth) & np.isfinite(mean)
        top, bottom = axes[0, j], axes[1, j]
        top.scatter(truth[ok], mean[ok], s=2, alpha=0.3, color="C0", rasterized=True)
        low, high = np.percentile(truth[ok], [0.5, 99.5]) if ok.any() else (0, 1)
        top.plot([low, high], [low, high], color="k", lw=0.8)
        top.set(xlim=(low, high), ylim=(low, high), ylabel=f"model {TITLES[label]}")
        model, xgboost = table[(label, "model")], table[(label, "xgboost")]
        top.set_title(
            f"{TITLES[label]}: model {model['scatter']:.3g} (bias {model['bias']:+.2g}), XGBoost {xgboost['scatter']:.3g}",
            fontsize=9,
        )
        bottom.scatter(truth[ok], truth[ok] - mean[ok], s=2, alpha=0.3, color="C0", rasterized=True)
        bottom.axhline(0, color="k", lw=0.8)
        spread = 5 * model["scatter"] if np.isfinite(model["scatter"]) else 1
        bottom.set(
            xlim=(low, high), ylim=(-spread, spread), xlabel=f"APOGEE {TITLES[label]}", ylabel="true - model"
        )
    figure.suptitle(f"setting ({predictions.setting.key}): {predictions.setting.description}, test split")
    return _save(figure, path)


@_plain_text
def plot_calibration(predictions: LabelPredictions, rows: Sequence[dict], path: Path) -> Path:
    """Histogram of z = (true - mean) / sqrt(sigma^2 + err^2) per label, against the unit Gaussian."""
    figure = Figure(figsize=(13, 3.8), layout="constrained")
    axes = figure.subplots(1, 3)
    table = {r["label"]: r for r in rows if r["method"] == "model"}
    bins = np.linspace(-5, 5, 51)
    grid = np.linspace(-5, 5, 201)
    for j, label in enumerate(LABELS):
        total = np.hypot(predictions.model_std[:, j], predictions.truth_error[:, j])
        z = (predictions.truth[:, j] - predictions.model_mean[:, j]) / total
        z = z[np.isfinite(z)]
        axes[j].hist(np.clip(z, -5, 5), bins=bins, density=True, color="C0", alpha=0.6, label="model")
        axes[j].plot(grid, np.exp(-0.5 * grid**2) / np.sqrt(2 * np.pi), color="k", lw=1, label="N(0, 1)")
        result = table[label]
        axes[j].set_title(
            f"{TITLES[label]}: z std {result['z_std']:.2f}, 68 % {result['coverage_68']:.0%}, "
            f"95 % {result['coverage_95']:.0%}",
            fontsize=9,
        )
        axes[j].set_xlabel("z = (true - mean) / sqrt(sigma^2 + err^2)")
    axes[0].legend(fontsize=8)
    figure.suptitle(f"calibration of the model's uncertainties, setting ({predictions.setting.key})")
    return _save(figure, path)


@_plain_text
def plot_kiel(loci: Loci, path: Path) -> Path:
    """Kiel diagram of the test stars with the model's loci (solid) and the data's running medians (dashed)."""
    figure = Figure(figsize=(7, 6))
    axis = figure.subplots()
    stars = loci.stars
    points = axis.scatter(
        stars[:, 0], stars[:, 1], c=stars[:, 2], s=2, cmap="viridis", vmin=-1.5, vmax=0.5, alpha=0.5
    )
    figure.colorbar(points, ax=axis, label="[Fe/H] of the test stars [dex]")
    colours = ["C3", "C1", "C0", "C4", "C2", "C5"]
    for i, metallicity in enumerate(loci.fe_h):
        colour = colours[i % len(colours)]
        axis.plot(
            loci.model_mean[i, :, 0],
            loci.logg,
            color=colour,
            lw=2,
            label=f"model locus [Fe/H] = {metallicity:+.1f}",
        )
        axis.plot(loci.data_teff[i], loci.logg, color=colour, lw=1, ls="--")
    axis.set(
        xlabel="Teff [K]",
        ylabel="log g [dex]",
        title="Kiel diagram: model loci (solid), data running median (dashed)",
    )
    axis.invert_xaxis()
    axis.invert_yaxis()
    axis.legend(fontsize=7, loc="lower left")
    return _save(figure, path)


def _examples(predictions: SpectrumPredictions) -> list[tuple[str, int]]:
    """Up to three example stars: a giant, a dwarf and a metal-poor star (first of each in the task's stars)."""
    kinds = {
        "giant": predictions.labels[:, 1] < 3.5,
        "dwarf": predictions.labels[:, 1] >= 3.5,
        "metal-poor": predictions.labels[:, 2] < -1.0,
    }
    return [(kind, int(np.argmax(select))) for kind, select in kinds.items() if select.any()]


@_plain_text
def plot_spectra(tasks: Sequence[SpectrumPredictions], path: Path) -> Path:
    """Real vs generated / inpainted spectra (W m-2 nm-1): one row per task, one column per example star."""
    figure = Figure(figsize=(14, 3.4 * len(tasks)), layout="constrained")
    axes = np.atleast_2d(figure.subplots(len(tasks), 3, squeeze=False))
    for row, predictions in enumerate(tasks):
        examples = _examples(predictions)
        for column in range(3):
            axis = axes[row, column]
            if column >= len(examples):
                axis.set_visible(False)
                continue
            kind, star = examples[column]
            g_mag = predictions.g_mag[star : star + 1]
            for name, colour, style in (("truth", "k", "-"), ("model", "C0", "-"), ("xgboost", "C1", "--")):
                flux = sampled_flux(getattr(predictions, name)[star : star + 1], g_mag)[0]
                axis.plot(
                    XP_SAMPLING_NM,
                    flux,
                    color=colour,
                    ls=style,
                    lw=1.2,
                    label=name if name != "truth" else "real",
                )
            teff, logg, fe_h = predictions.labels[star]
            axis.set_title(
                f"{predictions.task.key}: {kind} ({teff:.0f} K, {logg:.2f}, {fe_h:+.2f})", fontsize=9
            )
            axis.set(xlabel="wavelength [nm]", ylabel="flux [W m$^{-2}$ nm$^{-1}$]")
        axes[row, 0].legend(fontsize=8)
    return _save(figure, path)


@_plain_text
def plot_coefficient_scatter(summaries: Sequence[dict], path: Path) -> Path:
    """Per-coefficient residual scatter of the model and XGBoost, one panel per task."""
    figure = Figure(figsize=(14, 2.8 * len(summaries)), layout="constrained")
    axes = figure.subplots(len(summaries), 1, squeeze=False)[:, 0]
    for axis, summary in zip(axes, summaries, strict=True):
        x = np.arange(len(summary["outputs"]))
        axis.semilogy(x, summary["model"]["coefficient_scatter"], "o-", ms=2.5, lw=0.8, label="model")
        axis.semilogy(x, summary["xgboost"]["coefficient_scatter"], "s--", ms=2.5, lw=0.8, label="XGBoost")
        ticks = x[:: max(1, len(x) // 11)]
        axis.set_xticks(ticks, [summary["outputs"][i] for i in ticks], fontsize=7)
        axis.set(ylabel="mad_std(real - pred)")
        axis.set_title(
            f"{summary['description']}: median model/XGBoost {summary['median_scatter_ratio']:.2f} "
            f"(signal-dominated outputs: {summary['median_scatter_ratio_signal']:.2f})",
            fontsize=9,
        )
        axis.legend(fontsize=8)
    return _save(figure, path)


@_plain_text
def plot_extinction(curve: ExtinctionCurve, summary: dict, path: Path) -> Path:
    """The model's colour-excess extinction curve against the published laws."""
    figure = Figure(figsize=(7.5, 4.5))
    axis = figure.subplots()
    axis.plot(
        XP_SAMPLING_NM, curve.colour_excess(), color="k", lw=2, label=f"model ({curve.n_stars} test stars)"
    )
    for kind, style in zip(POPULATIONS, (":", "-."), strict=True):
        stars = in_population(curve.logg, kind)
        axis.plot(
            XP_SAMPLING_NM,
            curve.colour_excess(stars),
            color="0.35",
            lw=1,
            ls=style,
            label=f"model, {kind} ({curve.n_stars_of(stars)})",
        )
    for law, description in LAWS.items():
        deviation = summary["laws"][law]["mean_abs_deviation"]
        axis.plot(
            XP_SAMPLING_NM, law_curve(law), lw=1.2, ls="--", label=f"{description} (MAD {deviation:.3f})"
        )
    axis.axvspan(*summary["range_nm"], color="0.9", zorder=0)
    axis.axhline(0, color="0.5", lw=0.5)
    axis.set(
        xlabel="wavelength [nm]",
        ylabel="(A(λ) - A(550 nm)) / (A(440 nm) - A(550 nm))",
        title="extinction curve from requests at increasing A_K",
        ylim=(-2.5, 2.0),
    )
    axis.legend(fontsize=8)
    return _save(figure, path)
