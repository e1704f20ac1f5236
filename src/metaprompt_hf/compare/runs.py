"""Running the comparison's training runs in-process through `training.train` (the library's own run: the same
steps as `examples/train.py`), one after the other, resumably:

- a finished run (its marker carries the digest asked for now) is skipped;
- a run folder without a matching marker (another configuration, or a run cut short) is removed and re-run;
- the marker is written atomically after `results.json`, so Ctrl-C or a crash loses at most the run in progress.

Each run's measurements go into its marker: the median optimizer-step time, the peak memory (CUDA's
`max_memory_allocated` on GPU; the process's RSS high-water mark on CPU) and the adapter's size on disk.
"""

from __future__ import annotations

import contextlib
import json
import logging
import resource
import shutil
import statistics
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from ..constants import CONFIG_NAME, WEIGHTS_NAME
from ..data.loading import DataError, ImageClassificationData
from ..protocols import get_protocol
from ..training import TrainerState, train
from ..utils import atomic_write_json
from .plan import MARKER, RunSpec
from .processes import is_main_process, wait_for_everyone


def metric_key(protocol: str) -> tuple[str, str]:
    """(the comparison's metric name, the result entry's key): ("hm", "hm") for base-to-new, else ("acc",
    "accuracy")."""
    return ("hm", "hm") if "hm" in get_protocol(protocol).metric_keys else ("acc", "accuracy")


class StepTimer:
    """A training callback recording the wall-clock time of each optimizer step, and advancing the overall bar."""

    def __init__(self, bar: Any | None = None, steps: int = 0) -> None:
        self.times: list[float] = [time.perf_counter()]
        self.bar, self.steps = bar, steps

    def __call__(self, state: TrainerState) -> None:
        self.times.append(time.perf_counter())
        if self.bar is not None and self.steps:
            self.bar.update(1 / self.steps)

    def median_step_seconds(self) -> float:
        """The median step time, the first step left out when there are others (it includes set-up)."""
        gaps = [b - a for a, b in zip(self.times, self.times[1:], strict=False)]
        gaps = gaps[1:] if len(gaps) > 1 else gaps
        return float(statistics.median(gaps)) if gaps else 0.0


@contextlib.contextmanager
def peak_memory() -> Iterator[dict[str, float]]:
    """Measure the peak memory (MiB) of the block: CUDA's allocator peak on GPU, else this process's RSS
    high-water mark (Linux: reset at the start through /proc/self/clear_refs, so it is the block's own peak)."""
    out: dict[str, float] = {}
    cuda = torch.cuda.is_available()
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    else:
        with contextlib.suppress(OSError), open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    yield out
    if cuda:
        out["peak_memory_mb"] = torch.cuda.max_memory_allocated() / 2**20
    else:
        out["peak_memory_mb"] = _rss_high_water() / 2**20


def _rss_high_water() -> int:
    with contextlib.suppress(OSError), open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def adapter_bytes(folder: Path) -> int:
    """Size on disk of the adapter pair (0 for a method without prompts)."""
    return sum((folder / name).stat().st_size for name in (CONFIG_NAME, WEIGHTS_NAME) if (folder / name).is_file())


def _reset_accelerate() -> None:
    """Forget the last run's Accelerate state, so that each in-process run builds its own `Accelerator`; the
    process group (DDP) is kept for the whole comparison (`train(keep_process_group=True)`)."""
    from accelerate.state import AcceleratorState, GradientState

    AcceleratorState._reset_state(False)
    GradientState._reset_state()


def execute(spec: RunSpec, data: ImageClassificationData, bar: Any | None = None) -> dict[str, Any]:
    """Train and evaluate one run into its folder (a stale folder is removed first) and write its marker."""
    if is_main_process() and spec.folder.exists():
        shutil.rmtree(spec.folder)
    wait_for_everyone()
    _reset_accelerate()
    timer = StepTimer(bar, spec.steps)
    name, key = metric_key(spec.args.protocol)
    start = time.perf_counter()
    with peak_memory() as memory:
        out = train(spec.args, callbacks=[timer], data=data, keep_process_group=True)
    result = out.results[0]
    record = {
        "digest": spec.digest,
        "config_digest": spec.config_digest,
        "method": spec.method,
        "seed": spec.seed,
        "kind": spec.kind,
        "eval_split": spec.args.eval_split,
        "metric": name,
        "score": float(result[key]),
        "learning_rate": spec.args.learning_rate,
        "meta_step": spec.args.meta_step if spec.args.uses_meta_step else None,
        "optimizer_steps": out.global_step,
        "step_time_s": timer.median_step_seconds(),
        "train_seconds": out.train_seconds,
        "run_seconds": time.perf_counter() - start,
        "peak_memory_mb": memory["peak_memory_mb"],
        "adapter_bytes": adapter_bytes(spec.folder),
        "result": result,
    }
    if is_main_process():
        atomic_write_json(spec.folder / MARKER, record)  # last: the run counts as finished from here on
    wait_for_everyone()
    return record


def run_all(specs: list[RunSpec], data: ImageClassificationData, desc: str = "runs") -> list[dict[str, Any]]:
    """Every run of `specs` (finished ones read from their markers), with one overall progress bar and ETA."""
    from tqdm.auto import tqdm

    records: dict[int, dict[str, Any]] = {}
    todo = []
    for i, spec in enumerate(specs):
        done = spec.finished()
        if done is None:
            todo.append(i)
        else:
            records[i] = done
    logging.getLogger("metaprompt_hf").setLevel(logging.WARNING)  # the bar and the markers say what happens
    bar = tqdm(
        total=len(todo),
        desc=desc,
        unit="run",
        disable=not is_main_process() or not todo,
        bar_format="{desc}: {percentage:3.0f}%|{bar}| {n:.1f}/{total} runs [{elapsed}<{remaining}]{postfix}",
    )
    for done, i in enumerate(todo, 1):
        bar.set_postfix_str(f"{specs[i].method} seed {specs[i].seed}")
        records[i] = execute(specs[i], data, bar)
        bar.n = done
        bar.refresh()
    bar.close()
    return [records[i] for i in range(len(specs))]


def check_pairing(specs: list[RunSpec]) -> None:
    """Every method of a seed trained on the same few-shot sample: their `fewshot_indices.json` rows are equal."""
    by_seed: dict[int, dict[str, Any]] = {}
    for spec in specs:
        path = spec.folder / "fewshot_indices.json"
        rows = json.loads(path.read_text(encoding="utf-8"))["rows"]
        first = by_seed.setdefault(spec.seed, {"method": spec.method, "rows": rows})
        if first["rows"] != rows:
            raise DataError(
                f"seed {spec.seed}: {path} holds another few-shot sample than {first['method']}'s run; the runs are "
                "not paired (did the data change during the comparison?)"
            )


def measure_steps(specs: list[RunSpec], data: ImageClassificationData, probe_dir: Path) -> dict[str, float]:
    """Seconds of one optimizer step per method with runs to do: a 3-step run of its first pending spec, the
    median of the last two steps (the first includes set-up), nothing evaluated; its folder removed afterwards."""
    import dataclasses

    seconds: dict[str, float] = {}
    logging.getLogger("metaprompt_hf").setLevel(logging.WARNING)
    for spec in specs:
        if spec.method in seconds or spec.steps == 0 or spec.finished() is not None:
            continue
        folder = probe_dir / spec.method
        if is_main_process() and folder.exists():
            shutil.rmtree(folder)
        wait_for_everyone()
        _reset_accelerate()
        args = dataclasses.replace(spec.args, output_dir=str(folder), max_steps=3, do_eval=False)
        timer = StepTimer()
        train(args, callbacks=[timer], data=data, keep_process_group=True)
        seconds[spec.method] = timer.median_step_seconds()
    if is_main_process():
        shutil.rmtree(probe_dir, ignore_errors=True)
    wait_for_everyone()
    return seconds
