"""The method registry: `--method <name>` → a `Method` class (PEFT's `PEFT_TYPE_TO_CONFIG_MAPPING` pattern).

Methods of the package register here; a plugin registers its own with `metaprompt_hf.register_method(name, cls)`
(imported through `examples/train.py --plugins MODULE`), after which `--method <name>`, training, evaluation, the
model card and `compare` accept it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .base import Method, MethodConfig
from .baselines import IVLP, CoOp, ZeroShot
from .cocoop import CoCoOp
from .kgcoop import KgCoOp
from .maple import MaPLe
from .metaprompt import (
    MetaPrompt,
    MetaPromptFaithful,
    MetaPromptMLDG,
    MetaPromptMLDGSecondOrder,
    MetaPromptNoMeta,
    MetaPromptSecondOrder,
)
from .mmrl import MMRL
from .promptsrc import PromptSRC

METHODS: dict[str, type[Method]] = {}


def register_method(name: str, cls: type[Method], *, overwrite: bool = False) -> type[Method]:
    """Register `cls` (a `Method` subclass) under `name`; refuses to replace a registered name unless `overwrite`."""
    if not isinstance(name, str) or not name.strip() or name != name.strip() or "," in name:
        raise ValueError(f"method name: expected a non-empty word without commas, got {name!r}")
    if not (isinstance(cls, type) and issubclass(cls, Method)):
        raise TypeError(f"register_method({name!r}, ...): expected a subclass of metaprompt_hf.methods.Method")
    if not (isinstance(cls.config_class, type) and issubclass(cls.config_class, MethodConfig)):
        raise TypeError(f"register_method({name!r}, ...): config_class must be a MethodConfig subclass")
    if name in METHODS and METHODS[name] is not cls and not overwrite:
        raise ValueError(f"method {name!r} is already registered ({METHODS[name].__name__}); pass overwrite=True")
    METHODS[name] = cls
    return cls


def get_method(name: str, config: MethodConfig | Mapping[str, Any] | None = None) -> Method:
    """A `Method` instance for `--method name` with its knobs `config` (default: the method's defaults)."""
    cls = METHODS.get(name) if isinstance(name, str) else None
    if cls is None:
        raise ValueError(f"method: expected one of {list(METHODS)}, got {name!r}")
    return cls(name, config)


for _name, _cls in (
    ("zeroshot", ZeroShot),
    ("coop", CoOp),
    ("ivlp", IVLP),
    ("cocoop", CoCoOp),
    ("kgcoop", KgCoOp),
    ("promptsrc", PromptSRC),
    ("maple", MaPLe),
    ("mmrl", MMRL),
    ("metaprompt_no_meta", MetaPromptNoMeta),
    ("metaprompt", MetaPrompt),
    ("metaprompt_second_order", MetaPromptSecondOrder),
    ("metaprompt_mldg", MetaPromptMLDG),
    ("metaprompt_mldg_second_order", MetaPromptMLDGSecondOrder),
    ("metaprompt_faithful", MetaPromptFaithful),
):
    register_method(_name, _cls)
