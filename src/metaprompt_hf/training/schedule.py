"""The learning-rate schedule: Dassl's per-epoch warm-up + cosine (docs/method.md §4) as a standard torch
`LRScheduler`, built from plain numbers and resumable through its `state_dict`."""

from __future__ import annotations

import math

import torch

SCHEDULES = ("cosine", "constant")


def epochwise_lr(
    step: int,
    *,
    learning_rate: float,
    steps_per_epoch: int,
    epochs: int,
    warmup_epochs: int = 1,
    warmup_lr: float = 1e-5,
    kind: str = "cosine",
) -> float:
    """η at optimizer step `step`: `warmup_epochs` at a constant `warmup_lr`, then `learning_rate` (constant) or
    its cosine with T_max = `epochs`, the epoch index counted from the end of the warm-up. Constant within an epoch,
    as the reference steps its scheduler once per epoch (quirk 9 and departure D9 of docs/method.md §3.3)."""
    epoch = step // max(1, steps_per_epoch)
    if epoch < warmup_epochs:
        return warmup_lr
    if kind == "constant":
        return learning_rate
    return learning_rate * 0.5 * (1 + math.cos(math.pi * (epoch - warmup_epochs) / epochs))


class EpochwiseLR(torch.optim.lr_scheduler.LRScheduler):
    """`epochwise_lr` as a torch scheduler: call `step()` once per optimizer step. Every parameter group gets the
    same η (the prompts share one optimizer group in training)."""

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        *,
        learning_rate: float,
        steps_per_epoch: int,
        epochs: int,
        warmup_epochs: int = 1,
        warmup_lr: float = 1e-5,
        kind: str = "cosine",
        last_epoch: int = -1,
    ) -> None:
        if kind not in SCHEDULES:
            raise ValueError(f"lr_scheduler_type: expected one of {SCHEDULES}, got {kind!r}")
        self.learning_rate = float(learning_rate)
        self.steps_per_epoch = max(1, int(steps_per_epoch))
        self.epochs = int(epochs)
        self.warmup_epochs = int(warmup_epochs)
        self.warmup_lr = float(warmup_lr)
        self.kind = kind
        super().__init__(optimizer, last_epoch)

    def lr_at(self, step: int) -> float:
        return epochwise_lr(
            step,
            learning_rate=self.learning_rate,
            steps_per_epoch=self.steps_per_epoch,
            epochs=self.epochs,
            warmup_epochs=self.warmup_epochs,
            warmup_lr=self.warmup_lr,
            kind=self.kind,
        )

    def get_lr(self) -> list[float]:
        return [self.lr_at(self.last_epoch)] * len(self.optimizer.param_groups)
