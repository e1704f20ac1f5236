"""How `benchmarks/perf.py` measures: encoder-call counting (forward hooks on CLIP's two towers), interleaved
timing with medians and ratios, and the machine the numbers come from."""

from __future__ import annotations

import contextlib
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch


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


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]
