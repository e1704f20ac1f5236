"""Fidelity of `--method cocoop` to the official CoCoOp code, on numbers it recorded
(tests/fixtures/fidelity_cocoop/PROVENANCE.md; recorder: benchmarks/fidelity/record_cocoop.py).

The fidelity suite's tiny CLIP, 6 class names, 4 images, the official CTX_INIT context ("a photo of a") and a recorded
non-trivial state of the context and the meta-network. Checked: the token ids, the context init, the eval-mode image
features, meta-network bias and logits, and one training step (loss, every gradient, every updated tensor, momentum).
Tolerances as tests/methods/test_fidelity.py: features 1e-5, logits and losses 1e-4, parameters 1e-5, gradients
max(1e-4, 1e-5·max|ref|) + 1e-5·|ref|, momentum max(1e-3, 1e-5·max|ref|) + 1e-5·|ref|.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from metaprompt_hf import MetaPromptModel
from metaprompt_hf.methods import get_method
from metaprompt_hf.training.step import TrainingStep

REF = Path(__file__).resolve().parents[1] / "fixtures" / "fidelity_cocoop"
HEAD_KEYS = ("meta_net.linear1.weight", "meta_net.linear1.bias", "meta_net.linear2.weight", "meta_net.linear2.bias")


def assert_matches(actual: torch.Tensor, expected: torch.Tensor, group: str, name: str) -> None:
    assert tuple(actual.shape) == tuple(expected.shape), (
        f"{name}: shape {tuple(actual.shape)} != {tuple(expected.shape)}"
    )
    actual, expected = actual.detach().float().cpu(), expected.float()
    if group in ("gradients", "momentum"):
        floor = 1e-4 if group == "gradients" else 1e-3
        tol = max(floor, 1e-5 * expected.abs().max().item()) + 1e-5 * expected.abs()
    else:
        tol = torch.full_like(expected, {"features": 1e-5, "logits": 1e-4, "params": 1e-5}[group])
    diff = (actual - expected).abs()
    assert not (diff > tol).any(), f"{name}: worst |diff| {diff.max().item():.3g} ({int((diff > tol).sum())} off)"


def build(fidelity_clip_and_processor, meta, ref, state: bool) -> MetaPromptModel:
    clip, processor = fidelity_clip_and_processor
    cfg = meta["config"]["TRAINER"]["COCOOP"]
    config = get_method("cocoop").adapter_config(
        ["a photo of a {}."], n_ctx=cfg["N_CTX"], n_pro=0, ctx_init=cfg["CTX_INIT"]
    )
    model = MetaPromptModel(clip, config, processor)
    if state:
        tensors = {"text_prompts": ref["state.ctx"][None]} | {f"head.{k}": ref[f"state.{k}"] for k in HEAD_KEYS}
        model.load_prompt_state_dict(tensors)
    return model


def test_tokenizer_gives_the_official_ids(fidelity_clip_and_processor, meta, ref):
    for i, row in enumerate(
        fidelity_clip_and_processor[1].tokenizer(meta["prompted_texts"], padding=False)["input_ids"]
    ):
        assert (
            row == ref["tokenized_prompts"][i, : len(row)].tolist()
            and not ref["tokenized_prompts"][i, len(row) :].any()
        )


def test_the_adapter_has_the_official_tensors(fidelity_clip_and_processor, meta, ref):
    model = build(fidelity_clip_and_processor, meta, ref, state=False)
    assert_matches(model.text_prompts[0], ref["init.ctx"], "params", "init ctx")
    shapes = {k: tuple(v.shape) for k, v in model.prompt_state_dict().items()}
    assert shapes == {"text_prompts": (1, 4, 64)} | {f"head.{k}": tuple(ref[f"state.{k}"].shape) for k in HEAD_KEYS}
    official = [n.removeprefix("prompt_learner.") for n in meta["trainable_parameters"]]
    assert official == ["ctx", *HEAD_KEYS]


def test_eval_logits_match(fidelity_clip_and_processor, meta, ref):
    model = build(fidelity_clip_and_processor, meta, ref, state=True).eval()
    assert model.logit_scale.item() == pytest.approx(ref["logit_scale"].item(), abs=1e-4)
    with torch.no_grad():
        out = model(ref["images"], meta["classnames"], output_features=True)
        bias = model.adapters["default"].head.meta_net(out.image_embeds)
    assert_matches(out.frozen_image_features, ref["eval.image_features"], "features", "x")
    assert_matches(bias, ref["eval.meta_net_bias"], "features", "pi(x)")
    assert ref["eval.meta_net_bias"].abs().max() > 0.1  # the per-image shift is not negligible at this state
    assert_matches(out.logits, ref["eval.logits"], "logits", "eval logits")
    # The prompt-only path (no meta-network bias) differs: the head's logits are what the check above tests.
    assert (model.logit_scale * out.image_embeds @ out.text_embeds.t() - ref["eval.logits"]).abs().max() > 1e-2


def test_one_training_step_matches(fidelity_clip_and_processor, meta, ref):
    model = build(fidelity_clip_and_processor, meta, ref, state=True).train()
    opt = meta["config"]["OPTIM"]
    method = get_method("cocoop")
    params = method.trainable_parameters(model)
    assert len(params) == 5
    optimizer = torch.optim.SGD(params, lr=opt["LR"], momentum=opt["MOMENTUM"], weight_decay=opt["WEIGHT_DECAY"])
    step = TrainingStep(model, optimizer, meta["classnames"], method=method)
    result = step({"pixel_values": ref["images"], "labels": ref["labels"]}, record=True)
    (update,) = result.updates
    assert result.learning_rate == meta["step"]["lr"]
    assert result.loss == pytest.approx(meta["step"]["loss"], abs=1e-4)
    for official, mine in [("ctx", "text_prompts"), *((k, f"head.{k}") for k in HEAD_KEYS)]:
        squeeze = (lambda t: t[0]) if mine == "text_prompts" else (lambda t: t)
        assert_matches(squeeze(update.grads[mine]), ref[f"step.grad.{official}"], "gradients", f"grad {official}")
        assert_matches(squeeze(update.prompts[mine]), ref[f"step.param.{official}"], "params", f"{official} after")
        assert_matches(
            squeeze(update.momentum[mine]), ref[f"step.momentum.{official}"], "momentum", f"momentum {official}"
        )
