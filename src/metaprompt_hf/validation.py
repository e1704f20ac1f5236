"""One check for every number a user gives: finite, of the right type, inside its allowed range.

Configs (`MetaPromptConfig`), training arguments, the meta step's settings and the entry points all validate their
numeric fields through `check_number`, so every message has the same shape: the field, the value and the allowed
range, e.g. ``init_std: expected a finite number in (0, 10], got 1e+30``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

__all__ = ["check_finite_tensors", "check_number", "check_seeds", "describe_range", "nonfinite_summary"]


def describe_range(low: float | None, high: float | None, low_open: bool, high_open: bool) -> str:
    """The interval in the usual notation: "(0, 10]", "[0, 1)", ">= 1", "> 0"."""
    if low is None and high is None:
        return "any value"
    if high is None:
        return f"{'>' if low_open else '>='} {low:g}"
    if low is None:
        return f"{'<' if high_open else '<='} {high:g}"
    return f"{'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"


def check_number(
    value: Any,
    name: str,
    *,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    high_open: bool = False,
    integer: bool = False,
    optional: bool = False,
) -> Any:
    """`value` if it is a finite number (an integer when `integer`) inside [low, high] (open ends where asked);
    `None` passes when `optional`. Raises `ValueError` naming `name`, the value and the allowed range.

    Booleans are refused (``True`` is an int to Python, never a learning rate), and so are NaN and ±inf: a float32
    overflow such as 1e300 is out of any range given here."""
    if value is None and optional:
        return None
    kind = "an integer" if integer else "a finite number"
    allowed = describe_range(low, high, low_open, high_open)
    where = "" if allowed == "any value" else f" {allowed}" if allowed[0] in "<>" else f" in {allowed}"
    ok = not isinstance(value, bool) and isinstance(value, int if integer else (int, float))
    if ok and not integer:
        ok = math.isfinite(value)
    if ok and low is not None:
        ok = value > low if low_open else value >= low
    if ok and high is not None:
        ok = value < high if high_open else value <= high
    if not ok:
        none = " or None" if optional else ""
        raise ValueError(f"{name}: expected {kind}{where}{none}, got {value!r}")
    return value


def check_seeds(seeds: Sequence[int], name: str = "--seeds") -> list[int]:
    """A non-empty list of distinct integer seeds: a repeated seed would count one run several times (a "std" of
    0 over copies). Raises `ValueError` naming the repeats."""
    seeds = list(seeds)
    if not seeds:
        raise ValueError(f"{name}: expected at least one seed")
    for seed in seeds:
        check_number(seed, name, integer=True)
    repeats = sorted({s for s in seeds if seeds.count(s) > 1})
    if repeats:
        raise ValueError(f"{name}: seeds must be distinct, got {seeds} (repeated: {repeats})")
    return seeds


def nonfinite_summary(tensors: dict[str, Any]) -> dict[str, str]:
    """For each tensor holding NaN or ±inf: how many of its values are not finite, e.g. {"text_prompts": "3 of 48
    values are not finite (nan, inf)"}; empty when every tensor is finite."""
    import torch

    out = {}
    for key, tensor in tensors.items():
        if tensor is None or not torch.is_floating_point(tensor):
            continue
        bad = ~torch.isfinite(tensor.detach())
        if bool(bad.any()):
            kinds = sorted({"nan" if math.isnan(v) else "inf" for v in tensor.detach()[bad].float().tolist()[:1000]})
            out[key] = f"{int(bad.sum())} of {tensor.numel()} values are not finite ({', '.join(kinds)})"
    return out


def check_finite_tensors(tensors: dict[str, Any], source: str) -> None:
    """Refuse tensors holding NaN or ±inf, naming `source`, each offending tensor and its count."""
    bad = nonfinite_summary(tensors)
    if bad:
        details = "; ".join(f"{k}: {v}" for k, v in bad.items())
        raise ValueError(f"{source}: non-finite prompt tensors ({details}); such an adapter cannot predict anything")
