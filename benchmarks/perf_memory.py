"""The memory sweep of `benchmarks/perf.py`: one metaprompt training step per class count, with and without
gradient checkpointing, each in a fresh process (`perf.py --_memory_child SPEC`) so that peaks do not mix."""

from __future__ import annotations

import contextlib
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import torch
from perf_ablations import encode_ids_chunked_before
from perf_measure import log
from perf_workload import TrainStep, b2n_batch, build_clip, load_tokenizer, make_processor, synthetic_class_names

from metaprompt_hf import MetaPromptModel

PERF_SCRIPT = Path(__file__).resolve().with_name("perf.py")  # the entry script, which runs the child


def memory_child(spec: dict[str, Any]) -> dict[str, Any]:
    """Runs in a fresh process: build the model, one base-to-new training step of `spec["method"]` (default
    metaprompt), report the peak."""
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
        spec.get("method", "metaprompt"),
        "base2new",
        names,
        pixel_values,
        labels,
        None,
        gradient_checkpointing=spec["gradient_checkpointing"],
    )
    if spec.get("every_chunk_recomputed"):  # the former chunk checkpointing, for comparison
        MetaPromptModel._encode_ids_chunked = encode_ids_chunked_before
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
        [sys.executable, str(PERF_SCRIPT), "--_memory_child", json.dumps(spec)],
        capture_output=True,
        text=True,
        check=False,
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
        log(f"memory: {n} classes, every text chunk recomputed (the former checkpointing)")
        results["every_chunk_recomputed"] = {str(n): _memory_run(ctx, n, False, every_chunk_recomputed=True)}
    return results
