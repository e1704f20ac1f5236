"""Prompt learners as registered objects (docs/architecture.md §4.2): the `Method` interface, the package's
methods and the registry."""

from .base import Method, MethodConfig, TrainerState, parse_method_args
from .registry import METHODS, get_method, register_method

__all__ = ["METHODS", "Method", "MethodConfig", "TrainerState", "get_method", "parse_method_args", "register_method"]
