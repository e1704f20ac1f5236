"""Cost benchmark of MetaPrompt vs IVLP vs CoOp vs zero-shot CLIP at ViT-B/16 dimensions (issue 6).

Cost does not depend on the weights, so a randomly initialised `CLIPModel` with ViT-B/16 dimensions
(`metaprompt_hf.testing.VIT_B16`) measures it honestly, offline. Every timed step is the library's own code path:

    MetaPromptTrainingArguments(method=...) → args.adapter_config(templates) → MetaPromptModel
    per step, as the training loop does it, through the step API (`metaprompt_hf.training.step.TrainingStep`):
        with accelerator.accumulate(model): step.forward_backward(batch)    # model(..., labels=) → its own loss
        step.update(step=global_step)     # optimizer.step(), then the meta step for `metaprompt`

Measured, each comparison inside one run and reported as a ratio (absolute times on a shared machine are noise):

* training-step time of `metaprompt`, `ivlp`, `coop`: base-to-new with 50 and 500 classes, DG with 3 source domains
  (methods interleaved within every repeat, warm-up steps excluded, medians);
* inference time per image of `metaprompt` vs `zeroshot` on the same batch, class features cached, and the batched
  frozen+prompted image call vs two separate calls;
* peak memory of one `metaprompt` training step vs the number of classes (10 → 1000), with and without gradient
  checkpointing, each setting in a fresh subprocess (peak RSS on CPU, `torch.cuda.max_memory_allocated` on GPU);
* the adapter's file size (`save_pretrained`, 2+2 tokens);
* encoder calls and rows per step (forward hooks on the two CLIP towers), to show that no frozen pass is repeated;
* optional ablations: eager vs SDPA attention, bf16 autocast, chunk checkpointing of the text encoder.

Usage (from the repository root)::

    python benchmarks/perf.py --output perf.json --markdown perf.md     # the default run (<= 20 min on 2 cores)
    python benchmarks/perf.py --quick --output /tmp/perf.json            # tiny CLIP, a few seconds (CI smoke)
    python benchmarks/perf.py --device cuda --output perf_cuda.json      # the same code path on a GPU

See benchmarks/README.md, section "Performance (issue 6)", for the numbers and how to read them.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import platform
import resource
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO / "src") not in sys.path:
    sys.path.insert(0, str(REPO / "src"))

import torch  # noqa: E402

from metaprompt_hf import MetaPromptModel  # noqa: E402
from metaprompt_hf import training as T  # noqa: E402
from metaprompt_hf.testing import VIT_B16, byte_level_tokenizer, image_processor, tiny_clip_config  # noqa: E402
from metaprompt_hf.training.step import TrainingStep  # noqa: E402

TEMPLATES = ["a photo of a {}"]
TRAIN_METHODS = ("metaprompt", "ivlp", "coop")
LEARNING_RATE = 0.0015  # the post-warm-up rate, so that the meta step really updates the prompts
DEFAULTS = dict(
    b2n_classes=(50, 500),
    batch_size=16,
    dg_batch_size=32,
    dg_domains=3,
    dg_classes=65,
    infer_batch_size=16,
    infer_classes=100,
    memory_classes=(10, 50, 100, 200, 500, 1000),
    memory_batch_size=16,
    repeats=3,
    warmup=1,
    infer_repeats=5,  # an inference batch is cheap next to a training step: more repeats (3 were too noisy)
)
QUICK = dict(
    b2n_classes=(6, 12),
    batch_size=8,
    dg_batch_size=6,
    dg_domains=3,
    dg_classes=5,
    infer_batch_size=4,
    infer_classes=6,
    memory_classes=(4, 16),
    memory_batch_size=4,
    repeats=1,
    warmup=1,
    infer_repeats=1,
)


# ---------------------------------------------------------------------------------------------------- model
def clip_config(model: str, tokenizer: Any) -> Any:
    """ViT-B/16 dimensions (or the test-sized tiny CLIP with `--quick`), vocabulary fitted to `tokenizer`."""
    dims = dict(VIT_B16) if model == "vit-b16" else {}
    vocab = dict(
        text_vocab_size=len(tokenizer),
        text_bos_token_id=tokenizer.bos_token_id,
        text_eos_token_id=tokenizer.eos_token_id,
        text_pad_token_id=tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id,
    )
    return tiny_clip_config(**dims, **vocab)


def build_clip(model: str, tokenizer: Any, attn: str, device: str) -> Any:
    from transformers import CLIPModel

    torch.manual_seed(0)
    clip = CLIPModel._from_config(clip_config(model, tokenizer), attn_implementation=attn).eval()
    return clip.to(device)


def load_tokenizer(path: str | None) -> Any:
    if path is None:
        return byte_level_tokenizer()
    from transformers import CLIPTokenizer

    return CLIPTokenizer.from_pretrained(path)


def make_processor(clip: Any, tokenizer: Any) -> Any:
    from transformers import CLIPProcessor

    return CLIPProcessor(image_processor=image_processor(clip.config.vision_config.image_size), tokenizer=tokenizer)


def synthetic_class_names(n: int, tokenizer: Any, lo: int = 3, hi: int = 5) -> list[str]:
    """`n` distinct class names of `lo`..`hi` tokens each (cycling through the lengths) under `tokenizer`.

    With CLIP's BPE these are "class name 7" ... "class name 123" (3-5 tokens, digits are single tokens). The
    byte-level test tokenizer has no merges (one token per character), so there a name is a compact code such as
    "c0 7a" with the same token count: the text encoder sees realistic sequence lengths either way."""

    def count(text: str) -> int:
        return len(tokenizer(text, add_special_tokens=False)["input_ids"])

    alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
    names: list[str] = []
    for i in range(n):
        want = lo + i % (hi - lo + 1)
        code, j = "", i
        while len(code) < want:
            code, j = code + alphabet[j % len(alphabet)], j // len(alphabet)
        # Letters first so that no name is all digits; a space splits the code into two "words".
        code = "abcdefghijklmnopqrstuvwxyz"[i % 26] + code[1:]
        compact = code[:2] + " " + code[2:] if want > 2 else code
        for candidate in (f"class name {i}", compact):
            if candidate not in names and lo <= count(candidate) <= hi:
                names.append(candidate)
                break
        else:
            raise ValueError(f"could not make a {lo}-{hi} token class name #{i} with this tokenizer")
    return names


def new_model(clip: Any, processor: Any, args: T.MetaPromptTrainingArguments) -> MetaPromptModel:
    """A fresh adapter of `args.method`, exactly as `training.build_model` makes it (minus loading the base)."""
    torch.manual_seed(args.seed)
    model = MetaPromptModel(clip, args.adapter_config(TEMPLATES), processor, class_chunk_size=args.class_chunk_size)
    if args.gradient_checkpointing:
        model.gradient_checkpointing_enable()
    return model


def training_args(method: str, protocol: str, batch_size: int, **kw: Any) -> T.MetaPromptTrainingArguments:
    extra = {"target_domain": "target"} if protocol == "dg" else {}
    return T.MetaPromptTrainingArguments(
        method=method,
        protocol=protocol,
        per_device_train_batch_size=batch_size,
        learning_rate=LEARNING_RATE,
        output_dir=tempfile.gettempdir(),
        **extra,
        **kw,
    )


# ---------------------------------------------------------------------------------------------------- one step
def make_accelerator(mixed_precision: str, cpu: bool) -> Any:
    """An `Accelerator` with this mixed precision. Accelerate keeps one global state per process and refuses to
    change its precision, so the state is reset when an ablation asks for another one: accelerators made earlier
    without mixed precision keep a no-op `autocast()`, so fp32 and bf16 steps can be timed side by side."""
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState

    try:
        return Accelerator(cpu=cpu, mixed_precision=mixed_precision)
    except ValueError:
        AcceleratorState._reset_state()
        return Accelerator(cpu=cpu, mixed_precision=mixed_precision)


class TrainStep:
    """One optimizer step of `training._train_loop` for one method (no gradient accumulation, one process)."""

    def __init__(
        self,
        clip: Any,
        processor: Any,
        method: str,
        protocol: str,
        class_names: Sequence[str],
        pixel_values: torch.Tensor,
        labels: torch.Tensor,
        domains: torch.Tensor | None,
        *,
        mixed_precision: str = "no",
        **arg_overrides: Any,
    ) -> None:
        self.args = training_args(method, protocol, pixel_values.shape[0], **arg_overrides)
        self.accelerator = make_accelerator(mixed_precision, cpu=pixel_values.device.type == "cpu")
        model = new_model(clip, processor, self.args)
        optimizer = torch.optim.SGD(
            model.prompt_parameters(),
            lr=self.args.learning_rate,
            momentum=self.args.momentum,
            weight_decay=self.args.weight_decay,
        )
        self.ddp_model, self.optimizer = self.accelerator.prepare(model, optimizer)
        self.model = self.accelerator.unwrap_model(self.ddp_model)
        self.class_names = list(class_names)
        self.batch = {"pixel_values": pixel_values, "labels": labels, "domains": domains}
        self.step = TrainingStep(
            self.model,
            self.optimizer,
            self.class_names,
            meta=self.args.meta_settings(),
            source_domains=sorted(set(domains.tolist())) if domains is not None else None,
            seed=self.args.seed,
            accelerator=self.accelerator,
            module=self.ddp_model,
        )
        self.global_step = 0
        self.ddp_model.train()

    def __call__(self) -> None:
        with self.accelerator.accumulate(self.ddp_model):
            self.step.forward_backward(self.batch)
        self.step.update(step=self.global_step)
        self.global_step += 1


def b2n_batch(batch_size: int, n_classes: int, image_size: int, device: str) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(batch_size * 1009 + n_classes)
    pixel_values = torch.randn(batch_size, 3, image_size, image_size, generator=g).to(device)
    # Distinct classes (all of them when the batch is larger), as in a few-shot batch: then both class groups of
    # the base-to-new split hold samples and neither meta episode is skipped.
    labels = torch.randperm(max(batch_size, n_classes), generator=g)[:batch_size] % n_classes
    return pixel_values, labels


def dg_batch(
    batch_size: int, n_classes: int, n_domains: int, image_size: int, device: str
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    pixel_values, labels = b2n_batch(batch_size, n_classes, image_size, device)
    domains = torch.arange(batch_size) % n_domains  # every source domain present, as --mix_domains ensures
    return pixel_values, labels, domains


# ---------------------------------------------------------------------------------------------------- counting
class EncoderCounter:
    """Counts calls to CLIP's two towers and the rows (images / class sequences) they encode, split into calls
    made during a forward and recomputations during backward (activation checkpointing)."""

    def __init__(self, clip: Any) -> None:
        self.clip = clip
        self.reset()

    def reset(self) -> None:
        self.counts = {
            f"{tower}_{what}": 0
            for tower in ("vision", "text")
            for what in ("calls", "rows", "recompute_calls", "recompute_rows")
        }

    def _hook(self, tower: str, key: str) -> Callable:
        def hook(_module: Any, args: tuple, kwargs: dict) -> None:
            x = kwargs.get(key, args[0] if args else None)
            rows = int(x.shape[0]) if x is not None else 0
            in_backward = torch._C._current_graph_task_id() != -1
            prefix = f"{tower}_recompute" if in_backward else tower
            self.counts[f"{prefix}_calls"] += 1
            self.counts[f"{prefix}_rows"] += rows

        return hook

    @contextlib.contextmanager
    def __call__(self) -> Iterator[dict[str, int]]:
        self.reset()
        handles = [
            self.clip.vision_model.register_forward_pre_hook(self._hook("vision", "pixel_values"), with_kwargs=True),
            self.clip.text_model.register_forward_pre_hook(self._hook("text", "input_ids"), with_kwargs=True),
        ]
        try:
            yield self.counts
        finally:
            for h in handles:
                h.remove()


# ---------------------------------------------------------------------------------------------------- timing
def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def timed(fn: Callable[[], Any], device: str) -> float:
    sync(device)
    start = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - start


def time_interleaved(
    fns: dict[str, Callable[[], Any]],
    repeats: int,
    warmup: int,
    device: str,
    counter: EncoderCounter | None = None,
) -> tuple[dict[str, list], dict[str, dict]]:
    """Warm-up calls (excluded), then `repeats` rounds in which every function runs once: a load spike on a shared
    machine then hits all of them rather than one. Encoder calls are counted during the last round."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    times: dict[str, list] = {name: [] for name in fns}
    calls: dict[str, dict] = {}
    for r in range(repeats):
        for name, fn in fns.items():
            if counter is not None and r == repeats - 1:
                with counter() as counts:
                    times[name].append(timed(fn, device))
                calls[name] = dict(counts)
            else:
                times[name].append(timed(fn, device))
    return times, calls


def summary(times: list[float]) -> dict[str, Any]:
    return {"times_s": [round(t, 4) for t in times], "median_s": statistics.median(times), "min_s": min(times)}


def ratio(times: dict[str, list], num: str, den: str) -> dict[str, float]:
    """Ratio of medians, and the median of the per-round ratios (robust to load drift between rounds)."""
    paired = [a / b for a, b in zip(times[num], times[den])]
    return {
        "median_ratio": statistics.median(times[num]) / statistics.median(times[den]),
        "paired_ratio": statistics.median(paired),
    }


def log(msg: str) -> None:
    print(f"[perf {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------------- sections
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


ABLATIONS = ("bf16", "attention", "text_chunks", "dg_parts", "templates")


def _encode_ids_chunked_before(self: MetaPromptModel, rows: list[list[int]], prompts: torch.Tensor | None) -> Any:
    """`MetaPromptModel._encode_ids_chunked` before issue 6: EVERY chunk checkpointed (and recomputed in backward)
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
    """`domain_split_episodes` before issue 6: every meta-train side encoded on its own (N − 1 batches per step)."""
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
            with _patched(MetaPromptModel, "_encode_ids_chunked", _encode_ids_chunked_before):
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
            with _patched(T, "domain_split_episodes", _without_parts):
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


# ---------------------------------------------------------------------------------------------------- memory
def memory_child(spec: dict[str, Any]) -> dict[str, Any]:
    """Runs in a fresh process: build the model, one metaprompt base-to-new training step, report the peak."""
    torch.set_num_threads(spec["threads"])
    device = spec["device"]
    tokenizer = load_tokenizer(spec["tokenizer"])
    clip = build_clip(spec["model"], tokenizer, spec["attn"], device)
    processor = make_processor(clip, tokenizer)
    names = synthetic_class_names(spec["classes"], tokenizer)
    pixel_values, labels = b2n_batch(spec["batch_size"], spec["classes"], clip.config.vision_config.image_size, device)
    step = TrainStep(
        clip,
        processor,
        "metaprompt",
        "base2new",
        names,
        pixel_values,
        labels,
        None,
        gradient_checkpointing=spec["gradient_checkpointing"],
    )
    if spec.get("every_chunk_recomputed"):  # the chunk checkpointing before issue 6, for comparison
        MetaPromptModel._encode_ids_chunked = _encode_ids_chunked_before
    step.model.encode_templates(names)  # cached once per run in training too
    if device.startswith("cuda"):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    else:
        reset_peak_rss()
        base = rss_bytes()
    start = time.perf_counter()
    step()
    elapsed = time.perf_counter() - start
    if device.startswith("cuda"):
        torch.cuda.synchronize()
        peak, kind = torch.cuda.max_memory_allocated(), "cuda_max_memory_allocated"
    else:
        peak, kind = max(peak_rss_bytes(), rss_bytes()), "peak_rss"
    return {"peak_bytes": peak, "before_step_bytes": base, "kind": kind, "step_s": elapsed}


def reset_peak_rss() -> None:
    """Reset this process's RSS high-water mark to its current RSS (Linux >= 4.0), so the peak is the step's.
    Without it the peak includes the model build, and `ru_maxrss` is worse: Linux carries it over fork + exec, so
    a subprocess started by a big parent reports the parent's RSS at fork time whatever the child does."""
    with contextlib.suppress(OSError), open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def peak_rss_bytes() -> int:
    """VmHWM: the high-water mark of this process's own address space (not inherited across exec)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _memory_run(ctx: SimpleNamespace, n: int, ckpt: bool, **extra: Any) -> dict[str, Any]:
    spec = dict(
        classes=n,
        gradient_checkpointing=ckpt,
        batch_size=ctx.memory_batch_size,
        model=ctx.model,
        attn=ctx.attn,
        device=ctx.device,
        tokenizer=ctx.tokenizer_path,
        threads=torch.get_num_threads(),
        **extra,
    )
    proc = subprocess.run(
        [sys.executable, __file__, "--_memory_child", json.dumps(spec)], capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        raise RuntimeError(f"memory child failed ({spec}):\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def bench_memory(ctx: SimpleNamespace) -> dict[str, Any]:
    results: dict[str, Any] = {"batch_size": ctx.memory_batch_size, "settings": {}}
    for ckpt in (False, True):
        key = "gradient_checkpointing" if ckpt else "no_gradient_checkpointing"
        results["settings"][key] = {}
        for n in ctx.memory_classes:
            log(f"memory: {n} classes, gradient checkpointing {ckpt}")
            results["settings"][key][str(n)] = _memory_run(ctx, n, ckpt)
    if ctx.memory_before:
        n = max(ctx.memory_classes)
        log(f"memory: {n} classes, every text chunk recomputed (before issue 6)")
        results["every_chunk_recomputed"] = {str(n): _memory_run(ctx, n, False, every_chunk_recomputed=True)}
    return results


# ---------------------------------------------------------------------------------------------------- report
FLOOR_NOTE = "issue 6 floor +10%"


def derive(result: dict[str, Any]) -> None:
    """The headline keys and the targets of issue 6."""
    b2n = result.get("b2n", {})
    targets = {}
    for n, entry in b2n.items():
        result[f"b2n_step_ratio_vs_ivlp_{n}"] = entry["ratio_vs_ivlp"]["metaprompt"]["median_ratio"]
        result[f"b2n_coop_step_ratio_vs_ivlp_{n}"] = entry["ratio_vs_ivlp"]["coop"]["median_ratio"]
        # Measured floor: frozen image pass + prompted image f+b + text f+b over the K classes + the two episodes'
        # text f+b over K classes in all = coop + ivlp + text_fb (coop = frozen pass + text f+b).
        m = {k: v["median_s"] for k, v in entry["methods"].items()}
        entry["floor_ratio_vs_ivlp"] = (m["coop"] + m["ivlp"] + m["text_fb"]) / m["ivlp"]
        result[f"b2n_floor_ratio_vs_ivlp_{n}"] = entry["floor_ratio_vs_ivlp"]
    if "dg" in result:
        dg = result["dg"]
        result["dg_step_ratio_vs_ivlp"] = dg["ratio_vs_ivlp"]["metaprompt"]["median_ratio"]
        result["dg_source_domains"] = dg["source_domains"]
        # Measured floor with shared per-domain gradients: frozen pass + text f+b (= coop) + the prompted image
        # f+b three times (in-domain, meta-train parts at θ0, meta-test sides) = coop + 3·(ivlp − text_fb).
        m = {k: v["median_s"] for k, v in dg["methods"].items()}
        dg["floor_ratio_vs_ivlp"] = (m["coop"] + 3 * (m["ivlp"] - m["text_fb"])) / m["ivlp"]
        dg["issue_floor_ratio_vs_ivlp"] = (4 + 3 * dg["source_domains"]) / 3
        result["dg_floor_ratio_vs_ivlp"] = dg["floor_ratio_vs_ivlp"]
    if "inference" in result:
        result["inference_ratio_vs_zeroshot"] = result["inference"]["ratio_vs_zeroshot"]["median_ratio"]
        result["inference_two_calls_vs_batched"] = result["inference"]["two_calls_vs_batched"]["median_ratio"]
    if "adapter" in result:
        result["adapter_bytes"] = result["adapter"]["files"]["metaprompt_model.safetensors"]
    if "memory" in result:
        for key, suffix in (("no_gradient_checkpointing", ""), ("gradient_checkpointing", "_checkpointing")):
            result[f"peak_mem_bytes_by_classes{suffix}"] = {
                n: v["peak_bytes"] for n, v in result["memory"]["settings"][key].items()
            }

    def target(name: str, value: float | None, limit: float) -> None:
        if value is not None:
            targets[name] = {"value": round(value, 3), "target": round(limit, 3), "met": value <= limit}

    classes = sorted(int(n) for n in b2n)
    if len(classes) >= 1:
        target(f"b2n_step_ratio_vs_ivlp_{classes[0]}", result.get(f"b2n_step_ratio_vs_ivlp_{classes[0]}"), 1.6)
    if len(classes) >= 2:
        target(f"b2n_step_ratio_vs_ivlp_{classes[-1]}", result.get(f"b2n_step_ratio_vs_ivlp_{classes[-1]}"), 2.2)
    if "dg_step_ratio_vs_ivlp" in result:
        n = result["dg_source_domains"]
        target("dg_step_ratio_vs_ivlp", result["dg_step_ratio_vs_ivlp"], 1.1 * (4 + 3 * n) / 3)
    target("inference_ratio_vs_zeroshot", result.get("inference_ratio_vs_zeroshot"), 2.1)
    target("adapter_bytes", result.get("adapter_bytes"), 130 * 1024)
    mem = result.get("peak_mem_bytes_by_classes")
    if mem and len(mem) >= 2:
        # Growth per class from the largest chunk (class_chunk_size = 128) to the largest class count, against the
        # bytes per class of what necessarily grows: features, logits and their gradients (a few (C, 512) tensors).
        ns = sorted(int(n) for n in mem)
        hi = ns[-1]
        lo = max([n for n in ns if n <= 128] or [ns[0]])
        if hi > lo:
            per_class = (mem[str(hi)] - mem[str(lo)]) / (hi - lo)
            result["peak_mem_growth_bytes_per_class"] = per_class
            targets["peak_mem_growth_bytes_per_class"] = {
                "value": round(per_class),
                "from_classes": lo,
                "to_classes": hi,
                "note": "a (C, 512) fp32 feature tensor is 2048 bytes per class",
            }
    result["targets"] = targets


def markdown(result: dict[str, Any]) -> str:
    s = result["settings"]
    note = (
        ["(--quick: tiny CLIP, whose times are Python overhead, not cost; the targets apply to ViT-B/16.)", ""]
        if s["model"] == "tiny"
        else []
    )
    lines = note + [
        f"Device: {result['device']} ({s['threads']} threads); model: {s['model']} random weights, "
        f"{s['attn']} attention, {s['precision']}; tokenizer: {s['tokenizer']}; repeats: {s['repeats']} "
        f"(+{s['warmup']} warm-up) ; load average at start/end: {result['load_average_start']} / "
        f"{result['load_average_end']}; {result['date']}.",
        "",
        "| Measurement | metaprompt | ivlp | coop | text f+b alone | metaprompt / ivlp | measured floor | target "
        "| met |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    targets = result.get("targets", {})

    def met(key: str) -> tuple[str, str]:
        t = targets.get(key)
        if not t or "met" not in t:
            return "", ""
        return f"≤ {t['target']:.2f}", "yes" if t["met"] else "**no**"

    for n, entry in result.get("b2n", {}).items():
        m = entry["methods"]
        tgt, ok = met(f"b2n_step_ratio_vs_ivlp_{n}")
        lines.append(
            f"| base-to-new step, {n} classes, batch {entry['batch_size']} (s) | {m['metaprompt']['median_s']:.2f} "
            f"| {m['ivlp']['median_s']:.2f} | {m['coop']['median_s']:.2f} | {m['text_fb']['median_s']:.2f} "
            f"| **{entry['ratio_vs_ivlp']['metaprompt']['median_ratio']:.2f}** | {entry['floor_ratio_vs_ivlp']:.2f} "
            f"| {tgt} | {ok} |"
        )
    if "dg" in result:
        e = result["dg"]
        m = e["methods"]
        tgt, ok = met("dg_step_ratio_vs_ivlp")
        lines.append(
            f"| DG step, {e['source_domains']} source domains, {e['classes']} classes, batch {e['batch_size']} (s) "
            f"| {m['metaprompt']['median_s']:.2f} | {m['ivlp']['median_s']:.2f} | {m['coop']['median_s']:.2f} "
            f"| {m['text_fb']['median_s']:.2f} | **{e['ratio_vs_ivlp']['metaprompt']['median_ratio']:.2f}** "
            f"| {e['floor_ratio_vs_ivlp']:.2f} | {tgt} | {ok} |"
        )
    lines += ["", "| Measurement | value | target | met |", "|---|---|---|---|"]
    if "inference" in result:
        e = result["inference"]
        p = e["per_image"]
        tgt, ok = met("inference_ratio_vs_zeroshot")
        lines.append(
            f"| inference per image, batch {e['batch_size']}, {e['classes']} classes cached: metaprompt "
            f"{1000 * p['metaprompt']['median_s']:.1f} ms, zero-shot {1000 * p['zeroshot']['median_s']:.1f} ms "
            f"| ratio **{e['ratio_vs_zeroshot']['median_ratio']:.2f}** | {tgt} | {ok} |"
        )
        lines.append(
            f"| frozen+prompted image passes: two calls / one batched call "
            f"| {e['two_calls_vs_batched']['median_ratio']:.2f} | > 1 | "
            f"{'yes' if e['two_calls_vs_batched']['median_ratio'] > 1 else '**no**'} |"
        )
    if "adapter_bytes" in result:
        tgt, ok = met("adapter_bytes")
        lines.append(
            f"| adapter file (2+2 tokens, safetensors) | {result['adapter_bytes']:,} bytes | ≤ 133,120 | {ok} |"
        )
    if "ablations" in result:
        lines += ablation_lines(result["ablations"])
    lines += encoder_call_lines(result)
    if "memory" in result:
        mem = result["memory"]["settings"]
        kind = next(iter(mem["no_gradient_checkpointing"].values()))["kind"]
        lines += [
            "",
            f"Peak memory ({kind}) of one metaprompt base-to-new training step, batch "
            f"{result['memory']['batch_size']}, each setting in a fresh process (MiB; in brackets: growth during "
            "the step):",
            "",
            "| classes | " + " | ".join(mem["no_gradient_checkpointing"]) + " |",
            "|---|" + "---|" * len(mem["no_gradient_checkpointing"]),
        ]
        for key, label in (("no_gradient_checkpointing", "without"), ("gradient_checkpointing", "with")):
            cells = [
                f"{v['peak_bytes'] / 2**20:,.0f} (+{(v['peak_bytes'] - v['before_step_bytes']) / 2**20:,.0f})"
                for v in mem[key].values()
            ]
            lines.append(f"| {label} gradient checkpointing | " + " | ".join(cells) + " |")
        for n, v in result["memory"].get("every_chunk_recomputed", {}).items():
            lines += [
                "",
                f"Before issue 6 (every text chunk recomputed), {n} classes without gradient checkpointing: "
                f"{v['peak_bytes'] / 2**20:,.0f} MiB (+{(v['peak_bytes'] - v['before_step_bytes']) / 2**20:,.0f}).",
            ]
        if "peak_mem_growth_bytes_per_class" in result:
            t = targets["peak_mem_growth_bytes_per_class"]
            lines += [
                "",
                f"Growth from {t['from_classes']} to {t['to_classes']} classes (no gradient checkpointing): "
                f"{result['peak_mem_growth_bytes_per_class'] / 1024:,.1f} KiB per class.",
            ]
    return "\n".join(lines) + "\n"


def _before_after_row(label: str, ratio: float) -> str:
    """A table row for an optimisation: time before / time after, which should exceed 1."""
    return f"| {label} | {ratio:.2f} | > 1 | {'yes' if ratio > 1 else '**no**'} |"


def ablation_lines(a: dict[str, Any]) -> list[str]:
    lines = []
    if "attention" in a:
        lines.append(
            f"| eager / SDPA attention, metaprompt base-to-new step ({a['classes']} classes) "
            f"| {a['attention']['median_ratio']:.2f} | | |"
        )
    if "text_chunks" in a:
        e = a["text_chunks"]
        m = e["methods"]
        lines.append(
            _before_after_row(
                f"text forward+backward over {e['classes']} classes (chunks of {e['class_chunk_size']}): every chunk "
                f"recomputed {m['all_chunks']['median_s']:.2f} s / all but the last {m['all_but_last']['median_s']:.2f} s",
                e["before_vs_after"]["median_ratio"],
            )
        )
    if "templates" in a:
        e = a["templates"]
        lines.append(
            f"| template features of {e['classes']} classes, uncached (paid once per class list, then cached) "
            f"| {e['uncached']['median_s']:.2f} s | | |"
        )
    if "dg_parts" in a:
        e = a["dg_parts"]
        m = e["methods"]
        lines.append(
            _before_after_row(
                f"DG metaprompt step, {e['source_domains']} domains: one pass per meta-train side "
                f"{m['one_pass_per_side']['median_s']:.2f} s / shared per-domain gradients "
                f"{m['shared_parts']['median_s']:.2f} s",
                e["before_vs_after"]["median_ratio"],
            )
        )
    if "bf16_autocast" in a:
        bf = a["bf16_autocast"]
        lines.append(
            f"| bf16 autocast / fp32 step time, base-to-new ({a['classes']} classes); in brackets metaprompt / ivlp "
            f"in bf16 and fp32 | metaprompt {bf['metaprompt_bf16_vs_fp32']['median_ratio']:.2f}, ivlp "
            f"{bf['ivlp_bf16_vs_fp32']['median_ratio']:.2f} ({bf['b2n_step_ratio_vs_ivlp_bf16']['median_ratio']:.2f}"
            f" vs {bf['b2n_step_ratio_vs_ivlp_fp32']['median_ratio']:.2f}) | | |"
        )
    return lines


def encoder_call_lines(result: dict[str, Any]) -> list[str]:
    """Encoder calls and rows per step (hooks on the two towers): images / class sequences encoded."""
    rows = []
    for n, entry in result.get("b2n", {}).items():
        for m, c in entry["encoder_calls_per_step"].items():
            rows.append((f"base-to-new step, {n} classes, batch {entry['batch_size']}", m, c))
    if "dg" in result:
        e = result["dg"]
        for m, c in e["encoder_calls_per_step"].items():
            rows.append((f"DG step, {e['source_domains']} domains, batch {e['batch_size']}", m, c))
    if "inference" in result:
        e = result["inference"]
        for m, c in e["encoder_calls_per_batch"].items():
            rows.append((f"inference batch of {e['batch_size']}, class features cached", m, c))
    if not rows:
        return []
    lines = [
        "",
        "Encoder calls per step (images / class sequences encoded; recomputed in backward by checkpointing):",
        "",
        "| setting | method | image calls | images | text calls | class sequences | recomputed sequences |",
        "|---|---|---|---|---|---|---|",
    ]
    for setting, m, c in rows:
        lines.append(
            f"| {setting} | {m} | {c['vision_calls']} | {c['vision_rows']} | {c['text_calls']} | {c['text_rows']} "
            f"| {c['text_recompute_rows']} |"
        )
    return lines


def versions() -> dict[str, str]:
    import accelerate
    import transformers

    import metaprompt_hf

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "accelerate": accelerate.__version__,
        "metaprompt_hf": metaprompt_hf.__version__,
    }


def device_name(device: str) -> str:
    if device.startswith("cuda"):
        return torch.cuda.get_device_name(torch.device(device))
    name = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                name = line.split(":", 1)[1].strip()
                break
    return f"CPU {name}, {os.cpu_count()} cores"


# ---------------------------------------------------------------------------------------------------- main
def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (cuda when available).")
    p.add_argument("--quick", action="store_true", help="Tiny CLIP and tiny settings (a few seconds; CI smoke).")
    p.add_argument("--batch_size", type=int, help="Base-to-new training batch (default 16, the paper's).")
    p.add_argument("--dg_batch_size", type=int, help="DG training batch (default 32, the paper's).")
    p.add_argument("--dg_classes", type=int, help="Classes of the DG benchmark (default 65, OfficeHome).")
    p.add_argument("--classes", help="Comma-separated base-to-new class counts (default 50,500).")
    p.add_argument("--memory_classes", help="Comma-separated class counts of the memory sweep (default 10..1000).")
    p.add_argument("--memory_batch_size", type=int, help="Batch of the memory sweep (default 16).")
    p.add_argument(
        "--memory_before",
        action="store_true",
        help="Also measure the largest class count with every text chunk recomputed (the code before issue 6).",
    )
    p.add_argument("--infer_batch_size", type=int, help="Inference batch (default 16).")
    p.add_argument("--repeats", type=int, help="Timed rounds per comparison (default 3), after --warmup rounds.")
    p.add_argument("--warmup", type=int, help="Untimed warm-up steps per method (default 1).")
    p.add_argument("--attn", default="sdpa", choices=("sdpa", "eager"), help="CLIP attention backend.")
    p.add_argument("--mixed_precision", default="no", choices=("no", "bf16", "fp16"), help="Autocast of the steps.")
    p.add_argument("--threads", type=int, help="torch threads (default: torch's choice).")
    p.add_argument("--tokenizer", help="A CLIP tokenizer folder (default: the byte-level test tokenizer).")
    p.add_argument(
        "--sections",
        default="b2n,dg,inference,adapter,memory",
        help="Comma-separated subset of b2n,dg,inference,adapter,memory,ablations (ablations: bf16 autocast and\n"
        "eager vs SDPA attention on the 50-class base-to-new step; not in the default run).",
    )
    p.add_argument(
        "--ablations",
        default=",".join(ABLATIONS),
        help=f"With the ablations section: which of {','.join(ABLATIONS)}.",
    )
    p.add_argument("--output", help="Write the results as JSON here.")
    p.add_argument("--markdown", help="Write the Markdown table here (it is printed in any case).")
    p.add_argument("--_memory_child", help=argparse.SUPPRESS)
    return p.parse_args(argv)


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def run(opts: argparse.Namespace) -> dict[str, Any]:
    preset = dict(QUICK if opts.quick else DEFAULTS)
    for key in ("batch_size", "dg_batch_size", "dg_classes", "memory_batch_size", "infer_batch_size", "repeats"):
        if getattr(opts, key) is not None:
            preset[key] = getattr(opts, key)
    if opts.warmup is not None:
        preset["warmup"] = opts.warmup
    if opts.classes:
        preset["b2n_classes"] = tuple(int(x) for x in opts.classes.split(","))
    if opts.memory_classes:
        preset["memory_classes"] = tuple(int(x) for x in opts.memory_classes.split(","))
    if opts.repeats is not None:
        preset["infer_repeats"] = max(opts.repeats, preset["infer_repeats"])
        if preset["infer_repeats"] != opts.repeats:  # said before any work: the flag is not taken as given there
            print(
                f"--repeats {opts.repeats}: inference comparisons keep {preset['infer_repeats']} rounds (too noisy below)"
            )
    device = opts.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if opts.threads:
        torch.set_num_threads(opts.threads)
    sections = [s.strip() for s in opts.sections.split(",") if s.strip()]
    model = "tiny" if opts.quick else "vit-b16"
    tokenizer = load_tokenizer(opts.tokenizer)
    ctx = SimpleNamespace(**preset)
    ctx.device, ctx.model, ctx.attn, ctx.tokenizer, ctx.tokenizer_path = (
        device,
        model,
        opts.attn,
        tokenizer,
        opts.tokenizer,
    )
    ctx.step_kw = {"mixed_precision": opts.mixed_precision}
    ctx.ablations = [a.strip() for a in opts.ablations.split(",") if a.strip()]
    ctx.memory_before = opts.memory_before
    started = time.perf_counter()
    result: dict[str, Any] = {
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "command": "python " + shlex.join([os.path.relpath(__file__, REPO), *sys.argv[1:]]),
        "device": device_name(device),
        "versions": versions(),
        "load_average_start": load_average(),
    }
    log(f"building the {model} CLIP on {device}")
    ctx.clip = build_clip(model, tokenizer, opts.attn, device)
    ctx.processor = make_processor(ctx.clip, tokenizer)
    ctx.image_size = ctx.clip.config.vision_config.image_size
    ctx.counter = EncoderCounter(ctx.clip)
    result["settings"] = {
        "model": model,
        "attn": opts.attn,
        "precision": "fp32" if opts.mixed_precision == "no" else f"{opts.mixed_precision} autocast",
        "threads": torch.get_num_threads(),
        "tokenizer": opts.tokenizer or "byte-level test tokenizer (one token per character)",
        "image_size": ctx.image_size,
        "sections": sections,
        **{k: list(v) if isinstance(v, tuple) else v for k, v in preset.items()},
    }
    if "b2n" in sections:
        result["b2n"] = {}
        for n in ctx.b2n_classes:
            log(f"base-to-new step, {n} classes")
            result["b2n"][str(n)] = bench_b2n(ctx, n)
    if "dg" in sections:
        log(f"DG step, {ctx.dg_domains} source domains")
        result["dg"] = bench_dg(ctx)
    if "inference" in sections:
        log("inference")
        result["inference"] = bench_inference(ctx)
    if "adapter" in sections:
        result["adapter"] = bench_adapter(ctx)
    if "ablations" in sections:
        log("ablations")
        result["ablations"] = bench_ablations(ctx)
    if "memory" in sections:
        result["memory"] = bench_memory(ctx)
    result["load_average_end"] = load_average()
    result["wall_s"] = time.perf_counter() - started
    derive(result)
    return result


def main(argv: Sequence[str] | None = None) -> int:
    opts = parse_args(argv)
    if opts._memory_child:
        print(json.dumps(memory_child(json.loads(opts._memory_child))))
        return 0
    result = run(opts)
    table = markdown(result)
    print(table)
    if opts.output:
        Path(opts.output).write_text(json.dumps(result, indent=2, sort_keys=True, default=str) + "\n")
    if opts.markdown:
        Path(opts.markdown).write_text(f"Command: `{result['command']}`\n\n" + table)
    for name, t in result["targets"].items():
        if "met" in t and not t["met"]:
            log(f"target missed: {name} = {t['value']} > {t['target']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
