"""The star tokenizer: observations in physical units -> standardised (name id, value) tokens, and back.

A star is an unordered set of observations. Each has a *name* from the vocabulary (``bp3``, ``jh``, ``teff``
...), a value in the name's physical unit and, optionally, an uncertainty in the same unit, given as the
column ``<name>_err``. The vocabulary -- names, units, whether a name may be requested, and the
normalisation centre and scale of each -- is data held in ``preprocessor_config.json``, so a new survey or a
Gaia release with another number of XP coefficients is a new file, not new code.

Conventions (house style, after chronos' tokenizer):
    * NaN, None, ``pd.NA``, ``pd.NaT`` and masked entries mean "not observed": the token is left out, exactly as
      if the observation were omitted (not an error).
    * A NaN uncertainty on an observed value means "unknown" and is taken as 0.
    * Everything else that is not a usable real number raises ``ValueError`` naming the star (its index in the
      input) and the observation: a bool, a date or duration, a complex number with an imaginary part, text, an
      int beyond the float range, +-inf, a value more than ``max_standardised_value`` scales from the centre
      (far outside anything the model was trained on), a physically impossible value (<= 0 in an absolute unit,
      `POSITIVE_UNITS`), a negative or infinite uncertainty.
    * Id 0 is padding; ``attention_mask`` is 1 on real tokens.
    * A requested name is never also an input of the same star (the model is trained that way).
    * A star with more observations than ``context_length`` keeps those with the lowest ``priority``
      (a vocabulary field; default: vocabulary order), deterministically, and a warning says so.
    * Every observation may carry the training stars' envelope (``low``, ``high``, physical units: where all but a
      few in 1,000 of their values lie); a value outside it is accepted but flagged (`out_of_range`), so that no answer resting on an
      extrapolation goes unflagged.
    * The Gaia XP basis the coefficients are expressed in (per band: Gaia's ``basis_function_id`` and the number of
      coefficients) is part of the vocabulary (``xp_bases``), so that a reader can refuse coefficients of another
      basis (another Gaia release) instead of answering them silently wrong.
"""

from __future__ import annotations

import datetime
import difflib
import math
import reprlib
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
from transformers.feature_extraction_utils import BatchFeature, FeatureExtractionMixin
from transformers.utils import logging

logger = logging.get_logger(__name__)

ERROR_SUFFIX = "_err"

POSITIVE_UNITS = ("K",)
"""Units of absolute quantities: a value <= 0 in one of them is physically impossible (Teff <= 0 K)."""

XP_NORMALISATION_HINT = (
    "XP coefficients are read divided by the G-band flux 10**((25.6873668671 - G)/2.5); Gaia archive values are not "
    "(stellar-foundation predict divides an archive export itself): were these divided?"
)
"""The likeliest cause of XP coefficients far outside the training range, said where they are refused or flagged."""

NEAR_MISS_RATIO = 0.85
"""Smallest ``difflib.SequenceMatcher`` ratio at which an unknown column counts as a misspelt observation name: one
letter off a four-letter name (``tef``, ``lgg``: 0.86) is one; ``teff_flag`` (0.62) and the dataset's provenance
columns (``snr``, ``phot_g_mean_mag``) are not."""

MAX_STANDARDISED_VALUE = 1e5
"""Default largest accepted |x - center| / scale. The shipped model's training stars reach about 550 (XP
coefficient ``rp39``; median over names about 140), so 1e5 is over two orders of magnitude beyond anything it has
seen, and still far from where float32 activations overflow (the shipped model stays finite up to 1e8)."""


class StarInputError(ValueError):
    """Input the tokenizer refuses, with where it is: ``star`` (row index; None when no one star is at fault) and
    ``name`` (the observation or column; None when none is), and ``reason``, the message without its "star N"
    prefix (what a per-row report writes). ``str(error)`` is the whole message."""

    def __init__(self, star: int | None, name: str | None, reason: str, separator: str = ", ") -> None:
        self.star, self.name, self.reason = star, name, reason
        super().__init__(reason if star is None else f"star {star}{separator}{reason}")

    def __reduce__(self):  # picklable across processes (accelerate's gather_object) with its attributes
        return type(self), (self.star, self.name, self.reason)


class StarTokenizer(FeatureExtractionMixin):
    r"""Turn stars into the tensors `StellarForObservationPrediction` reads, and its answers into physical units.

    Loaded with ``AutoFeatureExtractor.from_pretrained(folder, trust_remote_code=True)`` (a
    ``FeatureExtractionMixin``: the right Auto class for non-text inputs), saved as ``preprocessor_config.json``.

    Args:
        vocabulary (`list[dict]`):
            One entry per observation name, in id order (id = position + 1). Keys: ``name`` (str), ``unit``
            (str, astropy spelling; "" = dimensionless), ``requestable`` (bool), ``center`` and ``scale``
            (float, physical units: standardised value = (x - center) / scale), and optionally ``priority``
            (float, lower is kept first when a star overflows the context) and ``description`` (str).
        context_length (`int`, *optional*, defaults to 64):
            Most input tokens per star.
        vocabulary_name (`str`, *optional*):
            A short name of the vocabulary, e.g. "apogee-dr17-gaia-dr3-xp".
        source (`str`, *optional*):
            Where the vocabulary and its normalisation come from.
        max_standardised_value (`float`, *optional*, defaults to `MAX_STANDARDISED_VALUE`):
            Largest accepted |x - center| / scale of a value or an uncertainty; beyond it the model answers
            nonsense (or NaN), so `to_arrays` raises instead.
        xp_bases (`dict`, *optional*):
            Per Gaia XP band (``"bp"``, ``"rp"``): ``{"basis_function_id": int, "n_coefficients": int}``, the basis
            of the coefficients ``<band>0`` ... the model reads (Gaia DR3: BP 56 and RP 57, 55 each;
            ``datasets_builder.constants.GAIA_DR3_XP_BASES``); default none declared. Readers of archive exports
            refuse another basis than the one declared (DR3 where none is).

    Vocabulary entries may also carry ``low`` and ``high`` (float, physical units): the training stars' envelope, its
    0.1 and 99.9 % quantiles in our datasets (`set_normalization` takes them from a dataset's statistics); `out_of_range` flags values outside.

    Example:

    ```python
    >>> tokenizer = StarTokenizer.from_pretrained("modeling_stellar/vocabularies/apogee_gaia_xp.json")
    >>> batch = tokenizer({"bprp": 1.2, "jh": 0.5, "jk": 0.6}, requests=["teff", "logg"])
    >>> batch["input_ids"].shape, batch["request_ids"].shape
    (torch.Size([1, 3]), torch.Size([1, 2]))
    ```
    """

    model_input_names = ["input_ids", "input_values", "input_errors", "attention_mask", "request_ids"]

    def __init__(
        self,
        vocabulary: list[dict[str, Any]],
        context_length: int = 64,
        vocabulary_name: str = "",
        source: str = "",
        max_standardised_value: float = MAX_STANDARDISED_VALUE,
        xp_bases: Mapping[str, Mapping[str, int]] | None = None,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        if not vocabulary or isinstance(vocabulary, str | bytes) or not isinstance(vocabulary, Sequence):
            raise ValueError(
                f"StarTokenizer: the vocabulary must be a non-empty list of entries, got {vocabulary!r}"
            )
        self.vocabulary = [dict(entry) for entry in vocabulary]
        self.context_length = _setting(context_length, "context_length", int)
        self.vocabulary_name = vocabulary_name
        self.source = source
        self.max_standardised_value = _setting(max_standardised_value, "max_standardised_value", float)
        self.xp_bases = _checked_xp_bases({} if xp_bases is None else xp_bases)
        self._index_vocabulary()

    # ----------------------------------------------------------------------------------------- vocabulary
    def _index_vocabulary(self) -> None:
        """Derive the lookup arrays (index 0 = padding) from ``self.vocabulary``; validates every entry."""
        names = []
        for position, entry in enumerate(self.vocabulary):
            for key in ("name", "unit", "requestable", "center", "scale"):
                if key not in entry:
                    raise ValueError(f"StarTokenizer: vocabulary entry {position} has no {key!r}")
            if not (math.isfinite(entry["center"]) and math.isfinite(entry["scale"]) and entry["scale"] > 0):
                raise ValueError(
                    f"StarTokenizer: vocabulary entry {entry['name']!r} needs a finite center and a positive "
                    f"scale, got center={entry['center']}, scale={entry['scale']}"
                )
            names.append(entry["name"])
        if len(set(names)) != len(names):
            duplicated = sorted({n for n in names if names.count(n) > 1})
            raise ValueError(f"StarTokenizer: vocabulary names are not unique: {duplicated}")
        self._names = ["<pad>", *names]
        self._name_to_id = {name: i for i, name in enumerate(self._names) if i > 0}
        self._centers = np.array([0.0] + [float(e["center"]) for e in self.vocabulary])
        self._scales = np.array([1.0] + [float(e["scale"]) for e in self.vocabulary])
        self._requestable = np.array([False] + [bool(e["requestable"]) for e in self.vocabulary])
        self._sigma_scales = np.array([1.0] + [float(e.get("sigma_scale", 1.0)) for e in self.vocabulary])
        if not (np.isfinite(self._sigma_scales).all() and (self._sigma_scales > 0).all()):
            bad = self._names[int(np.argmax(~(np.isfinite(self._sigma_scales) & (self._sigma_scales > 0))))]
            raise ValueError(f"StarTokenizer: vocabulary entry {bad!r} needs a positive, finite sigma_scale")
        self._priority = np.array(
            [np.inf] + [float(e.get("priority", i)) for i, e in enumerate(self.vocabulary)], dtype=np.float64
        )
        low = np.array([-np.inf] + [float(e.get("low", -np.inf)) for e in self.vocabulary])
        high = np.array([np.inf] + [float(e.get("high", np.inf)) for e in self.vocabulary])
        if np.isnan(low).any() or np.isnan(high).any() or (low > high).any():
            bad = self._names[int(np.argmax(np.isnan(low) | np.isnan(high) | (low > high)))]
            raise ValueError(
                f"StarTokenizer: vocabulary entry {bad!r} needs low <= high (its training envelope)"
            )
        # the envelope in standardised units, as `to_arrays` returns values (+-inf where an entry has none)
        self._standardised_low, self._standardised_high = (
            (low - self._centers) / self._scales,
            (high - self._centers) / self._scales,
        )
        self._xp_ids = {
            band: [self._name_to_id[name] for name in self.xp_names(band) if name in self._name_to_id]
            for band in self.xp_bases
        }

    @property
    def observation_names(self) -> list[str]:
        """The vocabulary's observation names in id order (id 1 first)."""
        return self._names[1:]

    @property
    def vocab_size(self) -> int:
        """Number of ids, padding included: what ``StellarConfig.vocab_size`` must be."""
        return len(self._names)

    @property
    def units(self) -> dict[str, str]:
        """Physical unit of each observation name (astropy spelling; "" = dimensionless)."""
        return {e["name"]: e["unit"] for e in self.vocabulary}

    @property
    def requestable_names(self) -> list[str]:
        """Names the decoder may be asked for."""
        return [e["name"] for e in self.vocabulary if e["requestable"]]

    @property
    def requestable_mask(self) -> np.ndarray:
        """(vocab_size,) bool, by id: whether the decoder may be asked for that name (False for padding, id 0)."""
        return self._requestable.copy()

    def scales_of(self, names: Sequence[str]) -> np.ndarray:
        """(len(names),) float64 normalisation scales [physical units]: a standardised value times its scale is
        the physical difference from the name's centre."""
        return self._scales[self.convert_names_to_ids(names)].copy()

    def sigma_scales_of(self, names: Sequence[str]) -> np.ndarray:
        """(len(names),) float64 calibration factors of the model's sigma (`set_sigma_scales`; 1 = none)."""
        return self._sigma_scales[self.convert_names_to_ids(names)].copy()

    def convert_names_to_ids(self, names: Sequence[str], star: int | None = None) -> list[int]:
        """Ids of ``names``; an unknown name raises ``ValueError`` with the closest known name."""
        return [self._id_of(name, star) for name in names]

    def convert_ids_to_names(self, ids: Iterable[int]) -> list[str]:
        """Names of ``ids`` (0 gives "<pad>"); an id outside 0 .. vocab_size - 1 raises ``ValueError``."""
        ids = list(ids)
        self._check_ids(np.asarray(ids))
        return [self._names[int(i)] for i in ids]

    def _check_ids(self, ids: np.ndarray) -> None:
        """Raise ``ValueError`` naming the first entry of ``ids`` (any shape), as given, that is not an id of the
        vocabulary: not a whole number (a fraction, NaN, text, a bool), or outside 0 .. vocab_size - 1."""
        if ids.size == 0:
            return
        if ids.dtype.kind in "iu":
            bad = (ids < 0) | (ids >= self.vocab_size)
        elif ids.dtype.kind == "f":
            with np.errstate(invalid="ignore"):
                bad = ~np.isfinite(ids) | (ids != np.round(ids)) | (ids < 0) | (ids >= self.vocab_size)
        else:  # text, bools, objects: none is an id
            bad = np.ones(ids.shape, dtype=bool)
        if bad.any():
            where = tuple(int(i) for i in np.argwhere(bad)[0])
            raise ValueError(
                f"token id {_SHORT.repr(ids[where].item())} at position {where} is not an id of the vocabulary "
                f"(whole numbers 0 .. {self.vocab_size - 1})"
            )

    def _id_of(self, name: str, star: int | None = None) -> int:
        if isinstance(name, str) and name in self._name_to_id:
            return self._name_to_id[name]
        close = difflib.get_close_matches(str(name), self.observation_names, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise StarInputError(star, str(name), f"unknown observation name {name!r}{hint}", separator=": ")

    def unknown_columns(self, columns: Iterable[Any]) -> list[str]:
        """The columns (as ``str``) that are neither an observation name nor ``<name>_err`` of one, in order."""
        unknown = []
        for column in map(str, columns):
            base = column[: -len(ERROR_SUFFIX)] if column.endswith(ERROR_SUFFIX) else column
            if base not in self._name_to_id:
                unknown.append(column)
        return unknown

    def near_miss(self, column: str) -> str | None:
        """The observation name that ``column`` (or its ``<name>_err`` base) is likely a misspelling of, or None.

        A near miss is the same name up to case and punctuation (``Teff``, ``BP_RP``, ``bp_30``) or a close
        spelling (``difflib`` ratio >= `NEAR_MISS_RATIO`: ``tef``, ``lgg``); it is refused where an unrelated
        column (an identifier, a position, ``teff_flag``) is ignored, so a misspelt input is never silently dropped.
        """
        column = str(column)
        base = column[: -len(ERROR_SUFFIX)] if column.endswith(ERROR_SUFFIX) else column
        if base in self._name_to_id:
            return None
        folded = _folded(base)
        same = [name for name in self.observation_names if _folded(name) == folded]
        close = same or difflib.get_close_matches(
            base.lower(), self.observation_names, n=1, cutoff=NEAR_MISS_RATIO
        )
        return close[0] if close else None

    def set_normalization(self, statistics: Mapping[str, Mapping[str, float]]) -> None:
        """Take centre and scale of each name found in ``statistics`` (a dataset's ``meta/stats.json``:
        ``{name: {"center": nanmedian, "scale": mad_std, "low": ..., "high": ..., ...}}`` over the training
        stars, physical units), and its envelope (``low``, ``high``) where given. Names it lacks keep theirs."""
        for entry in self.vocabulary:
            stat = statistics.get(entry["name"])
            if stat is not None:
                entry["center"], entry["scale"] = float(stat["center"]), float(stat["scale"])
                for bound in ("low", "high"):
                    if stat.get(bound) is not None:
                        entry[bound] = float(stat[bound])
        self._index_vocabulary()

    def xp_names(self, band: str) -> list[str]:
        """The coefficient names ``<band>0`` ... of an XP band of `xp_bases` (``"bp"``, ``"rp"``), in basis order."""
        if band not in self.xp_bases:
            raise ValueError(f"no XP band {band!r} in this vocabulary (bands: {', '.join(self.xp_bases)})")
        return [f"{band}{i}" for i in range(self.xp_bases[band]["n_coefficients"])]

    def out_of_range(self, values: np.ndarray) -> np.ndarray:
        """(batch, vocab_size) bool: the observed values (standardised, as `to_arrays` returns them) outside the
        training stars' envelope of their name (``low`` .. ``high``); False where not observed or without envelope."""
        with np.errstate(invalid="ignore"):
            return np.isfinite(values) & (
                (values < self._standardised_low) | (values > self._standardised_high)
            )

    def out_of_range_names(self, values: np.ndarray) -> list[list[str]]:
        """Per star, the names of its observed values outside the training envelope (`out_of_range`), in id order."""
        flagged = self.out_of_range(values)
        return [[self._names[i] for i in np.flatnonzero(row)] for row in flagged]

    def range_hints(self, values: np.ndarray) -> list[str]:
        """Per star (standardised (batch, vocab_size) values), the likely cause when every XP coefficient it observes
        of a band lies outside the training envelope (`XP_NORMALISATION_HINT`); "" for the other stars."""
        flagged, observed = self.out_of_range(values), np.isfinite(values)
        whole_band = np.zeros(len(values), dtype=bool)
        for ids in self._xp_ids.values():
            if ids:
                seen = observed[:, ids].sum(axis=1)
                whole_band |= (seen > 0) & (flagged[:, ids].sum(axis=1) == seen)
        return [XP_NORMALISATION_HINT if hint else "" for hint in whole_band]

    def set_sigma_scales(self, factors: Mapping[str, float]) -> None:
        """Take a calibration factor of the model's sigma for each name in ``factors`` (``decode`` multiplies the
        sigma by it; 1 = as the model predicts). Fitted on a validation hold-out by
        ``stellar_tasks.calibration``; saved with the vocabulary as each entry's ``sigma_scale``."""
        unknown = sorted(set(factors) - set(self._name_to_id))
        if unknown:
            raise ValueError(f"set_sigma_scales: unknown observation names {unknown}")
        for entry in self.vocabulary:
            if entry["name"] in factors:
                entry["sigma_scale"] = float(factors[entry["name"]])
        self._index_vocabulary()

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready settings (the derived lookup arrays are rebuilt on load).

        transformers' remote-code saver writes a (slow, fast) pair into ``auto_map`` for any class whose name
        contains "Tokenizer"; this is a feature extractor, whose loader wants one class reference.
        """
        settings = {k: v for k, v in super().to_dict().items() if not k.startswith("_")}
        auto_map = settings.get("auto_map", {})
        if isinstance(auto_map.get("AutoFeatureExtractor"), (list, tuple)):
            auto_map["AutoFeatureExtractor"] = auto_map["AutoFeatureExtractor"][0]
        return settings

    # ----------------------------------------------------------------------------------------- encoding
    def to_arrays(
        self, stars: Any, input_names: Sequence[str] | None = None, ignore_unknown: bool = False
    ) -> tuple[np.ndarray, np.ndarray]:
        """Standardise a batch of stars into dense arrays over the whole vocabulary.

        Args:
            stars: one star (mapping name -> scalar), a list of such mappings, or a columnar table
                (pandas DataFrame, astropy Table, mapping name -> sequence such as a `datasets` batch) whose
                columns are vocabulary names in physical units plus optional ``<name>_err``.
            input_names: read only these names (each must be known); default: every vocabulary column.
            ignore_unknown: skip every column that is not a vocabulary name (or its ``_err``). Without it a column
                that looks like a misspelt name (`near_miss`: ``Teff``, ``tef``) raises naming the closest name,
                and other columns (identifiers, positions, flags) are ignored with a warning listing them.

        Returns:
            ``(values, errors)``, each float64 of shape (batch, vocab_size): standardised values (NaN = not
            observed; column 0, padding, is NaN) and standardised uncertainties (0 where unknown).
        """
        n_stars, columns = _columns_of(stars)
        if n_stars == 0:
            raise ValueError("no stars given")
        known = set(self._name_to_id)
        if input_names is not None:
            wanted = request_names(input_names, "input_names")
            for name in wanted:
                self._id_of(name)
        else:
            wanted = [column for column in columns if column in known]
            other = [] if ignore_unknown else self.unknown_columns(columns)
            for column in other:
                suggestion = self.near_miss(column)
                if suggestion is not None:
                    raise StarInputError(
                        _first_star_with(stars, column),
                        column,
                        f"unknown observation name {column!r}; did you mean {suggestion!r}?",
                        separator=": ",
                    )
            if other:
                logger.warning_once(f"ignored columns that are not observation names: {', '.join(other)}")
        values = np.full((n_stars, self.vocab_size), np.nan)
        errors = np.zeros((n_stars, self.vocab_size))
        for name in wanted:
            if name not in columns:
                continue
            token = self._name_to_id[name]
            unit = self.vocabulary[token - 1]["unit"]
            physical = _float_column(columns[name], name, unit, n_stars)
            values[:, token] = self._standardise(physical, token, name)
            error_column = name + ERROR_SUFFIX
            if error_column in columns:
                sigma = _float_column(columns[error_column], error_column, unit, n_stars)
                bad = np.isinf(sigma) | (sigma < 0)
                if bad.any():
                    star = int(np.argmax(bad))
                    raise StarInputError(  # named as the user wrote it, like every other error of that column
                        star,
                        error_column,
                        f"observation {error_column!r}: uncertainty {float(sigma[star])!r} must be finite and >= 0",
                    )
                errors[:, token] = np.nan_to_num(self._standardise(sigma, token, error_column, centred=False))
        return values, errors

    def _standardise(self, physical: np.ndarray, token: int, column: str, centred: bool = True) -> np.ndarray:
        """(x - center) / scale of one (n_stars,) column of name id ``token`` (x / scale when not ``centred``: an
        uncertainty). NaN stays NaN; +-inf, a physically impossible value, or a result beyond
        ``max_standardised_value`` raise ``ValueError`` naming the first such star and ``column``."""
        with np.errstate(over="ignore"):  # an overflow is caught below, as a result out of range
            standardised = (physical - (self._centers[token] if centred else 0.0)) / self._scales[token]
        unit = self.vocabulary[token - 1]["unit"]
        impossible = (physical <= 0) if centred and unit in POSITIVE_UNITS else np.zeros(len(physical), bool)
        bad = np.isinf(physical) | impossible | (np.abs(standardised) > self.max_standardised_value)
        if not bad.any():
            return standardised
        star = int(np.argmax(bad))
        where = f"observation {column!r}: value {float(physical[star])!r}"
        if np.isinf(physical[star]):
            raise StarInputError(star, column, f"{where} is not finite (use NaN for 'not observed')")
        if impossible[star]:
            raise StarInputError(
                star, column, f"{where} {unit} is physically impossible (must be > 0 {unit})"
            )
        is_xp = any(token in ids for ids in self._xp_ids.values())
        raise StarInputError(
            star,
            column,
            f"{where} is out of range: {abs(standardised[star]):.3g} scales from the centre "
            f"{self._centers[token]:.6g}{' ' + unit if unit else ''} (scale {self._scales[token]:.6g}); the limit is "
            f"{self.max_standardised_value:g}, far beyond the values the model was trained on"
            + (f" ({XP_NORMALISATION_HINT})" if is_xp else ""),
        )

    def pack(
        self, values: np.ndarray, errors: np.ndarray, keep: np.ndarray, order_key: np.ndarray | None = None
    ) -> dict[str, np.ndarray]:
        """Gather each star's kept observations into padded token arrays.

        Args:
            values, errors: (batch, vocab_size) standardised arrays from `to_arrays`.
            keep: (batch, vocab_size) bool, the observations to turn into tokens.
            order_key: (batch, vocab_size) float, tokens are taken in increasing key and cropped to
                ``context_length``; default: the vocabulary's ``priority``. Training passes random keys.

        Returns:
            ``input_ids`` (batch, L) int64 with 0 = padding, ``input_values`` and ``input_errors`` (batch, L)
            float32, ``attention_mask`` (batch, L) int64, with L = min(most kept tokens, context_length).
        """
        counts = keep.sum(axis=1)
        if (counts == 0).any():
            star = int(np.argmax(counts == 0))
            raise StarInputError(
                star, None, "has no observations to encode (all NaN, or all of them requested)", separator=" "
            )
        if counts.max() > self.context_length:
            logger.warning_once(
                f"{int((counts > self.context_length).sum())} star(s) have more than context_length="
                f"{self.context_length} observations: the lowest-priority ones are left out"
            )
        length = int(min(counts.max(), self.context_length))
        key = self._priority[None, :] if order_key is None else order_key
        key = np.where(keep, key, np.inf)
        order = np.argsort(key, axis=1, kind="stable")[:, :length]  # (batch, L) vocabulary ids
        valid = np.take_along_axis(keep, order, axis=1)
        return {
            "input_ids": np.where(valid, order, 0).astype(np.int64),
            "input_values": np.where(valid, np.take_along_axis(values, order, axis=1), 0.0).astype(
                np.float32
            ),
            "input_errors": np.where(valid, np.take_along_axis(errors, order, axis=1), 0.0).astype(
                np.float32
            ),
            "attention_mask": valid.astype(np.int64),
        }

    def request_ids_for(self, requests: Iterable[str] | Iterable[Iterable[str]], n_stars: int) -> np.ndarray:
        """(batch, R) int64 ids of the requests: one iterable of names for every star, or one per star (padded
        with 0). An unknown or unrequestable name, or an entry that is not a name, raises ``ValueError`` naming it."""
        if isinstance(requests, str | bytes):
            raise ValueError("requests must be a list of names, e.g. ['teff'], not a bare string")
        if not isinstance(requests, Iterable):
            raise ValueError(
                f"requests must be an iterable of observation names, got {type(requests).__name__}"
            )
        items = list(requests)
        nested = [isinstance(item, Iterable) and not isinstance(item, str | bytes) for item in items]
        if items and all(nested):
            lists = [request_names(item, f"requests of star {star}") for star, item in enumerate(items)]
            if len(lists) != n_stars:
                raise ValueError(f"requests: got {len(lists)} lists for {n_stars} stars")
        else:
            lists = [request_names(items)] * n_stars
        width = max((len(r) for r in lists), default=0)
        if width == 0:
            raise ValueError("requests is empty: name at least one observation to predict")
        ids = np.zeros((n_stars, width), dtype=np.int64)
        for star, names in enumerate(lists):
            for j, name in enumerate(names):
                token = self._id_of(name, star)
                if not self._requestable[token]:
                    raise StarInputError(
                        star, name, f"{name!r} is in the vocabulary but cannot be requested", separator=": "
                    )
                ids[star, j] = token
        return ids

    def __call__(
        self,
        stars: Any,
        requests: Sequence[str] | Sequence[Sequence[str]] | None = None,
        input_names: Sequence[str] | None = None,
        return_labels: bool = False,
        ignore_unknown: bool = False,
        return_tensors: str | None = "pt",
    ) -> BatchFeature:
        """Encode stars (see `to_arrays` for accepted inputs) and, optionally, what to ask of them.

        Returns:
            A `BatchFeature` with ``input_ids``, ``input_values``, ``input_errors``, ``attention_mask``
            (batch, L); with ``requests``: ``request_ids`` (batch, R); with ``return_labels``: ``labels`` and
            ``label_errors`` (batch, R), the standardised values of the requested names (NaN where the star
            has none; such requests are left out of the loss).
        """
        values, errors = self.to_arrays(stars, input_names=input_names, ignore_unknown=ignore_unknown)
        return self.encode_arrays(
            values, errors, requests, return_labels=return_labels, return_tensors=return_tensors
        )

    def encode_arrays(
        self,
        values: np.ndarray,
        errors: np.ndarray,
        requests: Sequence[str] | Sequence[Sequence[str]] | None = None,
        return_labels: bool = False,
        return_tensors: str | None = "pt",
    ) -> BatchFeature:
        """`__call__` for stars already standardised by `to_arrays`: (batch, vocab_size) values and errors,
        NaN = not observed. Every observed name that is not requested becomes an input token."""
        keep = np.isfinite(values)
        keep[:, 0] = False
        data: dict[str, np.ndarray] = {}
        if requests is not None:
            request_ids = self.request_ids_for(requests, len(values))
            rows = np.arange(len(values))[:, None]
            keep[rows, request_ids] = False
            keep[:, 0] = False
            data["request_ids"] = request_ids
            if return_labels:
                data["labels"] = np.where(request_ids > 0, values[rows, request_ids], np.nan).astype(
                    np.float32
                )
                data["label_errors"] = errors[rows, request_ids].astype(np.float32)
        elif return_labels:
            raise ValueError("return_labels=True needs requests")
        data = {**self.pack(values, errors, keep), **data}
        return BatchFeature(data=data, tensor_type=return_tensors)

    # ----------------------------------------------------------------------------------------- decoding
    def decode(self, ids: Any, mean: Any, log_variance: Any | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Physical-unit mean and standard deviation of standardised values or predictions.

        Args:
            ids: (batch, R) token ids (request ids, or input ids); 0 = padding gives NaN.
            mean: (batch, R) standardised values (``input_values`` or the model's ``mean``).
            log_variance: (batch, R) the model's standardised log-variance; None gives a NaN std. The std is
                the model's sigma times the name's ``sigma_scale`` (its calibration, `set_sigma_scales`).

        Returns:
            ``(mean, std)`` float64 arrays (batch, R) in each name's physical unit.

        Raises:
            ValueError: an id outside the vocabulary, or ``mean``/``log_variance`` not of the shape of ``ids``.
        """
        ids = np.asarray(ids.detach().cpu() if hasattr(ids, "detach") else ids)  # as given, for the error
        self._check_ids(ids)
        ids = ids.astype(np.int64)
        arrays = {"mean": _numpy(mean)} | (
            {} if log_variance is None else {"log_variance": _numpy(log_variance)}
        )
        for argument, array in arrays.items():
            if array.shape != ids.shape:
                raise ValueError(f"decode: {argument} has shape {array.shape}, but ids have {ids.shape}")
        scale = self._scales[ids]
        physical_mean = np.where(ids > 0, arrays["mean"] * scale + self._centers[ids], np.nan)
        if log_variance is None:
            return physical_mean, np.full(ids.shape, np.nan)
        with np.errstate(over="ignore"):  # a log-variance beyond ~1400 is an infinite sigma
            sigma = np.exp(0.5 * arrays["log_variance"]) * scale * self._sigma_scales[ids]
            std = np.where(ids > 0, sigma, np.nan)
        return physical_mean, std


# --------------------------------------------------------------------------------------------- helpers
def _folded(name: str) -> str:
    """``name`` in lower case without punctuation: how a near miss up to spelling conventions is recognised."""
    return "".join(character for character in name.lower() if character.isalnum())


def _setting(value: Any, argument: str, kind: type) -> Any:
    """A positive number setting of the tokenizer as ``kind`` (int: a whole number); ``ValueError`` naming
    ``argument`` and the value as given otherwise (text, a bool, a fraction for an int, zero, NaN)."""
    number = isinstance(value, int | float | np.integer | np.floating) and not isinstance(
        value, bool | np.bool_
    )
    if kind is int:
        number = number and float(value).is_integer()
    if not (number and value > 0):
        what = "a whole number" if kind is int else "a number"
        raise ValueError(f"StarTokenizer: {argument} must be {what} > 0, got {value!r}")
    return kind(value)


def _checked_xp_bases(xp_bases: Any) -> dict[str, dict[str, int]]:
    """A copy of ``xp_bases`` (band -> basis_function_id, n_coefficients), ``ValueError`` naming what is wrong."""
    if not isinstance(xp_bases, Mapping):
        raise ValueError(f"StarTokenizer: xp_bases must map an XP band to its basis, got {xp_bases!r}")
    checked = {}
    for band, basis in xp_bases.items():
        if not isinstance(basis, Mapping) or set(basis) != {"basis_function_id", "n_coefficients"}:
            raise ValueError(
                f"StarTokenizer: xp_bases[{band!r}] must be {{'basis_function_id': int, 'n_coefficients': int}}, "
                f"got {basis!r}"
            )
        checked[str(band)] = {
            "basis_function_id": _setting(
                basis["basis_function_id"], f"xp_bases[{band!r}] basis_function_id", int
            ),
            "n_coefficients": _setting(basis["n_coefficients"], f"xp_bases[{band!r}] n_coefficients", int),
        }
    return checked


def _numpy(array: Any) -> np.ndarray:
    """A float64 numpy copy of a numpy array or torch tensor (any device or dtype)."""
    if hasattr(array, "detach"):
        array = array.detach().float().cpu().numpy()
    return np.asarray(array, dtype=np.float64)


def request_names(requests: Iterable[str], what: str = "requests") -> list[str]:
    """``requests`` (any iterable of names: list, tuple, set, numpy array ...) as a list of ``str``; an entry that
    is not a string raises ``ValueError`` naming it and ``what`` it is part of."""
    if isinstance(requests, str | bytes) or not isinstance(requests, Iterable):
        raise ValueError(f"{what} must be an iterable of observation names, got {requests!r}")
    names = list(requests)
    for name in names:
        if not isinstance(name, str):
            raise ValueError(f"{what}: {name!r} is not an observation name (a string)")
    return [str(name) for name in names]


def is_one_star(stars: Any) -> bool:
    """Whether ``stars`` is one star: a mapping of scalars, an astropy table ``Row`` or a pandas ``Series``."""
    if hasattr(stars, "colnames") and hasattr(stars, "table"):  # astropy Row
        return True
    if hasattr(stars, "index") and hasattr(stars, "iloc") and not hasattr(stars, "columns"):  # pandas Series
        return True
    return isinstance(stars, Mapping) and bool(stars) and all(np.ndim(v) == 0 for v in stars.values())


def _columns_of(stars: Any) -> tuple[int, dict[str, Any]]:
    """One code path for every input shape: (number of stars, {column name: column of length n}).

    Column names are ``str`` of the keys; two keys with the same text, a duplicated table column and a column that
    is not one value per star raise ``ValueError`` naming the column.
    """
    if hasattr(stars, "colnames") and hasattr(stars, "table"):  # astropy Row
        stars = stars.table[stars.index : stars.index + 1]  # a one-row Table keeps its units and masks
    elif is_one_star(stars):  # pandas Series, or a mapping of scalars
        return 1, _unique_columns((k, [v]) for k, v in stars.items())
    if hasattr(stars, "colnames"):  # astropy Table / QTable
        columns = _unique_columns((name, stars[name]) for name in stars.colnames)
        n_stars = len(stars)
    elif hasattr(stars, "columns") and hasattr(stars, "iloc"):  # pandas DataFrame
        columns = _unique_columns((name, stars.iloc[:, i].to_numpy()) for i, name in enumerate(stars.columns))
        n_stars = len(stars)
    elif isinstance(stars, Mapping):
        if not stars:
            raise ValueError("star 0 has no observations")
        if any(np.ndim(v) == 0 for v in stars.values()):
            raise ValueError("a mapping must hold either one star (scalars) or columns (sequences), not both")
        lengths = {len(v) for v in stars.values()}
        if len(lengths) != 1:
            raise ValueError(f"columns have different lengths: {sorted(lengths)}")
        n_stars, columns = lengths.pop(), _unique_columns(stars.items())
    elif isinstance(stars, Sequence) and not isinstance(stars, (str, bytes)):
        for i, star in enumerate(stars):
            if not isinstance(star, Mapping):
                raise ValueError(
                    f"star {i}: expected a mapping of observation name -> value, got {type(star).__name__}"
                )
            _unique_columns((k, None) for k in star)  # two keys with the same text in one star
        names = list(dict.fromkeys(str(k) for star in stars for k in star))
        by_text = [{str(k): v for k, v in star.items()} for star in stars]
        columns = {name: [star.get(name, math.nan) for star in by_text] for name in names}
        n_stars = len(stars)
    else:
        raise ValueError(
            f"cannot read stars from a {type(stars).__name__}: give a mapping, a list of mappings or a table"
        )
    for name, column in columns.items():
        shape = np.shape(column) if not isinstance(column, list) else (len(column),)
        if shape != (n_stars,):
            raise ValueError(f"column {name!r} has shape {shape}: expected one value per star, ({n_stars},)")
    return n_stars, columns


def _unique_columns(items: Iterable[tuple[Any, Any]]) -> dict[str, Any]:
    """``{str(key): column}``; a key whose text repeats (a duplicated table column, ``5`` and ``"5"``) raises."""
    columns: dict[str, Any] = {}
    for key, column in items:
        name = str(key)
        if name in columns:
            raise ValueError(f"column {name!r} appears more than once")
        columns[name] = column
    return columns


def _first_star_with(stars: Any, column: str) -> int:
    """Index of the first star that carries ``column`` (0 for columnar input)."""
    if isinstance(stars, Sequence) and not isinstance(stars, (str, bytes)):
        return next(i for i, star in enumerate(stars) if column in map(str, star))
    return 0


def _float_column(column: Any, name: str, unit: str, n_stars: int) -> np.ndarray:
    """A float64 (n_stars,) copy of one column: not observed (NaN, None, ``pd.NA``, ``pd.NaT``, masked) is NaN; a
    wrong unit, or an entry that is not a real number, raises ``ValueError`` naming the star and ``name``."""
    column_unit = getattr(column, "unit", None)
    if column_unit is not None and str(column_unit) not in (unit, ""):
        raise ValueError(
            f"observation {name!r}: column unit {str(column_unit)!r}, but the vocabulary needs {unit!r}"
        )
    masked = np.zeros(n_stars, dtype=bool)
    if np.ma.isMaskedArray(column) or hasattr(column, "mask"):
        masked |= np.broadcast_to(np.ma.getmaskarray(column), (n_stars,))
    if isinstance(column, (list, tuple)):  # keep each item's own type: np.asarray([1.0, True]) is float
        data = np.empty(n_stars, dtype=object)
        for star, item in enumerate(column):
            data[star] = item
    else:
        data = np.asarray(getattr(column, "value", column))
    kind = data.dtype.kind
    if kind in "fiu":
        result = data.astype(np.float64)
    elif kind == "c" and not np.any(data.imag[~masked]):
        result = data.real.astype(np.float64)
    elif kind in "Mm":
        masked |= np.isnat(data)
        _raise_for_first(data, ~masked, name)  # a date or a duration that is not NaT
        result = np.full(n_stars, np.nan)
    else:
        result = np.full(n_stars, np.nan)
        for star in np.flatnonzero(~masked):
            result[star] = _real_number(data[star], star, name)
    result[masked] = np.nan
    return result


_SHORT = reprlib.Repr()
"""Shortens the entries quoted in error messages (an int of 400 digits, a long text)."""
_SHORT.maxstring, _SHORT.maxlong, _SHORT.maxother = 40, 40, 60


def _raise_for_first(data: np.ndarray, bad: np.ndarray, name: str) -> None:
    """Raise `_real_number`'s error for the first star where ``bad`` is set (nothing when none is)."""
    if bad.any():
        star = int(np.argmax(bad))
        _real_number(data[star], star, name)


def _real_number(item: Any, star: int, name: str) -> float:
    """One entry as a float (NaN when it means "not observed"); ``ValueError`` naming the star and the observation
    when it is not a real number."""
    if item is None or type(item).__name__ in ("NAType", "NaTType"):
        return math.nan
    if isinstance(item, np.datetime64 | np.timedelta64) and np.isnat(item):
        return math.nan
    what = None
    if isinstance(item, bool | np.bool_):
        what = "a boolean"
    elif isinstance(item, datetime.date | datetime.time | np.datetime64):
        what = "a date or time"
    elif isinstance(item, datetime.timedelta | np.timedelta64):
        what = "a duration"
    elif isinstance(item, complex | np.complexfloating) and item.imag:
        what = "a complex number"
    if what is None:
        try:
            return float(item.real if isinstance(item, complex | np.complexfloating) else item)
        except OverflowError:
            what = "an integer beyond the float range"
        except (TypeError, ValueError):
            what = "text" if isinstance(item, str | bytes) else type(item).__name__
    raise StarInputError(star, name, f"observation {name!r}: {_SHORT.repr(item)} is not a number ({what})")
