"""The training loop and the run around it (docs/method.md §3-§4): Accelerate over a few-shot `datasets` split,
one `TrainingStep` per optimizer step (the in-domain step, then the meta step of the method), checkpoints, resume,
evaluation and Hub upload.

`train(args)` is the whole run in one call; `examples/train.py` spells the same run out as a recipe:

    args = parse_args()                         # model / data / training arguments (+ a YAML --config)
    run = start_run(args)                       # Accelerator, logging, seed, resume point
    data, proto = load_protocol_data(args)      # few-shot training set and evaluation sets of the protocol
    model = build_model(args, templates)        # base CLIP + a fresh adapter of the method
    train_loop(args, run, model, proto)         # optimizer steps
    save_adapter(run, model) → evaluate_protocol(...) → push_adapter(...)

The baselines are presets of the same loop (`--method`, see `methods.METHODS`).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..batches import FewShotBatchSampler, ImageDataset, TrainTransform, collate, domain_counts, processor_size
from ..constants import MODEL_CARD_NAME
from ..data import DataError
from ..embedded import resolve_base_model
from ..modeling_metaprompt import MetaPromptModel, load_clip, load_processor
from ..protocols import ProtocolData, evaluate_protocol, format_results, get_protocol, load_protocol_data
from ..protocols.run import run_templates
from ..utils import UnreadableFileError, atomic_write_json, atomic_write_text
from .arguments import MetaPromptTrainingArguments, parse_args
from .checkpointing import (
    CHECKPOINT_PREFIX,
    CheckpointError,
    latest_checkpoint,
    load_checkpoint,
    prune_checkpoints,
    save_checkpoint,
)
from .schedule import EpochwiseLR
from .step import TrainingStep

logger = logging.getLogger(__name__)


@dataclass
class TrainerState:
    """Progress handed to callbacks after every optimizer step."""

    global_step: int
    epoch: int
    max_steps: int
    loss: float
    lr: float
    meta_train_loss: float = math.nan
    meta_test_loss: float = math.nan
    model: Any = None  # the unwrapped MetaPromptModel, as transformers' callbacks receive it


@dataclass
class TrainOutput:
    output_dir: str
    results: list[dict[str, Any]]
    global_step: int
    train_seconds: float
    model: MetaPromptModel | None = None


@dataclass
class Run:
    """What `start_run` set up: the Accelerator, the output folder and the checkpoint to resume from (or None)."""

    accelerator: Any
    output_dir: Path
    resume_dir: Path | None
    meta_update_ratios: list[float] = field(default_factory=list)
    """‖Δ_meta‖ / ‖Δ_in-domain‖ of every optimizer step after warm-up (docs/method.md §3.2), for results.json."""


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


def build_model(
    args: MetaPromptTrainingArguments, templates: Sequence[str], torch_seed: int | None = None
) -> MetaPromptModel:
    """Base CLIP + processor + a fresh adapter of `args.method`, prompts initialised from `torch_seed`
    (default: `args.seed`)."""
    base = resolve_base_model(args.base_model)
    clip = load_clip(base, revision=args.base_model_revision, cache_dir=args.cache_dir)
    processor = load_processor(base, revision=args.base_model_revision, cache_dir=args.cache_dir)
    config = dataclasses.replace(
        args.adapter_config(templates), base_model_name_or_path=args.base_model, revision=args.base_model_revision
    )
    torch.manual_seed(args.seed if torch_seed is None else torch_seed)
    model = MetaPromptModel(clip, config, processor, class_chunk_size=args.class_chunk_size)
    if args.gradient_checkpointing:
        model.gradient_checkpointing_enable()
    return model


def check_trainable(args: MetaPromptTrainingArguments, proto: ProtocolData, data: Any) -> None:
    """Refuse to train a method with prompts on a dataset that has no training split (evaluation-only data)."""
    if proto.train_rows is None and args.method_preset.trains:
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
    log_eval_metrics(run.accelerator, results[0], step)
    if run.accelerator.is_main_process:
        atomic_write_json(run.output_dir / "results.json", results)
        if args.method_preset.trains:  # the card `save_adapter` wrote, now with the results
            card = model.generate_model_card(**model_card_kwargs(args, run, proto, data, results))
            atomic_write_text(run.output_dir / MODEL_CARD_NAME, str(card).rstrip("\n") + "\n")
        run.accelerator.print(format_results(results[0]))
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


def model_card_kwargs(
    args: MetaPromptTrainingArguments, run: Run, proto: ProtocolData, data: Any, results: list[dict[str, Any]]
) -> dict[str, Any]:
    """What the run's model card shows (`MetaPromptModel.generate_model_card`)."""
    return {
        "model_name": (args.hub_model_id or run.output_dir.resolve().name).split("/")[-1],
        "results": results,
        "training": card_training_settings(args, proto),
        "datasets": [data.name],
    }


def train(
    args: MetaPromptTrainingArguments,
    callbacks: Sequence[Callable[[TrainerState], None]] = (),
    data: Any | None = None,
    keep_process_group: bool = False,
) -> TrainOutput:
    """The whole run: train (unless the method has nothing to train), save the adapter into `output_dir`, evaluate
    and optionally push. `examples/train.py` is the same sequence written out. For several runs in one process:
    `data`, the dataset already loaded from these arguments (`protocols.run.load_dataset_for`), and
    `keep_process_group` (DDP), so that the runs share one process group instead of setting it up again."""
    run = start_run(args)
    with run.accelerator.main_process_first():  # fails fast on bad input
        data, proto = load_protocol_data(args, data)
    check_trainable(args, proto, data)
    model = build_model(args, run_templates(args.template, args.dataset_name))
    write_run_files(args, run, proto, data)
    start = time.perf_counter()
    global_step = 0
    if args.method_preset.trains:  # zero-shot CLIP learns nothing to save
        global_step = train_loop(args, run, model, proto, callbacks)
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


def train_loop(
    args: MetaPromptTrainingArguments,
    run: Run,
    model: MetaPromptModel,
    proto: ProtocolData,
    callbacks: Sequence[Callable[[TrainerState], None]] = (),
) -> int:
    """The optimizer steps of the run (resuming from `run.resume_dir`); returns the last global step. Each step:
    `TrainingStep.forward_backward` per micro-batch, then `TrainingStep.update` (the optimizer step and the meta
    step on the whole accumulated batch, D15 of docs/method.md §3.3); checkpoints and callbacks after it."""
    from tqdm.auto import tqdm

    accelerator, resume_dir = run.accelerator, run.resume_dir
    image_processor = model.processor.image_processor
    transform = None
    if args.augment:
        transform = TrainTransform(
            processor_size(image_processor),
            image_processor.image_mean,
            image_processor.image_std,
            scale=(args.crop_scale_min, 1.0),
        )
    dataset = ImageDataset(proto.train_rows, proto.train_labels, proto.train_domains, image_processor, transform)
    sampler = FewShotBatchSampler(
        len(dataset),
        args.per_device_train_batch_size,
        args.seed,
        domains=proto.train_domains if get_protocol(args.protocol).mixes_domains else None,
        mix_domains=args.mix_domains and get_protocol(args.protocol).mixes_domains,
    )
    loader = torch.utils.data.DataLoader(
        dataset, batch_sampler=sampler, collate_fn=collate, num_workers=args.dataloader_num_workers
    )
    params = model.prompt_parameters()
    # Plain SGD over the prompts only (docs/method.md §4: momentum 0.9, wd 5e-4, no dampening, no Nesterov).
    optimizer = torch.optim.SGD(params, lr=args.learning_rate, momentum=args.momentum, weight_decay=args.weight_decay)
    ddp_model, optimizer, loader = accelerator.prepare(model, optimizer, loader)
    unwrapped = accelerator.unwrap_model(ddp_model)

    steps_per_epoch = max(1, math.ceil(len(loader) / args.gradient_accumulation_steps))
    max_steps = args.max_steps if args.max_steps > 0 else args.num_train_epochs * steps_per_epoch
    epochs = math.ceil(max_steps / steps_per_epoch)
    raw_optimizer = getattr(optimizer, "optimizer", optimizer)
    schedule = EpochwiseLR(
        raw_optimizer,
        learning_rate=args.learning_rate,
        steps_per_epoch=steps_per_epoch,
        epochs=args.num_train_epochs if args.max_steps <= 0 else epochs,
        warmup_epochs=args.warmup_epochs,
        warmup_lr=args.warmup_lr,
        kind=args.lr_scheduler_type,
    )

    global_step = 0
    if resume_dir is not None:
        progress = load_checkpoint(resume_dir, unwrapped, raw_optimizer, schedule)
        global_step = int(progress["global_step"])
        if global_step > max_steps:
            raise CheckpointError(
                f"resume_from_checkpoint: {resume_dir} is at step {global_step}, past --max_steps {max_steps}; "
                "resume an earlier checkpoint, or raise --max_steps"
            )
        accelerator.print(f"resumed from {resume_dir} at step {global_step}")
    if accelerator.trackers == [] and args.report_to not in ("none", "", None):
        accelerator.init_trackers(
            "metaprompt",
            config={k: v for k, v in dataclasses.asdict(args).items() if isinstance(v, (int, float, str, bool))},
        )

    protocol = get_protocol(args.protocol)
    train_step = TrainingStep(
        unwrapped,
        optimizer,
        proto.train_class_names,
        meta=args.meta_settings(),
        episodes_fn=lambda labels, domains, step: protocol.meta_episodes(
            labels, domains, proto, seed=args.seed, step=step, num_class_groups=args.meta_num_class_groups
        ),
        accelerator=accelerator,
        module=ddp_model,
    )
    bar = tqdm(
        total=max_steps,
        initial=global_step,
        disable=args.disable_tqdm or not accelerator.is_local_main_process,
        desc=args.method,
    )
    ckpt_every = None if args.checkpointing_steps in (None, "epoch") else int(args.checkpointing_steps)
    ddp_model.train()
    for epoch in range(global_step // steps_per_epoch, epochs):
        batches: Any = loader
        skip = (global_step - epoch * steps_per_epoch) * args.gradient_accumulation_steps
        if skip > 0:
            batches = accelerator.skip_first_batches(loader, skip)
        # Accelerate's loaders push their own iteration count into the sampler when iterated; a loader created to
        # skip batches after a resume starts counting at 0, so the epoch is set explicitly on every layer.
        for holder in (loader, batches):
            if hasattr(holder, "set_epoch"):
                holder.set_epoch(epoch)
        sampler.set_epoch(epoch)
        for batch in batches:
            if global_step >= max_steps:
                break
            if batch["labels"].numel() == 0:
                continue
            with accelerator.accumulate(ddp_model):
                train_step.forward_backward(batch)
            if not accelerator.sync_gradients:
                continue
            result = train_step.update(step=global_step)
            lr = result.learning_rate
            ratio = result.meta_update_ratio
            # after warm-up only: at the warm-up lr (1e-5) both updates are tiny and their ratio is noise
            if epoch >= args.warmup_epochs and not math.isnan(ratio):
                run.meta_update_ratios.append(ratio)
            schedule.step()
            global_step += 1
            bar.update(1)
            state = TrainerState(
                global_step,
                epoch,
                max_steps,
                result.loss,
                lr,
                result.meta_train_loss,
                result.meta_test_loss,
                unwrapped,
            )
            if global_step % args.logging_steps == 0 or global_step == max_steps:
                logs = {"loss": result.loss, "lr": lr, "epoch": epoch}
                if args.uses_meta_step:
                    logs |= {
                        "meta_train_loss": result.meta_train_loss,
                        "meta_test_loss": result.meta_test_loss,
                        "meta_update_ratio": ratio,
                        "meta_episodes": result.meta.episodes if result.meta is not None else 0,
                        "meta_train_side": sum(tr for tr, _ in result.side_sizes),
                        "meta_test_side": sum(te for _, te in result.side_sizes),
                    }
                bar.set_postfix({k: f"{v:.4g}" for k, v in logs.items()})
                if accelerator.trackers:
                    accelerator.log(logs, step=global_step)
            at_epoch_end = global_step % steps_per_epoch == 0
            if (ckpt_every and global_step % ckpt_every == 0) or (
                args.checkpointing_steps == "epoch" and at_epoch_end
            ):
                if accelerator.is_main_process:
                    save_checkpoint(
                        Path(args.output_dir) / f"{CHECKPOINT_PREFIX}{global_step}",
                        unwrapped,
                        raw_optimizer,
                        schedule,
                        {"global_step": global_step, "epoch": epoch},
                    )
                    if args.checkpoints_total_limit:
                        prune_checkpoints(args.output_dir, args.checkpoints_total_limit)
                accelerator.wait_for_everyone()
            for callback in callbacks:
                callback(state)
        if global_step >= max_steps:
            break
    bar.close()
    ddp_model.eval()
    return global_step


def card_training_settings(args: MetaPromptTrainingArguments, proto: ProtocolData) -> dict[str, Any]:
    """The training settings shown on the model card."""
    return {
        "method": args.method,
        "protocol": args.protocol,
        "dataset": args.dataset_name,
        "shots": args.shots,
        "seed": args.seed,
        "epochs": args.num_train_epochs,
        "max_steps": args.max_steps,
        "batch size (per device)": args.per_device_train_batch_size,
        "learning rate": args.learning_rate,
        "optimizer": f"SGD momentum {args.momentum}, weight decay {args.weight_decay}",
        "schedule": f"{args.warmup_epochs} warm-up epoch(s) at {args.warmup_lr}, then {args.lr_scheduler_type}",
        "meta step": _describe_meta(args),
        "training classes": len(proto.train_class_names),
    }


def _describe_meta(args: MetaPromptTrainingArguments) -> str:
    meta = args.meta_settings()
    if meta is None:
        return "none"
    extra = ", second order" if meta.second_order else ", torch 1.10 zero-grad drift" if meta.zero_grad_drift else ""
    if meta.mode == "mldg":
        extra += ", in-domain step kept" if meta.mldg_in_domain else ", in place of the in-domain step"
    return f"β={meta.beta}, {meta.mode}, α={meta.inner_lr_scale}×lr, {meta.reduction}{extra}"


# What a user can cause (bad data, a damaged or mismatched checkpoint, a missing file): a message, exit status 2.
USER_ERRORS = (DataError, OSError, UnreadableFileError, CheckpointError)


def main(argv: Sequence[str] | None = None) -> int:
    """`train` from the command line: bad input becomes a clear message and exit status 2."""
    try:
        args = parse_args(argv)
    except (ValueError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    try:
        train(args)
    except USER_ERRORS as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0
