"""Training MetaPrompt adapters and the baselines (docs/method.md §2-§4).

Modules, in the order a run uses them:

- `arguments`: `ModelArguments`, `DataArguments`, `TrainingArguments`, the joined `MetaPromptTrainingArguments`
  and `parse_args` (command line + YAML `--config`);
- `schedule`: the per-epoch warm-up + cosine learning rate as a torch `LRScheduler`;
- `step`: `TrainingStep`, one optimizer step (in-domain update, then the method's meta step) that the loop, the
  benchmarks and the fidelity tests all drive;
- `checkpointing`: resumable safetensors + JSON checkpoints, written atomically;
- `loop`: `start_run`, `build_model`, `build_optimizer`, `train_loop`, `save_adapter`, `evaluate_run`, `push_adapter`, and `train`,
  the whole run in one call;
- `evaluate`: `evaluate_adapter`, scoring a saved adapter.
"""

from __future__ import annotations

from .arguments import DataArguments, MetaPromptTrainingArguments, ModelArguments, TrainingArguments, parse_args
from .checkpointing import latest_checkpoint, load_checkpoint, save_checkpoint
from .evaluate import evaluate_adapter
from .loop import (
    USER_ERRORS,
    Run,
    TrainerState,
    TrainOutput,
    build_model,
    build_optimizer,
    check_output_dir,
    check_trainable,
    evaluate_run,
    main,
    push_adapter,
    save_adapter,
    start_run,
    train,
    train_loop,
    write_run_files,
)
from .schedule import EpochwiseLR, epochwise_lr
from .step import StepResult, TrainingStep, UpdateRecord

__all__ = [
    "USER_ERRORS",
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
