"""Fidelity to the official MetaPrompt code, on numbers it recorded (tests/fixtures/fidelity/PROVENANCE.md).

A tiny random CLIP (text width 64, vision width 128, projection 48, 3 layers each) and, for base-to-new (B2N,
n_ctx = n_pro = 2) and DG (4 + 4 tokens): the initial prompts, the forward features and logits, and every tensor of
one official `forward_backward` step, in both variants of the frozen prompt's gradient (None as torch ≥ 2, or
zero-filled as the reference's torch 1.10). The step API (`metaprompt_hf.training.step.TrainingStep`) drives every step
here, with the recorded class split injected.

Tolerances (fp32, any thread count or attention kernel): features atol 1e-5, logits and losses atol 1e-4, prompts
atol 1e-5; gradients atol max(1e-4, 1e-5 · max|ref|) and momentum buffers atol max(1e-3, 1e-5 · max|ref|) of the
tensor, plus rtol 1e-5. The scaled part covers the phase-1 text gradient, which reaches ≈200 (s ≈ 100 and
LayerNorm on inputs of size ≈0.02) and whose official fp32 value is itself ≈1e-3 away from an fp64
recomputation; the floor covers the later, small gradients, which inherit the phase-1 rounding through θ. Run with `-s` to print the worst difference per group.
"""

from __future__ import annotations

import json
import shutil
from collections import defaultdict
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file

from metaprompt_hf import MetaPromptConfig, MetaPromptModel
from metaprompt_hf.backbones import load_base_model as load_clip
from metaprompt_hf.backbones import load_base_processor as load_processor
from metaprompt_hf.meta import (
    MetaSettings,
    class_group_episodes,
    meta_gradient,
    text_episode_loss,
    vision_episode_loss,
)
from metaprompt_hf.training.step import TrainingStep

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "fidelity"
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.json", "merges.txt")
PACKAGE_TOKENIZER = Path(__file__).resolve().parents[2] / "src" / "metaprompt_hf" / "assets" / "mini-clip"
SETTINGS = ("b2n", "dg")
VARIANTS = ("grads_none", "grads_zeroed")
SHORT = {"text_prompts": "text", "vision_prompts": "vision"}

WORST: dict[str, tuple[float, float]] = defaultdict(lambda: (0.0, 0.0))  # group → (worst diff, its tolerance)


def _record(group: str, diff: float, tol: float) -> None:
    if diff / tol >= WORST[group][0] / max(WORST[group][1], 1e-30):
        WORST[group] = (diff, tol)


def assert_matches(actual: torch.Tensor, expected: torch.Tensor, group: str, name: str) -> None:
    """Compare with the reference under the tolerance of `group`, and keep the worst difference per group."""
    assert actual is not None, f"{name}: missing (the reference has a tensor)"
    assert tuple(actual.shape) == tuple(expected.shape), (
        f"{name}: shape {tuple(actual.shape)} != {tuple(expected.shape)}"
    )
    actual, expected = actual.detach().float().cpu(), expected.float()
    diff = (actual - expected).abs()
    if group in ("gradients", "momentum"):
        floor = 1e-4 if group == "gradients" else 1e-3
        tol = max(floor, 1e-5 * expected.abs().max().item()) + 1e-5 * expected.abs()
    else:
        tol = torch.full_like(expected, {"features": 1e-5, "logits": 1e-4, "prompts": 1e-5}[group])
    worst = int((diff - tol).argmax())
    _record(group, diff.flatten()[worst].item(), tol.flatten()[worst].item())
    bad = diff > tol
    assert not bad.any(), (
        f"{name}: {int(bad.sum())} of {diff.numel()} values off; worst |diff| {diff.max().item():.3g} "
        f"(tolerance there {tol.flatten()[int(diff.argmax())].item():.3g})"
    )


@pytest.fixture(scope="module", autouse=True)
def worst_differences():
    yield
    print("\nfidelity: worst |diff| per group (tolerance at that value)")
    for group, (diff, tol) in sorted(WORST.items()):
        print(f"  {group:<12} {diff:.3g}  (tol {tol:.3g}, ratio {diff / tol:.3f})")


# ---------------------------------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def ref() -> dict[str, torch.Tensor]:
    return load_file(str(FIXTURES / "official_reference.safetensors"))


@pytest.fixture(scope="module")
def meta() -> dict:
    return json.loads((FIXTURES / "official_reference.json").read_text())


@pytest.fixture(scope="module")
def clip_dir(tmp_path_factory) -> str:
    """The tiny CLIP's weights and configs from the fixtures, with the package's own CLIP BPE tokenizer files
    (the reference folder's tokenizer differs only in a padding default of the backend, which every call here
    overrides; `test_tokenizer_gives_the_official_ids` checks the ids)."""
    folder = tmp_path_factory.mktemp("fidelity_clip")
    for f in (FIXTURES / "tiny_clip").iterdir():
        shutil.copy(f, folder)
    for name in TOKENIZER_FILES:
        shutil.copy(PACKAGE_TOKENIZER / name, folder)
    return str(folder)


@pytest.fixture(scope="module")
def clip(clip_dir):
    return load_clip(clip_dir, dtype=torch.float32, attn_implementation="sdpa").eval()


@pytest.fixture(scope="module")
def processor(clip_dir):
    return load_processor(clip_dir)


def build(clip, processor, meta, ref, setting: str) -> MetaPromptModel:
    """The adapter of one setting with the recorded initial prompts; the frozen CLIP is shared."""
    m = meta[setting]
    config = MetaPromptConfig(n_ctx=m["n_ctx"], n_pro=m["n_pro"], templates=m["frozen_branch_templates"])
    model = MetaPromptModel(clip, config, processor)
    model.load_prompt_state_dict(
        {"text_prompts": ref[f"{setting}.init.text_prompts"], "vision_prompts": ref[f"{setting}.init.vision_prompts"]}
    )
    return model


def batch(ref, setting: str) -> dict[str, torch.Tensor]:
    b = {"pixel_values": ref[f"{setting}.images"], "labels": ref[f"{setting}.labels"]}
    if setting == "dg":
        b["domains"] = ref["dg.domains"]
    return b


def run_step(clip, processor, meta, ref, setting: str, meta_settings: MetaSettings, keep_grads: bool = True):
    """One training step through the step API from the recorded state, with the recorded episodes injected."""
    model = build(clip, processor, meta, ref, setting).train()
    cfg = meta["optimizer"]
    optimizer = torch.optim.SGD(
        model.prompt_parameters(), lr=cfg["lr"], momentum=cfg["momentum"], weight_decay=cfg["weight_decay"]
    )
    step = TrainingStep(
        model,
        optimizer,
        meta["classnames"],
        meta=meta_settings,
        source_domains=meta["dg"]["step"]["grads_none"]["domain_split"]["episode_j_meta_test_domain"],
    )
    episodes = None
    if setting == "b2n":  # the split the reference drew with Python's `random`, injected as recorded
        episodes = class_group_episodes(ref["b2n.labels"], meta["b2n"]["step"]["grads_none"]["class_split"]["groups"])
    result = step(batch(ref, setting), episodes=episodes, record=True, keep_grads=keep_grads)
    return model, optimizer, result


# ---------------------------------------------------------------------------------------------------- tokenizer
@pytest.mark.parametrize("setting", SETTINGS)
def test_tokenizer_gives_the_official_ids(processor, meta, ref, setting):
    tok = processor.tokenizer
    for texts, key in (("prompted_branch_texts", "tokenized_prompts"), ("frozen_branch_texts", "template_ids")):
        official = ref[f"{setting}.{key}"]
        ids = tok(meta[setting][texts], padding=False)["input_ids"]
        for i, row in enumerate(ids):
            assert row == official[i, : len(row)].tolist(), f"{setting} {texts}[{i}]"
            assert not official[i, len(row) :].any(), f"{setting} {texts}[{i}]: official ids are longer"


# ---------------------------------------------------------------------------------------------------- forward
@pytest.mark.parametrize("setting", SETTINGS)
def test_forward_features_and_logits_match(clip, processor, meta, ref, setting):
    model = build(clip, processor, meta, ref, setting)
    names, s = meta["classnames"], f"{setting}.fwd"
    assert model.logit_scale.item() == pytest.approx(meta[setting]["logit_scale_exp"], abs=1e-4)
    for mode in ("train", "eval"):
        model.train(mode == "train")
        with torch.no_grad():
            out = model(ref[f"{setting}.images"], names, output_features=True)
        assert_matches(out.frozen_image_features, ref[f"{s}.image_features_frozen"], "features", f"{s} x ({mode})")
        assert_matches(out.image_features, ref[f"{s}.image_features_prompted"], "features", f"{s} x~ ({mode})")
        assert_matches(out.text_features, ref[f"{s}.text_features_prompted"], "features", f"{s} t ({mode})")
        assert_matches(out.template_embeds, ref[f"{setting}.frozen_text_features"], "features", f"{setting} h_c")
        assert_matches(out.logits_image, ref[f"{s}.z_i"], "logits", f"{s}.z_i ({mode})")
        assert_matches(out.logits_text, ref[f"{s}.z_t"], "logits", f"{s}.z_t ({mode})")
        assert_matches(out.logits, ref[f"{s}.z_o" if mode == "train" else f"{s}.z_o_eval"], "logits", f"{s}.z_o")


def test_class_subset_forward_keeps_the_given_order(clip, processor, meta, ref):
    model = build(clip, processor, meta, ref, "b2n")
    subset = meta["b2n"]["forward"]["subset_label_idx"]
    with torch.no_grad():
        out = model(ref["b2n.images"], [meta["classnames"][i] for i in subset])
    for mine, key in ((out.logits_image, "z_i"), (out.logits_text, "z_t"), (out.logits, "z_o")):
        assert_matches(mine, ref[f"b2n.fwd_subset.{key}"], "logits", f"b2n.fwd_subset.{key}")


# ---------------------------------------------------------------------------------------------------- faithful step
def _check_episodes(result, recorded: list[dict], n_classes: int) -> None:
    assert len(result.meta.outcomes) == len(recorded)
    for i, (outcome, rec) in enumerate(zip(result.meta.outcomes, recorded)):
        for side, key, loss in (
            (outcome.episode.train, "meta_train", outcome.meta_train_loss),
            (outcome.episode.test, "meta_test", outcome.meta_test_loss),
        ):
            r = rec[key]
            classes = list(range(n_classes)) if r["classes"] == "all" else r["classes"]
            assert side.index.tolist() == r["batch_rows"], f"episode {i} {key} rows"
            assert side.classes.tolist() == classes, f"episode {i} {key} classes"
            assert side.labels.tolist() == r["ce_targets"], f"episode {i} {key} targets"
            assert loss == pytest.approx(r["ce_value"], abs=1e-4), f"episode {i} {key} CE"


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("setting", SETTINGS)
def test_faithful_step_matches_every_recorded_tensor(clip, processor, meta, ref, setting, variant):
    settings = MetaSettings(
        target="text" if setting == "b2n" else "vision",
        mode="faithful",
        beta=meta["meta_step_beta"],
        zero_grad_drift=variant == "grads_zeroed",
    )
    model, optimizer, result = run_step(clip, processor, meta, ref, setting, settings)
    rec, p = meta[setting]["step"][variant], f"{setting}.step.{variant}"
    assert result.learning_rate == rec["lr_used"]
    _check_episodes(result, rec["episodes_run"], len(meta["classnames"]))

    # every optimiser update: phase 1, then each inner step (prompts, grads and momentum after the step)
    assert [u.phase for u in result.updates] == ["in_domain"] + ["meta_train"] * (len(result.updates) - 1)
    assert len(result.updates) == len(rec["optimizer_updates"])
    for i, (update, logged) in enumerate(zip(result.updates, rec["optimizer_updates"])):
        assert update.loss == pytest.approx(logged["loss"], abs=1e-4), f"update{i} loss"
        for name, short in SHORT.items():
            assert_matches(update.prompts[name], ref[f"{p}.update{i}.{name}"], "prompts", f"{p}.update{i}.{name}")
            assert_matches(
                update.momentum[name], ref[f"{p}.update{i}.momentum_{short}"], "momentum", f"{p}.update{i}.momentum"
            )
            key = f"{p}.update{i}.grad_{short}"
            if logged[f"grad_{short}_is_none"]:
                assert update.grads[name] is None, f"{key}: the reference had no gradient here"
            else:
                assert_matches(update.grads[name], ref[key], "gradients", key)

    for i, outcome in enumerate(result.meta.outcomes):
        assert_matches(outcome.meta_test_grad, ref[f"{p}.meta_grad{i}"], "gradients", f"{p}.meta_grad{i}")
    for name, short in SHORT.items():
        param = getattr(model, name)
        assert_matches(param, ref[f"{p}.final.{name}"], "prompts", f"{p}.final.{name}")
        assert_matches(
            optimizer.state[param]["momentum_buffer"], ref[f"{p}.final.momentum_{short}"], "momentum", f"{p}.final"
        )


# ---------------------------------------------------------------------------------------------------- clean step
def _episode_loss(model, setting: str, theta, x, pixel_values, rows, classes, targets, names):
    """ℓ of one side written out from the model's encoders (not through meta.py): CE(z^t) over the side's classes
    for B2N, CE(z^i) over all classes for DG."""
    targets = torch.tensor(targets)
    if setting == "b2n":
        t = model.encode_text([names[c] for c in classes], text_prompts=theta)
        return F.cross_entropy(model.logit_scale * x[rows] @ t.t(), targets)
    image = model.encode_image(pixel_values[rows], vision_prompts=theta)
    return F.cross_entropy(model.logit_scale * image @ model.encode_templates(names).t(), targets)


@pytest.mark.parametrize("setting", SETTINGS)
def test_clean_step_phase_one_matches_and_phase_two_follows_its_formula(clip, processor, meta, ref, setting):
    """Phase 1 is the reference's update0; phase 2 is θ ← θ_A − β·η·Σ_e ∇ℓ_te(θ_A − η·∇ℓ_tr(θ_A)) (plain SGD,
    exact reset, docs/method.md §3.2): the optimiser state and the other prompt stay as phase 1 left them."""
    target = "text" if setting == "b2n" else "vision"
    beta = meta["meta_step_beta"]
    settings = MetaSettings(target=target, mode="clean", beta=beta)
    model, optimizer, result = run_step(clip, processor, meta, ref, setting, settings)
    p = f"{setting}.step.grads_none.update0"
    assert len(result.updates) == 1  # the clean meta step never goes through the optimiser
    (phase1,) = result.updates
    for name, short in SHORT.items():
        assert_matches(phase1.prompts[name], ref[f"{p}.{name}"], "prompts", f"clean {p}.{name}")
        assert_matches(phase1.grads[name], ref[f"{p}.grad_{short}"], "gradients", f"clean {p}.grad_{short}")
        param = getattr(model, name)
        assert torch.equal(optimizer.state[param]["momentum_buffer"], phase1.momentum[name]), "momentum touched"
    other = "vision_prompts" if target == "text" else "text_prompts"
    assert torch.equal(getattr(model, other).detach(), phase1.prompts[other]), "the frozen prompt moved"

    names, lr = meta["classnames"], result.learning_rate
    theta_a = phase1.prompts[f"{target}_prompts"]
    with torch.no_grad():
        x = model(ref[f"{setting}.images"], names).frozen_image_embeds
    g = torch.zeros_like(theta_a)
    recorded = meta[setting]["step"]["grads_none"]["episodes_run"]  # the same rows/classes/targets in both modes
    for ep in recorded:
        loss = lambda th, side: _episode_loss(  # noqa: E731
            model, setting, th, x, ref[f"{setting}.images"], side["batch_rows"],
            list(range(len(names))) if side["classes"] == "all" else side["classes"], side["ce_targets"], names,
        )  # fmt: skip
        theta = theta_a.clone().requires_grad_(True)
        (g_tr,) = torch.autograd.grad(loss(theta, ep["meta_train"]), theta)
        adapted = (theta_a - lr * g_tr).requires_grad_(True)
        (g_te,) = torch.autograd.grad(loss(adapted, ep["meta_test"]), adapted)
        g += g_te
    expected = theta_a - beta * lr * g
    final = getattr(model, f"{target}_prompts").detach()
    assert_matches(final, expected, "prompts", f"clean {setting} final {target} prompts")
    assert_matches(result.meta.grad, g, "gradients", f"clean {setting} meta-gradient")
    # the clean update differs from the faithful one (the faithful step keeps its un-reverted inner steps)
    assert (final - ref[f"{setting}.step.grads_none.final.{target}_prompts"]).abs().max() > 1e-3


# ---------------------------------------------------------------------------------------------------- second order
def test_second_order_meta_gradient_matches_double_backward_and_finite_differences(clip_dir, processor, meta, ref):
    """g = ∇_θ0 ℓ_te(θ0 − η∇ℓ_tr(θ0)) on the reference CLIP in fp64, against an explicit double backward and
    central finite differences; η is large enough that the Hessian term is far above the tolerance."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    clip64 = load_clip(clip_dir, dtype=torch.float64, attn_implementation="sdpa").eval()
    model = build(clip64, processor, meta, ref, "b2n")
    names, lr = meta["classnames"], 0.05
    with torch.no_grad():
        x = model(ref["b2n.images"].double(), names).frozen_image_embeds
    episodes = class_group_episodes(ref["b2n.labels"], meta["b2n"]["step"]["grads_none"]["class_split"]["groups"])
    loss_fn = text_episode_loss(model, x, names)
    theta0 = model.text_prompts.detach().double()  # the fp32 master copy, in fp64
    second = meta_gradient(loss_fn, theta0, episodes, lr, second_order=True).grad
    first = meta_gradient(loss_fn, theta0, episodes, lr).grad

    def outer(theta: torch.Tensor, create_graph: bool) -> torch.Tensor:
        total = theta.new_zeros(())
        for ep in episodes:
            (g_tr,) = torch.autograd.grad(loss_fn(theta, ep.train), theta, create_graph=create_graph)
            total = total + loss_fn(theta - lr * g_tr, ep.test)
        return total

    with sdpa_kernel(SDPBackend.MATH):
        theta = theta0.clone().requires_grad_(True)
        (double_backward,) = torch.autograd.grad(outer(theta, True), theta)
    torch.testing.assert_close(second, double_backward, rtol=1e-9, atol=1e-9)

    v = torch.randn(theta0.shape, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    v, eps = v / v.norm(), 1e-6  # the loss is steep along θ_t (s ≈ 100): a unit direction and a small step

    def value(th: torch.Tensor) -> float:
        return outer(th.clone().requires_grad_(True), False).item()

    fd = (value(theta0 + eps * v) - value(theta0 - eps * v)) / (2 * eps)
    assert (second * v).sum().item() == pytest.approx(fd, rel=1e-6, abs=1e-8)
    # the check can tell first from second order
    assert abs((first * v).sum().item() - fd) > 1e3 * abs((second * v).sum().item() - fd)


def test_vision_second_order_meta_gradient_matches_double_backward(clip_dir, processor, meta, ref):
    from torch.nn.attention import SDPBackend, sdpa_kernel

    from metaprompt_hf.meta import domain_split_episodes

    clip64 = load_clip(clip_dir, dtype=torch.float64, attn_implementation="sdpa").eval()
    model = build(clip64, processor, meta, ref, "dg")
    names, lr = meta["classnames"], 0.05
    pixel_values = ref["dg.images"].double()
    episodes = domain_split_episodes(ref["dg.labels"], ref["dg.domains"], [0, 1, 2], len(names))
    loss_fn = vision_episode_loss(model, pixel_values, model.encode_templates(names))
    theta0 = model.vision_prompts.detach().double()
    second = meta_gradient(loss_fn, theta0, episodes, lr, second_order=True).grad
    with sdpa_kernel(SDPBackend.MATH):
        theta = theta0.clone().requires_grad_(True)
        total = theta.new_zeros(())
        for ep in episodes:
            (g_tr,) = torch.autograd.grad(loss_fn(theta, ep.train), theta, create_graph=True)
            total = total + loss_fn(theta - lr * g_tr, ep.test)
        (double_backward,) = torch.autograd.grad(total, theta)
    torch.testing.assert_close(second, double_backward, rtol=1e-9, atol=1e-9)
