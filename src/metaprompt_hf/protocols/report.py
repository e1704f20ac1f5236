"""Results over runs (docs/method.md §6): the entries of several runs grouped per setting and aggregated over
seeds (mean ± std), and their Markdown tables. Each protocol aggregates and tabulates its own entries
(`Protocol.aggregate`, `Protocol.table_header`, `Protocol.table_row`); this module only groups and orders them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ..hub.results import group_runs
from .registry import PROTOCOLS, get_protocol


def aggregate(results: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Mean ± sample std over seeds, per (method, protocol, dataset, target domain), by each entry's protocol
    (base-to-new rows report mean base, mean new and HM(mean B, mean N) — the README convention of the reference,
    docs/method.md §6.1 — plus the mean of per-seed HMs)."""
    groups = group_runs(
        results, lambda r: (r.get("method", "metaprompt"), r["protocol"], r.get("dataset", ""), r.get("target_domain"))
    )
    return [get_protocol(key[1]).aggregate(rows) for key, rows in sorted(groups.items(), key=lambda kv: str(kv[0]))]


def markdown_table(rows: Sequence[Mapping[str, Any]]) -> str:
    """Aggregated rows (from `aggregate`) as Markdown tables: one per table layout (protocols that report the same
    columns share one), in the order the protocols were registered, rows in the order given."""
    order = list(PROTOCOLS)
    tables: dict[tuple[str, ...], list[str]] = {}
    rank: dict[tuple[str, ...], int] = {}
    for r in rows:
        protocol = get_protocol(r["protocol"])
        header = tuple(protocol.table_header())
        tables.setdefault(header, []).append(protocol.table_row(r))
        position = order.index(r["protocol"]) if r["protocol"] in order else len(order)
        rank[header] = min(rank.get(header, position), position)
    lines: list[str] = []
    for header in sorted(tables, key=lambda h: rank[h]):
        if lines:
            lines.append("")
        lines += [*header, *tables[header]]
    return "\n".join(lines) + "\n"
