"""The paper's evaluation protocols (docs/method.md §6): an interface (`base.Protocol`), one module per protocol,
and a registry (`registry.PROTOCOLS`).

Adding a protocol: one module with a `Protocol` subclass and one line in `registry.py`. Training, evaluation,
the model card and the results checks read everything protocol-specific through the registry.
"""

from __future__ import annotations

from .base import EvalSet, Protocol, ProtocolData
from .base2new import base_new_split
from .registry import METRIC_KEYS, PROTOCOLS, get_protocol, register_protocol
from .run import evaluate_protocol, format_results, load_protocol_data, prepare_protocol

__all__ = [
    "METRIC_KEYS",
    "PROTOCOLS",
    "EvalSet",
    "Protocol",
    "ProtocolData",
    "base_new_split",
    "evaluate_protocol",
    "format_results",
    "get_protocol",
    "load_protocol_data",
    "prepare_protocol",
    "register_protocol",
]
