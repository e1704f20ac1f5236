"""Registry of dual-encoder backbones, keyed by the base model's `config.model_type`.

Adding a backbone family is one module with a `DualEncoderBackbone` subclass and one line in `BACKBONES`.
"""

from __future__ import annotations

import os
from typing import Any

from torch import nn

from ..constants import EMBEDDED_CLIP, EMBEDDED_NAME
from ..hub.cache import diagnose_cache
from .base import DualEncoderBackbone
from .clip import CLIPBackbone
from .siglip import SiglipBackbone

BACKBONES: dict[str, type[DualEncoderBackbone]] = {
    CLIPBackbone.model_type: CLIPBackbone,
    SiglipBackbone.model_type: SiglipBackbone,
}


def register_backbone(
    model_type: str, cls: type[DualEncoderBackbone], *, overwrite: bool = False
) -> type[DualEncoderBackbone]:
    """Register a `DualEncoderBackbone` subclass for base models whose `config.model_type` is `model_type`; refuses to
    replace a registered type unless `overwrite`. The class's `model_type` attribute is set to the key."""
    if not isinstance(model_type, str) or not model_type.strip():
        raise ValueError(f"model_type: expected a non-empty string, got {model_type!r}")
    if not (isinstance(cls, type) and issubclass(cls, DualEncoderBackbone)):
        raise TypeError(f"register_backbone({model_type!r}, ...): expected a subclass of DualEncoderBackbone")
    if model_type in BACKBONES and BACKBONES[model_type] is not cls and not overwrite:
        raise ValueError(f"backbone {model_type!r} is already registered ({BACKBONES[model_type].__name__})")
    cls.model_type = model_type
    BACKBONES[model_type] = cls
    return cls


def backbone_class(model_type: str | None, source: str = "base model") -> type[DualEncoderBackbone]:
    """The registered backbone for a transformers `model_type`; a clear error for any other."""
    cls = BACKBONES.get(model_type or "")
    if cls is None:
        raise ValueError(
            f"{source}: model_type {model_type!r} has no MetaPrompt backbone; supported: {sorted(BACKBONES)}"
        )
    return cls


def get_backbone(model: nn.Module | str) -> DualEncoderBackbone | type[DualEncoderBackbone]:
    """Wrap a stock transformers dual encoder (e.g. `CLIPModel`, `SiglipModel`) in its registered backbone; given a
    `model_type` string, return the registered backbone class."""
    if isinstance(model, str):
        return backbone_class(model)
    if isinstance(model, DualEncoderBackbone):
        return model
    config = getattr(model, "config", None)
    model_type = getattr(config, "model_type", None)
    if model_type is None:
        raise TypeError(
            f"base model: expected a transformers dual encoder (CLIPModel, ...), got {type(model).__name__}"
        )
    return backbone_class(model_type, source=type(model).__name__)(model)


def resolve_base_model(name_or_path: str) -> str:
    """Map `"embedded"` to the small CLIP shipped inside the package; anything else is returned unchanged."""
    if name_or_path != EMBEDDED_NAME:
        return name_or_path
    if not (EMBEDDED_CLIP / "config.json").is_file():
        raise FileNotFoundError(f"the embedded CLIP is missing: {EMBEDDED_CLIP} has no config.json")
    return str(EMBEDDED_CLIP)


def load_base_model(name_or_path: str, *, revision: str | None = None, **kwargs: Any) -> nn.Module:
    """Load a base model of any registered type from a folder or Hub id (safetensors only, no remote code)."""
    from transformers import AutoConfig

    hub = {k: kwargs[k] for k in ("cache_dir", "token", "local_files_only") if k in kwargs}
    try:
        config = AutoConfig.from_pretrained(name_or_path, revision=revision, **hub)
        return backbone_class(config.model_type, name_or_path).load_model(name_or_path, revision=revision, **kwargs)
    except OSError as err:
        raise _load_error("base model", name_or_path, revision, hub.get("cache_dir"), err) from err


def load_base_processor(name_or_path: str, *, revision: str | None = None, **kwargs: Any) -> Any:
    """The processor (tokenizer + image processor) of a base model of any registered type."""
    from transformers import AutoConfig

    try:
        config = AutoConfig.from_pretrained(name_or_path, revision=revision, **kwargs)
        cls = backbone_class(config.model_type, name_or_path)
        return cls.load_processor(name_or_path, revision=revision, **kwargs)
    except OSError as err:
        raise _load_error("processor of", name_or_path, revision, kwargs.get("cache_dir"), err) from err


def _load_error(what: str, name_or_path: str, revision: str | None, cache_dir: Any, err: OSError) -> OSError:
    # A broken Hugging Face cache entry (a bad ref, a missing snapshot, a dangling link) is named as such, with the
    # repair, instead of transformers' "not found".
    broken = (
        None
        if os.path.isdir(name_or_path)
        else diagnose_cache(name_or_path, "config.json", revision=revision, cache_dir=cache_dir)
    )
    detail = broken if broken is not None else str(err)
    return OSError(f"could not load the {what} {name_or_path!r} (revision {revision or 'main'}): {detail}")


__all__ = [
    "BACKBONES",
    "CLIPBackbone",
    "DualEncoderBackbone",
    "register_backbone",
    "SiglipBackbone",
    "backbone_class",
    "get_backbone",
    "load_base_model",
    "load_base_processor",
    "resolve_base_model",
]
