"""`--method maple` (docs/methods/maple.md): its adapter (deep text prompts + the coupling functions of its head), the
vision prompts projected from the text prompts, logits and gradients against the formula, and a run through
`examples/train.py` that saves, reloads and predicts as the trained model did."""

from __future__ import annotations

import importlib.util
import json
import os

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file

from metaprompt_hf import MetaPromptModel
from metaprompt_hf.methods import get_method
from metaprompt_hf.testing import tiny_clip

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
NAMES = ["red apple", "blue sky", "green leaf", "black cat"]


def head_keys(depth: int) -> set[str]:
    keys = {"head.proj.weight", "head.proj.bias"}
    return keys | {f"head.compound_prompt_projections.{i}.{w}" for i in range(depth - 1) for w in ("weight", "bias")}


def maple_model(depth: int = 2) -> MetaPromptModel:
    clip, processor = tiny_clip(seed=0)
    config = get_method("maple").adapter_config(["a photo of a {}."], n_ctx=2, n_pro=3, prompt_depth=depth)
    torch.manual_seed(0)
    model = MetaPromptModel(clip, config, processor)
    with torch.no_grad():  # projections far from their init, so the vision prompts matter
        for p in model.adapters["default"].head.parameters():
            p.normal_(0, 0.5)
    return model


def test_the_adapter_is_deep_text_prompts_with_one_projection_per_layer():
    config = get_method("maple").adapter_config(["a photo of a {}."], n_ctx=2, n_pro=3, prompt_depth=2)
    assert (config.n_ctx, config.n_pro, config.text_depth, config.coupled_branches) == (2, 0, 2, False)
    assert config.method_config == {"name": "maple", "version": 1}
    model = maple_model()
    shapes = {k: tuple(v.shape) for k, v in model.prompt_state_dict().items()}
    d_text, d_vision = 32, model.backbone.vision_hidden_size
    assert shapes == {"text_prompts": (2, 2, d_text), **{k: (d_vision, d_text) if k.endswith("weight") else (d_vision,)
                                                         for k in head_keys(2)}}  # fmt: skip
    assert get_method("maple").trainable_parameters(model) == model.prompt_parameters()
    fresh = MetaPromptModel(tiny_clip(seed=0)[0], config)
    head = fresh.adapters["default"].head
    # the official `_get_clones`: every compound projection starts as a copy of one initialised Linear
    assert not torch.equal(head.proj.weight, head.compound_prompt_projections[0].weight)


def test_the_head_refuses_an_adapter_with_its_own_vision_prompts():
    clip, processor = tiny_clip(seed=0)
    config = get_method("ivlp").adapter_config(["a photo of a {}."], n_ctx=2, n_pro=2, prompt_depth=2)
    config.method_config = {"name": "maple", "version": 1}
    with pytest.raises(ValueError, match="maple: .*n_pro 2"):
        MetaPromptModel(clip, config, processor)


def test_maple_on_siglip_projects_its_vision_prompts_and_adds_the_logit_bias(siglip_and_processor, tmp_path):
    """Any registered dual encoder: on SigLIP the coupling functions map to its vision width, the prompt rows are
    dropped before its pooling head, and the logits carry the base model's bias; the adapter saves and reloads."""
    clip, processor = siglip_and_processor
    config = get_method("maple").adapter_config(["a photo of a {}."], n_ctx=2, n_pro=0, prompt_depth=2)
    torch.manual_seed(0)
    model = MetaPromptModel(clip, config, processor).eval()
    head = model.adapters["default"].head
    assert head.proj.weight.shape == (model.backbone.vision_hidden_size, model.backbone.text_hidden_size)
    pixel_values = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        logits = model(pixel_values, NAMES).logits
        vision = torch.stack(
            [head.proj(model.text_prompts[0]), head.compound_prompt_projections[0](model.text_prompts[1])]
        )
        x, t = model.encode_image(pixel_values, vision), model.encode_text(NAMES)
    torch.testing.assert_close(logits, model.logit_scale * x @ t.t() + model.logit_bias, rtol=0, atol=1e-5)
    model.save_pretrained(tmp_path / "a")
    loaded = MetaPromptModel.from_pretrained(tmp_path / "a", base_model=clip, processor=processor)
    torch.testing.assert_close(loaded.predict(pixel_values, NAMES), model.predict(pixel_values, NAMES), rtol=0, atol=0)


def test_logits_and_gradients_equal_the_formula():
    model = maple_model()
    head = model.adapters["default"].head
    images = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    labels = torch.tensor([0, 2, 3])
    out = model(images, NAMES, labels=labels)
    grads = torch.autograd.grad(out.loss, model.prompt_parameters())

    theta = model.text_prompts
    vision = torch.stack([head.proj(theta[0]), head.compound_prompt_projections[0](theta[1])])
    x = model.encode_image(images, vision)
    t = model.encode_text(NAMES, theta)
    logits = model.logit_scale * x @ t.t()
    expected = torch.autograd.grad(F.cross_entropy(logits, labels), model.prompt_parameters())
    torch.testing.assert_close(out.logits, logits, rtol=0, atol=1e-5)
    for g, e in zip(grads, expected):
        assert e.abs().sum() > 0
        torch.testing.assert_close(g, e, rtol=1e-5, atol=1e-6)
    # the projected vision prompts change the image features: the frozen image gives other logits
    assert (logits - model.logit_scale * model.encode_frozen_image(images) @ t.t()).abs().max() > 1e-2
    # every pass of the image (the batched pair, the features) uses the projected prompts
    with torch.no_grad():
        x_pair = model.encode_image_pair(images)[1]
        feats = model(images, NAMES, output_features=True, return_zero_shot=True)
    torch.testing.assert_close(x_pair, x.detach(), rtol=0, atol=1e-5)
    torch.testing.assert_close(feats.logits, logits.detach(), rtol=0, atol=1e-5)
    torch.testing.assert_close(F.normalize(feats.image_features, dim=-1), x.detach(), rtol=0, atol=1e-5)


def _examples_train():
    spec = importlib.util.spec_from_file_location("examples_train", os.path.join(ROOT, "examples", "train.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_maple_trains_saves_reloads_and_predicts(tiny_clip_dir, domain_folder, tmp_path):
    out = tmp_path / "maple"
    argv = ["--method", "maple", "--n_ctx", "2", "--prompt_depth", "2", "--base_model", tiny_clip_dir]
    argv += ["--dataset_name", domain_folder, "--shots", "2", "--per_device_train_batch_size", "4"]
    argv += ["--max_steps", "3", "--max_eval_samples", "12", "--output_dir", str(out)]
    train = _examples_train()
    trained, save = [], train.save_adapter
    train.save_adapter = lambda run, model: (trained.append(model), save(run, model))[1]
    assert train.main(argv) == 0
    config = json.loads((out / "metaprompt_config.json").read_text())
    assert config["method_config"] == {"name": "maple", "version": 1}
    saved = load_file(out / "metaprompt_model.safetensors")
    assert set(saved) == {"text_prompts", *head_keys(2)} and saved["text_prompts"].shape[:2] == (2, 2)
    results = json.loads((out / "results.json").read_text())
    assert results and all(0 <= r["hm"] <= 100 for r in results)

    loaded = MetaPromptModel.from_pretrained(out)
    for key, value in saved.items():
        torch.testing.assert_close(loaded.prompt_state_dict()[key], value, rtol=0, atol=0, msg=key)
    (model,) = trained
    for key, value in model.prompt_state_dict().items():  # the trained model's tensors are the saved ones
        torch.testing.assert_close(value.cpu(), saved[key], rtol=0, atol=0, msg=key)
    images = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    probs = loaded.predict(images, NAMES[:3])
    torch.testing.assert_close(probs, model.eval().predict(images, NAMES[:3]), rtol=0, atol=1e-6)
    # and not the prompts-only logits: the reloaded head projects the vision prompts
    with torch.no_grad():
        plain = (loaded.logit_scale * loaded.encode_frozen_image(images) @ loaded.encode_text(NAMES[:3]).t()).softmax(
            -1
        )
    assert (probs - plain).abs().max() > 1e-4


@pytest.mark.parametrize("name, protocol, epochs, lr, depth", [("maple_b2n_vitb16", "base2new", 5, 0.0035, 9),
                                                                ("maple_xd_vitb16", "cross_dataset", 2, 0.0026, 3)])  # fmt: skip
def test_the_named_configs_hold_the_official_hyperparameters(name, protocol, epochs, lr, depth):
    from metaprompt_hf.training import parse_args

    args = parse_args(["--config", os.path.join(ROOT, "examples", "configs", f"{name}.yaml")])
    assert (args.method, args.protocol, args.shots, args.n_ctx, args.prompt_depth) == ("maple", protocol, 16, 2, depth)
    assert (args.num_train_epochs, args.per_device_train_batch_size, args.per_device_eval_batch_size) == (
        epochs,
        4,
        100,
    )
    assert (args.learning_rate, args.momentum, args.weight_decay) == (lr, 0.9, 5e-4)
    assert (args.warmup_epochs, args.warmup_lr, args.lr_scheduler_type, args.crop_scale_min) == (
        1,
        1e-5,
        "cosine",
        0.08,
    )
