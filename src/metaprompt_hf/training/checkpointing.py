"""Resumable checkpoints: prompts (safetensors + JSON config), optimizer state (safetensors + JSON), the schedule,
progress and RNG states (JSON + safetensors) — never the frozen CLIP, never pickle; each written atomically."""

from __future__ import annotations

import json
import os
import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..constants import CHECKPOINT_PREFIX, WEIGHTS_NAME
from ..modeling.modeling_metaprompt import MetaPromptModel
from ..utils import (
    UnreadableFileError,
    atomic_replace_dir,
    read_json_file,
    read_safetensors_file,
    temporary_sibling,
)

CHECKPOINT_FILES = (WEIGHTS_NAME, "optimizer.safetensors", "rng_state.safetensors", "trainer_state.json")
TRAINER_STATE_KEYS = ("progress", "schedule", "optimizer", "python_random", "numpy_random")


class CheckpointError(ValueError):
    """A checkpoint that cannot be resumed by this run (e.g. it is past --max_steps); the message says why."""


def _flatten_optimizer_state(state: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    tensors, scalars = {}, {"param_groups": state["param_groups"], "state": {}}
    for pid, entry in state["state"].items():
        scalars["state"][str(pid)] = {}
        for key, value in entry.items():
            if isinstance(value, torch.Tensor):
                tensors[f"state.{pid}.{key}"] = value.detach().cpu().contiguous()
            else:
                scalars["state"][str(pid)][key] = value
    return tensors, scalars


def _unflatten_optimizer_state(tensors: dict[str, torch.Tensor], scalars: dict[str, Any]) -> dict[str, Any]:
    state: dict[int, dict[str, Any]] = {int(pid): dict(entry) for pid, entry in scalars["state"].items()}
    for name, value in tensors.items():
        _, pid, key = name.split(".", 2)
        state.setdefault(int(pid), {})[key] = value
    return {"state": state, "param_groups": scalars["param_groups"]}


def save_checkpoint(
    folder: str | os.PathLike,
    model: MetaPromptModel,
    optimizer: Any,
    schedule: torch.optim.lr_scheduler.LRScheduler,
    progress: dict[str, Any],
) -> None:
    """Write a resumable checkpoint: prompts (safetensors + JSON config), optimizer state (safetensors + JSON),
    schedule, progress and RNG state (JSON + safetensors) — never the frozen CLIP, never pickle. Written into a
    temporary folder that is renamed into place, so a crash leaves no half checkpoint."""
    folder = Path(folder)
    tmp = Path(temporary_sibling(folder))
    try:
        _write_checkpoint(tmp, model, optimizer, schedule, progress)
        atomic_replace_dir(tmp, folder)
    finally:  # a failed write (disk full, a crash in a writer) leaves no temporary folder behind
        shutil.rmtree(tmp, ignore_errors=True)


def _write_checkpoint(
    tmp: Path,
    model: MetaPromptModel,
    optimizer: Any,
    schedule: torch.optim.lr_scheduler.LRScheduler,
    progress: dict[str, Any],
) -> None:
    from safetensors.torch import save_file

    model._save_pretrained(tmp)  # the adapter files only (ModelHubMixin's hook): a checkpoint needs no model card
    tensors, scalars = _flatten_optimizer_state(optimizer.state_dict())
    save_file(tensors, str(tmp / "optimizer.safetensors"), {"format": "pt"})
    rng = {"torch_cpu": torch.get_rng_state()}
    if torch.cuda.is_available():
        rng |= {f"torch_cuda_{i}": s for i, s in enumerate(torch.cuda.get_rng_state_all())}
    save_file(rng, str(tmp / "rng_state.safetensors"))
    py_state = random.getstate()
    np_state = np.random.get_state()
    state = {
        "progress": progress,
        "schedule": {k: v for k, v in schedule.state_dict().items() if k != "lr_lambdas"},
        "optimizer": scalars,
        "python_random": [py_state[0], list(py_state[1]), py_state[2]],
        "numpy_random": [np_state[0], np_state[1].tolist(), int(np_state[2]), int(np_state[3]), float(np_state[4])],
    }
    (tmp / "trainer_state.json").write_text(json.dumps(state, indent=2))


def load_checkpoint(
    folder: str | os.PathLike, model: MetaPromptModel, optimizer: Any, schedule: torch.optim.lr_scheduler.LRScheduler
) -> dict[str, Any]:
    """Restore what `save_checkpoint` wrote; returns the progress dict.

    Every file is read and checked before anything is restored, so a damaged checkpoint changes nothing.

    Raises:
        FileNotFoundError: a checkpoint file is missing (named).
        UnreadableFileError: a file is truncated or garbled, or does not fit this run (the file and the reason).
    """
    folder = Path(folder)
    for name in CHECKPOINT_FILES:
        if not (folder / name).is_file():
            raise FileNotFoundError(
                f"resume_from_checkpoint: {folder} has no {name}; not a checkpoint of this trainer"
            )
    prompts = read_safetensors_file(folder / WEIGHTS_NAME)
    optimizer_tensors = read_safetensors_file(folder / "optimizer.safetensors")
    rng = read_safetensors_file(folder / "rng_state.safetensors")
    state = read_json_file(folder / "trainer_state.json", required=TRAINER_STATE_KEYS)
    if "torch_cpu" not in rng:
        raise UnreadableFileError(f"{folder / 'rng_state.safetensors'}: lacks the 'torch_cpu' generator state")
    progress = state["progress"]
    step = progress.get("global_step") if isinstance(progress, dict) else None
    if isinstance(step, bool) or not isinstance(step, int) or step < 0:
        raise UnreadableFileError(
            f"{folder / 'trainer_state.json'}: 'progress' must hold a step count 'global_step' >= 0, got "
            f"{str(progress)[:80]}"
        )
    model.load_prompt_state_dict(prompts, source=str(folder / WEIGHTS_NAME))
    try:
        optimizer.load_state_dict(_unflatten_optimizer_state(optimizer_tensors, state["optimizer"]))
        schedule.load_state_dict(state["schedule"])
        for group, lr in zip(optimizer.param_groups, schedule.get_last_lr()):
            group["lr"] = lr
        torch.set_rng_state(rng["torch_cpu"])
        if torch.cuda.is_available():
            cuda = [rng[k] for k in sorted(k for k in rng if k.startswith("torch_cuda_"))]
            if len(cuda) == torch.cuda.device_count():
                torch.cuda.set_rng_state_all(cuda)
        py = state["python_random"]
        random.setstate((py[0], tuple(py[1]), py[2]))
        n = state["numpy_random"]
        np.random.set_state((n[0], np.asarray(n[1], dtype=np.uint32), n[2], n[3], n[4]))
    except (KeyError, ValueError, TypeError, IndexError, AttributeError, RuntimeError) as err:
        raise UnreadableFileError(
            f"{folder}: the optimizer, schedule or random state in optimizer.safetensors, rng_state.safetensors and "
            f"trainer_state.json does not fit this run ({type(err).__name__}: {str(err)[:200]})"
        ) from err
    return progress


def latest_checkpoint(output_dir: str | os.PathLike) -> Path | None:
    """The checkpoint folder of `output_dir` with the highest step, or None."""
    folders = [
        p
        for p in Path(output_dir).glob(f"{CHECKPOINT_PREFIX}*")
        if p.is_dir() and p.name[len(CHECKPOINT_PREFIX) :].isdigit()
    ]
    return max(folders, key=lambda p: int(p.name[len(CHECKPOINT_PREFIX) :]), default=None)


def prune_checkpoints(output_dir: str | os.PathLike, keep: int) -> list[Path]:
    """Delete the oldest `checkpoint-N` folders of `output_dir` so that at most `keep` remain (the newest, by
    step); returns the deleted folders. The checkpoint just written is always among those kept."""
    folders = sorted(
        (
            p
            for p in Path(output_dir).glob(f"{CHECKPOINT_PREFIX}*")
            if p.is_dir() and p.name[len(CHECKPOINT_PREFIX) :].isdigit()
        ),
        key=lambda p: int(p.name[len(CHECKPOINT_PREFIX) :]),
    )
    removed = folders[: max(0, len(folders) - keep)]
    for folder in removed:
        shutil.rmtree(folder)
    return removed
