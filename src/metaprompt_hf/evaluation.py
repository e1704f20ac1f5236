"""Evaluation of the paper's protocols (docs/method.md §6), under the names scripts import: scoring one
evaluation set (`scoring.py`), the harmonic mean of base and new accuracy (`results.py`), and per-seed results
aggregated over seeds (mean ± std) as JSON and Markdown, each protocol reporting its own (`protocols/report.py`).
"""

from __future__ import annotations

from .hub.results import harmonic_mean
from .protocols.report import aggregate, markdown_table
from .scoring import METRICS_DIR, evaluate_set, load_metric

__all__ = ["METRICS_DIR", "aggregate", "evaluate_set", "harmonic_mean", "load_metric", "markdown_table"]
