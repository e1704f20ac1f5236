"""One training run end to end (docs/method.md §3-§4): Accelerate over a few-shot `datasets` split, the optimizer
steps of `training/loop.py`, the adapter, evaluation and Hub upload.

`train(args)` is the whole run in one call; `examples/train.py` spells the same run out as a recipe:

    args = parse_args()                         # model / data / training arguments (+ a YAML --config, --plugins)
    run = start_run(args)                       # Accelerator, logging, seed, resume point
    fetch_data(args); data, proto = load_protocol_data(args)  # (--download), few-shot and evaluation sets
    model = build_model(args, templates)        # base CLIP + a fresh adapter of the method
    train_loop(args, run, model, proto)         # optimizer steps, with the method's loss and hooks
    save_adapter(run, model) → evaluate_run(...) → push_adapter(...)

The methods are registered objects (`--method`, see `methods/`).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..constants import MODEL_CARD_NAME
from ..data.batches import domain_counts
from ..data.loading import DataError
from ..download import fetch_data
from ..inputs.text_fit import TextTooLongError
from ..methods import Method, TrainerState
from ..modeling.modeling_metaprompt import MetaPromptModel
from ..protocols import ProtocolData, evaluate_protocol, format_results, load_protocol_data
from ..protocols.run import run_templates
from ..utils import UnreadableFileError, atomic_write_json, atomic_write_text
from .arguments import MetaPromptTrainingArguments, parse_args
from .card import model_card_kwargs
from .checkpointing import CheckpointError, latest_checkpoint
from .health import NonFiniteError
from .loop import Run, build_model, train_loop

logger = logging.getLogger(__name__)


@dataclass
class TrainOutput:
    output_dir: str
    results: list[dict[str, Any]]
    global_step: int
    train_seconds: float
    model: MetaPromptModel | None = None


def check_output_dir(args: MetaPromptTrainingArguments) -> None:
    """Refuse a non-empty output_dir unless overwriting or resuming (checked before any work)."""
    out = Path(args.output_dir)
    if out.exists() and not out.is_dir():
        raise DataError(f"output_dir: {out} exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not args.overwrite_output_dir and not args.resume_from_checkpoint:
        raise DataError(
            f"output_dir: {out} exists and is not empty; pass --overwrite_output_dir, a new --output_dir, or "
            "--resume_from_checkpoint"
        )


def start_run(args: MetaPromptTrainingArguments) -> Run:
    """Check the output folder, build the Accelerator (DDP, mixed precision, accumulation, trackers), set up
    logging and the seed, and find the checkpoint to resume from. Raises `DataError` before any work."""
    from accelerate import Accelerator
    from accelerate.utils import set_seed

    check_output_dir(args)
    log_with = None if args.report_to in ("none", "", None) else [s.strip() for s in args.report_to.split(",")]
    accelerator = Accelerator(
        gradient_accumulation_steps=args.gradient_accumulation_steps,
        mixed_precision=args.mixed_precision,
        log_with=log_with,
        project_dir=args.output_dir,
    )
    logging.basicConfig(
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        level=logging.INFO if accelerator.is_main_process else logging.WARNING,
    )
    resume_dir = None
    if args.resume_from_checkpoint:
        resume_dir = (
            latest_checkpoint(args.output_dir)
            if args.resume_from_checkpoint == "latest"
            else Path(args.resume_from_checkpoint)
        )
        if resume_dir is None or not resume_dir.is_dir():
            raise DataError(f"resume_from_checkpoint: no checkpoint found at {args.resume_from_checkpoint!r}")
    set_seed(args.seed)
    return Run(accelerator, Path(args.output_dir), resume_dir)


def check_trainable(args: MetaPromptTrainingArguments, proto: ProtocolData, data: Any) -> None:
    """Refuse to train a method with prompts on a dataset that has no training split (evaluation-only data)."""
    if proto.train_rows is None and args.build_method().trains:
        raise DataError(f"dataset_name: {data.name} has no {args.train_split!r} split to train on (evaluation only)")


def write_run_files(args: MetaPromptTrainingArguments, run: Run, proto: ProtocolData, data: Any) -> None:
    """`fewshot_indices.json` and `training_args.json` in the output folder (main process), after checking that a
    resumed run samples the same few-shot rows."""
    if proto.skipped_corrupt:
        logger.warning(
            "skipped %d unreadable training candidate(s), e.g. %s",
            len(proto.skipped_corrupt),
            proto.skipped_corrupt[:3],
        )
    logger.info(
        "%s on %s (%s): %d training images over %d classes%s",
        args.method,
        data.name,
        args.protocol,
        len(proto.train_labels),
        len(proto.train_class_names),
        f", per source domain {counts}" if (counts := domain_counts(proto.train_domains, data.domain_names)) else "",
    )
    accelerator, out_dir = run.accelerator, run.output_dir
    if accelerator.is_main_process:
        out_dir.mkdir(parents=True, exist_ok=True)
        fewshot_file = out_dir / "fewshot_indices.json"
        if (
            run.resume_dir is not None
            and fewshot_file.is_file()
            and json.loads(fewshot_file.read_text())["rows"] != proto.fewshot["rows"]
        ):
            raise DataError(
                f"resume_from_checkpoint: the few-shot sample differs from {fewshot_file}; same data and seed?"
            )
        atomic_write_text(fewshot_file, json.dumps(proto.fewshot, indent=1))
        # Never write a secret next to an adapter that may be pushed or shared (TrainingArguments does the same).
        saved_args = dataclasses.asdict(args) | {"hub_token": "<HUB_TOKEN>" if args.hub_token else None}
        atomic_write_text(out_dir / "training_args.json", json.dumps(saved_args, indent=2))
    accelerator.wait_for_everyone()


def save_adapter(run: Run, model: MetaPromptModel) -> None:
    """The trained prompts into the output folder (main process)."""
    if run.accelerator.is_main_process:
        model.save_pretrained(run.output_dir, overwrite=True)
    run.accelerator.wait_for_everyone()


def evaluate_run(
    args: MetaPromptTrainingArguments,
    run: Run,
    model: MetaPromptModel,
    proto: ProtocolData,
    data: Any,
    step: int | None = None,
) -> list[dict[str, Any]]:
    """The protocol's metrics, written to `results.json`, printed (main process) and logged to the trackers at
    `step` (the final optimizer step)."""
    results = [evaluate_protocol(args, model, proto, data, model.processor, run.accelerator)]
    ratios = run.meta_update_ratios
    results[0]["meta_update_ratio"] = float(statistics.median(ratios)) if args.uses_meta_step and ratios else None
    results[0]["diverged"] = run.diverged
    log_eval_metrics(run.accelerator, results[0], step)
    if run.accelerator.is_main_process:
        atomic_write_json(run.output_dir / "results.json", results)
        if args.build_method().trains:  # the card `save_adapter` wrote, now with the results
            card = model.generate_model_card(**model_card_kwargs(args, run, proto, data, results))
            atomic_write_text(run.output_dir / MODEL_CARD_NAME, str(card).rstrip("\n") + "\n")
        run.accelerator.print(format_results(results[0]))
        if run.diverged:
            run.accelerator.print(f"warning: the run diverged ({run.diverged}); these numbers are not a result")
    return results


def log_eval_metrics(accelerator: Any, result: dict[str, Any], step: int | None) -> dict[str, float]:
    """Log a result entry's numbers (percent, image counts) to the Accelerate trackers as `eval/<key>`; returns
    what was logged (nothing without trackers). Identity fields (seed, shots) are not metrics and stay out."""
    identity = {"seed", "shots"}
    logs = {
        f"eval/{key}": float(value)
        for key, value in result.items()
        if key not in identity and isinstance(value, (int, float)) and not isinstance(value, bool)
    }
    if not getattr(accelerator, "trackers", None) or not logs:
        return {}
    accelerator.log(logs, step=step)
    return logs


def push_adapter(
    args: MetaPromptTrainingArguments,
    run: Run,
    model: MetaPromptModel,
    proto: ProtocolData,
    data: Any,
    results: list[dict[str, Any]],
) -> None:
    """Upload the adapter and a model card with the results (main process)."""
    if run.accelerator.is_main_process:
        model.push_to_hub(
            args.hub_model_id or run.output_dir.resolve().name,
            private=args.hub_private_repo,
            token=args.hub_token,
            model_card_kwargs=model_card_kwargs(args, run, proto, data, results),
        )


def train(
    args: MetaPromptTrainingArguments,
    callbacks: Sequence[Callable[[TrainerState], None]] = (),
    *,
    model: MetaPromptModel | None = None,
    optimizer: torch.optim.Optimizer | None = None,
    method: Method | None = None,
    data: Any | None = None,
    keep_process_group: bool = False,
) -> TrainOutput:
    """The whole run: train (unless the method has nothing to train), save the adapter into `output_dir`, evaluate
    and optionally push. `examples/train.py` is the same sequence written out.

    The pieces the run would build can be passed in instead (benchmarks and tests use this rather than copying the
    set-up): `model` (a `MetaPromptModel` whose active adapter is trained), `optimizer` (over its trainable
    tensors) and `method` (default `args.build_method()`). For several runs in one process: `data`, the dataset
    already loaded from these arguments (`protocols.run.load_dataset_for`), and `keep_process_group` (DDP), so that
    the runs share one process group instead of setting it up again."""
    method = method if method is not None else args.build_method()
    run = start_run(args)
    with run.accelerator.main_process_first():  # fails fast on bad input
        fetch_data(args)
        data, proto = load_protocol_data(args, data)
    check_trainable(args, proto, data)
    write_run_files(args, run, proto, data)
    if model is None:
        model = build_model(args, run_templates(args.template, args.dataset_name))
    start = time.perf_counter()
    global_step = 0
    if method.trains:  # zero-shot CLIP learns nothing to save
        global_step = train_loop(args, run, model, proto, callbacks, optimizer=optimizer, method=method)
        save_adapter(run, model)
    train_seconds = time.perf_counter() - start
    results = evaluate_run(args, run, model, proto, data, step=global_step) if args.do_eval else []
    if args.push_to_hub:
        push_adapter(args, run, model, proto, data, results)
    if keep_process_group:  # what `end_training` does but destroying the process group
        for tracker in run.accelerator.trackers:
            tracker.finish()
    else:
        run.accelerator.end_training()
    return TrainOutput(str(run.output_dir), results, global_step, train_seconds, model)


# What a user can cause (bad data, a damaged or mismatched checkpoint, a missing file): a message, exit status 2.
USER_ERRORS = (DataError, OSError, UnreadableFileError, CheckpointError, NonFiniteError, TextTooLongError)


def main(argv: Sequence[str] | None = None) -> int:
    """`train` from the command line: bad input becomes a clear message and exit status 2."""
    try:
        args = parse_args(argv)
    except (ValueError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    try:
        output = train(args)
    except USER_ERRORS as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 1 if output.results and output.results[0].get("diverged") else 0
