"""Paired-seed statistics without scipy: mean, standard error, 95 % Student-t interval and n, for a set of
per-seed scores or of paired differences (two methods on the same seeds, hence the same few-shot sample and
initialisation). One implementation, used by `metaprompt_hf.compare` and the benchmarks' ablation."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from typing import Any

# 97.5 % quantiles of Student's t for 1..30 degrees of freedom (any statistics table).
_T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145, 2.131)
_T975 += (2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042)


def t_quantile_975(df: int) -> float:
    """The 97.5 % quantile of Student's t with `df` degrees of freedom (table to 30, Cornish-Fisher beyond)."""
    if df < 1:
        raise ValueError(f"df: expected >= 1, got {df}")
    if df <= len(_T975):
        return _T975[df - 1]
    z = 1.959964
    return z + (z**3 + z) / (4 * df) + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * df**2)


def paired_stats(deltas: Sequence[float]) -> dict[str, Any]:
    """Mean, standard error, 95 % t-interval and n of values, one per seed (scores, or paired differences).
    With one value the standard error and the interval are None; with none, everything is."""
    n = len(deltas)
    if n == 0:
        return {"mean": None, "se": None, "ci95": [None, None], "n": 0}
    mean = statistics.fmean(deltas)
    if n == 1:
        return {"mean": mean, "se": None, "ci95": [None, None], "n": 1}
    se = statistics.stdev(deltas) / math.sqrt(n)
    half = t_quantile_975(n - 1) * se
    return {"mean": mean, "se": se, "ci95": [mean - half, mean + half], "n": n}


def interval_includes_zero(stat: dict[str, Any]) -> bool:
    """Whether the 95 % interval of `paired_stats` holds 0 (no interval, n < 2, counts as holding it)."""
    lo, hi = stat["ci95"]
    return lo is None or hi is None or lo <= 0.0 <= hi
