"""One MetaPrompt training step as a callable: the in-domain update, then the meta step (docs/method.md §3).

    step = TrainingStep(model, optimizer, class_names, meta=MetaSettings(target="text"))
    result = step(batch)                                       # draws its own seeded episodes
    result = step(batch, episodes=class_group_episodes(labels, [[2, 3, 5], [0, 4, 1]]), record=True)

The training loop, the benchmarks and the fidelity tests all drive training through this class, so what they
measure is what the loop runs. Under gradient accumulation the loop calls `forward_backward` once per
micro-batch and `update` once per optimizer step; `__call__` does both for one batch.

Departures of the clean mode from the reference, each explained in docs/method.md §3.3: the phase-2-frozen prompt
never moves (D3; `zero_grad_drift` restores torch 1.10's drift in faithful mode), the class split comes from a
generator seeded by (seed, step) and can be injected (D10), the reported loss is phase 1's (D12), and under
gradient accumulation the meta step runs once per optimizer step on the whole accumulated batch (D15).

The learning rate η has one source: the optimizer's `param_groups[0]["lr"]` (set by the schedule), used by the
in-domain step, the faithful inner steps and the outer update alike, as the reference's `get_current_lr()`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from ..meta import (
    Episode,
    MetaSettings,
    MetaStepResult,
    apply_outer_update,
    faithful_meta_step,
    meta_gradient,
    mldg_gradient,
    text_episode_loss,
    vision_episode_loss,
)
from ..methods import Method
from ..protocols.base import draw_meta_episodes
from .health import check_step_inputs


@dataclass
class UpdateRecord:
    """The optimiser state right after one optimiser update (with `record=True`).

    Attributes:
        phase: "in_domain" (phase 1) or "meta_train" (a faithful inner step).
        loss: the loss that update descended.
        prompts, grads, momentum: per prompt name ("text_prompts", "vision_prompts"), (depth, tokens, width)
            clones, and an adapter head's tensors under `head.<name>`; a grad or momentum buffer the optimiser did not have is None.
    """

    phase: str
    loss: float
    prompts: dict[str, torch.Tensor]
    grads: dict[str, torch.Tensor | None]
    momentum: dict[str, torch.Tensor | None]


@dataclass
class StepResult:
    """What one training step did.

    Attributes:
        loss: the in-domain loss (L_AC, or CE for the baselines), mean over micro-batches.
        learning_rate: η used by every update of the step.
        meta: the meta step's result (episodes that ran with rows, classes, local targets, losses and, with
            `keep_grads`, per-episode gradients; the summed g), or None without a meta step.
        outer_update: the tensor subtracted from the meta-updated prompt by the outer update (β·η·g).
        updates: every optimiser update with `record=True`: phase 1 first, then each faithful inner step.
        in_domain_update: Δ_in-domain of the meta-updated prompt, what the step would change without its meta
            phase (θ after the in-domain update − θ before the step); None without a meta step.
        meta_update: Δ_meta, what the meta phase adds: θ after the whole step − θ after the in-domain update alone
            (for mldg, whose phases are one optimizer update, the in-domain-only update is replayed on copies).
    """

    loss: float
    learning_rate: float
    meta: MetaStepResult | None = None
    outer_update: torch.Tensor | None = None
    updates: list[UpdateRecord] = field(default_factory=list)
    in_domain_update: torch.Tensor | None = None
    meta_update: torch.Tensor | None = None

    @property
    def meta_update_ratio(self) -> float:
        """‖Δ_meta‖ / ‖Δ_in-domain‖ of the meta-updated prompt (nan without a meta step or an in-domain move)."""
        if self.meta_update is None or self.in_domain_update is None:
            return math.nan
        denominator = float(torch.linalg.vector_norm(self.in_domain_update.float()))
        if denominator == 0.0:
            return math.nan
        return float(torch.linalg.vector_norm(self.meta_update.float())) / denominator

    @property
    def side_sizes(self) -> list[tuple[int, int]]:
        """(meta-train, meta-test) samples of every episode that ran, on this process."""
        if self.meta is None:
            return []
        return [(int(o.episode.train.index.numel()), int(o.episode.test.index.numel())) for o in self.meta.outcomes]

    @property
    def meta_train_loss(self) -> float:
        return self.meta.meta_train_loss if self.meta is not None else math.nan

    @property
    def meta_test_loss(self) -> float:
        return self.meta.meta_test_loss if self.meta is not None else math.nan


class TrainingStep:
    """The in-domain step and the meta step of one batch (docs/method.md §2, §3).

    Args:
        model: the (unwrapped) `MetaPromptModel`; the meta step reads and updates its prompts.
        optimizer: the SGD over `model.prompt_parameters()` (an Accelerate-prepared one is fine).
        class_names: the K training classes; batch labels index them.
        meta: how the meta step runs, or None for no meta step (the baselines, `metaprompt_no_meta`).
        episodes_fn: `episodes_fn(labels, domains, step)` → the episodes of optimizer step `step` (the run's
            protocol draws them in training); default: a class split drawn from (seed, step) for target "text",
            one episode per source domain for target "vision".
        source_domains: DG without `episodes_fn`: the run's source domain ids.
        seed: seed of the default class splits.
        accelerator: an `accelerate.Accelerator` (backward, autocast, cross-process reduction), or None.
        module: what the forward goes through (the DDP-wrapped model); default `model`.
        method: the `Method` whose loss phase 1 descends (`methods/`); default: the adapter's own loss (L_AC for
            coupled branches, CE otherwise), as `forward(labels=...)` computes it.
    """

    def __init__(
        self,
        model: Any,
        optimizer: torch.optim.Optimizer,
        class_names: Sequence[str],
        *,
        meta: MetaSettings | None = None,
        episodes_fn: Callable[[torch.Tensor, torch.Tensor | None, int], list[Episode]] | None = None,
        source_domains: Sequence[int] | None = None,
        seed: int = 0,
        accelerator: Any | None = None,
        module: torch.nn.Module | None = None,
        method: Method | None = None,
    ) -> None:
        self.model = model
        self.method = method if method is not None else Method("adapter")
        self.module = module if module is not None else model
        self.optimizer = optimizer
        self.raw_optimizer = getattr(optimizer, "optimizer", optimizer)
        self.class_names = list(class_names)
        self.meta = meta
        self.episodes_fn = episodes_fn
        self.source_domains = list(source_domains) if source_domains is not None else None
        self.seed = seed
        self.accelerator = accelerator
        if meta is not None and meta.target == "vision" and self.source_domains is None and episodes_fn is None:
            raise ValueError("source_domains: the DG meta step (target='vision') needs the run's source domain ids")
        self._window: list[dict[str, Any]] = []
        self._losses: list[torch.Tensor] = []
        self.method.on_train_begin(model, self.class_names)

    # ------------------------------------------------------------------ pieces
    @property
    def learning_rate(self) -> float:
        """η in force: the optimizer's (scheduled) learning rate."""
        return float(self.raw_optimizer.param_groups[0]["lr"])

    def _autocast(self) -> Any:
        import contextlib

        return self.accelerator.autocast() if self.accelerator is not None else contextlib.nullcontext()

    def _reduce(self, t: torch.Tensor) -> torch.Tensor:
        acc = self.accelerator
        if acc is None or acc.num_processes == 1:
            return t
        return acc.reduce(t.to(acc.device), "sum").to(t.device)

    def forward_backward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Phase 1's forward and backward on one (micro-)batch with the model's own loss; keeps what the meta step
        needs. `batch`: pixel_values (B, 3, H, W), labels (B,), domains (B,) for DG. Returns the detached loss."""
        with self._autocast():
            out = self.module(batch["pixel_values"], self.class_names, **self.method.forward_kwargs())
            out.loss = self.method.loss(out, batch["labels"], self.model)
        if self.accelerator is not None:
            self.accelerator.backward(out.loss)
        else:
            out.loss.backward()
        loss = out.loss.detach().float()
        self._losses.append(loss)
        if self.meta is not None:
            self._window.append(
                {
                    "x": out.frozen_image_embeds.detach(),
                    "labels": batch["labels"],
                    "domains": batch.get("domains"),
                    "pixel_values": batch["pixel_values"] if self.meta.target == "vision" else None,
                }
            )
        return loss

    def episodes_for(self, labels: torch.Tensor, domains: torch.Tensor | None, step: int) -> list[Episode]:
        """The loop's own episodes: `episodes_fn`, or the protocols' rule (`protocols.base.draw_meta_episodes`)
        for the meta step's target: a class split drawn from (seed, step) for "text", one episode per source
        domain for "vision" (docs/method.md §3.1)."""
        assert self.meta is not None
        if self.episodes_fn is not None:
            return self.episodes_fn(labels, domains, step)
        return draw_meta_episodes(
            self.meta.target,
            labels,
            domains,
            num_classes=len(self.class_names),
            source_domains=self.source_domains,
            seed=self.seed,
            step=step,
            num_class_groups=self.meta.num_class_groups,
        )

    def update(
        self,
        *,
        step: int = 0,
        episodes: Sequence[Episode] | None = None,
        record: bool = False,
        keep_grads: bool = False,
    ) -> StepResult:
        """The optimiser step of phase 1, then the meta step on everything `forward_backward` saw since the last
        update. `episodes` replaces the drawn ones (an injected class split or domain list); `record` keeps every
        optimiser update, `keep_grads` every episode's gradients."""
        learning_rate = self.learning_rate
        losses, window = self._losses, self._window
        self._losses, self._window = [], []
        loss = float(torch.stack(losses).mean()) if losses else math.nan
        if losses:  # under fp16 loss scaling, inf gradients are the scaler's to skip
            check_step_inputs(self.model, loss, step, learning_rate, getattr(self.accelerator, "scaler", None) is None)
        result = StepResult(loss=loss, learning_rate=learning_rate)
        run_meta = self.meta is not None and bool(window)
        if run_meta and self.meta.mode == "mldg":
            self._mldg_update(window, step, episodes, learning_rate, keep_grads, result)
            if record:
                result.updates.append(self._snapshot("in_domain", loss))
            self.optimizer.zero_grad(set_to_none=True)
            return result
        param = self._meta_param() if run_meta else None
        before = param.detach().clone() if param is not None else None
        self.optimizer.step()
        if record:
            result.updates.append(self._snapshot("in_domain", loss))
        self.optimizer.zero_grad(set_to_none=True)
        if not run_meta:
            return result
        after_in_domain = param.detach().clone()
        episodes = self._episodes(window, step, episodes)
        result.meta, result.outer_update = self._meta_update(
            window, episodes, learning_rate, record, keep_grads, result
        )
        result.in_domain_update = after_in_domain - before
        result.meta_update = param.detach() - after_in_domain
        return result

    def __call__(
        self,
        batch: dict[str, torch.Tensor],
        *,
        step: int = 0,
        episodes: Sequence[Episode] | None = None,
        record: bool = False,
        keep_grads: bool = False,
    ) -> StepResult:
        """`forward_backward(batch)` then `update(...)`: one whole training step on one batch."""
        self.forward_backward(batch)
        return self.update(step=step, episodes=episodes, record=record, keep_grads=keep_grads)

    # ------------------------------------------------------------------ internals
    def _meta_param(self) -> torch.nn.Parameter:
        assert self.meta is not None
        param = self.model.text_prompts if self.meta.target == "text" else self.model.vision_prompts
        if param is None:
            raise ValueError(
                f"meta: the {self.meta.target} prompts are disabled (0 tokens), so they cannot be meta-updated"
            )
        return param

    def _episodes(
        self, window: list[dict[str, Any]], step: int, episodes: Sequence[Episode] | None
    ) -> Sequence[Episode]:
        if episodes is not None:
            return episodes
        labels = torch.cat([w["labels"] for w in window]).cpu()
        domains = None
        if window[0]["domains"] is not None:
            domains = torch.cat([w["domains"] for w in window]).cpu()
        return self.episodes_for(labels, domains, step)

    def _loss_fn(self, window: list[dict[str, Any]]) -> tuple[Any, int | None]:
        """The episode loss of the meta-updated prompt on the window (docs/method.md §3) and its chunk size."""
        meta, model = self.meta, self.model
        assert meta is not None
        if meta.target == "text":
            x = torch.cat([w["x"] for w in window])
            x = x if x.dtype == torch.float64 else x.float()  # fp32 at least, fp64 kept (exactness tests)
            return text_episode_loss(model, x, self.class_names), None
        templates = model.encode_templates(self.class_names)
        pixel_values = torch.cat([w["pixel_values"] for w in window])
        return vision_episode_loss(model, pixel_values, templates), meta.chunk_size

    def _mldg_update(
        self,
        window: list[dict[str, Any]],
        step: int,
        episodes: Sequence[Episode] | None,
        learning_rate: float,
        keep_grads: bool,
        result: StepResult,
    ) -> None:
        """`mldg` (docs/method.md §3.2): ∇F at the prompts before the update, added to (or, without the
        in-domain step, put in place of) the meta-updated prompt's ∇L_AC, then ONE main-optimizer step. The
        in-domain-only update is first replayed on the same state and undone, for the diagnostics."""
        meta = self.meta
        assert meta is not None
        if getattr(self.optimizer, "scaler", None) is not None:
            raise ValueError("meta_mode: mldg adds an unscaled gradient, so it cannot run under fp16 loss scaling")
        param = self._meta_param()
        before = param.detach().clone()
        after_in_domain = self._replay_in_domain_step(param)
        episodes = self._episodes(window, step, episodes)
        loss_fn, chunk = self._loss_fn(window)
        with self._autocast():
            out = mldg_gradient(
                loss_fn,
                param,
                episodes,
                meta.inner_lr_scale * learning_rate,
                meta.beta,
                second_order=meta.second_order,
                reduction=meta.reduction,
                reduce=self._reduce,
                chunk_size=chunk,
                keep_grads=keep_grads,
            )
        grad = out.grad.to(param.dtype)
        if meta.mldg_in_domain and param.grad is not None:
            grad = param.grad + grad
        param.grad = grad
        self.optimizer.step()
        result.meta = out
        result.in_domain_update = after_in_domain - before
        result.meta_update = param.detach() - after_in_domain

    @torch.no_grad()
    def _replay_in_domain_step(self, param: torch.nn.Parameter) -> torch.Tensor:
        """`param` after an optimizer step on the in-domain gradients alone; every prompt and the optimizer's
        state are restored afterwards, so the real step starts from the same state."""
        params = [p for group in self.raw_optimizer.param_groups for p in group["params"]]
        saved_params = [p.detach().clone() for p in params]
        saved_state = {
            p: {k: v.clone() if torch.is_tensor(v) else v for k, v in self.raw_optimizer.state[p].items()}
            for p in params
            if p in self.raw_optimizer.state
        }
        self.raw_optimizer.step()
        moved = param.detach().clone()
        for p, value in zip(params, saved_params):
            p.copy_(value)
            if p in saved_state:
                self.raw_optimizer.state[p] = saved_state[p]
            else:
                self.raw_optimizer.state.pop(p, None)
        return moved

    def _meta_update(
        self,
        window: list[dict[str, Any]],
        episodes: Sequence[Episode],
        learning_rate: float,
        record: bool,
        keep_grads: bool,
        result: StepResult,
    ) -> tuple[MetaStepResult, torch.Tensor]:
        meta, model = self.meta, self.model
        assert meta is not None
        param = self._meta_param()
        loss_fn, chunk = self._loss_fn(window)
        frozen = [model.vision_prompts] if meta.target == "text" else [model.text_prompts]
        frozen = [p for p in frozen if p is not None]
        before = param.detach().clone()
        on_update: Callable[[float], None] | None = None
        if record:

            def on_update(loss: float) -> None:
                result.updates.append(self._snapshot("meta_train", loss))

        with self._autocast():
            if meta.mode == "faithful":
                out = faithful_meta_step(
                    param,
                    loss_fn,
                    episodes,
                    self.raw_optimizer,
                    learning_rate,
                    meta.beta,
                    frozen_params=frozen,
                    zero_grad_drift=meta.zero_grad_drift,
                    reduction=meta.reduction,
                    reduce=self._reduce,
                    chunk_size=chunk,
                    keep_grads=keep_grads,
                    on_update=on_update,
                )
                outer = (
                    meta.beta
                    * learning_rate
                    * (out.grad / max(out.episodes, 1) if meta.reduction == "mean" else out.grad)
                )
            else:
                out = meta_gradient(
                    loss_fn,
                    param,
                    episodes,
                    meta.inner_lr_scale * learning_rate,
                    second_order=meta.second_order,
                    reduce=self._reduce,
                    chunk_size=chunk,
                    keep_grads=keep_grads,
                )
                apply_outer_update(param, out, learning_rate, meta.beta, meta.reduction)
                outer = before - param.detach()
        return out, outer

    def _snapshot(self, phase: str, loss: float) -> UpdateRecord:
        prompts, grads, momentum = {}, {}, {}
        # Keys and parameters in the same order: θ_t, θ_v, then an adapter head's `head.<name>` (modeling/heads.py).
        for name, p in zip(self.model.prompt_state_dict(), self.model.prompt_parameters()):
            prompts[name] = p.detach().clone()
            grads[name] = None if p.grad is None else p.grad.detach().clone()
            buf = self.raw_optimizer.state.get(p, {}).get("momentum_buffer")
            momentum[name] = None if buf is None else buf.detach().clone()
        return UpdateRecord(phase, loss, prompts, grads, momentum)
