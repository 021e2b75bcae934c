"""The star tokenizer: observations in physical units -> standardised (name id, value) tokens, and back.

A star is an unordered set of observations. Each has a *name* from the vocabulary (``bp3``, ``jh``, ``teff``
...), a value in the name's physical unit and, optionally, an uncertainty in the same unit, given as the
column ``<name>_err``. The vocabulary -- names, units, whether a name may be requested, and the
normalisation centre and scale of each -- is data held in ``preprocessor_config.json``, so a new survey or a
Gaia release with another number of XP coefficients is a new file, not new code.

Conventions (house style, after chronos' tokenizer):
    * NaN means "not observed": the token is left out (not an error).
    * A NaN uncertainty on an observed value means "unknown" and is taken as 0.
    * Id 0 is padding; ``attention_mask`` is 1 on real tokens.
    * A requested name is never also an input of the same star (the model is trained that way).
    * A star with more observations than ``context_length`` keeps those with the lowest ``priority``
      (a vocabulary field; default: vocabulary order), deterministically, and a warning says so.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from transformers.feature_extraction_utils import BatchFeature, FeatureExtractionMixin
from transformers.utils import logging

logger = logging.get_logger(__name__)

ERROR_SUFFIX = "_err"


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
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        if not vocabulary:
            raise ValueError("StarTokenizer: the vocabulary is empty")
        if context_length < 1:
            raise ValueError(f"StarTokenizer: context_length must be positive, got {context_length}")
        self.vocabulary = [dict(entry) for entry in vocabulary]
        self.context_length = int(context_length)
        self.vocabulary_name = vocabulary_name
        self.source = source
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
        self._priority = np.array(
            [np.inf] + [float(e.get("priority", i)) for i, e in enumerate(self.vocabulary)], dtype=np.float64
        )

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

    def convert_names_to_ids(self, names: Sequence[str], star: int | None = None) -> list[int]:
        """Ids of ``names``; an unknown name raises ``ValueError`` with the closest known name."""
        return [self._id_of(name, star) for name in names]

    def convert_ids_to_names(self, ids: Sequence[int]) -> list[str]:
        """Names of ``ids`` (0 gives "<pad>")."""
        return [self._names[int(i)] for i in ids]

    def _id_of(self, name: str, star: int | None = None) -> int:
        if name in self._name_to_id:
            return self._name_to_id[name]
        close = difflib.get_close_matches(str(name), self.observation_names, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        where = f"star {star}: " if star is not None else ""
        raise ValueError(f"{where}unknown observation name {name!r}{hint}")

    def set_normalization(self, statistics: Mapping[str, Mapping[str, float]]) -> None:
        """Take centre and scale of each name found in ``statistics`` (a dataset's ``meta/stats.json``:
        ``{name: {"center": nanmedian, "scale": mad_std, ...}}``, physical units). Names it lacks keep theirs."""
        for entry in self.vocabulary:
            stat = statistics.get(entry["name"])
            if stat is not None:
                entry["center"], entry["scale"] = float(stat["center"]), float(stat["scale"])
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
            ignore_unknown: skip columns that are not vocabulary names instead of raising.

        Returns:
            ``(values, errors)``, each float64 of shape (batch, vocab_size): standardised values (NaN = not
            observed; column 0, padding, is NaN) and standardised uncertainties (0 where unknown).
        """
        n_stars, columns = _columns_of(stars)
        if n_stars == 0:
            raise ValueError("no stars given")
        known = set(self._name_to_id)
        if input_names is not None:
            wanted = list(input_names)
            for name in wanted:
                self._id_of(name)
        else:
            wanted = []
            for column in columns:
                base = column[: -len(ERROR_SUFFIX)] if column.endswith(ERROR_SUFFIX) else column
                if column in known:
                    wanted.append(column)
                elif base not in known and not ignore_unknown:
                    self._id_of(column, star=_first_star_with(stars, column))
        values = np.full((n_stars, self.vocab_size), np.nan)
        errors = np.zeros((n_stars, self.vocab_size))
        for name in wanted:
            if name not in columns:
                continue
            token = self._name_to_id[name]
            unit = self.vocabulary[token - 1]["unit"]
            physical = _float_column(columns[name], name, unit)
            bad = np.isinf(physical)
            if bad.any():
                star = int(np.argmax(bad))
                raise ValueError(
                    f"star {star}, observation {name!r}: value {physical[star]} is not finite "
                    "(use NaN for 'not observed')"
                )
            values[:, token] = (physical - self._centers[token]) / self._scales[token]
            error_column = name + ERROR_SUFFIX
            if error_column in columns:
                sigma = _float_column(columns[error_column], error_column, unit)
                bad = np.isinf(sigma) | (sigma < 0)
                if bad.any():
                    star = int(np.argmax(bad))
                    raise ValueError(
                        f"star {star}, observation {name!r}: uncertainty {sigma[star]} must be finite and >= 0"
                    )
                errors[:, token] = np.nan_to_num(sigma, nan=0.0) / self._scales[token]
        return values, errors

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
            raise ValueError(f"star {star} has no observations to encode (all NaN, or all of them requested)")
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

    def request_ids_for(self, requests: Sequence[str] | Sequence[Sequence[str]], n_stars: int) -> np.ndarray:
        """(batch, R) int64 ids of the requests: one list for every star, or one list per star (padded with 0)."""
        if isinstance(requests, str):
            raise ValueError("requests must be a list of names, e.g. ['teff'], not a bare string")
        per_star = bool(requests) and not isinstance(requests[0], str)
        lists = list(requests) if per_star else [list(requests)] * n_stars
        if len(lists) != n_stars:
            raise ValueError(f"requests: got {len(lists)} lists for {n_stars} stars")
        width = max((len(r) for r in lists), default=0)
        if width == 0:
            raise ValueError("requests is empty: name at least one observation to predict")
        ids = np.zeros((n_stars, width), dtype=np.int64)
        for star, names in enumerate(lists):
            for j, name in enumerate(names):
                token = self._id_of(name, star)
                if not self._requestable[token]:
                    raise ValueError(f"star {star}: {name!r} is in the vocabulary but cannot be requested")
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
            log_variance: (batch, R) the model's standardised log-variance; None gives a NaN std.

        Returns:
            ``(mean, std)`` float64 arrays (batch, R) in each name's physical unit.
        """
        ids = _numpy(ids).astype(np.int64)
        scale = self._scales[ids]
        physical_mean = np.where(ids > 0, _numpy(mean) * scale + self._centers[ids], np.nan)
        if log_variance is None:
            return physical_mean, np.full(ids.shape, np.nan)
        std = np.where(ids > 0, np.exp(0.5 * _numpy(log_variance)) * scale, np.nan)
        return physical_mean, std


# --------------------------------------------------------------------------------------------- helpers
def _numpy(array: Any) -> np.ndarray:
    """A float64 numpy copy of a numpy array or torch tensor (any device or dtype)."""
    if hasattr(array, "detach"):
        array = array.detach().float().cpu().numpy()
    return np.asarray(array, dtype=np.float64)


def _columns_of(stars: Any) -> tuple[int, dict[str, Any]]:
    """One code path for every input shape: (number of stars, {column name: column of length n})."""
    if hasattr(stars, "colnames"):  # astropy Table / QTable
        return len(stars), {str(name): stars[name] for name in stars.colnames}
    if hasattr(stars, "columns") and hasattr(stars, "iloc"):  # pandas DataFrame
        return len(stars), {str(name): stars[name].to_numpy() for name in stars.columns}
    if isinstance(stars, Mapping):
        if not stars:
            raise ValueError("star 0 has no observations")
        scalar = [np.ndim(v) == 0 for v in stars.values()]
        if all(scalar):  # one star
            return 1, {str(k): [v] for k, v in stars.items()}
        if any(scalar):
            raise ValueError("a mapping must hold either one star (scalars) or columns (sequences), not both")
        lengths = {len(v) for v in stars.values()}
        if len(lengths) != 1:
            raise ValueError(f"columns have different lengths: {sorted(lengths)}")
        return lengths.pop(), {str(k): v for k, v in stars.items()}
    if isinstance(stars, Sequence) and not isinstance(stars, str):
        for i, star in enumerate(stars):
            if not isinstance(star, Mapping):
                raise ValueError(
                    f"star {i}: expected a mapping of observation name -> value, got {type(star).__name__}"
                )
        names = list(dict.fromkeys(k for star in stars for k in star))
        return len(stars), {str(n): [star.get(n, math.nan) for star in stars] for n in names}
    raise ValueError(
        f"cannot read stars from a {type(stars).__name__}: give a mapping, a list of mappings or a table"
    )


def _first_star_with(stars: Any, column: str) -> int:
    """Index of the first star that carries ``column`` (0 for columnar input)."""
    if isinstance(stars, Sequence) and not isinstance(stars, str):
        return next(i for i, star in enumerate(stars) if column in star)
    return 0


def _float_column(column: Any, name: str, unit: str) -> np.ndarray:
    """A float64 copy of one column; masked or missing entries become NaN, a wrong unit or text raises."""
    column_unit = getattr(column, "unit", None)
    if column_unit is not None and str(column_unit) not in (unit, ""):
        raise ValueError(
            f"observation {name!r}: column unit {str(column_unit)!r}, but the vocabulary needs {unit!r}"
        )
    mask = np.ma.getmaskarray(column) if np.ma.isMaskedArray(column) or hasattr(column, "mask") else None
    data = np.asarray(getattr(column, "value", column))
    try:
        result = data.astype(np.float64)
    except (TypeError, ValueError):
        result = np.empty(len(data))
        for star, item in enumerate(data.tolist()):
            if item is None or type(item).__name__ == "NAType":
                result[star] = np.nan
                continue
            try:
                result[star] = float(item)
            except (TypeError, ValueError):
                raise ValueError(f"star {star}, observation {name!r}: {item!r} is not a number") from None
    if mask is not None and mask.shape == result.shape:
        result[mask] = np.nan
    return result
