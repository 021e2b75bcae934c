"""The dataset row: column names, dtypes, units and descriptions.

One row per star, one column per observation named as in the vocabulary (``bp0`` ... ``rp54``, ``bprp``, ``jh``,
``jk``, ``teff``, ...) in physical units, each with ``<name>_err`` (one-sigma; NaN = unknown), plus identifiers and
provenance. The writer takes a column's unit and description from the astropy column when the reader set them
(a source-specific description wins) and from `FEATURES` otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass

from .constants import G_ZERO_POINT, XP_N_COEFFICIENTS
from .xp import XP_BANDS, xp_name

__all__ = ["FEATURES", "OBSERVATIONS", "Feature", "error_name", "observation_names"]


@dataclass(frozen=True)
class Feature:
    """One dataset column.

    Parameters
    ----------
    name : str
        Column name.
    dtype : str
        Value type as ``datasets.Value`` spells it: ``"float32"``, ``"float64"``, ``"int16"``, ``"int64"``,
        ``"string"``.
    unit : str
        Astropy unit string; ``""`` when dimensionless or not a quantity.
    description : str
        What the column holds.
    """

    name: str
    dtype: str
    unit: str
    description: str


def error_name(name: str) -> str:
    """Name of the one-sigma error column of observation ``name``."""
    return f"{name}_err"


_G_FLUX = f"the G-band flux 10**(({G_ZERO_POINT.value} - G)/2.5)"

OBSERVATIONS: tuple[Feature, ...] = (
    *(
        Feature(
            xp_name(band, i),
            "float32",
            "",
            f"Gaia DR3 XP {band.upper()} continuous coefficient {i} divided by {_G_FLUX}",
        )
        for band in XP_BANDS
        for i in range(XP_N_COEFFICIENTS)
    ),
    Feature("bprp", "float32", "mag", "Gaia DR3 G_BP - G_RP colour"),
    Feature("jh", "float32", "mag", "2MASS J - H colour"),
    Feature("jk", "float32", "mag", "2MASS J - Ks colour"),
    Feature("teff", "float32", "K", "APOGEE DR17 ASPCAP effective temperature"),
    Feature("logg", "float32", "dex", "APOGEE DR17 ASPCAP surface gravity log10(g / cm s^-2)"),
    Feature("fe_h", "float32", "dex", "APOGEE DR17 ASPCAP iron abundance [Fe/H]"),
    Feature("alpha_m", "float32", "dex", "APOGEE DR17 ASPCAP alpha enhancement [alpha/M]"),
    Feature("m_h", "float32", "dex", "APOGEE DR17 ASPCAP overall metallicity [M/H]"),
    Feature("ak_targ", "float32", "mag", "APOGEE targeting K-band extinction A_K (RJCE method)"),
)
"""Observation columns in vocabulary order (descriptions as in ``modeling_stellar/vocabularies``)."""

_OTHER: tuple[Feature, ...] = (
    Feature("gaia_dr3_source_id", "int64", "", "Gaia DR3 source_id (identical to the Gaia EDR3 source_id)"),
    Feature("apogee_id", "string", "", "APOGEE DR17 APOGEE_ID (2MASS-style designation)"),
    Feature("source", "string", "", "provenance: the input catalogue(s) this row comes from"),
    Feature(
        "phot_g_mean_mag",
        "float32",
        "mag",
        "Gaia (E)DR3 G-band mean magnitude used to normalise the XP coefficients",
    ),
    Feature("snr", "float32", "", "APOGEE DR17 spectrum signal-to-noise ratio per pixel"),
    Feature(
        "xp_fit_chi2_reduced",
        "float32",
        "",
        "reduced chi-square of the XP coefficients re-sampled through the gaiaxpy design matrix against the sampled "
        "spectrum they were recovered from (343 pixels minus the fitted dimensions)",
    ),
    Feature(
        "xp_fit_max_abs_resid_over_err",
        "float32",
        "",
        "largest |sampled spectrum - re-sampled fit| / flux_error over the 343 pixels",
    ),
    Feature(
        "bp_n_relevant_bases",
        "int16",
        "",
        "Gaia DR3 bp_n_relevant_bases: BP coefficients Gaia found significant",
    ),
    Feature(
        "rp_n_relevant_bases",
        "int16",
        "",
        "Gaia DR3 rp_n_relevant_bases: RP coefficients Gaia found significant",
    ),
    Feature("ra", "float64", "deg", "right ascension (ICRS)"),
    Feature("dec", "float64", "deg", "declination (ICRS)"),
    Feature(
        "pmra", "float64", "mas / yr", "Gaia DR3 proper motion in right ascension, pmra = mu_alpha* cos(dec)"
    ),
    Feature("pmdec", "float64", "mas / yr", "Gaia DR3 proper motion in declination"),
    Feature(
        "crossmatch", "string", "", "how the APOGEE row was matched: 'source_id', 'position' or '' (none)"
    ),
    Feature(
        "crossmatch_separation_arcsec", "float64", "arcsec", "separation of a positional match; NaN otherwise"
    ),
)

FEATURES: dict[str, Feature] = {
    feature.name: feature
    for feature in (
        *_OTHER,
        *OBSERVATIONS,
        *(
            Feature(error_name(o.name), o.dtype, o.unit, f"one-sigma uncertainty of {o.name}; NaN = unknown")
            for o in OBSERVATIONS
        ),
    )
}
"""Every column a reader may produce, by name."""


def observation_names(columns: list[str]) -> list[str]:
    """The observation columns among ``columns``: those with an ``_err`` twin, in the given order."""
    present = set(columns)
    return [name for name in columns if error_name(name) in present]
