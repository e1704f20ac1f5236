"""metaprompt_hf: MetaPrompt (Zhao et al., "Learning Domain Invariant Prompt for Vision-Language Models",
IEEE TIP 2024) as a PEFT-style adapter around transformers' CLIPModel."""

from .backbones import get_backbone, register_backbone
from .constants import __version__
from .inputs.templates import templates_for_dataset
from .modeling.configuration_metaprompt import CONFIG_NAME, MetaPromptConfig
from .modeling.heads import AdapterHead, register_adapter_head
from .modeling.losses import asymmetric_contrastive_loss, coupled_logits
from .modeling.modeling_metaprompt import (
    WEIGHTS_NAME,
    MetaPromptModel,
    MetaPromptOutput,
    get_metaprompt_model,
)
from .pipelines import pipeline, register_pipeline

# `transformers.pipeline("zero-shot-image-classification", model=<MetaPromptModel>)` works once the package is
# imported; other models keep transformers' own pipeline (see pipelines.py).
register_pipeline()

# The training side (methods, protocols) is imported only when one of its names is asked for, so `import
# metaprompt_hf` and predicting with an adapter load no training module (docs/architecture.md §1).
_LAZY = {
    "register_method": "metaprompt_hf.methods",
    "get_method": "metaprompt_hf.methods",
    "register_protocol": "metaprompt_hf.protocols",
    "get_protocol": "metaprompt_hf.protocols",
}


def __getattr__(name: str) -> object:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'metaprompt_hf' has no attribute {name!r}")


__all__ = [
    "CONFIG_NAME",
    "WEIGHTS_NAME",
    "AdapterHead",
    "MetaPromptConfig",
    "MetaPromptModel",
    "MetaPromptOutput",
    "__version__",
    "asymmetric_contrastive_loss",
    "coupled_logits",
    "get_backbone",
    "get_metaprompt_model",
    "get_method",
    "get_protocol",
    "pipeline",
    "register_adapter_head",
    "register_backbone",
    "register_method",
    "register_protocol",
    "templates_for_dataset",
]
