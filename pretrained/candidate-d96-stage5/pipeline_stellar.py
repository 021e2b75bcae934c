"""The ``tabular-regression`` pipeline: stars in physical units -> requested observations with a mean and a sigma.

A saved model folder registers this class in ``config.json`` (``custom_pipelines``), so

    >>> from transformers import pipeline
    >>> predictor = pipeline(model="user/stellar-foundation-apogee-xp", trust_remote_code=True)  # doctest: +SKIP
    >>> predictor({"bp0": 0.31, "rp0": 0.42, "bprp": 1.2, "jh": 0.5, "jk": 0.6})  # doctest: +SKIP
    {'teff': {'mean': 4712.3, 'std': 61.0, 'unit': 'K'}, 'logg': {...}, 'fe_h': {...}}

returns this pipeline with no task named. Like the rest of ``modeling_stellar`` it travels as remote code and
imports only torch, transformers, numpy and its siblings.

The whole input is tokenised in one call (so a bad value raises the tokenizer's own error, naming the star and
the observation), then read by the encoder once per star and answered for every request in one decoder pass, in
batches of ``batch_size`` stars. For catalogues larger than memory use the ``stellar-foundation predict`` command,
which streams.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
import torch
from transformers import Pipeline
from transformers.utils import logging

from .tokenization_stellar import is_one_star, request_names

logger = logging.get_logger(__name__)

STELLAR_PARAMETERS = ("teff", "logg")
"""Requested by default, with the first of `METALLICITY_NAMES` the vocabulary has."""

METALLICITY_NAMES = ("fe_h", "m_h")
"""[Fe/H] (our APOGEE x Gaia XP vocabulary), else [M/H] (the published vocabulary)."""

DEFAULT_BATCH_SIZE = 1024
"""Stars per encoder/decoder pass: ~1 MB of activations per star-token batch at d_model 128; CPU-friendly."""


def positive_integer(value: Any, argument: str) -> int:
    """``value`` as an int if it is a whole number >= 1 (bools are not); else ``ValueError`` naming ``argument``.

    The one check of ``batch_size`` and ``chunk_size`` for the pipeline, the catalogue helpers and the CLI."""
    if isinstance(value, bool | np.bool_) or not isinstance(value, int | np.integer) or value < 1:
        raise ValueError(f"{argument} must be a positive integer, got {value!r}")
    return int(value)


class StellarParameterPipeline(Pipeline):
    r"""Predict observations of stars (by default Teff, log g and metallicity) with their uncertainties.

    Load it with ``pipeline(model=FOLDER_OR_REPO, trust_remote_code=True)``; the feature extractor is the
    model's `StarTokenizer`.

    Call arguments:
        inputs: one star (a mapping observation name -> value, plus optional ``<name>_err``, physical units, an
            astropy table ``Row`` or a pandas ``Series``), a list of such mappings, or a columnar table (pandas
            DataFrame, astropy Table, mapping name -> sequence) with one column per observation name. NaN, None,
            ``pd.NA``, ``pd.NaT`` and masked entries = not observed.
        requests (iterable of `str`, *optional*): names to predict (one name may be given as a bare string);
            default ``teff``, ``logg`` and the vocabulary's metallicity (``fe_h``, else ``m_h``). A requested name
            is never read as an input.
        batch_size (`int`, *optional*, defaults to 1024): stars per model pass, a positive integer.
        ignore_unknown (`bool`, *optional*, defaults to `False`): skip columns that are not observation names
            (identifiers of a table, say) instead of raising.

    Returns:
        For one star a dict ``{name: {"mean": float, "std": float, "unit": str, "out_of_range": list[str]}}`` per
        request, in the name's physical unit (std = the model's predicted sigma; ``out_of_range``: the inputs it read
        outside the training stars' envelope, `StarTokenizer.out_of_range`, empty when none; when every XP
        coefficient of a band is, a warning names the stars and the likely cause); for a list or a table, a list of
        such dicts in input order.

    Raises:
        ValueError: before any work, a ``batch_size`` that is not a positive integer, or a request that is not a
            requestable name (naming it); then the tokenizer's errors, unchanged, naming the star and the
            observation: an unknown observation name (with the closest known one), a value that is not a real
            number, infinite, physically impossible or far out of the model's range, a negative uncertainty, a
            duplicated or 2-D column (naming it), a star with nothing to read.

    Example:

    ```python
    >>> predictor = pipeline(model="pretrained/stellar-foundation-apogee-xp", trust_remote_code=True)
    >>> predictor([{"bprp": 1.2, "jh": 0.5, "jk": 0.6}, {"bprp": 0.9, "jh": 0.4}], requests=["teff"])
    [{'teff': {'mean': 4630.1, 'std': 180.2, 'unit': 'K'}}, {'teff': {'mean': 5402.7, 'std': 240.9, 'unit': 'K'}}]
    ```
    """

    _load_feature_extractor = True
    _load_tokenizer = False
    _load_image_processor = False
    _load_video_processor = False
    _load_processor = False

    def __call__(self, inputs: Any, batch_size: int | None = None, **kwargs) -> dict | list[dict]:
        """See the class docstring. A list of stars is one batch (transformers would run one star at a time)."""
        batch_size = self._batch_size if batch_size is None else batch_size
        preprocess, forward, postprocess = self._sanitize_parameters(batch_size=batch_size, **kwargs)
        # Parameters given at construction, overridden by those of this call.
        return self.run_single(
            inputs,
            {**self._preprocess_params, **preprocess},
            {**self._forward_params, **forward},
            {**self._postprocess_params, **postprocess},
        )

    def _sanitize_parameters(
        self,
        requests: str | Iterable[str] | None = None,
        batch_size: int | None = None,
        ignore_unknown: bool | None = None,
    ) -> tuple[dict, dict, dict]:
        preprocess: dict[str, Any] = {}
        forward: dict[str, Any] = {}
        if requests is not None:
            requests = request_names([requests] if isinstance(requests, str) else requests)
            # An unknown or unrequestable name, or none at all: raise now, before any star is read.
            self.feature_extractor.request_ids_for(requests, 1)
            preprocess["requests"] = requests
        if ignore_unknown is not None:
            preprocess["ignore_unknown"] = ignore_unknown
        if batch_size is not None:
            forward["batch_size"] = positive_integer(batch_size, "batch_size")
        return preprocess, forward, {}

    def default_requests(self) -> list[str]:
        """``teff``, ``logg`` and the vocabulary's metallicity name."""
        names = set(self.feature_extractor.observation_names)
        metallicity = [name for name in METALLICITY_NAMES if name in names][:1]
        return [*STELLAR_PARAMETERS, *metallicity]

    def preprocess(
        self, inputs: Any, requests: list[str] | None = None, ignore_unknown: bool = False
    ) -> dict[str, Any]:
        """Tokenise every star at once: ``input_ids``, ``input_values``, ``attention_mask`` (n_stars, L) and
        ``request_ids`` (n_stars, R) tensors, ``out_of_range`` (per star, the names it reads outside the training
        envelope) and ``single`` (whether one star was given as a mapping)."""
        tokenizer = self.feature_extractor
        requests = requests or self.default_requests()
        values, errors = tokenizer.to_arrays(inputs, ignore_unknown=ignore_unknown)
        batch = tokenizer.encode_arrays(values, errors, requests)
        read = values.copy()
        read[:, tokenizer.convert_names_to_ids(list(requests))] = np.nan  # a requested name is never read
        hints = tokenizer.range_hints(read)
        stars = [str(star) for star, hint in enumerate(hints) if hint]
        if stars:
            logger.warning(
                f"star(s) {', '.join(stars[:10])}{' ...' if len(stars) > 10 else ''}: {hints[int(stars[0])]}"
            )
        return {
            **{key: batch[key] for key in ("input_ids", "input_values", "attention_mask", "request_ids")},
            "out_of_range": tokenizer.out_of_range_names(read),
            "single": is_one_star(inputs),
        }

    def _forward(self, model_inputs: dict[str, Any], batch_size: int = DEFAULT_BATCH_SIZE) -> dict[str, Any]:
        """Encode each star once and answer all its requests in one decoder pass, ``batch_size`` stars at a time.

        Each batch is cut to its own longest star (the tokenizer puts a star's tokens first, padding last).
        Returns ``request_ids``, ``mean`` and ``log_variance`` (n_stars, R), standardised.
        """
        means, log_variances = [], []
        n_stars = model_inputs["input_ids"].shape[0]
        for start in range(0, n_stars, batch_size):
            rows = slice(start, start + batch_size)
            mask = model_inputs["attention_mask"][rows]
            length = int(mask.sum(dim=1).max())
            encoded = self.model.encode(
                model_inputs["input_ids"][rows, :length],
                model_inputs["input_values"][rows, :length],
                mask[:, :length],
            )
            mean, log_variance, _ = self.model.predict(encoded, model_inputs["request_ids"][rows])
            means.append(mean)
            log_variances.append(log_variance)
        return {
            "request_ids": model_inputs["request_ids"],
            "mean": torch.cat(means),
            "log_variance": torch.cat(log_variances),
            "out_of_range": model_inputs["out_of_range"],
            "single": model_inputs["single"],
        }

    def postprocess(self, model_outputs: dict[str, Any]) -> dict | list[dict]:
        """Physical units: ``{name: {"mean", "std", "unit"}}`` per star."""
        tokenizer = self.feature_extractor
        mean, std = tokenizer.decode(
            model_outputs["request_ids"], model_outputs["mean"], model_outputs["log_variance"]
        )
        names = tokenizer.convert_ids_to_names(model_outputs["request_ids"][0].tolist())
        units = tokenizer.units
        stars = [
            {
                name: {
                    "mean": float(mean[star, j]),
                    "std": float(std[star, j]),
                    "unit": units[name],
                    "out_of_range": list(model_outputs["out_of_range"][star]),
                }
                for j, name in enumerate(names)
            }
            for star in range(len(mean))
        ]
        return stars[0] if model_outputs["single"] else stars
