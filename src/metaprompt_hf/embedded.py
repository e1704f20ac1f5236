"""The embedded offline default: a small CLIP pretrained on the mini world, and a MetaPrompt adapter trained on it,
both shipped inside the package. They let every command run with no network at all.

`base_model="embedded"` anywhere a base model is named resolves to the shipped small CLIP
(`backbones.resolve_base_model`).
"""

from __future__ import annotations

from typing import Any

from .backbones import resolve_base_model
from .constants import ASSETS, EMBEDDED_ADAPTER, EMBEDDED_CLIP, EMBEDDED_NAME, WEIGHTS_NAME
from .modeling.modeling_metaprompt import MetaPromptModel

__all__ = ["ASSETS", "EMBEDDED_ADAPTER", "EMBEDDED_CLIP", "EMBEDDED_NAME", "load_default_model", "resolve_base_model"]


def load_default_model(**kwargs: Any) -> MetaPromptModel:
    """The shipped MetaPrompt adapter on the shipped small CLIP, ready for `predict` (offline)."""
    if not (EMBEDDED_ADAPTER / WEIGHTS_NAME).is_file():
        raise FileNotFoundError(f"the embedded adapter is missing: no {WEIGHTS_NAME} in {EMBEDDED_ADAPTER}")
    return MetaPromptModel.from_pretrained(
        str(EMBEDDED_ADAPTER), base_model=resolve_base_model(EMBEDDED_NAME), **kwargs
    )
