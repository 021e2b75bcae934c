"""stellar-foundation's model package: configuration, star tokenizer, model and pipeline.

These files travel to the Hub as remote code (``trust_remote_code=True``); they import only torch,
transformers, numpy and each other. Importing this package registers the classes with the Auto classes, so
pip users can load a saved folder without ``trust_remote_code``.
"""

from transformers import AutoConfig, AutoFeatureExtractor, AutoModel
from transformers.pipelines import PIPELINE_REGISTRY

from .configuration_stellar import StellarConfig
from .modeling_stellar import (
    StellarForObservationPrediction,
    StellarModel,
    StellarPredictionOutput,
    StellarPreTrainedModel,
    gaussian_nll,
)
from .pipeline_stellar import StellarParameterPipeline
from .tokenization_stellar import StarInputError, StarTokenizer

__all__ = [
    "StarInputError",
    "StarTokenizer",
    "StellarConfig",
    "StellarForObservationPrediction",
    "StellarModel",
    "StellarParameterPipeline",
    "StellarPreTrainedModel",
    "StellarPredictionOutput",
    "gaussian_nll",
]

# Saved folders carry `auto_map` and these files, so they load anywhere with trust_remote_code=True.
StellarConfig.register_for_auto_class()
StellarForObservationPrediction.register_for_auto_class("AutoModel")
StarTokenizer.register_for_auto_class("AutoFeatureExtractor")
# In-process registration for pip users.
AutoConfig.register(StellarConfig.model_type, StellarConfig, exist_ok=True)
AutoModel.register(StellarConfig, StellarForObservationPrediction, exist_ok=True)
AutoFeatureExtractor.register(StellarConfig, StarTokenizer, exist_ok=True)
# `pipeline("tabular-regression", model=...)` in-process; a saved folder names the class in `custom_pipelines`.
PIPELINE_REGISTRY.register_pipeline(
    "tabular-regression", pipeline_class=StellarParameterPipeline, pt_model=AutoModel
)
