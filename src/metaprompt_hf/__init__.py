"""metaprompt_hf: MetaPrompt (Zhao et al., "Learning Domain Invariant Prompt for Vision-Language Models",
IEEE TIP 2024) as a PEFT-style adapter around transformers' CLIPModel."""

from .constants import __version__  # noqa: E402
from .configuration_metaprompt import CONFIG_NAME, MetaPromptConfig  # noqa: E402
from .losses import asymmetric_contrastive_loss, coupled_logits  # noqa: E402
from .modeling_metaprompt import (  # noqa: E402
    WEIGHTS_NAME,
    MetaPromptModel,
    MetaPromptOutput,
    get_metaprompt_model,
)
from .pipelines import pipeline, register_pipeline  # noqa: E402
from .templates import templates_for_dataset  # noqa: E402

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
