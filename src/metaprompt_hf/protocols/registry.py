"""The protocol registry: `--protocol NAME` → its `Protocol` (docs/method.md §6). A new protocol is one module and
one line here."""

from __future__ import annotations

from .base import Protocol
from .base2new import Base2NewProtocol
from .dg import DGProtocol
from .transfer import CrossDatasetProtocol, ImageNetShiftProtocol

PROTOCOLS: dict[str, Protocol] = {
    "base2new": Base2NewProtocol(),
    "dg": DGProtocol(),
    "cross_dataset": CrossDatasetProtocol(),
    "imagenet_shift": ImageNetShiftProtocol(),
}

METRIC_KEYS: dict[str, tuple[str, ...]] = {name: p.metric_keys for name, p in PROTOCOLS.items()}
"""Metrics (percent) each protocol's result entries carry, e.g. {"base2new": ("base", "new", "hm"), ...}."""


def get_protocol(name: str) -> Protocol:
    """The registered protocol `name` (raises ValueError naming the choices)."""
    if name not in PROTOCOLS:
        raise ValueError(f"protocol: expected one of {list(PROTOCOLS)}, got {name!r}")
    return PROTOCOLS[name]


def register_protocol(name: str, cls: type[Protocol] | Protocol, *, overwrite: bool = False) -> Protocol:
    """Register a protocol (a `Protocol` subclass, or an instance) under `--protocol name`; refuses to replace a
    registered name unless `overwrite`. Returns the registered instance."""
    if not isinstance(name, str) or not name.strip() or name != name.strip():
        raise ValueError(f"protocol name: expected a non-empty word, got {name!r}")
    protocol = cls() if isinstance(cls, type) else cls
    if not isinstance(protocol, Protocol):
        raise TypeError(f"register_protocol({name!r}, ...): expected a subclass of metaprompt_hf.protocols.Protocol")
    if name in PROTOCOLS and type(PROTOCOLS[name]) is not type(protocol) and not overwrite:
        raise ValueError(f"protocol {name!r} is already registered ({type(PROTOCOLS[name]).__name__})")
    PROTOCOLS[name] = protocol
    METRIC_KEYS[name] = protocol.metric_keys
    return protocol
