"""Training MetaPrompt adapters and the baselines (docs/method.md §2-§4).

Modules, in the order a run uses them:

- `arguments`: `ModelArguments`, `DataArguments`, `TrainingArguments`, the joined `MetaPromptTrainingArguments`
  and `parse_args` (command line + YAML `--config`);
- `schedule`: the per-epoch warm-up + cosine learning rate as a torch `LRScheduler`;
- `step`: `TrainingStep`, one optimizer step (in-domain update, then the method's meta step) that the loop, the
  benchmarks and the fidelity tests all drive;
- `checkpointing`: resumable safetensors + JSON checkpoints, written atomically;
- `loop`: `build_model`, the training loader and schedule, and `train_loop` (the optimizer steps, the method's
  loss and hooks, checkpoints);
- `run`: `start_run`, `save_adapter`, `evaluate_run`, `push_adapter`, and `train`, the whole run in one call (its
  pieces — model, optimizer, method, callbacks — may be passed in);
- `evaluate`: `evaluate_adapter`, scoring a saved adapter.
"""

from __future__ import annotations

from ..download import fetch_data
from ..methods import TrainerState
from .arguments import DataArguments, MetaPromptTrainingArguments, ModelArguments, TrainingArguments, parse_args
from .checkpointing import latest_checkpoint, load_checkpoint, save_checkpoint
from .evaluate import evaluate_adapter
from .loop import Run, build_model, build_optimizer, build_schedule, build_train_loader, train_loop
from .run import (
    USER_ERRORS,
    TrainOutput,
    check_output_dir,
    check_trainable,
    evaluate_run,
    main,
    push_adapter,
    save_adapter,
    start_run,
    train,
    write_run_files,
)
from .schedule import EpochwiseLR, epochwise_lr
from .step import StepResult, TrainingStep, UpdateRecord

__all__ = [
    "USER_ERRORS",
    "fetch_data",
    "DataArguments",
    "EpochwiseLR",
    "MetaPromptTrainingArguments",
    "ModelArguments",
    "Run",
    "StepResult",
    "TrainOutput",
    "TrainerState",
    "TrainingArguments",
    "TrainingStep",
    "UpdateRecord",
    "build_model",
    "build_optimizer",
    "build_schedule",
    "build_train_loader",
    "check_output_dir",
    "check_trainable",
    "epochwise_lr",
    "evaluate_adapter",
    "evaluate_run",
    "latest_checkpoint",
    "load_checkpoint",
    "main",
    "parse_args",
    "push_adapter",
    "save_adapter",
    "save_checkpoint",
    "start_run",
    "train",
    "train_loop",
    "write_run_files",
]
