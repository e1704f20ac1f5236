"""`--method kgcoop` (docs/methods/kgcoop.md): its knob, its loss, and a run through `examples/train.py` that saves,
reloads and predicts. Fidelity to the official code is in tests/methods/test_fidelity_kgcoop.py."""

from __future__ import annotations

import importlib.util
import json
import math
import os

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file

from metaprompt_hf import MetaPromptModel
from metaprompt_hf.methods import get_method
from metaprompt_hf.methods.kgcoop import KgCoOpConfig
from metaprompt_hf.testing import tiny_clip

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
NAMES = ["red apple", "blue sky", "green leaf", "black cat"]


@pytest.mark.parametrize(
    "weight, error",
    [(math.nan, "finite"), (math.inf, "finite"), (-1.0, ">= 0"), (True, "finite number"), ("8", "finite number")],
)
def test_the_weight_is_validated(weight, error):
    with pytest.raises(ValueError, match=f"weight: expected .*{error}"):
        KgCoOpConfig(weight=weight)
    with pytest.raises(ValueError, match=r"method_args \(kgcoop\): weight"):
        get_method("kgcoop", {"weight": weight})


def test_the_adapter_is_coops_and_names_its_weight():
    method = get_method("kgcoop", {"weight": 2})
    config = method.adapter_config(["a photo of a {}"], n_ctx=4, n_pro=2, ctx_init="a photo of a")
    assert (config.n_ctx, config.n_pro, config.text_depth, config.coupled_branches) == (4, 0, 1, False)
    assert config.method_config == {"name": "kgcoop", "version": 1, "weight": 2.0}
    assert method.meta is None and method.eval_logits == "logits"


def test_the_loss_is_ce_plus_weight_times_one_minus_mean_cosine():
    clip, processor = tiny_clip(seed=0)
    method = get_method("kgcoop", {"weight": 3.0})
    torch.manual_seed(0)
    model = MetaPromptModel(clip, method.adapter_config(["a photo of a {}"], n_ctx=2, n_pro=0), processor)
    pixel_values = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    labels = torch.tensor([0, 2, 3])
    out = model(pixel_values, NAMES, **method.forward_kwargs())
    loss = method.loss(out, labels, model)
    with torch.no_grad():
        x = model.encode_frozen_image(pixel_values)
        t = model.encode_text(NAMES)
        h = model.encode_templates(NAMES)
    expected = F.cross_entropy(model.logit_scale * x @ t.t(), labels) + 3.0 * (1 - (t * h).sum(-1).mean())
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)
    assert loss.item() > F.cross_entropy(out.logits, labels).item()  # the term is not zero at a random init
    loss.backward()
    assert model.text_prompts.grad is not None and model.text_prompts.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="return_zero_shot=True"):
        method.loss(model(pixel_values, NAMES), labels, model)


def _examples_train():
    spec = importlib.util.spec_from_file_location("examples_train", os.path.join(ROOT, "examples", "train.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_kgcoop_trains_saves_reloads_and_predicts(tiny_clip_dir, domain_folder, tmp_path):
    out = tmp_path / "kgcoop"
    argv = ["--method", "kgcoop", "--method_args", "weight=4.0", "--n_ctx", "4"]
    argv += ["--base_model", tiny_clip_dir, "--dataset_name", domain_folder, "--shots", "2"]
    argv += ["--per_device_train_batch_size", "4", "--max_steps", "2", "--output_dir", str(out)]
    assert _examples_train().main(argv) == 0
    config = json.loads((out / "metaprompt_config.json").read_text())
    assert config["method_config"] == {"name": "kgcoop", "version": 1, "weight": 4.0}
    saved = load_file(out / "metaprompt_model.safetensors")
    assert set(saved) == {"text_prompts"} and saved["text_prompts"].shape[:2] == (1, 4)
    results = json.loads((out / "results.json").read_text())
    assert results and all(0 <= r["hm"] <= 100 for r in results)

    loaded = MetaPromptModel.from_pretrained(out)
    torch.testing.assert_close(loaded.text_prompts.detach(), saved["text_prompts"], rtol=0, atol=0)
    images = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    probs = loaded.predict(images, NAMES[:3])
    assert probs.shape == (3, 3) and torch.allclose(probs.sum(-1), torch.ones(3))
    with torch.no_grad():  # predict scores s<x, t>: the frozen image features against the learned class features
        logits = loaded.logit_scale * loaded.encode_frozen_image(images) @ loaded.encode_text(NAMES[:3]).t()
    torch.testing.assert_close(probs, logits.softmax(-1), rtol=0, atol=1e-6)


@pytest.mark.parametrize(
    "name, protocol, shots", [("kgcoop_b2n_vitb16", "base2new", 16), ("kgcoop_xd_vitb16", "cross_dataset", 4)]
)
def test_the_named_configs_hold_the_official_hyperparameters(name, protocol, shots):
    from metaprompt_hf.training import parse_args

    args = parse_args(["--config", os.path.join(ROOT, "examples", "configs", f"{name}.yaml")])
    assert (args.method, args.build_method().config.weight, args.protocol, args.shots) == (
        "kgcoop",
        8.0,
        protocol,
        shots,
    )
    assert (args.n_ctx, args.ctx_init, args.num_train_epochs, args.per_device_train_batch_size) == (
        4,
        "a photo of a",
        100,
        128,
    )
    assert (args.learning_rate, args.momentum, args.weight_decay) == (0.002, 0.9, 5e-4)
    assert (args.warmup_epochs, args.warmup_lr, args.lr_scheduler_type) == (1, 1e-5, "cosine")
