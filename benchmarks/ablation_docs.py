"""The meta-step ablation as the README, the model card and `ablation.md` state it: the variants' table, the
selection on the validation split and a plain reading of the intervals, every figure read from `ablation.json`
(`mini_ablation.py --ablation`) and `ablation_hparams.json` (`--ablation --tune`). The per-cell table itself is
`ablation_report.markdown`, the one that `mini_ablation.py` writes."""

from __future__ import annotations

from typing import Any

from ablation_report import REFERENCE, schedule_text

from metaprompt_hf.stats import interval_includes_zero

ABLATION = "benchmarks/results/ablation.json"
HPARAMS = "benchmarks/results/ablation_hparams.json"
_PROTOCOL_WORDS = {"base2new": "base-to-new HM", "dg": "domain-generalisation accuracy"}


def _signed(x: float, digits: int = 2) -> str:
    return f"{x:+.{digits}f}".replace("-", "−")


def _num(x: float) -> str:
    return f"{x:.2f}" if abs(x) >= 0.1 else f"{x:.3f}"


def stat_text(stat: dict[str, Any]) -> str:
    """'+0.27 ± 0.13 [−0.02, +0.57]' (mean ± s.e. [95 % interval]), or the mean alone when n < 2."""
    if stat["mean"] is None:
        return "–"
    if stat["se"] is None:
        return f"{_signed(stat['mean'])} (n = {stat['n']})"
    lo, hi = stat["ci95"]
    return f"{_signed(stat['mean'])} ± {stat['se']:.2f} [{_signed(lo)}, {_signed(hi)}]"


def variant_label(name: str, config: dict[str, Any], default: str | None) -> str:
    """'`clean`, β = 5 (**the default**, chosen on validation)' from the variant's recorded configuration."""
    beta = config.get("meta_step")
    label = f"`{name}`" + ("" if beta is None else f", β = {beta:g}")
    notes = []
    if config.get("meta_zero_grad_drift"):
        notes.append("the reference's zero-grad drift on")
    if name == default:
        notes.append("**the selected variant and β**, chosen on validation")
    return label + (f" ({'; '.join(notes)})" if notes else "")


def _average(record: dict[str, Any], protocol: str) -> dict[str, Any] | None:
    metric = "delta_hm" if protocol == "base2new" else "delta_acc"
    return record.get(protocol, {}).get("average", {}).get(metric)


def verdict(summary: dict[str, Any], variant: str) -> str:
    """A plain reading of one variant's average intervals: where it measurably helps or costs."""
    record = summary["variants"][variant]
    helps, costs = [], []
    for protocol, words in _PROTOCOL_WORDS.items():
        stat = _average(record, protocol)
        if stat is None or interval_includes_zero(stat):
            continue
        (helps if stat["mean"] > 0 else costs).append(words)
    text = f"it measurably helps the {' and the '.join(helps)}" if helps else "it does not measurably help"
    if costs:
        text += f"{' but' if helps else ', and'} it measurably lowers the {' and the '.join(costs)}"
    return text


def readme_block(summary: dict[str, Any], hparams: dict[str, Any] | None) -> str:
    """The README's section body: commands, schedule, wall time, the variants' table and the reading."""
    settings = summary["settings"]
    default = settings.get("default_variant")
    lines = ["```bash"]
    if hparams:
        lines.append(f"{hparams['command']}   # selection, validation split → {HPARAMS}")
    lines += [f"{settings['command']}   # the test runs → {ABLATION}", "```", ""]
    lines += [
        f"Seeds {settings['seeds']}, split **{settings['eval_split']}**; cells as run: {schedule_text(summary)}. "
        f"The test runs took {settings['wall_seconds_this_invocation']:,.0f} s of wall time "
        f"({settings['run_seconds_total']:,.0f} s of runs, {settings['jobs']} at a time), as `{ABLATION}` records.",
        "",
        f"| variant (Δ vs `{REFERENCE}`, points, mean ± s.e. [95 % CI]) | Δ HM, base-to-new average "
        "| Δ accuracy, DG average | ‖Δ_meta‖/‖Δ_in-domain‖ B2N / DG |",
        "|---|---|---|---|",
    ]
    for name, record in summary["variants"].items():
        diag = record.get("diagnostics", {})
        ratios = " / ".join(
            "–" if diag.get(p, {}).get("meta_update_ratio") is None else _num(diag[p]["meta_update_ratio"])
            for p in ("base2new", "dg")
        )
        b2n, dg = _average(record, "base2new"), _average(record, "dg")
        lines.append(
            f"| {variant_label(name, record['config'], default)} | {stat_text(b2n) if b2n else '–'} "
            f"| {stat_text(dg) if dg else '–'} | {ratios} |"
        )
    if default in summary["variants"]:
        lines += ["", f"Read from the intervals: for the selected variant `{default}`, {verdict(summary, default)}."]
    ref = summary.get("reference_diagnostics", {}).get("dg")
    if ref and ref.get("text_prompts_moved") is not None:
        lines.append(
            f"In DG the prompts of `{REFERENCE}` move {ref['text_prompts_moved']:.2f} / "
            f"{ref['vision_prompts_moved']:.2f} (text / vision, median) from an initial norm of "
            f"{ref['text_prompts_init_norm']:.2f} / {ref['vision_prompts_init_norm']:.2f}."
        )
    return "\n".join(lines) + "\n"


def effects_text(summary: dict[str, Any], variant: str) -> str:
    """'the base-to-new HM by +0.27 ± 0.13 points (95 % CI −0.02 to +0.57) and the ...' of one variant."""
    effects = []
    for protocol, words in _PROTOCOL_WORDS.items():
        stat = _average(summary["variants"][variant], protocol)
        if stat is None or stat["se"] is None:
            continue
        lo, hi = stat["ci95"]
        effects.append(
            f"the {words} by {_signed(stat['mean'])} ± {stat['se']:.2f} points (95 % CI {_signed(lo)} to "
            f"{_signed(hi)})"
        )
    return " and ".join(effects)


def card_block(summary: dict[str, Any]) -> str:
    """The model card's sentence on the default meta step's measured effect (no Jinja syntax: it sits in the
    card's template)."""
    settings = summary["settings"]
    default = settings["default_variant"]
    record = summary["variants"][default]
    return (
        f"Measured on the package's mini-world benchmark over {len(summary['seeds'])} paired seeds "
        f"({settings['eval_split']} split; the same prompts trained without the step as reference; "
        f"`{settings['command']}`, recorded in `{ABLATION}`), the meta step as that ablation selected it on validation "
        f"({variant_label(default, record['config'], None)}) changed {effects_text(summary, default)}: on that "
        f"benchmark {verdict(summary, default)}.\n"
    )


def method_block(summary: dict[str, Any]) -> str:
    """docs/method.md §3's sentence on the default variant's measured update size and effect."""
    settings = summary["settings"]
    default = settings["default_variant"]
    diag = summary["variants"][default].get("diagnostics", {})
    ratios = " and ".join(
        f"{diag[p]['meta_update_ratio']:.2f} in {'base-to-new' if p == 'base2new' else 'DG'}"
        for p in ("base2new", "dg")
        if diag.get(p, {}).get("meta_update_ratio") is not None
    )
    return (
        f"Measured on the {settings['eval_split']} split of the mini-world ablation over {len(summary['seeds'])} "
        f"paired seeds (`{settings['command']}`; `{ABLATION}`), the norm of the meta update of "
        f"{variant_label(default, summary['variants'][default]['config'], None)} over the in-domain update's is a "
        f"median {ratios}, and the step changes {effects_text(summary, default)} against `{REFERENCE}`.\n"
    )


def selection_block(hparams: dict[str, Any]) -> str:
    """`ablation.md`'s selection paragraph from `ablation_hparams.json`: grids, validation scores, choices."""
    scores = hparams["validation_scores"]
    lines = [
        f"`{hparams['command']}` — seeds {hparams['seeds']}, {hparams['selection']}.",
        "",
    ]
    if "learning_rate" in hparams["grids"]:  # a record that selected its own learning rate
        lines += [
            f"Learning rate of `{REFERENCE}` from {hparams['grids']['learning_rate']} (validation score per rate; "
            f"chosen: {hparams['learning_rate']}):",
            "",
            "| protocol | " + " | ".join(f"{lr:g}" for lr in hparams["grids"]["learning_rate"]) + " |",
            "|---|" + "---|" * len(hparams["grids"]["learning_rate"]),
        ]
        for protocol, by_lr in scores["learning_rate"].items():
            lines.append(f"| {protocol} | " + " | ".join(f"{v:.2f}" for v in by_lr.values()) + " |")
    else:
        lines.append(f"Learning rate: {hparams['learning_rate']}, from {scores['learning_rate']['source']}.")
    lines += [
        "",
        f"Then β per variant from {hparams['grids']['meta_step']} (validation base-to-new HM / DG accuracy / their "
        f"mean; chosen: the best mean), and the default variant by that mean: **{hparams['default_variant']}**.",
        "",
        "| variant | β | base-to-new | DG | mean | chosen |",
        "|---|---|---|---|---|---|",
    ]
    for variant, by_beta in scores["variants"].items():
        chosen = hparams["variants"].get(variant, {}).get("meta_step")
        for beta, s in by_beta.items():
            mark = "yes" if beta == "None" or float(beta) == chosen else ""
            beta_text = "–" if beta == "None" else beta
            lines.append(
                f"| {variant} | {beta_text} | {s['base2new']:.2f} | {s['dg']:.2f} | {s['mean']:.2f} | {mark} |"
            )
    return "\n".join(lines) + "\n"
