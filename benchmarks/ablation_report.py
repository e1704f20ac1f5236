"""The meta-step ablation's summary: paired differences against the reference variant per cell and over cells
(`metaprompt_hf.stats`, the one implementation of paired intervals), diagnostics of each variant's meta updates, and
the Markdown table. `mini_ablation.py` runs the ablation and calls these on its run entries."""

from __future__ import annotations

import math
import statistics
from typing import Any

from metaprompt_hf.stats import paired_stats

REFERENCE = "metaprompt_no_meta"


def cell_name(run: dict[str, Any]) -> str:
    """A cell of the ablation: the dataset (base-to-new) or the held-out domain (DG)."""
    return run["target_domain"] if run["protocol"] == "dg" else run["dataset"]


def _metric(entry: dict[str, Any]) -> float:
    return entry["hm"] if entry["protocol"] == "base2new" else entry["accuracy"]


def summarise(entries: list[dict[str, Any]], variants: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Per-run entries → the ablation.json schema: deltas against `REFERENCE`, paired by seed, per cell and on the
    per-seed average over cells (only seeds with every cell of both the variant and the reference)."""
    by: dict[tuple, float] = {}
    for e in entries:
        by[(e["variant"], e["protocol"], _cell(e), e["seed"])] = _metric(e)
    seeds = sorted({e["seed"] for e in entries})
    out: dict[str, Any] = {"seeds": seeds, "reference": REFERENCE, "variants": {}}
    for variant, config in variants.items():
        if variant == REFERENCE:
            continue
        record: dict[str, Any] = {"config": config}
        for protocol, key, metric in (("base2new", "base2new", "delta_hm"), ("dg", "dg", "delta_acc")):
            cells = sorted({_cell(e) for e in entries if e["protocol"] == protocol})
            if not cells:
                continue
            table: dict[str, Any] = {}
            per_seed: dict[int, list[float]] = {}
            for cell in cells:
                deltas = []
                for s in seeds:
                    a, b = by.get((variant, protocol, cell, s)), by.get((REFERENCE, protocol, cell, s))
                    if a is not None and b is not None:
                        deltas.append(a - b)
                        per_seed.setdefault(s, []).append(a - b)
                table[cell] = {metric: paired_stats(deltas)}
            table["average"] = {
                metric: paired_stats([statistics.fmean(v) for v in per_seed.values() if len(v) == len(cells)])
            }
            record[key] = table
        record["diagnostics"] = _diagnostics([e for e in entries if e["variant"] == variant])
        out["variants"][variant] = record
    out["reference_scores"] = {
        protocol: {
            cell: statistics.fmean(
                v for (var, p, c, _), v in by.items() if var == REFERENCE and p == protocol and c == cell
            )
            for cell in sorted({c for (var, p, c, _) in by if var == REFERENCE and p == protocol})
        }
        for protocol in ("base2new", "dg")
    }
    out["reference_diagnostics"] = _diagnostics([e for e in entries if e["variant"] == REFERENCE])
    return out


def _cell(entry: dict[str, Any]) -> str:
    return entry["target_domain"] if entry["protocol"] == "dg" else entry["dataset"].split(":")[-1]


def _median(values: list[float]) -> float | None:
    values = [v for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    return statistics.median(values) if values else None


def _diagnostics(entries: list[dict[str, Any]]) -> dict[str, Any]:
    """Medians over runs, per protocol: meta/in-domain update ratio, optimizer steps, prompt movement."""
    out = {}
    for protocol in ("base2new", "dg"):
        mine = [e for e in entries if e["protocol"] == protocol]
        if not mine:
            continue
        out[protocol] = {
            "meta_update_ratio": _median([e.get("meta_update_ratio") for e in mine]),
            "optimizer_steps": _median([e.get("optimizer_steps") for e in mine]),
            "text_prompts_moved": _median([e.get("text_prompts_moved") for e in mine]),
            "vision_prompts_moved": _median([e.get("vision_prompts_moved") for e in mine]),
            "text_prompts_init_norm": _median([e.get("text_prompts_init_norm") for e in mine]),
            "vision_prompts_init_norm": _median([e.get("vision_prompts_init_norm") for e in mine]),
            "runs": len(mine),
        }
    return out


def schedule_text(summary: dict[str, Any]) -> str:
    """The cells' schedules as the run recorded them (`settings.runs`, cells with one schedule grouped, with the
    optimizer steps where a run recorded them), then the median optimizer steps per protocol from the diagnostics."""
    groups: dict[tuple, list[str]] = {}
    for run in summary["settings"]["runs"]:
        key = (run["protocol"], run["shots"], run["batch"], run["epochs"], run.get("optimizer_steps"))
        groups.setdefault(key, []).append(cell_name(run))
    parts = []
    for (protocol, shots, batch, epochs, steps), cells in groups.items():
        what = "base-to-new" if protocol == "base2new" else "DG, held out"
        per = " per class and source domain" if protocol == "dg" else ""
        steps_text = "" if steps is None else f" = {steps} optimizer steps"
        parts.append(f"{', '.join(cells)} ({what}; {shots} shots{per}, batch {batch}, {epochs} epochs{steps_text})")
    medians = [
        f"{'base-to-new' if p == 'base2new' else 'DG'} {d['optimizer_steps']:.0f}"
        for p, d in summary.get("reference_diagnostics", {}).items()
        if d.get("optimizer_steps") is not None
    ]
    return "; ".join(parts) + (f"; optimizer steps per run, median: {', '.join(medians)}" if medians else "")


def _fmt(stat: dict[str, Any]) -> str:
    if stat["mean"] is None:
        return "–"
    if stat["se"] is None:
        return f"{stat['mean']:+.2f} (n=1)"
    lo, hi = stat["ci95"]
    return f"{stat['mean']:+.2f} ± {stat['se']:.2f} [{lo:+.2f}, {hi:+.2f}]"


def _num(value: float | None, fmt: str = "{:.3f}") -> str:
    return "–" if value is None else fmt.format(value)


def markdown(summary: dict[str, Any]) -> str:
    lines = []
    settings = summary.get("settings")
    if settings:
        lines += [
            f"`{settings['command']}` — split **{settings['eval_split']}**, learning rate {settings['learning_rate']}, "
            f"{settings['run_seconds_total']:.0f} s of runs ({settings['cpu_seconds_total']:.0f} CPU s), "
            f"{settings['wall_seconds_this_invocation']:.0f} s wall. Cells as run: {schedule_text(summary)}.",
            "",
        ]
    lines += [
        f"Paired differences against `{REFERENCE}` (same seed, same few-shot sample and initialisation), "
        f"mean ± standard error [95 % t-interval], seeds {summary['seeds']}.",
        "",
    ]
    for key, metric, title in (
        ("base2new", "delta_hm", "**Base-to-new**, Δ HM (points)"),
        ("dg", "delta_acc", "**Domain generalisation**, Δ target accuracy (points)"),
    ):
        cells = None
        for record in summary["variants"].values():
            if key in record:
                cells = list(record[key])
                break
        if not cells:
            continue
        ref = summary["reference_scores"][key]
        lines += [title + ":", "", "| variant | " + " | ".join(cells) + " |", "|---|" + "---|" * len(cells)]
        lines.append(
            f"| {REFERENCE} (absolute) | "
            + " | ".join(f"{ref[c]:.1f}" if c in ref else f"{statistics.fmean(ref.values()):.1f}" for c in cells)
            + " |"
        )
        for variant, record in summary["variants"].items():
            if key in record:
                lines.append(f"| {variant} | " + " | ".join(_fmt(record[key][c][metric]) for c in cells) + " |")
        lines.append("")
    lines += [
        "Diagnostics (medians over runs): meta/in-domain update-norm ratio, optimizer steps, prompt movement "
        "‖θ − θ0‖ (text / vision) against ‖θ0‖:",
        "",
        "| variant | protocol | meta/in-domain ratio | steps | ‖Δθ_t‖ | ‖Δθ_v‖ | ‖θ0_t‖ | ‖θ0_v‖ |",
        "|---|---|---|---|---|---|---|---|",
    ]
    rows = [(REFERENCE, summary["reference_diagnostics"])] + [
        (v, r["diagnostics"]) for v, r in summary["variants"].items()
    ]
    for variant, diag in rows:
        for protocol, d in diag.items():
            lines.append(
                f"| {variant} | {protocol} | {_num(d['meta_update_ratio'])} | {_num(d['optimizer_steps'], '{:.0f}')} | "
                f"{_num(d['text_prompts_moved'])} | {_num(d['vision_prompts_moved'])} | "
                f"{_num(d['text_prompts_init_norm'])} | {_num(d['vision_prompts_init_norm'])} |"
            )
    return "\n".join(lines).rstrip() + "\n"


# ---------------------------------------------------------------------------------------------------- tuning
