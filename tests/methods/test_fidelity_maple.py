"""Fidelity of `--method maple` to the official MaPLe code, on numbers it recorded
(tests/fixtures/fidelity_maple/PROVENANCE.md; recorder: benchmarks/fidelity/record_maple.py).

The fidelity suite's tiny CLIP (3 layers per tower), prompts at the first 2 layers (2 text tokens, row 0 from
"a photo"; the vision prompts projected from them), 6 class names, 4 images, a recorded non-trivial state of the
text prompts and the coupling functions.

The official image encoder casts the projected vision prompts to fp16 (`.half()` in clip/model.py, whatever PREC),
so it computes with them rounded to 2^-11 relative; the package keeps them fp32 (docs/methods/maple.md, M2). The eval
logits are checked to 1e-4 with the package's vision prompts rounded the same way (the official arithmetic), and
within a stated bound without the rounding (what the departure changes); the step's gradients flow back through the
same fp16 casts and are checked relative to their size.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from conftest import WorstDifferences

from metaprompt_hf import MetaPromptModel
from metaprompt_hf.methods import get_method
from metaprompt_hf.modeling.heads import MaPLeHead
from metaprompt_hf.training.step import TrainingStep

REF = Path(__file__).resolve().parents[1] / "fixtures" / "fidelity_maple"
KEYS = (
    "text_prompts",
    "head.proj.weight",
    "head.proj.bias",
    "head.compound_prompt_projections.0.weight",
    "head.compound_prompt_projections.0.bias",
)
WORST = WorstDifferences()  # printed with `-s`


def assert_close(actual: torch.Tensor, expected: torch.Tensor, atol: float, name: str) -> None:
    assert tuple(actual.shape) == tuple(expected.shape), f"{name}: shape {tuple(actual.shape)} != {expected.shape}"
    diff = (actual.detach().float().cpu() - expected.float()).abs().max().item()
    WORST.record(name, diff)
    assert diff <= atol, f"{name}: worst |diff| {diff:.3g} > {atol:.3g}"


def build(fidelity_clip_and_processor, meta, ref, state: bool) -> MetaPromptModel:
    clip, processor = fidelity_clip_and_processor
    cfg = meta["config"]["TRAINER"]["MAPLE"]
    config = get_method("maple").adapter_config(
        ["a photo of a {}."], n_ctx=cfg["N_CTX"], n_pro=0, prompt_depth=cfg["PROMPT_DEPTH"], ctx_init=cfg["CTX_INIT"]
    )
    model = MetaPromptModel(clip, config, processor)
    if state:
        model.load_prompt_state_dict({k: ref[f"state.{k}"] for k in KEYS})
    return model


class _RoundedHead(MaPLeHead):
    """The official arithmetic: the projected vision prompts rounded to fp16 before the image encoder."""

    def vision_prompts(self, model, adapter):
        return super().vision_prompts(model, adapter).half().float()


def test_the_adapter_has_the_official_tensors(fidelity_clip_and_processor, meta, ref):
    model = build(fidelity_clip_and_processor, meta, ref, state=False)
    assert_close(model.text_prompts[0], ref["init.text_prompts"][0], 0.0, "init context from 'a photo'")
    shapes = {k: tuple(v.shape) for k, v in model.prompt_state_dict().items()}
    assert shapes == {k: tuple(ref[f"init.{k}"].shape) for k in KEYS}
    assert len(meta["trainable_parameters"]) == 6  # ctx, one compound prompt, two coupling functions


def test_eval_logits_match(fidelity_clip_and_processor, meta, ref):
    model = build(fidelity_clip_and_processor, meta, ref, state=True).eval()
    assert model.logit_scale.item() == pytest.approx(meta["logit_scale_exp"], abs=1e-4)
    adapter = model.adapters["default"]
    with torch.no_grad():
        vision = adapter.head.vision_prompts(model, adapter)
        out = model(ref["images"], meta["classnames"], output_features=True)
    assert_close(vision, ref["eval.vision_prompts"], 1e-6, "projected vision prompts (before the official .half())")
    assert_close(out.text_features, ref["eval.text_features"], 1e-5, "t")
    # fp32 vision prompts (the package): the official fp16 rounding of them moves x~ and the logits this much
    assert_close(out.image_features, ref["eval.image_features"], 2e-4, "x~ (fp32 vision prompts)")
    assert_close(out.logits, ref["eval.logits"], 2e-3, "eval logits (fp32 vision prompts)")
    adapter.head.__class__ = _RoundedHead  # the same tensors, with the official fp16 cast of the vision prompts
    try:
        with torch.no_grad():
            rounded = model(ref["images"], meta["classnames"], output_features=True)
    finally:
        adapter.head.__class__ = MaPLeHead
    assert_close(rounded.image_features, ref["eval.image_features"], 1e-5, "x~ (vision prompts rounded as official)")
    m = ref["eval.logits"].abs().max().item()
    assert_close(rounded.logits, ref["eval.logits"], 1e-4, f"eval logits (rounded as official; max |ref| {m:.3g})")


def test_one_training_step_matches(fidelity_clip_and_processor, meta, ref):
    model = build(fidelity_clip_and_processor, meta, ref, state=True).train()
    opt = meta["config"]["OPTIM"]
    method = get_method("maple")
    params = method.trainable_parameters(model)
    assert len(params) == 5
    model.adapters["default"].head.__class__ = _RoundedHead
    optimizer = torch.optim.SGD(params, lr=opt["LR"], momentum=opt["MOMENTUM"], weight_decay=opt["WEIGHT_DECAY"])
    step = TrainingStep(model, optimizer, meta["classnames"], method=method)
    result = step({"pixel_values": ref["images"], "labels": ref["labels"]}, record=True)
    (update,) = result.updates
    assert result.learning_rate == meta["step"]["lr"]
    WORST.record("step: loss", abs(result.loss - meta["step"]["loss"]))
    assert result.loss == pytest.approx(meta["step"]["loss"], abs=1e-4)
    for key in KEYS:
        grad, momentum = ref[f"step.grad.{key}"], ref[f"step.momentum.{key}"]
        # the official gradients pass through its fp16 casts of the prompts (2^-11 relative)
        assert_close(
            update.grads[key], grad, 2e-3 * grad.abs().max().item(), f"grad {key} (max {grad.abs().max():.3g})"
        )
        # the update is lr · (that gradient + weight decay): the same bound times lr
        bound = opt["LR"] * 2e-3 * grad.abs().max().item() + 1e-6
        assert_close(update.prompts[key], ref[f"step.param.{key}"], bound, f"{key} after the step")
        assert_close(update.momentum[key], momentum, 2e-3 * momentum.abs().max().item(), f"momentum {key}")
