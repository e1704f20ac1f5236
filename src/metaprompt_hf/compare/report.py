"""The comparison's answer, built from the runs' markers: `comparison.json` (the documented schema), the ranked
`comparison.md` table, the `comparison.png` plot, the three-line printed summary and the README block.

Every interval is `stats.paired_stats` (mean, standard error, 95 % Student-t interval) over seeds; differences
are paired by seed (same few-shot sample, same seed). A method whose paired difference to the best has an interval
holding 0 is "not distinguishable" from it on this data.
"""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

from ..stats import interval_includes_zero, paired_stats

ZEROSHOT = "zeroshot"


def _delta(a: dict[str, float], b: dict[str, float]) -> dict[str, Any]:
    stat = paired_stats([a[s] - b[s] for s in a if s in b])
    return {"mean": stat["mean"], "ci95": stat["ci95"]}


def summarise(
    records: list[dict[str, Any]],
    *,
    dataset: str,
    protocol: str,
    metric: str,
    seeds: list[int],
    shots: int,
    tuned: bool,
    settings: dict[str, Any],
) -> dict[str, Any]:
    """The runs' markers → `comparison.json`: per method its per-seed scores and their interval, the paired
    differences to the best method and to zero-shot, costs; the ranking by mean (best first)."""
    by_method: dict[str, list[dict[str, Any]]] = {}
    for r in records:
        by_method.setdefault(r["method"], []).append(r)
    methods: dict[str, Any] = {}
    for name, runs in by_method.items():
        per_seed = {str(r["seed"]): r["score"] for r in sorted(runs, key=lambda r: r["seed"])}
        stat = paired_stats(list(per_seed.values()))
        methods[name] = {
            "config_digest": runs[0]["config_digest"],
            "per_seed": per_seed,
            "mean": stat["mean"],
            "se": stat["se"],
            "ci95": stat["ci95"],
            "n": stat["n"],
            "step_time_s": float(statistics.median(r["step_time_s"] for r in runs)),
            "peak_memory_mb": float(max(r["peak_memory_mb"] for r in runs)),
            "adapter_bytes": int(max(r["adapter_bytes"] for r in runs)),
        }
    ranking = sorted(methods, key=lambda m: (-methods[m]["mean"], m))
    best = ranking[0]
    for m in methods.values():
        m["delta_vs_best"] = _delta(m["per_seed"], methods[best]["per_seed"])
        if ZEROSHOT in methods:
            m["delta_vs_zeroshot"] = _delta(m["per_seed"], methods[ZEROSHOT]["per_seed"])
    tied = [m for m in ranking[1:] if interval_includes_zero(methods[m]["delta_vs_best"])]
    return {
        "dataset": dataset,
        "protocol": protocol,
        "metric": metric,
        "seeds": seeds,
        "shots": shots,
        "tuned": tuned,
        "methods": {m: methods[m] for m in ranking},
        "ranking": ranking,
        "indistinguishable_from_best": tied,
        "settings": settings,
    }


# ---------------------------------------------------------------------------------------------------- text
def _num(x: float, signed: bool = False) -> str:
    x = round(x, 2) + 0.0  # no "-0.00"
    return f"{x:+.2f}" if signed else f"{x:.2f}"


def _ci(ci: list[float | None], signed: bool = False) -> str:
    lo, hi = ci
    if lo is None or hi is None:
        return "–"
    return f"[{_num(lo, signed)}, {_num(hi, signed)}]"


def _delta_cell(d: dict[str, Any] | None, same: bool) -> str:
    if d is None or same:
        return "–"
    return f"{_num(d['mean'], True)} {_ci(d['ci95'], signed=True)}"


def _bytes(n: int) -> str:
    return "–" if n == 0 else f"{n / 1024:.1f} KiB" if n < 2**20 else f"{n / 2**20:.1f} MiB"


def table(summary: dict[str, Any]) -> str:
    """The ranked markdown table (best first)."""
    metric = summary["metric"].upper() if summary["metric"] == "hm" else "accuracy"
    best = summary["ranking"][0]
    lines = [
        f"| rank | method | {metric} mean ± se | 95 % interval | Δ to best [95 %] | Δ to zero-shot [95 %] | "
        "step time | peak memory | adapter |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for rank, name in enumerate(summary["ranking"], 1):
        m = summary["methods"][name]
        delta_best = _delta_cell(m["delta_vs_best"], name == best)
        if name in summary["indistinguishable_from_best"]:
            delta_best += " not distinguishable"
        step = "–" if m["adapter_bytes"] == 0 else f"{m['step_time_s'] * 1000:.0f} ms"
        lines.append(
            f"| {rank} | {name} | {m['mean']:.2f} ± {m['se']:.2f} | {_ci(m['ci95'])} | {delta_best} | "
            f"{_delta_cell(m.get('delta_vs_zeroshot'), name == ZEROSHOT)} | {step} | {m['peak_memory_mb']:.0f} MiB | "
            f"{_bytes(m['adapter_bytes'])} |"
        )
    return "\n".join(lines) + "\n"


def hyperparameter_note(summary: dict[str, Any]) -> str:
    hp = summary["settings"]["hyperparameters"]
    how = (
        "tuned on the validation split (the same learning-rate factors, one trial each, for every method; a β grid for "
        "the methods with a meta step; under dg the source domains' images, never the held-out domain's; "
        "`tuning.json`)"
        if summary["tuned"]
        else "each method's defaults (not tuned; `--tune` chooses them on the validation split)"
    )
    values = "; ".join(
        f"{m}: lr {v['learning_rate']:g}" + (f", β {v['meta_step']:g}" if v.get("meta_step") is not None else "")
        for m, v in hp.items()
        if v.get("learning_rate") is not None
    )
    return f"Hyperparameters: {how}. {values}."


def summary_lines(summary: dict[str, Any]) -> list[str]:
    """Three lines a person can act on: the best method (or the tie), its margin with its interval, and the
    command to train it on the whole data set given."""
    ranking, methods = summary["ranking"], summary["methods"]
    best = ranking[0]
    metric = "HM" if summary["metric"] == "hm" else "accuracy"
    b = methods[best]
    tied = summary["indistinguishable_from_best"]
    n = len(summary["seeds"])
    if tied:
        first = (
            f"Best by mean: {best} ({metric} {b['mean']:.2f} ± {b['se']:.2f}, {n} seeds), but not distinguishable on "
            f"this data from {', '.join(tied)} (their paired Δ intervals include 0)."
        )
    else:
        first = (
            f"Best: {best} ({metric} {b['mean']:.2f} ± {b['se']:.2f}, {n} paired seeds), ahead of every other method."
        )
    if len(ranking) > 1:
        second = ranking[1]
        d = methods[second]["delta_vs_best"]
        margin = f"Margin over {second}: {_num(-d['mean'], True)} points, 95 % interval {_ci([-d['ci95'][1], -d['ci95'][0]], True)}"
    else:
        margin = "Only one method ran"
    if "delta_vs_zeroshot" in b and ZEROSHOT not in (best, ranking[1] if len(ranking) > 1 else None):
        z = b["delta_vs_zeroshot"]
        margin += f"; over zero-shot: {_num(z['mean'], True)} {_ci(z['ci95'], True)}"
    if b["adapter_bytes"] == 0:  # zero-shot: nothing to train
        act = f"Nothing to train: the frozen base model with the dataset's templates scores best here; check it with: {summary['settings']['train_command']}"
    else:
        act = f"Train it: {summary['settings']['train_command']}"
    return [first, margin + ".", act]


def markdown(summary: dict[str, Any]) -> str:
    """`comparison.md`: what ran, the ranked table, how to read it, the summary."""
    s = summary["settings"]
    lines = [
        f"# Which method for {summary['dataset']}?",
        "",
        f"`{s['command']}`",
        "",
        f"Protocol {summary['protocol']}, {summary['shots']} shots, seeds {summary['seeds']} (every method saw the "
        f"same few-shot sample and seed), scored on the {s['eval_split']!r} split; "
        f"{s['wall_seconds']:.0f} s of wall time in the last invocation; the runs took {s['run_seconds_total']:.0f} s "
        f"(loading, training, evaluation), {s['train_seconds_total']:.0f} s of it training.",
        "",
        table(summary),
        "Mean ± standard error over seeds, the 95 % Student-t interval, and the paired difference (same seed) to the "
        "best method and to zero-shot with its 95 % interval: where the interval of the difference to the best holds "
        "0 the method is not distinguishable from the best on this data. Step time: median optimizer step; peak "
        f"memory: {s['memory_kind']}; adapter: the saved prompt pair.",
        "",
        hyperparameter_note(summary),
        "",
        *summary_lines(summary),
    ]
    return "\n".join(lines) + "\n"


def readme_block(summary: dict[str, Any], result_file: str, plot_file: str | None = None) -> str:
    """The README's worked example, generated from the `comparison.json` the command wrote (`result_file`, its
    path in the repository; `plot_file`, the `comparison.png` beside it)."""
    s = summary["settings"]
    lines = [
        "```bash",
        s["command"],
        "```",
        "",
        f"Wall time {s['wall_seconds']:.0f} s on {s['hardware']}, as the command recorded it "
        f"({len(summary['ranking'])} methods × {len(summary['seeds'])} seeds, {summary['shots']} shots, "
        f"{summary['protocol']}; every number below is read from [`{result_file}`]({result_file})):",
        "",
        table(summary).rstrip("\n"),
        "",
        hyperparameter_note(summary),
        "",
        *[f"> {line}" + ("  " if i < 2 else "") for i, line in enumerate(summary_lines(summary))],
    ]
    if plot_file:
        lines += ["", f"![Per-seed scores, means and 95 % intervals of every method]({plot_file})"]
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------------- plot
def plot(summary: dict[str, Any], path: Path) -> None:
    """Per-seed scores as points and each method's mean with its 95 % interval, best first."""
    import logging

    import matplotlib

    matplotlib.use("Agg")
    logging.getLogger("matplotlib").setLevel(logging.WARNING)
    import matplotlib.pyplot as plt

    ranking = summary["ranking"]
    fig, ax = plt.subplots(figsize=(1.3 * len(ranking) + 2.5, 4))
    for x, name in enumerate(ranking):
        m = summary["methods"][name]
        scores = list(m["per_seed"].values())
        offsets = [(i - (len(scores) - 1) / 2) * 0.06 for i in range(len(scores))]
        ax.scatter([x + o for o in offsets], scores, s=18, color="tab:gray", alpha=0.7, zorder=2)
        lo, hi = m["ci95"]
        colour = "tab:blue" if name == ranking[0] or name in summary["indistinguishable_from_best"] else "tab:red"
        ax.errorbar(
            [x + 0.25],
            [m["mean"]],
            yerr=[[m["mean"] - lo], [hi - m["mean"]]],
            fmt="o",
            color=colour,
            capsize=4,
            zorder=3,
        )
    ax.set_xticks(range(len(ranking)), ranking, rotation=20, ha="right")
    metric = "HM" if summary["metric"] == "hm" else "accuracy"
    ax.set_ylabel(f"{metric} (%)")
    ax.set_title(
        f"{summary['dataset']} ({summary['protocol']}, {summary['shots']} shots): seeds (grey), mean and 95 % "
        "interval (blue: best or not distinguishable from it)",
        fontsize=8,
    )
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
