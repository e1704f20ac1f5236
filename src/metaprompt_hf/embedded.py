"""The embedded offline default: a small CLIP pretrained here on the mini world, and a MetaPrompt adapter trained
on it, both shipped inside the package (issue 4). They let every command run with no network at all.

`base_model="embedded"` anywhere a base model is named resolves to the shipped small CLIP.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

ASSETS = Path(__file__).resolve().parent / "assets"
EMBEDDED_CLIP = ASSETS / "mini-clip"
EMBEDDED_ADAPTER = ASSETS / "metaprompt-mini"
EMBEDDED_NAME = "embedded"


def resolve_base_model(name_or_path: str) -> str:
    """Map `"embedded"` to the shipped small CLIP's folder; anything else is returned unchanged."""
    if name_or_path != EMBEDDED_NAME:
        return name_or_path
    if not (EMBEDDED_CLIP / "config.json").is_file():
        raise FileNotFoundError(f"the embedded CLIP is missing: {EMBEDDED_CLIP} has no config.json")
    return str(EMBEDDED_CLIP)


def load_default_model(**kwargs: Any) -> Any:
    """The shipped MetaPrompt adapter on the shipped small CLIP, ready for `predict` (offline)."""
    from .modeling_metaprompt import MetaPromptModel

    if not (EMBEDDED_ADAPTER / "metaprompt_model.safetensors").is_file():
        raise FileNotFoundError(
            f"the embedded adapter is missing: no metaprompt_model.safetensors in {EMBEDDED_ADAPTER}"
        )
    return MetaPromptModel.from_pretrained(
        str(EMBEDDED_ADAPTER), base_model=resolve_base_model(EMBEDDED_NAME), **kwargs
    )
