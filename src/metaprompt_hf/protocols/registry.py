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
