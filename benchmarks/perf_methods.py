"""The `methods` section of `benchmarks/perf.py`: every trainable registered method's base-to-new training step
time and peak memory against IVLP's, at the same dimensions, batch and class counts.

The set is `--methods` (default: every registered method that trains prompts, so that a method registered in
`metaprompt_hf.methods` is measured with no change here). Times are interleaved per round (`time_interleaved`),
peaks are one step each in a fresh process (`perf_memory`), as for the MetaPrompt sections.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from perf_measure import log, ratio, summary, time_interleaved
from perf_memory import _memory_run
from perf_workload import TrainStep, b2n_batch, synthetic_class_names

from metaprompt_hf.methods import METHODS

REFERENCE = "ivlp"
#: CoCoOp conditions the context on each image, so it encodes the class texts once per image: its step grows with
#: batch × classes where every other method's grows with classes alone. `cocoop_scaling` times both at these batches.
SCALED = "cocoop"


def trainable_methods() -> list[str]:
    """Every registered method with tensors to train (zero-shot CLIP has none: no training step to time; MMRL trains
    its head only)."""
    return [name for name, cls in METHODS.items() if cls(name).trains]


def parse_methods(value: str | None) -> list[str]:
    """`--methods`: comma-separated registered trainable methods (default all); IVLP, the reference, is added."""
    known = trainable_methods()
    if not value:
        methods = known
    else:
        methods = [m.strip() for m in value.split(",") if m.strip()]
        unknown = [m for m in methods if m not in known]
        if unknown:
            raise ValueError(f"--methods: {unknown} are not registered trainable methods; known: {known}")
    return list(dict.fromkeys([REFERENCE, *methods]))


def bench_methods(ctx: SimpleNamespace) -> dict[str, Any]:
    """Per class count: each method's step time (interleaved rounds, medians) and peak memory, and both as ratios
    of IVLP's. Memory is measured only with `ctx.methods_memory` (a fresh process per method and class count)."""
    out: dict[str, Any] = {"batch_size": ctx.methods_batch_size, "reference": REFERENCE, "classes": {}}
    for n in ctx.methods_classes:
        names = synthetic_class_names(n, ctx.tokenizer)
        pixel_values, labels = b2n_batch(ctx.methods_batch_size, n, ctx.image_size, ctx.device)
        log(f"methods: base-to-new step of {len(ctx.methods)} methods, {n} classes")
        steps = {
            m: TrainStep(ctx.clip, ctx.processor, m, "base2new", names, pixel_values, labels, None, **ctx.step_kw)
            for m in ctx.methods
        }
        times, _ = time_interleaved(steps, ctx.repeats, ctx.warmup, ctx.device, ctx.counter)
        del steps
        entry: dict[str, Any] = {
            "step": {m: summary(times[m]) for m in ctx.methods},
            "step_ratio_vs_ivlp": {m: ratio(times, m, REFERENCE)["median_ratio"] for m in ctx.methods},
        }
        if ctx.methods_memory:
            mem_ctx = SimpleNamespace(**{**vars(ctx), "memory_batch_size": ctx.methods_batch_size})
            peaks = {}
            for m in ctx.methods:
                log(f"methods: peak memory of {m}, {n} classes")
                peaks[m] = _memory_run(mem_ctx, n, False, method=m)
            entry["memory"] = peaks
            ref = peaks[REFERENCE]["peak_bytes"]
            entry["memory_ratio_vs_ivlp"] = {m: peaks[m]["peak_bytes"] / ref for m in ctx.methods}
            # What the step itself adds (activations, gradients, optimizer state) beside the process and the frozen
            # model, which every method shares: on CPU the peak RSS is dominated by them.
            growth = {m: max(p["peak_bytes"] - p["before_step_bytes"], 1) for m, p in peaks.items()}
            entry["memory_growth_ratio_vs_ivlp"] = {m: growth[m] / growth[REFERENCE] for m in ctx.methods}
        out["classes"][str(n)] = entry
    if SCALED in ctx.methods:
        out["cocoop_scaling"] = bench_cocoop_scaling(ctx)
    return out


def bench_cocoop_scaling(ctx: SimpleNamespace) -> dict[str, Any]:
    """CoCoOp's and IVLP's step time at each batch of `ctx.methods_scaling_batches`, at the smallest class count,
    and CoCoOp's ratio to IVLP's per batch (its text encoder runs B times per step; the table divides by B)."""
    n = ctx.methods_classes[0]
    names = synthetic_class_names(n, ctx.tokenizer)
    steps = {}
    for b in ctx.methods_scaling_batches:
        pixel_values, labels = b2n_batch(b, n, ctx.image_size, ctx.device)
        for m in (REFERENCE, SCALED):
            steps[f"{m}@{b}"] = TrainStep(
                ctx.clip, ctx.processor, m, "base2new", names, pixel_values, labels, None, **ctx.step_kw
            )
    log(f"methods: {SCALED} against {REFERENCE} at batches {list(ctx.methods_scaling_batches)}, {n} classes")
    times, _ = time_interleaved(steps, ctx.repeats, ctx.warmup, ctx.device, ctx.counter)
    batches = {}
    for b in ctx.methods_scaling_batches:
        ref, scaled = f"{REFERENCE}@{b}", f"{SCALED}@{b}"
        batches[str(b)] = {
            "step": {REFERENCE: summary(times[ref]), SCALED: summary(times[scaled])},
            "ratio_vs_ivlp": ratio(times, scaled, ref)["median_ratio"],
        }
    return {"classes": n, "batches": batches}


def cocoop_scaling_markdown(section: dict[str, Any]) -> list[str]:
    """CoCoOp's step time against IVLP's as the batch grows (seconds per step and per image)."""
    n = section["classes"]
    lines = [
        "",
        f"CoCoOp encodes the class texts once per image: its step against IVLP's as the batch grows ({n} classes):",
        "",
        "| batch | ivlp step (s) | cocoop step (s) | cocoop s / image | / ivlp |",
        "|---|---|---|---|---|",
    ]
    for b, e in section["batches"].items():
        ivlp, cocoop = e["step"][REFERENCE]["median_s"], e["step"][SCALED]["median_s"]
        lines.append(f"| {b} | {ivlp:.3f} | {cocoop:.3f} | {cocoop / int(b):.3f} | {e['ratio_vs_ivlp']:.2f} |")
    return lines


def methods_markdown(section: dict[str, Any]) -> list[str]:
    """One row per method: step time and peak memory per class count, each with its ratio to IVLP's."""
    counts = list(section["classes"])
    first = section["classes"][counts[0]]
    with_memory = "memory" in first
    head = "| Method |"
    for n in counts:
        head += f" step, {n} classes (s) | / ivlp |"
        if with_memory:
            head += f" peak (+ growth in the step), {n} classes (MiB) | / ivlp (growth / ivlp's) |"
    lines = [
        "",
        f"Every trainable method against IVLP: one base-to-new training step, batch {section['batch_size']}"
        + (
            f"; peak memory ({first['memory'][section['reference']]['kind']}, one step in a fresh process)"
            if with_memory
            else ""
        )
        + ":",
        "",
        head,
        "|---|" + "---|---|" * len(counts) * (2 if with_memory else 1),
    ]
    for m in first["step"]:
        row = f"| {m} |"
        for n in counts:
            e = section["classes"][n]
            row += f" {e['step'][m]['median_s']:.3f} | {e['step_ratio_vs_ivlp'][m]:.2f} |"
            if with_memory:
                p = e["memory"][m]
                row += (
                    f" {p['peak_bytes'] / 2**20:,.0f} (+{(p['peak_bytes'] - p['before_step_bytes']) / 2**20:,.0f}) "
                    f"| {e['memory_ratio_vs_ivlp'][m]:.2f} ({e['memory_growth_ratio_vs_ivlp'][m]:.2f}) |"
                )
        lines.append(row)
    if "cocoop_scaling" in section:
        lines += cocoop_scaling_markdown(section["cocoop_scaling"])
    return lines
