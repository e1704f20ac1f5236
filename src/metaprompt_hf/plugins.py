"""Plugins: modules a user names (`--plugins my_pkg.methods,other` or the `METAPROMPT_HF_PLUGINS` environment
variable) imported before the arguments are resolved, so that the methods, protocols and backbones they register
(`metaprompt_hf.register_method` / `register_protocol` / `register_backbone`) are accepted by `--method`,
`--protocol` and `--base_model` (docs/architecture.md §4)."""

from __future__ import annotations

import importlib
import os
from collections.abc import Iterable
from types import ModuleType

PLUGINS_ENV = "METAPROMPT_HF_PLUGINS"


def plugin_names(spec: str | Iterable[str] | None, *, with_env: bool = True) -> list[str]:
    """Module names from a comma list (or a list of them) plus `$METAPROMPT_HF_PLUGINS`, in order, without repeats."""
    parts: list[str] = []
    if with_env and os.environ.get(PLUGINS_ENV):
        parts += os.environ[PLUGINS_ENV].split(",")
    if isinstance(spec, str):
        parts += spec.split(",")
    elif spec is not None:
        for item in spec:
            parts += str(item).split(",")
    names: list[str] = []
    for part in (p.strip() for p in parts):
        if part and part not in names:
            names.append(part)
    return names


def load_plugins(spec: str | Iterable[str] | None, *, with_env: bool = True) -> list[ModuleType]:
    """Import each plugin module once; a failure is a `ValueError` (a user error: exit status 2 in the entry
    points) naming the module and its cause."""
    modules = []
    for name in plugin_names(spec, with_env=with_env):
        try:
            modules.append(importlib.import_module(name))
        except Exception as err:  # any failure inside the plugin is the plugin's; name it, keep the cause
            raise ValueError(f"plugins: could not import {name!r}: {type(err).__name__}: {err}") from err
    return modules
