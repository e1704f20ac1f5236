"""Optional same-run ablations of `benchmarks/perf.py` (`--sections ablations`): eager vs SDPA attention, bf16
autocast, uncached template features, and the code before the issue-6 changes (every text chunk recomputed; one
pass per DG meta-train side), kept here only to measure the changes."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from types import SimpleNamespace
from typing import Any

import torch
from perf_measure import log, ratio, summary, time_interleaved
from perf_workload import TrainStep, b2n_batch, dg_batch, new_model, synthetic_class_names, training_args

import metaprompt_hf.protocols.base as protocol_base
from metaprompt_hf import MetaPromptModel

ABLATIONS = ("bf16", "attention", "text_chunks", "dg_parts", "templates")


def encode_ids_chunked_before(self: MetaPromptModel, rows: list[list[int]], prompts: torch.Tensor | None) -> Any:
    """`MetaPromptModel._encode_ids_chunked` as it was before the last chunk kept its activations: EVERY chunk checkpointed (and recomputed in backward)
    as soon as there are two or more. Kept here only to measure the change."""
    from torch.utils.checkpoint import checkpoint

    order = sorted(range(len(rows)), key=lambda i: len(rows[i]))
    chunks = [order[i : i + self.class_chunk_size] for i in range(0, len(order), self.class_chunk_size)]
    use_ckpt = len(chunks) > 1 and torch.is_grad_enabled() and prompts is not None and prompts.requires_grad
    feats = []
    for chunk in chunks:
        ids = self._pad([rows[i] for i in chunk])
        if use_ckpt:
            feats.append(checkpoint(self._text_features, ids, prompts, use_reentrant=False))
        else:
            feats.append(self._text_features(ids, prompts))
    out = torch.cat(feats)
    inverse = torch.empty(len(order), dtype=torch.long)
    inverse[torch.tensor(order)] = torch.arange(len(order))
    return out[inverse.to(out.device)]


@contextlib.contextmanager
def _patched(obj: Any, name: str, value: Any) -> Iterator[None]:
    old = getattr(obj, name)
    setattr(obj, name, value)
    try:
        yield
    finally:
        setattr(obj, name, old)


def _without_parts(*args: Any, **kw: Any) -> list:
    """`domain_split_episodes` before per-domain gradients were shared: every meta-train side encoded on its own (N − 1 batches per step)."""
    from metaprompt_hf.meta import Episode, Side, domain_split_episodes

    return [
        Episode(Side(e.train.index, e.train.classes, e.train.labels), e.test)
        for e in domain_split_episodes(*args, **kw)
    ]


def bench_ablations(ctx: SimpleNamespace) -> dict[str, Any]:
    """Same-run comparisons of implementation choices (before/after of the issue-6 changes, and options)."""
    n_small, n_large = ctx.b2n_classes[0], ctx.b2n_classes[-1]
    names = synthetic_class_names(n_small, ctx.tokenizer)
    pixel_values, labels = b2n_batch(ctx.batch_size, n_small, ctx.image_size, ctx.device)
    out: dict[str, Any] = {"classes": n_small}
    which = ctx.ablations

    def step(method: str, **kw: Any) -> TrainStep:
        return TrainStep(ctx.clip, ctx.processor, method, "base2new", names, pixel_values, labels, None, **kw)

    if "attention" in which and hasattr(ctx.clip, "set_attn_implementation"):
        log("ablation: eager vs SDPA attention")
        mp = step("metaprompt")

        def with_attn(impl: str) -> Callable[[], None]:
            def run() -> None:
                ctx.clip.set_attn_implementation(impl)
                try:
                    mp()
                finally:
                    ctx.clip.set_attn_implementation(ctx.attn)

            return run

        times, _ = time_interleaved(
            {"sdpa": with_attn("sdpa"), "eager": with_attn("eager")}, ctx.repeats, ctx.warmup, ctx.device
        )
        out["attention"] = {"methods": {k: summary(v) for k, v in times.items()}, **ratio(times, "eager", "sdpa")}
    if "text_chunks" in which:
        # The prompted text forward+backward over the large class list, as in the in-domain step.
        log(f"ablation: chunk checkpointing, {n_large} classes")
        large = synthetic_class_names(n_large, ctx.tokenizer)
        model = new_model(ctx.clip, ctx.processor, training_args("ivlp", "base2new", ctx.batch_size)).train()

        def text_step() -> None:
            model.encode_text(large).sum().backward()
            model.text_prompts.grad = None

        def text_step_before() -> None:
            with _patched(MetaPromptModel, "_encode_ids_chunked", encode_ids_chunked_before):
                text_step()

        times, _ = time_interleaved(
            {"all_but_last": text_step, "all_chunks": text_step_before}, ctx.repeats, ctx.warmup, ctx.device
        )
        out["text_chunks"] = {
            "classes": n_large,
            "class_chunk_size": model.class_chunk_size,
            "methods": {k: summary(v) for k, v in times.items()},
            "before_vs_after": ratio(times, "all_chunks", "all_but_last"),
        }
    if "templates" in which:
        log(f"ablation: template features uncached, {n_large} classes")
        large = synthetic_class_names(n_large, ctx.tokenizer)
        model = new_model(ctx.clip, ctx.processor, training_args("metaprompt", "base2new", ctx.batch_size))

        def uncached() -> None:
            model.clear_cache()
            model.encode_templates(large)

        times, _ = time_interleaved({"uncached": uncached}, ctx.repeats, ctx.warmup, ctx.device)
        out["templates"] = {"classes": n_large, "uncached": summary(times["uncached"])}
    if "dg_parts" in which:
        log("ablation: DG meta-train sides from shared per-domain gradients")
        dg_names = synthetic_class_names(ctx.dg_classes, ctx.tokenizer)
        batch = dg_batch(ctx.dg_batch_size, ctx.dg_classes, ctx.dg_domains, ctx.image_size, ctx.device)
        dg = TrainStep(ctx.clip, ctx.processor, "metaprompt", "dg", dg_names, *batch)

        def dg_before() -> None:
            with _patched(protocol_base, "domain_split_episodes", _without_parts):
                dg()

        times, calls = time_interleaved(
            {"shared_parts": dg, "one_pass_per_side": dg_before}, ctx.repeats, ctx.warmup, ctx.device, ctx.counter
        )
        out["dg_parts"] = {
            "source_domains": ctx.dg_domains,
            "methods": {k: summary(v) for k, v in times.items()},
            "before_vs_after": ratio(times, "one_pass_per_side", "shared_parts"),
            "encoder_calls_per_step": calls,
        }
    if "bf16" in which:
        # What `--mixed_precision bf16` (Accelerate's autocast) does to the step; last, as it switches
        # Accelerate's global precision state.
        log("ablation: bf16 autocast")
        fns = {"fp32": step("metaprompt"), "ivlp_fp32": step("ivlp")}
        fns |= {"bf16": step("metaprompt", mixed_precision="bf16"), "ivlp_bf16": step("ivlp", mixed_precision="bf16")}
        times, _ = time_interleaved(fns, ctx.repeats, ctx.warmup, ctx.device)
        out["bf16_autocast"] = {
            "methods": {k: summary(v) for k, v in times.items()},
            "metaprompt_bf16_vs_fp32": ratio(times, "bf16", "fp32"),
            "ivlp_bf16_vs_fp32": ratio(times, "ivlp_bf16", "ivlp_fp32"),
            "b2n_step_ratio_vs_ivlp_bf16": ratio(times, "bf16", "ivlp_bf16"),
            "b2n_step_ratio_vs_ivlp_fp32": ratio(times, "fp32", "ivlp_fp32"),
        }
    return out
