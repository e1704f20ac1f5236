"""The timed sections of `benchmarks/perf.py`: training steps (base-to-new, DG), inference, and the adapter file."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Sequence
from types import SimpleNamespace
from typing import Any

import torch
from perf_measure import ratio, summary, time_interleaved
from perf_workload import (
    TRAIN_METHODS,
    TrainStep,
    b2n_batch,
    dg_batch,
    new_model,
    synthetic_class_names,
    training_args,
)


def text_forward_backward(step: TrainStep, names: Sequence[str]) -> Callable[[], None]:
    """The prompted text forward+backward over the class list alone (a component of every step), for the floor."""
    model = step.model

    def run() -> None:
        with step.accelerator.autocast():
            feats = model.encode_text(names)
        feats.float().sum().backward()
        model.text_prompts.grad = None

    return run


def time_train_steps(
    ctx: SimpleNamespace,
    protocol: str,
    names: list[str],
    pixel_values: torch.Tensor,
    labels: torch.Tensor,
    domains: torch.Tensor | None,
) -> tuple[dict[str, TrainStep], dict[str, list[float]], dict[str, dict[str, int]]]:
    """One training step per method (and IVLP's text forward+backward alone), timed interleaved."""
    steps = {
        m: TrainStep(ctx.clip, ctx.processor, m, protocol, names, pixel_values, labels, domains, **ctx.step_kw)
        for m in TRAIN_METHODS
    }
    fns = {**steps, "text_fb": text_forward_backward(steps["ivlp"], names)}
    times, calls = time_interleaved(fns, ctx.repeats, ctx.warmup, ctx.device, ctx.counter)
    return steps, times, calls


def bench_b2n(ctx: SimpleNamespace, n_classes: int) -> dict[str, Any]:
    names = synthetic_class_names(n_classes, ctx.tokenizer)
    pixel_values, labels = b2n_batch(ctx.batch_size, n_classes, ctx.image_size, ctx.device)
    steps, times, calls = time_train_steps(ctx, "base2new", names, pixel_values, labels, None)
    tokens = [len(r) for r in steps["metaprompt"].model._tokenize(names, True)]
    return {
        "classes": n_classes,
        "batch_size": ctx.batch_size,
        "prompted_text_tokens_mean": sum(tokens) / len(tokens),
        "prompted_text_tokens_max": max(tokens),
        "methods": {m: summary(t) for m, t in times.items()},
        "ratio_vs_ivlp": {m: ratio(times, m, "ivlp") for m in TRAIN_METHODS if m != "ivlp"},
        "encoder_calls_per_step": {m: calls[m] for m in TRAIN_METHODS},
    }


def bench_dg(ctx: SimpleNamespace) -> dict[str, Any]:
    names = synthetic_class_names(ctx.dg_classes, ctx.tokenizer)
    pixel_values, labels, domains = dg_batch(
        ctx.dg_batch_size, ctx.dg_classes, ctx.dg_domains, ctx.image_size, ctx.device
    )
    steps, times, calls = time_train_steps(ctx, "dg", names, pixel_values, labels, domains)
    return {
        "classes": ctx.dg_classes,
        "batch_size": ctx.dg_batch_size,
        "source_domains": ctx.dg_domains,
        "methods": {m: summary(t) for m, t in times.items()},
        "ratio_vs_ivlp": {m: ratio(times, m, "ivlp") for m in TRAIN_METHODS if m != "ivlp"},
        "encoder_calls_per_step": {m: calls[m] for m in TRAIN_METHODS},
    }


def bench_inference(ctx: SimpleNamespace) -> dict[str, Any]:
    """Per-image inference of metaprompt vs zero-shot CLIP, the same batch, class features cached (as `predict`
    and `evaluate_set` run: `model(pixel_values, class_names)` under no_grad)."""
    names = synthetic_class_names(ctx.infer_classes, ctx.tokenizer)
    pixel_values, _ = b2n_batch(ctx.infer_batch_size, ctx.infer_classes, ctx.image_size, ctx.device)
    models = {}
    for method in ("metaprompt", "zeroshot"):
        models[method] = new_model(ctx.clip, ctx.processor, training_args(method, "base2new", 16)).eval()

    def run(method: str) -> Callable[[], Any]:
        model = models[method]
        return lambda: model(pixel_values, names, return_zero_shot=method == "zeroshot")

    mp = models["metaprompt"]

    def two_calls() -> Any:
        return mp.encode_frozen_image(pixel_values), mp.encode_image(pixel_values)

    fns = {
        "metaprompt": run("metaprompt"),
        "zeroshot": run("zeroshot"),
        "image_pair_batched": lambda: mp.encode_image_pair(pixel_values),
        "image_pair_two_calls": two_calls,
    }
    with torch.no_grad():
        times, calls = time_interleaved(fns, ctx.infer_repeats, ctx.warmup, ctx.device, ctx.counter)
    per_image = {name: [t / ctx.infer_batch_size for t in ts] for name, ts in times.items()}
    return {
        "classes": ctx.infer_classes,
        "batch_size": ctx.infer_batch_size,
        "per_image": {name: summary(ts) for name, ts in per_image.items()},
        "ratio_vs_zeroshot": ratio(times, "metaprompt", "zeroshot"),
        "two_calls_vs_batched": ratio(times, "image_pair_two_calls", "image_pair_batched"),
        "encoder_calls_per_batch": {m: calls[m] for m in ("metaprompt", "zeroshot")},
    }


def bench_adapter(ctx: SimpleNamespace) -> dict[str, Any]:
    model = new_model(ctx.clip, ctx.processor, training_args("metaprompt", "base2new", 16))
    with tempfile.TemporaryDirectory() as tmp:
        model.save_pretrained(tmp)
        files = {name: os.path.getsize(os.path.join(tmp, name)) for name in sorted(os.listdir(tmp))}
    trainable, _ = model.get_nb_trainable_parameters()
    return {"files": files, "trainable_parameters": trainable, "n_ctx": 2, "n_pro": 2}
