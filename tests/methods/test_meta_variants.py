"""The meta-update variants (docs/method.md §3.2) and their diagnostics, one training step on a tiny CLIP.

Two identical models take the same step on the same batch, one with the meta phase and one without: the update the
step reports as Δ_meta must be the difference between their prompts, and each variant's update must be the one its
documented equation gives, computed here by hand with autograd.
"""

from __future__ import annotations

import pytest
import torch

from metaprompt_hf import MetaPromptConfig, MetaPromptModel
from metaprompt_hf.meta import (
    MetaSettings,
    class_group_episodes,
    domain_split_episodes,
    text_episode_loss,
    vision_episode_loss,
)
from metaprompt_hf.testing import tiny_clip
from metaprompt_hf.training.step import TrainingStep

NAMES = ["cat", "dog", "bus", "tree"]
LR, MOMENTUM, WD = 0.05, 0.9, 5e-4


@pytest.fixture(scope="module")
def base_model():
    """A factory of identical fp64 tiny models (fp64: the equalities below are exact up to rounding)."""

    def make() -> MetaPromptModel:
        clip, processor = tiny_clip(seed=0, attn_implementation="sdpa")
        torch.manual_seed(0)
        model = MetaPromptModel(clip.double(), MetaPromptConfig(), processor)
        with torch.no_grad():
            for p in model.prompt_parameters():
                p.data = p.data.double()
        return model

    return make


def _batch(seed: int = 3) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return {
        "pixel_values": torch.randn(8, 3, 32, 32, dtype=torch.float64, generator=gen),
        "labels": torch.tensor([0, 1, 2, 3, 0, 1, 2, 3]),
        "domains": torch.tensor([0, 0, 0, 1, 1, 1, 2, 2]),
    }


def _twin(base_model):
    """A copy of the model with an SGD optimizer whose momentum is already set by one in-domain step."""
    model = base_model()
    optimizer = torch.optim.SGD(model.prompt_parameters(), lr=LR, momentum=MOMENTUM, weight_decay=WD)
    TrainingStep(model, optimizer, NAMES)(_batch(seed=11))
    return model, optimizer


def _episodes(target: str, batch):
    if target == "text":
        return class_group_episodes(batch["labels"], [[0, 2], [1, 3]])
    return domain_split_episodes(batch["labels"], batch["domains"], [0, 1, 2], len(NAMES))


def _prompt(model, target):
    return (model.text_prompts if target == "text" else model.vision_prompts).detach().clone()


_RUNS: dict[MetaSettings, tuple] = {}


def _with_and_without(base_model, settings: MetaSettings):
    """(result with, result without the meta phase, model with, model without, prompts before the step); each
    setting runs once per session and the tests below read it."""
    if settings not in _RUNS:
        _RUNS[settings] = _run_twins(base_model, settings)
    return _RUNS[settings]


def _run_twins(base_model, settings: MetaSettings):
    batch = _batch()
    model_a, opt_a = _twin(base_model)
    model_b, opt_b = _twin(base_model)
    before = {t: _prompt(model_a, t) for t in ("text", "vision")}
    sources = [0, 1, 2] if settings.target == "vision" else None
    step_a = TrainingStep(model_a, opt_a, NAMES, meta=settings, source_domains=sources)
    result = step_a(batch, episodes=_episodes(settings.target, batch))
    without = TrainingStep(model_b, opt_b, NAMES)(batch, record=True)
    return result, without, model_a, model_b, before


def _loss_fn(model, target, batch):
    if target == "text":
        x = model(batch["pixel_values"], NAMES).frozen_image_embeds.detach()
        return text_episode_loss(model, x, NAMES)
    return vision_episode_loss(model, batch["pixel_values"], model.encode_templates(NAMES))


@pytest.fixture(autouse=True)
def _math_attention():
    """Double backward (second order by hand) needs SDPA's math kernel, as `meta_gradient` uses."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    with sdpa_kernel(SDPBackend.MATH):
        yield


def _grad(loss_fn, theta, side, create_graph=False):
    theta = theta if theta.requires_grad else theta.clone().requires_grad_(True)
    return torch.autograd.grad(loss_fn(theta, side), theta, create_graph=create_graph)[0]


CLEAN = MetaSettings(target="text", mode="clean", beta=0.7, inner_lr_scale=2.0)
CLEAN_2ND = MetaSettings(target="text", mode="clean", beta=0.7, inner_lr_scale=2.0, second_order=True)
FAITHFUL = MetaSettings(target="text", mode="faithful", beta=0.2, zero_grad_drift=True)
MLDG = MetaSettings(target="text", mode="mldg", beta=0.5, inner_lr_scale=2.0)
MLDG_2ND_INSTEAD = MetaSettings(target="text", mode="mldg", beta=0.5, second_order=True, mldg_in_domain=False)
MLDG_VISION_MEAN = MetaSettings(target="vision", mode="mldg", beta=0.5, reduction="mean")
VARIANTS = [CLEAN, CLEAN_2ND, FAITHFUL, MLDG, MLDG_2ND_INSTEAD, MLDG_VISION_MEAN]


@pytest.mark.parametrize("settings", VARIANTS, ids=lambda s: f"{s.target}-{s.mode}-{s.second_order}")
def test_logged_meta_update_is_the_difference_with_and_without_the_meta_phase(base_model, settings):
    result, without, model_a, model_b, before = _with_and_without(base_model, settings)
    target = settings.target
    torch.testing.assert_close(result.meta_update, _prompt(model_a, target) - _prompt(model_b, target))
    torch.testing.assert_close(result.in_domain_update, _prompt(model_b, target) - before[target])
    assert result.meta.episodes == len(_episodes(target, _batch())) and result.meta_update.abs().max() > 0
    ratio = result.meta_update.norm() / result.in_domain_update.norm()
    assert result.meta_update_ratio == pytest.approx(float(ratio))
    expected_sizes = [(int(e.train.index.numel()), int(e.test.index.numel())) for e in _episodes(target, _batch())]
    assert result.side_sizes == expected_sizes
    assert without.meta_update is None and without.meta_update_ratio != without.meta_update_ratio  # nan


@pytest.mark.parametrize("settings", [CLEAN, CLEAN_2ND], ids=["first-order", "second-order"])
def test_clean_update_is_its_equation(base_model, settings):
    second_order = settings.second_order
    result, _, model_a, model_b, _ = _with_and_without(base_model, settings)
    batch = _batch()
    theta0 = _prompt(model_b, "text")  # θ after the in-domain step: the same in both models
    loss_fn = _loss_fn(model_b, "text", batch)
    alpha = 2.0 * LR
    g = torch.zeros_like(theta0)
    for episode in _episodes("text", batch):
        if second_order:  # g_e = ∇_θ0 ℓ_te(θ0 − α∇ℓ_tr(θ0))
            theta = theta0.clone().requires_grad_(True)
            adapted = theta - alpha * _grad(loss_fn, theta, episode.train, create_graph=True)
            g += torch.autograd.grad(loss_fn(adapted, episode.test), theta)[0]
        else:  # g_e = ∇ℓ_te(θ'_e), θ'_e = θ0 − α∇ℓ_tr(θ0)
            g += _grad(loss_fn, theta0 - alpha * _grad(loss_fn, theta0, episode.train), episode.test)
    torch.testing.assert_close(_prompt(model_a, "text"), theta0 - 0.7 * LR * g)
    torch.testing.assert_close(result.outer_update, 0.7 * LR * g)
    # the prompt outside the meta phase and the optimizer state are untouched by the clean variant
    torch.testing.assert_close(_prompt(model_a, "vision"), _prompt(model_b, "vision"))


@pytest.mark.parametrize(
    "settings",
    [MLDG, MLDG_2ND_INSTEAD, MLDG_VISION_MEAN],
    ids=["first-order", "second-order-instead-of-in-domain", "vision-mean"],
)
def test_mldg_update_is_its_equation_through_the_main_optimizer(base_model, settings):
    result, without, model_a, model_b, before = _with_and_without(base_model, settings)
    batch, target = _batch(), settings.target
    theta = before[target]  # ∇F is taken at the prompts the step starts from
    loss_fn = _loss_fn(model_b, target, batch)  # θ is explicit; the model gives only frozen parts
    alpha = settings.inner_lr_scale * LR
    episodes = _episodes(target, batch)
    grad_f = torch.zeros_like(theta)
    for episode in episodes:  # F = Σ_e ℓ_tr(θ) + β ℓ_te(θ − α∇ℓ_tr(θ))
        t = theta.clone().requires_grad_(True)
        g_tr = _grad(loss_fn, t, episode.train, create_graph=settings.second_order)
        if settings.second_order:
            grad_f += (
                g_tr.detach() + settings.beta * torch.autograd.grad(loss_fn(t - alpha * g_tr, episode.test), t)[0]
            )
        else:
            grad_f += g_tr + settings.beta * _grad(loss_fn, theta - alpha * g_tr, episode.test)
    if settings.reduction == "mean":
        grad_f /= len(episodes)
    # SGD is linear in the gradient: with the same θ and momentum, the two steps differ by −η·(g_a − g_b)
    name = "text_prompts" if target == "text" else "vision_prompts"
    g_in_domain = without.updates[0].grads[name]
    applied = grad_f if settings.mldg_in_domain else grad_f - g_in_domain
    torch.testing.assert_close(_prompt(model_a, target) - _prompt(model_b, target), -LR * applied)
    other = "vision" if target == "text" else "text"
    torch.testing.assert_close(_prompt(model_a, other), _prompt(model_b, other))  # ∇L_AC only


def test_variant_settings_are_checked():
    for kw in (
        dict(mode="faithful", second_order=True),
        dict(mode="faithful", inner_lr_scale=2.0),
        dict(mode="mldg", beta=-1.0),
        dict(mode="mldg", inner_lr_scale=0.0),
        dict(mode="nope"),
    ):
        with pytest.raises(ValueError):
            MetaSettings(**kw)


# ---------------------------------------------------------------------------------------------------- in the loop
@pytest.mark.parametrize(
    ("method", "extra"),
    [("metaprompt", {"meta_mode": "mldg", "meta_step": 0.5}), ("metaprompt_no_meta", {})],
)
def test_loop_logs_the_update_ratio_and_results_carry_its_median(
    tiny_clip_dir, domain_folder, tmp_path, fresh_accelerate_state, method, extra
):
    import json

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from metaprompt_hf.training import MetaPromptTrainingArguments, train

    out = tmp_path / method
    args = MetaPromptTrainingArguments(
        base_model=tiny_clip_dir,
        dataset_name=domain_folder,
        output_dir=str(out),
        method=method,
        shots=4,
        per_device_train_batch_size=4,
        max_steps=3,
        learning_rate=0.05,
        warmup_epochs=0,
        logging_steps=1,
        max_eval_samples=16,
        report_to="tensorboard",
        **extra,
    )
    train(args)
    entry = json.loads((out / "results.json").read_text())[0]
    assert "meta_update_ratio" in entry
    events = list(out.rglob("events.out.tfevents.*"))
    acc = EventAccumulator(str(events[0].parent))
    acc.Reload()
    if method == "metaprompt_no_meta":
        assert entry["meta_update_ratio"] is None
        assert "meta_update_ratio" not in acc.Tags()["scalars"]
        return
    logged = [e.value for e in acc.Scalars("meta_update_ratio")]
    assert len(logged) == 3 and all(v > 0 for v in logged)
    assert entry["meta_update_ratio"] == pytest.approx(sorted(logged)[1], rel=1e-5)  # median of the 3 steps
    assert {"meta_episodes", "meta_train_side", "meta_test_side"} <= set(acc.Tags()["scalars"])
    assert all(e.value >= 1 for e in acc.Scalars("meta_episodes"))
