"""`--method cocoop` (docs/methods/cocoop.md): its adapter (context + meta-network head), its logits and gradients
against the formula, and a run through `examples/train.py` that saves, reloads and predicts as the trained model did.
Fidelity to the official code is in tests/methods/test_fidelity_cocoop.py."""

from __future__ import annotations

import importlib.util
import json
import os

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file

from metaprompt_hf import MetaPromptConfig, MetaPromptModel
from metaprompt_hf.methods import get_method
from metaprompt_hf.testing import tiny_clip

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
NAMES = ["red apple", "blue sky", "green leaf", "black cat"]
HEAD_KEYS = [f"head.meta_net.linear{i}.{w}" for i in (1, 2) for w in ("weight", "bias")]


def cocoop_model(class_chunk_size: int = 128) -> MetaPromptModel:
    clip, processor = tiny_clip(seed=0)
    config = get_method("cocoop").adapter_config(["a photo of a {}."], n_ctx=3, n_pro=2)
    torch.manual_seed(0)
    model = MetaPromptModel(clip, config, processor, class_chunk_size=class_chunk_size)
    with torch.no_grad():  # a meta-network whose bias is not small, so the per-image shift matters
        for p in model.adapters["default"].head.parameters():
            p.normal_(0, 0.5)
        model.adapters["default"].head.meta_net.linear1.bias.fill_(1.0)  # its one hidden unit (16 // 16) is active
    return model


def manual_logits(model: MetaPromptModel, pixel_values: torch.Tensor) -> torch.Tensor:
    """s<x_b, t_c(θ_t + π(x_b))>, one image at a time, no checkpointing."""
    x = model.encode_frozen_image(pixel_values)
    bias = model.adapters["default"].head.meta_net(x)
    rows = [
        model.logit_scale * x[b] @ model.encode_text(NAMES, model.text_prompts + bias[b]).t() for b in range(len(x))
    ]
    return torch.stack(rows)


def test_the_adapter_is_a_layer0_context_with_a_meta_network():
    config = get_method("cocoop").adapter_config(["a photo of a {}."], n_ctx=4, n_pro=2)
    assert (config.n_ctx, config.n_pro, config.text_depth, config.coupled_branches) == (4, 0, 1, False)
    assert config.method_config == {"name": "cocoop", "version": 1}
    model = cocoop_model()
    shapes = {k: tuple(v.shape) for k, v in model.prompt_state_dict().items()}
    # tiny CLIP: projection 16 → meta-network 16 → 1 → 32 (the text width)
    assert shapes == {"text_prompts": (1, 3, 32), HEAD_KEYS[0]: (1, 16), HEAD_KEYS[1]: (1,), HEAD_KEYS[2]: (32, 1),
                      HEAD_KEYS[3]: (32,)}  # fmt: skip
    assert get_method("cocoop").trainable_parameters(model) == model.prompt_parameters()


@pytest.mark.parametrize(
    "fields",
    [dict(text_depth=2), dict(n_ctx=0), dict(n_pro=2), dict(coupled_branches=True)],
    ids=["deep-text", "no-context", "vision-prompts", "coupled"],
)
def test_the_head_refuses_an_adapter_that_is_not_a_layer0_context(fields):
    clip, processor = tiny_clip(seed=0)
    values = dict(n_ctx=2, n_pro=0, text_depth=1, coupled_branches=False) | fields
    config = MetaPromptConfig(**values, method_config={"name": "cocoop", "version": 1})
    with pytest.raises(ValueError, match="cocoop: the adapter is a layer-0 text context"):
        MetaPromptModel(clip, config, processor)


def test_cocoop_on_siglip_adds_its_logit_bias(siglip_and_processor, tmp_path):
    """Any registered dual encoder: on SigLIP (no projection) π reads the vision width, and the logits carry the
    base model's bias; the adapter saves and reloads."""
    clip, processor = siglip_and_processor
    config = get_method("cocoop").adapter_config(["a photo of a {}."], n_ctx=2, n_pro=0)
    torch.manual_seed(0)
    model = MetaPromptModel(clip, config, processor).eval()
    pixel_values = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        logits = model(pixel_values, NAMES).logits
        x = model.encode_frozen_image(pixel_values)
        bias = model.adapters["default"].head.meta_net(x)
        rows = [
            model.logit_scale * x[b] @ model.encode_text(NAMES, model.text_prompts + bias[b]).t() for b in range(2)
        ]
    torch.testing.assert_close(logits, torch.stack(rows) + model.logit_bias, rtol=0, atol=1e-5)
    model.save_pretrained(tmp_path / "a")
    loaded = MetaPromptModel.from_pretrained(tmp_path / "a", base_model=clip, processor=processor)
    torch.testing.assert_close(loaded.predict(pixel_values, NAMES), model.predict(pixel_values, NAMES), rtol=0, atol=0)


@pytest.mark.parametrize("chunk", [128, 8, 3], ids=["one-call", "two-calls", "class-chunks"])
def test_logits_and_gradients_equal_the_formula(chunk):
    """The head encodes several images' contexts per text-encoder call (at most `class_chunk_size` rows: 3 images
    × 4 classes in one call, 2 + 1 images in two calls with the first checkpointed) or, with more classes than
    that, each image alone over class chunks: the values and gradients of the per-image formula in every case."""
    model = cocoop_model(class_chunk_size=chunk).train()
    pixel_values = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    labels = torch.tensor([0, 2, 3])
    method = get_method("cocoop")
    out = model(pixel_values, NAMES, **method.forward_kwargs())
    loss = method.loss(out, labels, model)
    params = method.trainable_parameters(model)
    grads = torch.autograd.grad(loss, params)
    expected = manual_logits(model, pixel_values)
    torch.testing.assert_close(out.logits, expected, rtol=0, atol=1e-5)
    expected_grads = torch.autograd.grad(F.cross_entropy(expected, labels), params)
    for p, g, e in zip(model.prompt_state_dict(), grads, expected_grads):
        assert e.abs().sum() > 0, p
        torch.testing.assert_close(g, e, rtol=1e-5, atol=1e-6, msg=p)
    # the per-image shift changes the logits: the context alone gives other numbers
    assert (expected - model.logit_scale * out.image_embeds @ out.text_embeds.t()).abs().max() > 1e-2


def _examples_train():
    spec = importlib.util.spec_from_file_location("examples_train", os.path.join(ROOT, "examples", "train.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_cocoop_trains_saves_reloads_and_predicts(tiny_clip_dir, domain_folder, tmp_path):
    out = tmp_path / "cocoop"
    argv = ["--method", "cocoop", "--n_ctx", "4", "--base_model", tiny_clip_dir, "--dataset_name", domain_folder]
    argv += ["--shots", "2", "--per_device_train_batch_size", "4", "--max_steps", "3", "--max_eval_samples", "12"]
    argv += ["--output_dir", str(out)]
    train = _examples_train()
    trained, save = [], train.save_adapter
    train.save_adapter = lambda run, model: (trained.append(model), save(run, model))[1]
    assert train.main(argv) == 0
    config = json.loads((out / "metaprompt_config.json").read_text())
    assert config["method_config"] == {"name": "cocoop", "version": 1}
    saved = load_file(out / "metaprompt_model.safetensors")
    assert set(saved) == {"text_prompts", *HEAD_KEYS} and saved["text_prompts"].shape[:2] == (1, 4)
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
    with torch.no_grad():
        x = loaded.encode_frozen_image(images)
        bias = loaded.adapters["default"].head.meta_net(x)
        rows = [
            loaded.logit_scale * x[b] @ loaded.encode_text(NAMES[:3], loaded.text_prompts + bias[b]).t()
            for b in range(3)
        ]
    torch.testing.assert_close(probs, torch.stack(rows).softmax(-1), rtol=0, atol=1e-6)


@pytest.mark.parametrize("name, protocol", [("cocoop_b2n_vitb16", "base2new"), ("cocoop_xd_vitb16", "cross_dataset")])
def test_the_named_configs_hold_the_official_hyperparameters(name, protocol):
    from metaprompt_hf.training import parse_args

    args = parse_args(["--config", os.path.join(ROOT, "examples", "configs", f"{name}.yaml")])
    assert (args.method, args.protocol, args.shots, args.n_ctx, args.ctx_init) == (
        "cocoop",
        protocol,
        16,
        4,
        "a photo of a",
    )
    assert (args.num_train_epochs, args.per_device_train_batch_size, args.per_device_eval_batch_size) == (10, 1, 100)
    assert (args.learning_rate, args.momentum, args.weight_decay) == (0.002, 0.9, 5e-4)
    assert (args.warmup_epochs, args.warmup_lr, args.lr_scheduler_type, args.crop_scale_min) == (
        1,
        1e-5,
        "cosine",
        0.08,
    )


@pytest.mark.slow
def test_a_resumed_cocoop_run_ends_with_the_same_adapter(run_args, tmp_path):
    """The meta-network is checkpointed and its optimizer state restored with the context's."""
    from metaprompt_hf.training import train

    common = dict(method="cocoop", n_ctx=2, n_pro=0, max_steps=5, checkpointing_steps="3", shots=4)
    common |= dict(per_device_train_batch_size=4, do_eval=False)
    train(run_args(tmp_path / "whole", **common))

    def crash(state):
        if state.global_step == 4:
            raise RuntimeError("simulated crash")

    with pytest.raises(RuntimeError, match="simulated crash"):
        train(run_args(tmp_path / "crashed", **common), callbacks=[crash])
    train(run_args(tmp_path / "crashed", resume_from_checkpoint="latest", **common))
    whole = load_file(tmp_path / "whole" / "metaprompt_model.safetensors")
    resumed = load_file(tmp_path / "crashed" / "metaprompt_model.safetensors")
    assert set(whole) == {"text_prompts", *HEAD_KEYS}
    for key in whole:
        assert torch.equal(whole[key], resumed[key]), key
