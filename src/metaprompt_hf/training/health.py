"""Keeping a run honest: a non-finite loss, gradient or prompt stops training at that step, and a run whose loss or
prompts blew up by orders of magnitude is reported as diverged instead of being presented as a result.

`TrainingStep.update` calls `check_step_inputs` before the optimizer step (the loss and, without fp16 loss scaling,
the gradients); the loop calls `check_prompts` after every step and turns a `NonFiniteError` into `stop_message`
(the run's settings, the step, the tensor, the last good checkpoint). Nothing non-finite is ever written:
`adapter_io` refuses non-finite tensors too.
"""

from __future__ import annotations

import logging
import math
import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from ..constants import CHECKPOINT_PREFIX
from ..validation import nonfinite_summary

logger = logging.getLogger(__name__)

#: The loss at the end of a run this many times the loss at its start means the run diverged.
DIVERGED_LOSS_FACTOR = 10.0
#: Prompt values past this magnitude (token embeddings have norm ~1; the init std is 0.02) mean the run diverged.
DIVERGED_PROMPT_ABS = 1e3


class NonFiniteError(ValueError):
    """A NaN or ±inf in the loss, a gradient or a prompt during training; the message names the step and tensor."""


def check_step_inputs(model: Any, loss: float, step: int, learning_rate: float, check_grads: bool) -> None:
    """The in-domain loss and (when `check_grads`) the prompts' gradients of optimizer step `step`, before the
    optimizer applies them. Raises `NonFiniteError`."""
    if not math.isfinite(loss):
        raise NonFiniteError(f"step {step} (lr {learning_rate:g}): the training loss is {loss}")
    if check_grads:
        grads = {f"gradient of {k}": p.grad for k, p in zip(model.prompt_state_dict(), model.prompt_parameters())}
        bad = nonfinite_summary({k: g for k, g in grads.items() if g is not None})
        if bad:
            details = "; ".join(f"{k}: {v}" for k, v in bad.items())
            raise NonFiniteError(f"step {step} (lr {learning_rate:g}, loss {loss:.4g}): {details}")


def check_prompts(model: Any, step: int, learning_rate: float, loss: float) -> None:
    """The prompts after optimizer step `step` (in-domain and meta updates). Raises `NonFiniteError`."""
    bad = nonfinite_summary(model.prompt_state_dict())
    if bad:
        details = "; ".join(f"{k}: {v}" for k, v in bad.items())
        raise NonFiniteError(f"step {step} (lr {learning_rate:g}, loss {loss:.4g}): after the update, {details}")


def checked_update(train_step: Any, model: Any, step: int, args: Any) -> Any:
    """`train_step.update(step=step)` and the prompts after it; a `NonFiniteError` becomes `stop_message`'s."""
    try:
        result = train_step.update(step=step)
        check_prompts(model, step, result.learning_rate, result.loss)
    except NonFiniteError as err:
        raise stop_message(err, args, args.output_dir) from None
    return result


def stop_message(err: NonFiniteError, args: Any, output_dir: str | Path) -> NonFiniteError:
    """The error that stops the run: what went non-finite, the settings that drive the step sizes, and the last
    good checkpoint (nothing after it is written, and no adapter is saved)."""
    settings = ", ".join(
        f"{name}={getattr(args, name)}"
        for name in ("learning_rate", "warmup_lr", "init_std", "momentum", "weight_decay", "meta_step")
        if hasattr(args, name)
    )
    checkpoints = sorted(Path(output_dir).glob(f"{CHECKPOINT_PREFIX}*"), key=_step_of)
    kept = f"the last good checkpoint is {checkpoints[-1]}" if checkpoints else "no checkpoint was written"
    return NonFiniteError(
        f"training stopped: non-finite values at {err} ({settings}); {kept}, and no adapter was saved. Lower "
        "--learning_rate / --init_std, or check the data"
    )


def divergence(losses: Sequence[float], prompts: dict[str, torch.Tensor]) -> str | None:
    """Why a finished run counts as diverged (None when it does not): its loss rose by an order of magnitude or
    more from the first fifth of the steps to the last fifth (medians), or its prompts reached values past
    `DIVERGED_PROMPT_ABS`."""
    reasons = []
    finite = [x for x in losses if math.isfinite(x)]
    if len(finite) >= 4:
        k = max(1, len(finite) // 5)
        first, last = statistics.median(finite[:k]), statistics.median(finite[-k:])
        if last > DIVERGED_LOSS_FACTOR * max(first, 1e-8):
            reasons.append(f"the training loss rose from {first:.4g} to {last:.4g}")
    for key, tensor in prompts.items():
        peak = float(tensor.detach().abs().max()) if tensor.numel() else 0.0
        if peak > DIVERGED_PROMPT_ABS:
            reasons.append(f"{key} reached |value| {peak:.3g} (> {DIVERGED_PROMPT_ABS:g})")
    if reasons:
        logger.warning("the run diverged: %s; results.json records it", "; ".join(reasons))
    return "; ".join(reasons) or None


def _step_of(path: Path) -> int:
    tail = path.name[len(CHECKPOINT_PREFIX) :]
    return int(tail) if tail.isdigit() else -1
