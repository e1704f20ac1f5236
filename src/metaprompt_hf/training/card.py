"""What a training run's model card shows: its settings and results (`MetaPromptModel.generate_model_card`)."""

from __future__ import annotations

from typing import Any

from ..protocols import ProtocolData
from .arguments import MetaPromptTrainingArguments


def model_card_kwargs(
    args: MetaPromptTrainingArguments, run: Any, proto: ProtocolData, data: Any, results: list[dict[str, Any]]
) -> dict[str, Any]:
    """What the run's model card shows (`MetaPromptModel.generate_model_card`). A DG run scored on its source
    domains (`--eval_domains sources`, a selection run) shows no result: its accuracy is not the held-out domain's,
    which is what the card's DG metric names."""
    return {
        "model_name": (args.hub_model_id or run.output_dir.resolve().name).split("/")[-1],
        "results": [r for r in results if r.get("eval_domains", "target") == "target"],
        "training": card_training_settings(args, proto),
        "datasets": [data.name],
    }


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
