"""Fidelity of `--method mmrl` to the official MMRL code, on numbers it recorded
(tests/fixtures/fidelity_mmrl/PROVENANCE.md; recorder: benchmarks/fidelity/record_mmrl.py).

The fidelity suite's tiny CLIP (3 layers per tower), 5 representation tokens of width 32 inserted before layer 2 and
replaced before layer 3 of both towers, the OxfordPets template, 6 base and 4 new class names, 4 images, a recorded
non-trivial state of every learned tensor (tokens, both towers' projections, proj_rep). The official code runs in
fp32 here (PREC fp32) with no cast of its own, so everything is checked to 1e-4 or tighter.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from conftest import WorstDifferences

from metaprompt_hf import MetaPromptModel
from metaprompt_hf.methods import get_method
from metaprompt_hf.modeling.heads import seen_classes
from metaprompt_hf.training.loop import build_optimizer
from metaprompt_hf.training.step import TrainingStep

REF = Path(__file__).resolve().parents[1] / "fixtures" / "fidelity_mmrl"
WORST = WorstDifferences()  # printed with `-s`


def assert_close(actual: torch.Tensor, expected: torch.Tensor, atol: float, name: str) -> None:
    assert tuple(actual.shape) == tuple(expected.shape), f"{name}: shape {tuple(actual.shape)} != {expected.shape}"
    diff = (actual.detach().float().cpu() - expected.float()).abs().max().item()
    WORST.record(name, diff)
    assert diff <= atol, f"{name}: worst |diff| {diff:.3g} > {atol:.3g}"


def method_of(meta: dict):
    cfg = meta["config"]["TRAINER"]["MMRL"]
    knobs = dict(
        alpha=cfg["ALPHA"],
        reg_weight=cfg["REG_WEIGHT"],
        n_rep_tokens=cfg["N_REP_TOKENS"],
        rep_dim=cfg["REP_DIM"],
        rep_layers=cfg["REP_LAYERS"],
    )
    return get_method("mmrl", knobs)


def keys(ref: dict) -> list[str]:
    return sorted(k[len("state.") :] for k in ref if k.startswith("state."))


def build(fidelity_clip_and_processor, meta, ref, state: bool) -> MetaPromptModel:
    clip, processor = fidelity_clip_and_processor
    config = method_of(meta).adapter_config([meta["template"]], n_ctx=4, n_pro=4)
    model = MetaPromptModel(clip, config, processor)
    if state:
        model.load_prompt_state_dict({k: ref[f"state.{k}"] for k in keys(ref)})
    return model


def test_the_adapter_has_the_official_tensors(fidelity_clip_and_processor, meta, ref):
    model = build(fidelity_clip_and_processor, meta, ref, state=False)
    shapes = {k: tuple(v.shape) for k, v in model.prompt_state_dict().items()}
    assert shapes == {k: tuple(ref[f"init.{k}"].shape) for k in keys(ref)}
    # the official trainable set: the representation learner and proj_rep, nothing of CLIP
    assert len(meta["trainable_parameters"]) == len(shapes) == 10
    assert model.text_prompts is None and model.vision_prompts is None
    tok = model.tokenizer
    for part in ("base", "new"):
        ids = tok(meta[f"{part}_texts"])["input_ids"]
        official = ref[f"{part}.token_ids"]
        assert all(official[i, : len(row)].tolist() == row for i, row in enumerate(ids)), part


@pytest.mark.parametrize("part", ["base", "new"])
def test_eval_logits_match(fidelity_clip_and_processor, meta, ref, part):
    model = build(fidelity_clip_and_processor, meta, ref, state=True).eval()
    names = meta[part]
    with torch.no_grad():
        out = model(ref["images"], names, output_features=True)
    assert_close(out.text_features, ref[f"eval.{part}.text_features"], 1e-5, "t")
    assert_close(out.image_features, ref[f"eval.{part}.image_features"], 1e-5, "x~ (CLS)")
    m = ref[f"eval.{part}.logits_fusion"].abs().max().item()
    assert_close(out.logits_class, ref[f"eval.{part}.logits"], 1e-4, f"class logits (max |ref| {m:.3g})")
    assert_close(out.logits_rep, ref[f"eval.{part}.logits_rep"], 1e-4, "representation logits")
    # what the official test() scores: the fusion on base classes, the class logits on new ones; the package's
    # default (no split said) is the new-class behaviour
    with torch.no_grad(), seen_classes(part == "base"):
        scored = model(ref["images"], names).logits
    assert_close(scored, ref[f"eval.{part}.scored"], 1e-4, f"scored logits on {part}")
    with torch.no_grad():
        default = model(ref["images"], names).logits
    assert_close(default, ref[f"eval.{part}.logits"], 1e-4, "default logits = class logits")
    if part == "base":
        assert (ref["eval.base.logits_fusion"] - ref["eval.base.logits"]).abs().max() > 0.1  # the split matters


def test_one_training_step_matches(fidelity_clip_and_processor, meta, ref):
    model = build(fidelity_clip_and_processor, meta, ref, state=True).train()
    opt = meta["config"]["OPTIM"]
    method = method_of(meta)
    assert method.optimizer == "adamw"
    params = method.trainable_parameters(model)
    assert len(params) == 10
    optimizer = build_optimizer(model, opt["LR"], 0.9, opt["WEIGHT_DECAY"], params, kind=method.optimizer)
    step = TrainingStep(model, optimizer, meta["base"], method=method)
    result = step({"pixel_values": ref["images"], "labels": ref["labels"]}, record=True)
    (update,) = result.updates
    assert result.learning_rate == meta["step"]["lr"]
    WORST.record("step: loss", abs(result.loss - meta["step"]["loss"]))
    assert result.loss == pytest.approx(meta["step"]["loss"], abs=1e-5)
    named = dict(model.adapters["default"].head.named_parameters())
    for key in keys(ref):
        grad = ref[f"step.grad.{key}"]
        g = grad.abs().max().item()
        assert_close(update.grads[key], grad, 1e-4 * max(g, 1.0), f"grad {key} (max {g:.3g})")
        assert_close(update.prompts[key], ref[f"step.param.{key}"], 1e-6, f"{key} after the step")
        state = optimizer.state[named[key[len("head.") :]]]
        assert_close(state["exp_avg"], ref[f"step.exp_avg.{key}"], 1e-5 * max(g, 1.0), f"exp_avg {key}")
        sq = ref[f"step.exp_avg_sq.{key}"]
        assert_close(state["exp_avg_sq"], sq, 1e-4 * max(sq.abs().max().item(), 1e-6), f"exp_avg_sq {key}")
