"""Fidelity of `--method promptsrc` to the official PromptSRC code, on numbers it recorded
(tests/fixtures/fidelity_promptsrc/PROVENANCE.md; recorder: benchmarks/fidelity/record_promptsrc.py).

The fidelity suite's tiny CLIP (3 layers per tower), prompts at the first 2 layers (4 text + 4 vision tokens,
text row 0 from "a photo of a"), 6 class names, batches of 4 images, a recorded non-trivial prompt state.

Exact to the suite's tolerances (features 1e-5, logits 1e-4): the textual-diversity features h̄ (60 templates), the
eval-mode features and logits, and the loss terms that involve only the prompted branch and h̄ (CE, the text L1).
The official step runs its frozen zero-shot image branch in CLIP's fp16 (at PREC=fp32 it cannot run otherwise; see
the provenance) and casts every deep prompt, and so its gradient, to fp16; the package computes in fp32
(docs/methods/promptsrc.md, departures S1-S2). For what that rounding reaches, the bounds are looser and stated at
each check: the image L1 and the KL term, the total loss, the gradients, the updated prompts and the GPA run.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from conftest import WorstDifferences

from metaprompt_hf import MetaPromptModel
from metaprompt_hf.methods import TrainerState, get_method
from metaprompt_hf.methods.promptsrc import DIVERSITY_TEMPLATES, diversity_features
from metaprompt_hf.training.step import TrainingStep

REF = Path(__file__).resolve().parents[1] / "fixtures" / "fidelity_promptsrc"
KEYS = ("text_prompts", "vision_prompts")


WORST = WorstDifferences()  # printed with `-s`


def assert_close(actual: torch.Tensor, expected: torch.Tensor, atol: float, name: str) -> None:
    assert tuple(actual.shape) == tuple(expected.shape), (
        f"{name}: shape {tuple(actual.shape)} != {tuple(expected.shape)}"
    )
    diff = (actual.detach().float().cpu() - expected.float()).abs().max().item()
    WORST.record(name, diff)
    assert diff <= atol, f"{name}: worst |diff| {diff:.3g} > {atol:.3g}"


def method_of(meta):
    cfg = meta["config"]["TRAINER"]["PROMPTSRC"]
    knobs = {"text_loss_weight": cfg["TEXT_LOSS_WEIGHT"], "image_loss_weight": cfg["IMAGE_LOSS_WEIGHT"]}
    return get_method("promptsrc", {**knobs, "gpa_mean": cfg["GPA_MEAN"], "gpa_std": cfg["GPA_STD"]})


def build(fidelity_clip_and_processor, meta, ref, prefix: str | None = "state") -> MetaPromptModel:
    clip, processor = fidelity_clip_and_processor
    cfg = meta["config"]["TRAINER"]["PROMPTSRC"]
    assert cfg["PROMPT_DEPTH_TEXT"] == cfg["PROMPT_DEPTH_VISION"]
    config = method_of(meta).adapter_config(
        ["a photo of a {}"],
        n_ctx=cfg["N_CTX_TEXT"],
        n_pro=cfg["N_CTX_VISION"],
        prompt_depth=cfg["PROMPT_DEPTH_TEXT"],
        ctx_init=cfg["CTX_INIT"],
    )
    model = MetaPromptModel(clip, config, processor)
    if prefix is not None:
        model.load_prompt_state_dict({k: ref[f"{prefix}.{k}"] for k in KEYS})
    return model


def optimizer_of(model, meta, lr=None):
    o = meta["config"]["OPTIM"]
    return torch.optim.SGD(
        model.prompt_parameters(), lr=lr or o["LR"], momentum=o["MOMENTUM"], weight_decay=o["WEIGHT_DECAY"]
    )


def test_the_context_init_and_the_textual_diversity_features_match(fidelity_clip_and_processor, meta, ref):
    model = build(fidelity_clip_and_processor, meta, ref, prefix=None)
    assert model.text_prompts.shape == ref["init.text_prompts"].shape
    assert model.vision_prompts.shape == ref["init.vision_prompts"].shape
    assert_close(model.text_prompts[0], ref["init.text_prompts"][0], 1e-6, "text row 0 from 'a photo of a'")
    assert list(DIVERSITY_TEMPLATES) == meta["diversity_templates"]
    h = diversity_features(model, meta["classnames"], DIVERSITY_TEMPLATES)
    assert_close(h, F.normalize(ref["fixed_embeddings"], dim=-1), 1e-5, "h̄ (60 templates)")


def test_eval_features_and_logits_match(fidelity_clip_and_processor, meta, ref):
    model = build(fidelity_clip_and_processor, meta, ref).eval()
    assert model.logit_scale.item() == pytest.approx(meta["logit_scale_exp"], abs=1e-4)
    with torch.no_grad():
        out = model(ref["images"][0], meta["classnames"], output_features=True)
    assert_close(out.image_features, ref["eval.image_features"], 1e-5, "x~")
    assert_close(out.text_features, ref["eval.text_features"], 1e-5, "t")
    assert_close(out.logits, ref["eval.logits"], 1e-4, f"eval logits (max |ref| {ref['eval.logits'].abs().max():.3g})")


def _terms(model, method, meta, images, labels):
    out = model(images, meta["classnames"], **method.forward_kwargs())
    h = method.frozen_text_features(model, meta["classnames"])
    x = out.frozen_image_embeds
    zs = out.logit_scale * x @ h.t()
    kl = F.kl_div(F.log_softmax(out.logits, 1), F.log_softmax(zs, 1), reduction="sum", log_target=True)
    return out, {
        "ce": F.cross_entropy(out.logits, labels).item(),
        "l1_text_mean": F.l1_loss(out.text_embeds, h).item(),
        "l1_image_mean": F.l1_loss(out.image_embeds, x).item(),
        "kl_sum": kl.item(),
    }


def test_one_training_step_matches(fidelity_clip_and_processor, meta, ref):
    model = build(fidelity_clip_and_processor, meta, ref).train()
    method = method_of(meta)
    step = TrainingStep(model, optimizer_of(model, meta), meta["classnames"], method=method)
    rec = meta["step"]
    with torch.no_grad():
        _, terms = _terms(model, method, meta, ref["images"][0], ref["labels"])
    for key, value in terms.items():
        WORST.record(f"step: {key}", abs(value - rec[key]))
    # prompted branch and h̄ only: exact
    assert terms["ce"] == pytest.approx(rec["ce"], abs=1e-4)
    assert terms["l1_text_mean"] == pytest.approx(rec["l1_text_mean"], abs=1e-6)
    # through the official fp16 zero-shot image branch (x to ~5e-4, its logits to fp16's 1/64 at |z| >= 16)
    assert terms["l1_image_mean"] == pytest.approx(rec["l1_image_mean"], abs=1e-4)
    assert terms["kl_sum"] == pytest.approx(rec["kl_sum"], abs=1e-2)

    result = step({"pixel_values": ref["images"][0], "labels": ref["labels"]}, record=True, keep_grads=True)
    assert result.learning_rate == rec["lr"]
    WORST.record("step: loss", abs(result.loss - rec["loss"]))
    assert result.loss == pytest.approx(rec["loss"], abs=1e-3)
    (update,) = result.updates
    for key in KEYS:
        grad = ref[f"step.grad.{key}"]
        # fp16 rounding of the official deep prompts' gradients (2^-11 relative) and of its zero-shot branch
        assert_close(
            update.grads[key], grad, 2e-3 * grad.abs().max().item(), f"grad {key} (max |ref| {grad.abs().max():.3g})"
        )
        assert_close(update.prompts[key], ref[f"step.param.{key}"], 5e-5, f"{key} after the step")  # lr · that
        momentum = ref[f"step.momentum.{key}"]
        assert_close(update.momentum[key], momentum, 2e-3 * momentum.abs().max().item(), f"momentum {key}")


def test_gpa_of_the_recorded_epochs_equals_the_official_aggregate(fidelity_clip_and_processor, meta, ref):
    """The hooks alone: the official per-epoch prompts in, the official aggregate out (weights N(e; 2, 1))."""
    model = build(fidelity_clip_and_processor, meta, ref)
    method = method_of(meta)
    method.on_train_begin(model, meta["classnames"])
    epochs = meta["gpa"]["epochs"]
    for e in range(epochs):
        model.load_prompt_state_dict({k: ref[f"gpa.epoch{e + 1}.{k}"] for k in KEYS})
        method.on_epoch_end(TrainerState(e + 1, e, epochs, 0.0, 0.0, model=model))
    method.on_train_end(TrainerState(epochs, epochs - 1, epochs, 0.0, 0.0, model=model))
    for key in KEYS:
        assert_close(getattr(model, key), ref[f"gpa.final.{key}"], 1e-6, f"GPA {key}")
        assert not torch.allclose(getattr(model, key), ref[f"gpa.epoch{epochs}.{key}"], atol=1e-4)


def test_three_epochs_with_gpa_match(fidelity_clip_and_processor, meta, ref):
    """Three one-batch epochs through the step API at the official per-epoch learning rates, the hooks after each,
    then the aggregate: within the fp16 bounds of the official step."""
    model = build(fidelity_clip_and_processor, meta, ref).train()
    method = method_of(meta)
    optimizer = optimizer_of(model, meta)
    step = TrainingStep(model, optimizer, meta["classnames"], method=method)
    epochs = meta["gpa"]["epochs"]
    state = None
    for e, lr in enumerate(meta["gpa"]["lrs"]):
        for group in optimizer.param_groups:
            group["lr"] = lr
        step({"pixel_values": ref["images"][e], "labels": ref["labels"]})
        for key in KEYS:
            assert_close(getattr(model, key), ref[f"gpa.epoch{e + 1}.{key}"], 5e-5, f"3 epochs: {key} after each")
        state = TrainerState(e + 1, e, epochs, 0.0, lr, model=model)
        method.on_epoch_end(state)
    method.on_train_end(state)
    for key in KEYS:
        assert_close(getattr(model, key), ref[f"gpa.final.{key}"], 5e-5, f"3 epochs: GPA {key}")
