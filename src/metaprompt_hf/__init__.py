"""metaprompt_hf: MetaPrompt (Zhao et al., "Learning Domain Invariant Prompt for Vision-Language Models",
IEEE TIP 2024) as a PEFT-style adapter around transformers' CLIPModel."""

from .configuration_metaprompt import CONFIG_NAME, MetaPromptConfig
from .constants import __version__
from .losses import asymmetric_contrastive_loss, coupled_logits
from .modeling_metaprompt import (
    WEIGHTS_NAME,
    MetaPromptModel,
    MetaPromptOutput,
    get_metaprompt_model,
)
from .pipelines import pipeline, register_pipeline
from .templates import templates_for_dataset

# `transformers.pipeline("zero-shot-image-classification", model=<MetaPromptModel>)` works once the package is
# imported; other models keep transformers' own pipeline (see pipelines.py).
register_pipeline()

__all__ = [
    "CONFIG_NAME",
    "WEIGHTS_NAME",
    "MetaPromptConfig",
    "MetaPromptModel",
    "MetaPromptOutput",
    "__version__",
    "asymmetric_contrastive_loss",
    "coupled_logits",
    "get_metaprompt_model",
    "pipeline",
    "templates_for_dataset",
]
