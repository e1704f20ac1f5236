"""The optimizer steps of a run (docs/method.md §3-§4): the model and its few-shot loader, the epoch-wise schedule,
and `train_loop`, one `TrainingStep` per optimizer step (the method's loss and meta step), the method's hooks,
checkpoints and callbacks. `training/run.py` builds the run around it.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..backbones import load_base_model, load_base_processor
from ..data.batches import FewShotBatchSampler, ImageDataset, TrainTransform, collate, processor_size
from ..embedded import resolve_base_model
from ..inputs.text_fit import check_class_texts
from ..methods import Method, TrainerState
from ..modeling.modeling_metaprompt import MetaPromptModel
from ..protocols import ProtocolData, get_protocol
from .arguments import MetaPromptTrainingArguments
from .checkpointing import CHECKPOINT_PREFIX, CheckpointError, load_checkpoint, prune_checkpoints, save_checkpoint
from .health import checked_update, divergence
from .schedule import EpochwiseLR
from .step import TrainingStep

logger = logging.getLogger(__name__)


@dataclass
class Run:
    """What `start_run` set up: the Accelerator, the output folder and the checkpoint to resume from (or None)."""

    accelerator: Any
    output_dir: Path
    resume_dir: Path | None
    meta_update_ratios: list[float] = field(default_factory=list)
    """‖Δ_meta‖ / ‖Δ_in-domain‖ of every optimizer step after warm-up (docs/method.md §3.2), for results.json."""
    losses: list[float] = field(default_factory=list)
    diverged: str | None = None
    """Why the run counts as diverged (`health.divergence`), or None; recorded in results.json."""


def build_model(
    args: MetaPromptTrainingArguments,
    templates: Sequence[str],
    torch_seed: int | None = None,
    *,
    clip: torch.nn.Module | None = None,
    processor: Any | None = None,
) -> MetaPromptModel:
    """Base CLIP + processor + a fresh adapter of `args.method`, prompts initialised from `torch_seed`
    (default: `args.seed`). `clip` / `processor` replace loading `args.base_model` (benchmarks build a random
    ViT-B/16 in code, or reuse one processor over many runs)."""
    base = resolve_base_model(args.base_model)
    if clip is None:
        clip = load_base_model(base, revision=args.base_model_revision, cache_dir=args.cache_dir)
    if processor is None:
        processor = load_base_processor(base, revision=args.base_model_revision, cache_dir=args.cache_dir)
    config = dataclasses.replace(
        args.adapter_config(templates), base_model_name_or_path=args.base_model, revision=args.base_model_revision
    )
    torch.manual_seed(args.seed if torch_seed is None else torch_seed)
    model = MetaPromptModel(clip, config, processor, class_chunk_size=args.class_chunk_size)
    if args.gradient_checkpointing:
        model.gradient_checkpointing_enable()
    model.truncate_long_texts = args.truncate_long_texts
    return model


def build_optimizer(
    model: MetaPromptModel,
    learning_rate: float,
    momentum: float,
    weight_decay: float,
    params: Sequence[torch.nn.Parameter] | None = None,
    kind: str = "sgd",
) -> torch.optim.Optimizer:
    """Plain SGD over `params` (default: the prompts; docs/method.md §4: momentum 0.9, wd 5e-4, no dampening, no
    Nesterov), or with `kind="adamw"` Dassl's AdamW (betas (0.9, 0.999), `weight_decay`; MMRL's, docs/methods/mmrl.md)."""
    params = list(model.prompt_parameters() if params is None else params)
    if kind == "adamw":
        return torch.optim.AdamW(params, lr=learning_rate, weight_decay=weight_decay, betas=(0.9, 0.999))
    if kind != "sgd":
        raise ValueError(f"optimizer: expected 'sgd' or 'adamw', got {kind!r}")
    return torch.optim.SGD(params, lr=learning_rate, momentum=momentum, weight_decay=weight_decay)


def build_train_loader(
    args: MetaPromptTrainingArguments, proto: ProtocolData, model: MetaPromptModel
) -> tuple[torch.utils.data.DataLoader, FewShotBatchSampler]:
    """The few-shot training loader (seeded augmentation, the protocol's domain mixing) and its batch sampler."""
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
    mixes_domains = get_protocol(args.protocol).mixes_domains
    sampler = FewShotBatchSampler(
        len(dataset),
        args.per_device_train_batch_size,
        args.seed,
        domains=proto.train_domains if mixes_domains else None,
        mix_domains=args.mix_domains and mixes_domains,
    )
    loader = torch.utils.data.DataLoader(
        dataset, batch_sampler=sampler, collate_fn=collate, num_workers=args.dataloader_num_workers
    )
    return loader, sampler


def build_schedule(
    args: MetaPromptTrainingArguments, optimizer: torch.optim.Optimizer, batches_per_epoch: int
) -> tuple[EpochwiseLR, int, int, int]:
    """The epoch-wise warm-up + cosine schedule; returns it with (steps_per_epoch, max_steps, epochs)."""
    steps_per_epoch = max(1, math.ceil(batches_per_epoch / args.gradient_accumulation_steps))
    max_steps = args.max_steps if args.max_steps > 0 else args.num_train_epochs * steps_per_epoch
    epochs = math.ceil(max_steps / steps_per_epoch)
    schedule = EpochwiseLR(
        optimizer,
        learning_rate=args.learning_rate,
        steps_per_epoch=steps_per_epoch,
        epochs=args.num_train_epochs if args.max_steps <= 0 else epochs,
        warmup_epochs=args.warmup_epochs,
        warmup_lr=args.warmup_lr,
        kind=args.lr_scheduler_type,
    )
    return schedule, steps_per_epoch, max_steps, epochs


def train_loop(
    args: MetaPromptTrainingArguments,
    run: Run,
    model: MetaPromptModel,
    proto: ProtocolData,
    callbacks: Sequence[Callable[[TrainerState], None]] = (),
    *,
    optimizer: torch.optim.Optimizer | None = None,
    method: Method | None = None,
) -> int:
    """The optimizer steps of the run (resuming from `run.resume_dir`); returns the last global step. Each step:
    `TrainingStep.forward_backward` per micro-batch (the method's loss), then `TrainingStep.update` (the optimizer
    step and the meta step on the whole accumulated batch, D15 of docs/method.md §3.3); the method's hooks,
    checkpoints and callbacks after it.

    `optimizer` defaults to the paper's plain SGD over `method.trainable_parameters(model)` (docs/method.md §4:
    momentum 0.9, wd 5e-4, no dampening, no Nesterov); `method` to `args.build_method()`."""
    from tqdm.auto import tqdm

    method = method if method is not None else args.build_method()
    accelerator, resume_dir = run.accelerator, run.resume_dir
    # every class the run trains on or scores must fit the text encoder, checked before the first step
    check_class_texts(model, [*proto.train_class_names, *(n for e in proto.eval_sets.values() for n in e.class_names)])
    if args.max_steps > 0:
        logger.info("--max_steps %d overrides --num_train_epochs %d", args.max_steps, args.num_train_epochs)
    loader, sampler = build_train_loader(args, proto, model)
    if optimizer is None:
        params = method.trainable_parameters(model)
        optimizer = build_optimizer(
            model, args.learning_rate, args.momentum, args.weight_decay, params, kind=method.optimizer
        )
    ddp_model, optimizer, loader = accelerator.prepare(model, optimizer, loader)
    unwrapped = accelerator.unwrap_model(ddp_model)
    raw_optimizer = getattr(optimizer, "optimizer", optimizer)
    schedule, steps_per_epoch, max_steps, epochs = build_schedule(args, raw_optimizer, len(loader))

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
        method=method,
    )
    bar = tqdm(
        total=max_steps,
        initial=global_step,
        disable=args.disable_tqdm or not accelerator.is_local_main_process,
        desc=args.method,
    )
    state = TrainerState(global_step, global_step // steps_per_epoch, max_steps, math.nan, math.nan, model=unwrapped)
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
            result = checked_update(train_step, unwrapped, global_step, args)
            run.losses.append(result.loss)
            # after warm-up only: at the warm-up lr (1e-5) both updates are tiny and their ratio is noise
            if epoch >= args.warmup_epochs and not math.isnan(result.meta_update_ratio):
                run.meta_update_ratios.append(result.meta_update_ratio)
            schedule.step()
            global_step += 1
            bar.update(1)
            state = TrainerState(
                global_step,
                epoch,
                max_steps,
                result.loss,
                result.learning_rate,
                result.meta_train_loss,
                result.meta_test_loss,
                unwrapped,
            )
            method.on_step_end(state)
            _log_step(args, accelerator, bar, result, state)
            at_epoch_end = global_step % steps_per_epoch == 0 or global_step == max_steps
            if at_epoch_end:
                method.on_epoch_end(state)
            _maybe_checkpoint(args, accelerator, unwrapped, raw_optimizer, schedule, state, steps_per_epoch)
            for callback in callbacks:
                callback(state)
        if global_step >= max_steps:
            break
    bar.close()
    method.on_train_end(state)
    run.diverged = divergence(run.losses, unwrapped.prompt_state_dict())
    ddp_model.eval()
    return global_step


def _log_step(args: MetaPromptTrainingArguments, accelerator: Any, bar: Any, result: Any, state: TrainerState) -> None:
    """The progress bar's postfix and the trackers, every `logging_steps` optimizer steps and at the last one."""
    if state.global_step % args.logging_steps and state.global_step != state.max_steps:
        return
    logs = {"loss": result.loss, "lr": result.learning_rate, "epoch": state.epoch}
    if args.uses_meta_step:
        logs |= {
            "meta_train_loss": result.meta_train_loss,
            "meta_test_loss": result.meta_test_loss,
            "meta_update_ratio": result.meta_update_ratio,
            "meta_episodes": result.meta.episodes if result.meta is not None else 0,
            "meta_train_side": sum(tr for tr, _ in result.side_sizes),
            "meta_test_side": sum(te for _, te in result.side_sizes),
        }
    bar.set_postfix({k: f"{v:.4g}" for k, v in logs.items()})
    if accelerator.trackers:
        accelerator.log(logs, step=state.global_step)


def _maybe_checkpoint(
    args: MetaPromptTrainingArguments,
    accelerator: Any,
    model: MetaPromptModel,
    optimizer: torch.optim.Optimizer,
    schedule: EpochwiseLR,
    state: TrainerState,
    steps_per_epoch: int,
) -> None:
    """A resumable checkpoint every `checkpointing_steps` steps or at each epoch's end (main process)."""
    every = None if args.checkpointing_steps in (None, "epoch") else int(args.checkpointing_steps)
    step = state.global_step
    due = (every and step % every == 0) or (args.checkpointing_steps == "epoch" and step % steps_per_epoch == 0)
    if not due:
        return
    if accelerator.is_main_process:
        save_checkpoint(
            Path(args.output_dir) / f"{CHECKPOINT_PREFIX}{step}",
            model,
            optimizer,
            schedule,
            {"global_step": step, "epoch": state.epoch},
        )
        if args.checkpoints_total_limit:
            prune_checkpoints(args.output_dir, args.checkpoints_total_limit)
    accelerator.wait_for_everyone()
