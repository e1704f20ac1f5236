"""The domain-split meta-learning step of MetaPrompt (docs/method.md §3), as functions over prompt tensors.

Every batch runs (1) an in-domain optimiser step on L_AC, done by the training loop, then (2) this episodic,
first-order, MLDG/MAML-like update of ONE prompt:

    base-to-new (cross-class):   θ = θ_t,  ℓ = CE(z^t) over class groups            (https://github.com/Vill-Lab/2024-TIP-MetaPrompt/blob/main/trainers/meta.py#L340-L380)
    domain generalisation:       θ = θ_v,  ℓ = CE(z^i) leaving one source domain out (https://github.com/Vill-Lab/2024-TIP-MetaPrompt/blob/main/trainers/meta.py#L484-L522)

    θ0 ← θ;  g ← 0
    for each episode (S_tr, C_tr, S_te, C_te):
        θ' ← θ0 − η ∇_θ ℓ(S_tr, C_tr; θ0)          one inner SGD step at the current lr η
        g  ← g + ∇_θ' ℓ(S_te, C_te; θ')            first order (or exact second order, optional)
    θ ← θ0 − β η g                                β = 0.2, no momentum, no weight decay

The clean algorithm (§3.2) is functional: the adapted prompts θ' are separate tensors, so θ0 is never touched
and the reset between episodes is exact by construction (departure D1 of docs/method.md §3.3), and the inner step
is plain SGD that leaves the optimiser state alone (D2). `faithful_meta_step` reproduces the reference code's
update quirks 1-3 of §3.3 for comparisons with published numbers.

Distributed: `torch.autograd.grad` does not fire DDP's reduction hooks. Every gradient here goes through a
`reduce` callable (a sum over processes) together with its sample count, so each inner step and each held-out
gradient is the mean over the GLOBAL batch, exactly as one process with the whole batch would compute it, and all
ranks keep identical prompts.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal

import torch
import torch.nn.functional as F

from .episodes import Episode, Side, class_group_episodes, class_split_episodes, domain_split_episodes
from .validation import check_number

__all__ = [
    "Episode",
    "EpisodeOutcome",
    "MetaSettings",
    "MetaStepResult",
    "Side",
    "apply_outer_update",
    "class_group_episodes",
    "class_split_episodes",
    "domain_split_episodes",
    "faithful_meta_step",
    "meta_gradient",
    "mldg_gradient",
    "side_gradient",
    "text_episode_loss",
    "vision_episode_loss",
]


#: β per meta-update variant when the run does not set one (`--meta_step`; docs/method.md §3.2, departure D17).
#: `faithful` keeps the reference's META_STEP = 0.2. For `clean`, 0.2 makes the outer update a few percent of the
#: in-domain step (β·η·Σg against η·v with momentum), so the meta phase hardly acts; β = 5 brings the meta update to
#: the size of the in-domain one, as the reference's own (unreverted, momentum-driven) phase 2 is, and is what the mini
#: suite's base-to-new validation tuning of `metaprompt` keeps (benchmarks/mini_hparams.json, β ÷4 / ×1 / ×4). DG
#: validation scored a smaller β higher, by under a point on one seed (the suite runs each protocol at its own
#: choice; the meta-step ablation, one β for both protocols, chose a smaller one: benchmarks/results/ablation.md);
#: the default stays the base-to-new choice, the protocol of the embedded default.
DEFAULT_META_STEP: dict[str, float] = {"clean": 5.0, "faithful": 0.2, "mldg": 0.2}
#: The largest β and inner-step scale accepted: both multiply the learning rate, and the selected values are <= 5.
META_SCALE_MAX = 100.0


@dataclass(frozen=True)
class MetaSettings:
    """How the meta step runs (docs/method.md §3).

    Attributes:
        target: "text" (base-to-new: θ_t with CE(z^t) over class groups) or "vision" (DG: θ_v with CE(z^i),
            leaving one source domain out).
        mode: the meta-update variant (§3.2): "clean" (exact reset, plain-SGD inner step, outer update by hand),
            "faithful" (the reference's quirks 1-3, §3.3) or "mldg" (∇ of MLDG's objective through the main
            optimizer).
        beta: β: the outer update θ ← θ0 − β·η·g (clean, faithful), the held-out term's weight (mldg).
        reduction: "sum" (reference) or "mean" of the held-out gradients over episodes.
        second_order: exact second-order meta-gradient (clean and mldg).
        zero_grad_drift: faithful mode: torch 1.10's zero-filled grads, so the frozen prompt drifts (quirk 3,
            departure D3 of docs/method.md §3.3).
        num_class_groups: class groups of the base-to-new split.
        chunk_size: samples per encoder call in the vision episodes (bounds memory).
        inner_lr_scale: the inner step α = inner_lr_scale·η (clean and mldg; faithful steps the optimizer at η).
        mldg_in_domain: mldg: one optimizer step on ∇L_AC + ∇F (True) or on ∇F alone for the meta-updated prompt
            (False, "instead of" the in-domain step; the other prompt keeps ∇L_AC).
    """

    target: Literal["text", "vision"] = "text"
    mode: Literal["clean", "faithful", "mldg"] = "clean"
    beta: float = 0.2
    reduction: Literal["sum", "mean"] = "sum"
    second_order: bool = False
    zero_grad_drift: bool = False
    num_class_groups: int = 2
    chunk_size: int | None = None
    inner_lr_scale: float = 1.0
    mldg_in_domain: bool = True

    def __post_init__(self) -> None:
        for name, allowed in (
            ("target", ("text", "vision")),
            ("mode", ("clean", "faithful", "mldg")),
            ("reduction", ("sum", "mean")),
        ):
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name}: expected one of {allowed}, got {getattr(self, name)!r}")
        if self.second_order and self.mode == "faithful":
            raise ValueError("second_order: the second-order option exists in clean and mldg modes only")
        check_number(self.inner_lr_scale, "inner_lr_scale", low=0, high=META_SCALE_MAX, low_open=True)
        if self.inner_lr_scale != 1.0 and self.mode == "faithful":
            raise ValueError("inner_lr_scale: faithful mode's inner step is the optimizer's own step at η")
        check_number(self.beta, "beta", low=0, high=META_SCALE_MAX)
        check_number(self.num_class_groups, "num_class_groups", low=2, integer=True)
        check_number(self.chunk_size, "chunk_size", low=1, integer=True, optional=True)


LossFn = Callable[[torch.Tensor, Side], torch.Tensor]
"""`loss_fn(theta, side)`: the mean cross-entropy of `side`'s samples among `side.classes` with prompts `theta`."""


def _identity(t: torch.Tensor) -> torch.Tensor:
    return t


def side_gradient(
    loss_fn: LossFn,
    theta: torch.Tensor,
    side: Side,
    *,
    reduce: Callable[[torch.Tensor], torch.Tensor] = _identity,
    chunk_size: int | None = None,
    create_graph: bool = False,
    wrt: torch.Tensor | None = None,
) -> tuple[torch.Tensor, int, float]:
    """∇ of the mean loss over a side's samples on ALL processes, the global sample count and the global loss.

    Local losses are weighted by their sample counts and summed with `reduce` (a sum over processes), then
    divided by the global count: the gradient one process with the whole batch would get. `chunk_size` bounds
    how many samples go through the encoder at once (the gradient is linear in the per-sample losses).
    """
    wrt = theta if wrt is None else wrt
    n = int(side.index.numel())
    grad = torch.zeros_like(wrt)
    loss_sum = torch.zeros((), device=wrt.device)
    step = chunk_size or max(n, 1)
    for start in range(0, n, step):
        part = Side(side.index[start : start + step], side.classes, side.labels[start : start + step])
        loss = loss_fn(theta, part) * part.index.numel()
        (g,) = torch.autograd.grad(loss, wrt, create_graph=create_graph)
        grad = grad + g
        loss_sum = loss_sum + loss.detach()
    if create_graph:  # second order: local only, a graph cannot cross processes
        return grad / max(n, 1), n, float(loss_sum) / max(n, 1)
    dtype = torch.promote_types(grad.dtype, torch.float32)
    count = torch.tensor(float(n), device=wrt.device, dtype=dtype)
    packed = reduce(torch.cat([grad.detach().flatten().to(dtype), torch.stack([loss_sum.to(dtype), count])]))
    total = int(round(packed[-1].item()))
    grad = packed[:-2].view_as(wrt).to(wrt.dtype) / max(total, 1)
    return grad, total, float(packed[-2]) / max(total, 1)


@dataclass
class EpisodeOutcome:
    """One episode that ran: its losses and, with `keep_grads=True`, its gradients.

    Attributes:
        episode: the episode (rows, classes and local targets of both sides).
        meta_train_loss, meta_test_loss: global mean CE of each side.
        meta_train_grad: ∇ℓ_tr at the prompts the inner step started from (θ0 in clean mode; the current θ in
            faithful mode), same shape as θ.
        meta_test_grad: g_e, the held-out gradient at the adapted prompts θ' (w.r.t. θ0 with second order).
    """

    episode: Episode
    meta_train_loss: float
    meta_test_loss: float
    meta_train_grad: torch.Tensor | None = None
    meta_test_grad: torch.Tensor | None = None


@dataclass
class MetaStepResult:
    """What one meta step did: the applied update direction g, per-episode outcomes and diagnostics."""

    grad: torch.Tensor
    episodes: int
    meta_train_loss: float
    meta_test_loss: float
    outcomes: list[EpisodeOutcome] = field(default_factory=list)


def meta_gradient(
    loss_fn: LossFn,
    theta0: torch.Tensor,
    episodes: Sequence[Episode],
    inner_lr: float,
    *,
    second_order: bool = False,
    reduce: Callable[[torch.Tensor], torch.Tensor] = _identity,
    chunk_size: int | None = None,
    keep_grads: bool = False,
) -> MetaStepResult:
    """Σ over episodes of the held-out gradient at the adapted prompts (docs/method.md §3.2).

    First order (default, as the reference: `autograd.grad(..., create_graph=False)`, https://github.com/Vill-Lab/2024-TIP-MetaPrompt/blob/main/trainers/meta.py#L373, https://github.com/Vill-Lab/2024-TIP-MetaPrompt/blob/main/trainers/meta.py#L515):
        g_e = ∇_θ' ℓ_te(θ'),  θ' = θ0 − η ∇ℓ_tr(θ0).
    Second order (exact MAML gradient through the inner step):
        g_e = ∇_θ0 ℓ_te(θ0 − η ∇ℓ_tr(θ0)) = (I − η H_tr) ∇ℓ_te(θ').
    Under several processes the second-order option uses each process's local episodes and only the final g is
    averaged (a differentiable graph cannot cross processes).

    Args:
        loss_fn: episode loss, see `LossFn`.
        theta0: (depth, tokens, width) prompts after the in-domain step; never modified.
        episodes: from `class_split_episodes` or `domain_split_episodes`.
        inner_lr: η, the current scheduled learning rate.
        keep_grads: keep each episode's meta-train and held-out gradients in `outcomes`.

    Returns:
        `MetaStepResult` with g summed over the episodes that had samples on both sides (globally).
    """
    if second_order:
        # SDPA's fused CPU/GPU kernels have no double backward; the math kernel does.
        from torch.nn.attention import SDPBackend, sdpa_kernel

        with sdpa_kernel(SDPBackend.MATH):
            return _meta_gradient(loss_fn, theta0, episodes, inner_lr, True, reduce, chunk_size, keep_grads)
    return _meta_gradient(loss_fn, theta0, episodes, inner_lr, False, reduce, chunk_size, keep_grads)


def _meta_gradient(
    loss_fn: LossFn,
    theta0: torch.Tensor,
    episodes: Sequence[Episode],
    inner_lr: float,
    second_order: bool,
    reduce: Callable[[torch.Tensor], torch.Tensor],
    chunk_size: int | None,
    keep_grads: bool,
) -> MetaStepResult:
    theta0 = theta0.detach()
    g = torch.zeros_like(theta0)
    used, tr_losses, te_losses, outcomes = 0, [], [], []
    kw = dict(reduce=reduce, chunk_size=chunk_size, create_graph=second_order)
    at_theta0: dict[int, tuple[torch.Tensor, int, float]] = {}  # part → (mean gradient, count, mean loss) at θ0
    for episode in episodes:
        # Skipped when a side is empty on every process (https://github.com/Vill-Lab/2024-TIP-MetaPrompt/blob/main/trainers/meta.py#L363); decided globally so that all processes
        # make the same collective calls.
        if _global_count(episode.train, reduce) == 0 or _global_count(episode.test, reduce) == 0:
            continue
        theta = theta0.clone().requires_grad_(True)
        if episode.train.parts is not None and not second_order:
            grad_tr, loss_tr = _gradient_from_parts(loss_fn, theta, episode.train.parts, at_theta0, kw)
        else:
            grad_tr, _, loss_tr = side_gradient(loss_fn, theta, episode.train, **kw)
        if second_order:
            adapted = theta - inner_lr * grad_tr
            grad_te, _, loss_te = side_gradient(loss_fn, adapted, episode.test, **kw, wrt=theta)
        else:
            adapted = (theta0 - inner_lr * grad_tr).requires_grad_(True)
            grad_te, _, loss_te = side_gradient(loss_fn, adapted, episode.test, **kw)
        g = g + grad_te.detach()
        used += 1
        tr_losses.append(loss_tr)
        te_losses.append(loss_te)
        kept = (grad_tr.detach().clone(), grad_te.detach().clone()) if keep_grads else (None, None)
        outcomes.append(EpisodeOutcome(episode, loss_tr, loss_te, *kept))
    if second_order:
        g = reduce(g) / reduce(torch.ones((), device=g.device))
    return MetaStepResult(g, used, _mean(tr_losses), _mean(te_losses), outcomes)


def _gradient_from_parts(
    loss_fn: LossFn,
    theta: torch.Tensor,
    parts: Sequence[Side],
    cache: dict[int, tuple[torch.Tensor, int, float]],
    kw: dict,
) -> tuple[torch.Tensor, float]:
    """∇ and loss of the mean over the union of disjoint `parts` at θ0, from each part's (cached) global mean
    gradient and count: Σ_p n_p·g_p / Σ_p n_p. The same per-sample losses as one pass over the union, since the
    parts share the union's classes; every process walks the same parts, so the collective calls match."""
    grad, count, loss = torch.zeros_like(theta), 0, 0.0
    for part in parts:
        if id(part) not in cache:
            cache[id(part)] = side_gradient(loss_fn, theta, part, **kw)
        g, n, part_loss = cache[id(part)]
        grad, count, loss = grad + n * g, count + n, loss + n * part_loss
    return grad / max(count, 1), loss / max(count, 1)


def _global_count(side: Side, reduce: Callable[[torch.Tensor], torch.Tensor]) -> int:
    return int(reduce(torch.tensor(float(side.index.numel()))).item())


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else float("nan")


@torch.no_grad()
def apply_outer_update(param: torch.Tensor, result: MetaStepResult, lr: float, beta: float, reduction: str) -> None:
    """θ ← θ0 − β·η·g, applied by hand: no momentum, no weight decay (docs/method.md §3.2). `reduction="mean"`
    divides g by the number of episodes used (the reference sums)."""
    if result.episodes == 0:
        return
    g = result.grad / result.episodes if reduction == "mean" else result.grad
    param.sub_(beta * lr * g.to(param.dtype))


def mldg_gradient(
    loss_fn: LossFn,
    theta: torch.Tensor,
    episodes: Sequence[Episode],
    inner_lr: float,
    beta: float,
    *,
    second_order: bool = False,
    reduction: str = "sum",
    reduce: Callable[[torch.Tensor], torch.Tensor] = _identity,
    chunk_size: int | None = None,
    keep_grads: bool = False,
) -> MetaStepResult:
    """∇F of MLDG's objective on the episodes (docs/method.md §3.2, `mldg`), for the main optimizer to apply:

        F(θ) = Σ_e [ ℓ_tr^e(θ) + β · ℓ_te^e(θ − α ∇ℓ_tr^e(θ)) ]
        first order:   ∇F ≈ Σ_e [ ∇ℓ_tr^e(θ) + β · ∇ℓ_te^e(θ'_e) ],  θ'_e = θ − α ∇ℓ_tr^e(θ)
        second order:  ∇F = Σ_e [ ∇ℓ_tr^e(θ) + β · (I − α H_tr^e(θ)) ∇ℓ_te^e(θ'_e) ]

    `reduction="mean"` divides by the number of episodes used. The episode gradients are those of
    `meta_gradient` (same sides, same global reduction), so the two variants differ only in how they combine them.

    Args:
        theta: (depth, tokens, width) the meta-updated prompt, BEFORE this step's optimizer update; not modified.
        inner_lr: α.

    Returns:
        `MetaStepResult` whose `grad` is ∇F (same shape as θ).
    """
    inner = meta_gradient(
        loss_fn,
        theta,
        episodes,
        inner_lr,
        second_order=second_order,
        reduce=reduce,
        chunk_size=chunk_size,
        keep_grads=True,
    )
    grad_tr = torch.zeros_like(inner.grad)
    for outcome in inner.outcomes:
        assert outcome.meta_train_grad is not None
        grad_tr = grad_tr + outcome.meta_train_grad
    if second_order:  # the meta-train gradients of the second-order path are local, as its g before reduction
        grad_tr = reduce(grad_tr) / reduce(torch.ones((), device=grad_tr.device))
    grad = grad_tr + beta * inner.grad
    if reduction == "mean" and inner.episodes:
        grad = grad / inner.episodes
    outcomes = inner.outcomes
    if not keep_grads:
        outcomes = [EpisodeOutcome(o.episode, o.meta_train_loss, o.meta_test_loss) for o in outcomes]
    return MetaStepResult(grad, inner.episodes, inner.meta_train_loss, inner.meta_test_loss, outcomes)


def faithful_meta_step(
    param: torch.nn.Parameter,
    loss_fn: LossFn,
    episodes: Sequence[Episode],
    optimizer: torch.optim.Optimizer,
    lr: float,
    beta: float,
    *,
    frozen_params: Sequence[torch.nn.Parameter] = (),
    zero_grad_drift: bool = False,
    reduction: str = "sum",
    reduce: Callable[[torch.Tensor], torch.Tensor] = _identity,
    chunk_size: int | None = None,
    keep_grads: bool = False,
    on_update: Callable[[float], None] | None = None,
) -> MetaStepResult:
    """The reference code's meta step, quirks included (docs/method.md §3.3, opt-in `meta_mode="faithful"`):

    1. Reset aliasing: `ctx.data = snapshot` makes parameter and snapshot share storage, so only the FIRST
       episode is really reverted; later inner steps accumulate (B2N ends at θ0 + Δ_inner(2) − βη(g1 + g2)).
    2. The inner step is `optimizer.step()` of the main SGD optimiser at lr η: momentum and weight decay apply and
       the momentum buffer seen by the next in-domain step is mutated.
    3. `zero_grad_drift=True` mimics torch 1.10, whose `zero_grad()` left zero-filled grads: the prompt frozen in
       this phase still receives weight decay and momentum at every inner step.
    The outer update is applied by hand as in the clean step. `on_update(meta_train_loss)` is called right after
    each inner optimiser step (grads still set), e.g. to record the optimiser state.
    """
    snapshot = param.detach().clone()
    g = torch.zeros_like(param)
    used, tr_losses, te_losses, outcomes = 0, [], [], []
    kw = dict(reduce=reduce, chunk_size=chunk_size)
    for episode in episodes:
        if _global_count(episode.train, reduce) == 0 or _global_count(episode.test, reduce) == 0:
            continue
        optimizer.zero_grad(set_to_none=True)
        grad_tr, _, loss_tr = side_gradient(loss_fn, param, episode.train, **kw)
        param.grad = grad_tr.detach().clone()
        if zero_grad_drift:
            for other in frozen_params:
                other.grad = torch.zeros_like(other)
        optimizer.step()
        if on_update is not None:
            on_update(loss_tr)
        adapted = param.detach().clone().requires_grad_(True)
        grad_te, _, loss_te = side_gradient(loss_fn, adapted, episode.test, **kw)
        if used == 0:
            with torch.no_grad():  # the only reset that takes effect; afterwards param aliases the snapshot
                param.copy_(snapshot)
        g = g + grad_te.detach()
        used += 1
        tr_losses.append(loss_tr)
        te_losses.append(loss_te)
        kept = (grad_tr.detach().clone(), grad_te.detach().clone()) if keep_grads else (None, None)
        outcomes.append(EpisodeOutcome(episode, loss_tr, loss_te, *kept))
    optimizer.zero_grad(set_to_none=True)
    result = MetaStepResult(g, used, _mean(tr_losses), _mean(te_losses), outcomes)
    apply_outer_update(param, result, lr, beta, reduction)
    return result


def text_episode_loss(model: torch.nn.Module, frozen_image_embeds: torch.Tensor, class_names: Sequence[str]) -> LossFn:
    """ℓ = CE(z^t) for base-to-new episodes: z^t = s<x, t_c(θ_t)> over the side's classes (docs/method.md §3).
    The frozen image features x (B, P) come from the in-domain forward and are reused by every episode."""
    scale = model.logit_scale

    def loss_fn(theta: torch.Tensor, side: Side) -> torch.Tensor:
        names = [class_names[i] for i in side.classes.tolist()]
        text = model.encode_text(names, text_prompts=theta)
        logits = scale * frozen_image_embeds[side.index.to(frozen_image_embeds.device)] @ text.t()
        return F.cross_entropy(logits, side.labels.to(logits.device))

    return loss_fn


def vision_episode_loss(model: torch.nn.Module, pixel_values: torch.Tensor, template_embeds: torch.Tensor) -> LossFn:
    """ℓ = CE(z^i) for DG episodes: z^i = s<x̃(θ_v), h_c> over all classes (docs/method.md §3). The frozen template
    features h (C, P) are computed once per run and reused."""
    scale = model.logit_scale

    def loss_fn(theta: torch.Tensor, side: Side) -> torch.Tensor:
        image = model.encode_image(pixel_values[side.index.to(pixel_values.device)], vision_prompts=theta)
        logits = scale * image @ template_embeds[side.classes.to(template_embeds.device)].t()
        return F.cross_entropy(logits, side.labels.to(logits.device))

    return loss_fn
