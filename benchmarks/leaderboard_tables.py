"""The mini benchmark's leaderboard (`benchmarks/results/leaderboard.json`, written by `mini_suite.py`) as Markdown:
a base-to-new table, a domain-generalisation table and a summary sentence, every figure read from the file.

Schema read here (percent points; a STAT is {"mean", "se", "ci95": [lo, hi], "n"}; any key may be absent for a
method not run on that cell, rendered "—"):

    {"seeds": [...], "split": str,
     "settings": {"command", "wall_seconds", "base_model",
                  "schedule": {"base2new" | "dg": {"epochs", "batch", "shots"}}},
     "methods": {NAME: {"config_digest", "learning_rate": {"base2new", "dg"},
                        "cost": {"base2new" | "dg": {"seconds_per_step", "ratio_vs_coop"}},
                        "base2new": {DATASET | "average": {"base", "new", "hm", "delta_hm_vs_no_meta",
                                                           "delta_hm_vs_zeroshot"}},
                        "dg": {TARGET | "average": {"acc", "delta_acc_vs_no_meta", "delta_acc_vs_zeroshot"}}}}}
"""

from __future__ import annotations

from typing import Any

LEADERBOARD = "benchmarks/results/leaderboard.json"
DASH = "—"
_PROTOCOLS = {
    "base2new": ("hm", "delta_hm_vs_no_meta", "delta_hm_vs_zeroshot", "**Base-to-new**, HM in %"),
    "dg": ("acc", "delta_acc_vs_no_meta", "delta_acc_vs_zeroshot", "**Domain generalisation**, target accuracy in %"),
}


def _signed(x: float) -> str:
    return f"{x:+.2f}".replace("-", "−")


def _interval(stat: dict[str, Any], signed: bool) -> str:
    lo, hi = (stat.get("ci95") or [None, None])[:2]
    if lo is None or hi is None:
        return ""
    fmt = _signed if signed else (lambda x: f"{x:.2f}")
    return f" [{fmt(lo)}, {fmt(hi)}]"


def mean_se(stat: dict[str, Any] | None) -> str:
    """'mean ± se' of a STAT, '—' when absent."""
    if not stat or stat.get("mean") is None:
        return DASH
    se = stat.get("se")
    return f"{stat['mean']:.1f}" + ("" if se is None else f" ± {se:.1f}")


def with_interval(stat: dict[str, Any] | None, signed: bool = False) -> str:
    """'mean [lo, hi]' (the 95 % interval) of a STAT; signed for differences; '—' when absent."""
    if not stat or stat.get("mean") is None:
        return DASH
    return (_signed(stat["mean"]) if signed else f"{stat['mean']:.2f}") + _interval(stat, signed)


def _cells(methods: dict[str, Any], protocol: str) -> list[str]:
    return sorted({c for m in methods.values() for c in m.get(protocol, {}) if c != "average"})


def _cost(method: dict[str, Any], protocol: str) -> str:
    ratio = method.get("cost", {}).get(protocol, {}).get("ratio_vs_coop")
    return DASH if ratio is None else f"{ratio:.2f}×"


def _moved(method: dict[str, Any], protocol: str) -> str:
    moved = method.get("prompt_movement", {}).get(protocol, {})
    if not moved:
        return DASH
    return " / ".join(f"{moved[k]:.2f}" if k in moved else DASH for k in ("text", "vision"))


def _schedule(board: dict[str, Any], protocol: str) -> str:
    """The protocol's schedule from the run's own record: per group of cells when they differ."""
    cells = [c for c in board["settings"].get("cells", []) if c["protocol"] == protocol]
    if not cells:
        s = board["settings"]["schedule"][protocol]
        return f"{s['shots']} shots, batch {s['batch']}, {s['epochs']} epochs"
    groups: dict[tuple, list[str]] = {}
    for c in cells:
        groups.setdefault((c["shots"], c["batch"], c["epochs"]), []).append(c.get("target_domain") or c["dataset"])
    steps = board["settings"].get("optimizer_steps", {}).get(protocol)
    text = "; ".join(
        f"{', '.join(names)}: {shots} shots, batch {batch}, {epochs} epochs"
        for (shots, batch, epochs), names in groups.items()
    )
    return text + (f" ({min(steps)}–{max(steps)} optimizer steps)" if steps else "")


def protocol_table(board: dict[str, Any], protocol: str) -> list[str]:
    """One protocol's table: per cell mean ± se, the average with its interval, the paired differences to
    `metaprompt_no_meta` and to zero-shot with theirs, and the step-time ratio to CoOp."""
    metric, vs_no_meta, vs_zeroshot, title = _PROTOCOLS[protocol]
    methods = {n: m for n, m in board["methods"].items() if protocol in m}
    cells = _cells(methods, protocol)
    if not methods:
        return []
    lines = [
        f"{title} (mean ± s.e. over seeds {board['seeds']}, {board['split']} split; {_schedule(board, protocol)}; "
        "Δ are paired by seed, [95 % interval]; prompts moved: median ‖θ − θ0‖ / ‖θ0‖ of the text / vision prompts):",
        "",
        "| method | " + " | ".join(cells) + " | average [95 %] | Δ vs metaprompt_no_meta | Δ vs zeroshot "
        "| step time × CoOp | prompts moved |",
        "|---|" + "---|" * (len(cells) + 5),
    ]
    for name, method in methods.items():
        rows = method[protocol]
        average = rows.get("average", {})
        lines.append(
            f"| {name} | "
            + " | ".join(mean_se(rows.get(c, {}).get(metric)) for c in cells)
            + f" | {with_interval(average.get(metric))} | {with_interval(average.get(vs_no_meta), signed=True)}"
            f" | {with_interval(average.get(vs_zeroshot), signed=True)} | {_cost(method, protocol)}"
            f" | {_moved(method, protocol)} |"
        )
    return lines


def _best(board: dict[str, Any], protocol: str) -> tuple[str, dict[str, Any]] | None:
    metric = _PROTOCOLS[protocol][0]
    scored = [
        (n, m[protocol]["average"])
        for n, m in board["methods"].items()
        if (m.get(protocol, {}).get("average", {}).get(metric) or {}).get("mean") is not None
    ]
    return max(scored, key=lambda item: item[1][metric]["mean"]) if scored else None


def summary_sentence(board: dict[str, Any]) -> str:
    """'Best average HM: X (method), Δ vs zero-shot ...' for each protocol, from the file."""
    parts = []
    for protocol, label in (("base2new", "base-to-new HM"), ("dg", "DG accuracy")):
        best = _best(board, protocol)
        if best is None:
            continue
        name, average = best
        metric, _, vs_zeroshot, _ = _PROTOCOLS[protocol]
        delta = average.get(vs_zeroshot)
        versus = "" if not delta else f", Δ vs zero-shot {with_interval(delta, signed=True)}"
        parts.append(f"best average {label}: {with_interval(average[metric])} (`{name}`{versus})")
    for protocol, label in (("base2new", "base-to-new HM"), ("dg", "DG accuracy")):
        _, _, vs_zeroshot, _ = _PROTOCOLS[protocol]
        above = [
            f"`{name}` {with_interval(delta, signed=True)}"
            for name, method in board["methods"].items()
            if (delta := method.get(protocol, {}).get("average", {}).get(vs_zeroshot))
            and delta.get("ci95", [None])[0] is not None
            and delta["ci95"][0] > 0
        ]
        parts.append(
            f"average {label} above zero-shot with a 95 % interval that excludes 0: "
            + (", ".join(above) if above else "none")
        )
    return ("; ".join(parts) + ".") if parts else ""


def leaderboard_markdown(
    board: dict[str, Any],
    source: str = LEADERBOARD,
    tuning: tuple[dict[str, Any], list[dict[str, Any]]] | None = None,
) -> str:
    """The README's leaderboard block; with `tuning` (mini_hparams.json and tuning_runs.json) it also states what the
    whole suite costs (`from_scratch_cost`)."""
    settings = board["settings"]
    lines = [
        "```bash",
        settings["command"],
        "```",
        "",
        f"Wall time {settings['wall_seconds']:,.0f} s"
        + (
            f" (runs already in the output folder are not re-run; all the runs behind this table took "
            f"{settings['run_seconds_total']:,.0f} s, {settings['jobs']} at a time)"
            if "run_seconds_total" in settings and "jobs" in settings
            else ""
        )
        + f", base model `{settings['base_model']}`; every number below is read from [`{source}`]({source}).",
        "",
    ]
    scratch = from_scratch_cost(board, *tuning) if tuning else ""
    if scratch:
        lines += [scratch, ""]
    for protocol in ("base2new", "dg"):
        table = protocol_table(board, protocol)
        lines += table + ([""] if table else [])
    sentence = summary_sentence(board)
    if sentence:
        lines.append(sentence[0].upper() + sentence[1:])
    return "\n".join(lines).rstrip() + "\n"


def _unique_runs(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The runs of a tuning record once each: the weights stage lists its default option, a run of the rate stage,
    again."""
    return list({r["tag"]: r for r in runs}.values())


def from_scratch_cost(board: dict[str, Any], record: dict[str, Any], tuning_runs: list[dict[str, Any]]) -> str:
    """What the whole suite costs from an empty output folder, from the records: the seconds of the tuning's runs
    (`tuning_runs.json`, each once) and of the leaderboard's, divided by the runs in parallel; and the measured wall
    time of the two invocations behind the files when neither found a run of an earlier invocation on disk.

    `runs_reused` counts every run an invocation found on disk when it asked for it, its own included: the weights
    stage asks again for the rate stage's default option, so a tuning from an empty folder reuses exactly the runs
    `tuning_runs.json` lists twice.
    """
    settings = board["settings"]
    runs, jobs = settings.get("run_seconds_total"), settings.get("jobs")
    unique = _unique_runs(tuning_runs)
    tuning = sum(r.get("run_seconds", 0.0) for r in unique)
    if not (tuning and runs and jobs) or settings.get("quick"):
        return ""
    total = tuning + runs
    text = (
        f"From an empty output folder the suite is the tuning's {len(unique)} runs ({tuning:,.0f} s) and the "
        f"leaderboard's ({runs:,.0f} s): {total:,.0f} s of runs, about "
        f"{total / jobs / 60:.0f} min {jobs} at a time (sums of the seconds each run recorded)."
    )
    last = record.get("last_invocation") or {}
    trained = {m for m in board["methods"] if m != "zeroshot"}
    earlier = last.get("runs_reused", -1) - (len(tuning_runs) - len(unique))
    fresh = earlier == 0 and settings.get("runs_reused") == 0
    if fresh and trained <= set(last.get("methods", ())) and last.get("jobs") == jobs:
        wall = last["wall_seconds"] + settings["wall_seconds"]
        text += (
            f" Measured: the tuning and the leaderboard invocations behind these files found no earlier run on disk "
            f"and took {last['wall_seconds']:,.0f} s and {settings['wall_seconds']:,.0f} s of wall time, "
            f"{wall / 60:.1f} min for the whole suite, {jobs} runs at a time."
        )
    return text


def _weights_text(weights: dict[str, Any] | None) -> str:
    if not weights:
        return DASH
    return "; ".join(f"{p}: " + (", ".join(f"{k}={v}" for k, v in w.items()) or "default") for p, w in weights.items())


def tuning_markdown(record: dict[str, Any], source: str = "benchmarks/mini_hparams.json") -> str:
    """The validation selection of `mini_hparams.json`: per method the chosen learning rates, the validation score
    at each grid point, whether the choice sits at the grid's edge, and the chosen weights."""
    lines = [
        f"Selection ({record.get('selection', '')}), `{record.get('command', '')}` → [`{source}`]({source}):",
        "",
        "| method | grid | base-to-new: chosen (validation HM per rate) | DG: chosen (validation accuracy on the source domains per rate) "
        "| at grid edge (b2n / DG) | weights chosen |",
        "|---|---|---|---|---|---|",
    ]
    for name, row in record.get("methods", {}).items():
        cells = []
        for protocol in ("base2new", "dg"):
            scores = row["validation_scores"][protocol]
            cells.append(
                f"**{row['learning_rate'][protocol]:g}** ("
                + ", ".join(f"{float(lr):g}: {v:.2f}" for lr, v in scores.items())
                + ")"
            )
        edge = " / ".join("yes" if row["at_grid_edge"][p] else "no" for p in ("base2new", "dg"))
        grid = ", ".join(f"{lr:g}" for lr in row["grid"])
        lines.append(f"| {name} | {grid} | {cells[0]} | {cells[1]} | {edge} | {_weights_text(row.get('weights'))} |")
    return "\n".join(lines) + "\n"


def tuning_cost(runs: list[dict[str, Any]], source: str = "benchmarks/results/tuning_runs.json") -> str:
    """The tuning's cost from its runs (`tuning_runs.json`): what a run from an empty output folder would take, since
    a `--tune` invocation reuses the runs an earlier one left."""
    runs = _unique_runs(runs)
    seconds = sum(r.get("run_seconds", 0.0) for r in runs)
    steps = sum(r.get("optimizer_steps") or 0 for r in runs)
    return (
        f"\nThe selection rests on {len(runs)} validation runs ({steps:,} optimizer steps), {seconds:,.0f} s of runs "
        f"in all, read from [`{source}`]({source}).\n"
    )
