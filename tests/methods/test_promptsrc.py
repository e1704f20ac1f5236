"""`--method promptsrc` (docs/methods/promptsrc.md): its knobs, its loss, Gaussian prompt aggregation in the hooks,
and runs that save, reload and predict. Fidelity to the official code is in tests/methods/test_fidelity_promptsrc.py."""

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
from metaprompt_hf.methods import TrainerState, get_method
from metaprompt_hf.methods.promptsrc import (
    DIVERSITY_TEMPLATES,
    PromptSRC,
    PromptSRCConfig,
    diversity_features,
    gaussian_weight,
)
from metaprompt_hf.testing import tiny_clip
from metaprompt_hf.training import MetaPromptTrainingArguments, parse_args, train

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
NAMES = ["red apple", "blue sky", "green leaf", "black cat"]


@pytest.mark.parametrize(
    "field, value, error",
    [
        ("text_loss_weight", math.nan, "finite number"),
        ("image_loss_weight", -1.0, ">= 0"),
        ("logit_loss_weight", math.inf, "finite number"),
        ("gpa_mean", "15", "finite number"),
        ("gpa_std", 0.0, "> 0"),
        ("gpa", 1, "true or false"),
        ("textual_diversity", "yes", "true or false"),
    ],
)
def test_the_knobs_are_validated(field, value, error):
    with pytest.raises(ValueError, match=f"{field}: expected .*{error}"):
        PromptSRCConfig(**{field: value})
    with pytest.raises(ValueError, match=rf"method_args \(promptsrc\): {field}"):
        get_method("promptsrc", {field: value})


def test_the_defaults_are_the_official_base_to_new_config_and_the_adapter_is_ivlps():
    method = get_method("promptsrc")
    assert method.config.to_dict("promptsrc") == {
        "name": "promptsrc",
        "version": 1,
        "text_loss_weight": 25.0,
        "image_loss_weight": 10.0,
        "logit_loss_weight": 1.0,
        "gpa": True,
        "gpa_mean": 15.0,
        "gpa_std": 1.0,
        "textual_diversity": True,
    }
    config = method.adapter_config(["a {}"], n_ctx=4, n_pro=4, prompt_depth=9)
    assert (config.n_ctx, config.n_pro, config.text_depth, config.vision_depth) == (4, 4, 9, 9)
    assert not config.coupled_branches and method.meta is None
    assert len(DIVERSITY_TEMPLATES) == 60 and all(t.count("{}") == 1 for t in DIVERSITY_TEMPLATES)


def test_the_loss_is_the_documented_formula():
    clip, processor = tiny_clip(seed=0)
    method = get_method("promptsrc", {"text_loss_weight": 3.0, "image_loss_weight": 2.0, "logit_loss_weight": 0.5})
    torch.manual_seed(0)
    model = MetaPromptModel(clip, method.adapter_config(["a photo of a {}"], n_ctx=2, n_pro=2), processor)
    method.on_train_begin(model, NAMES)
    pixel_values = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    labels = torch.tensor([0, 2, 3])
    loss = method.loss(model(pixel_values, NAMES, **method.forward_kwargs()), labels, model)
    with torch.no_grad():
        x_tilde, x = model.encode_image(pixel_values), model.encode_frozen_image(pixel_values)
        t = model.encode_text(NAMES)
        # h̄: the 60 templates' features averaged before normalisation
        feats = [model._text_features(model._pad(model._tokenize(NAMES, False, template=tpl)), None, False)
                 for tpl in DIVERSITY_TEMPLATES]  # fmt: skip
        h = F.normalize(torch.stack(feats).mean(0), dim=-1)
    s = model.logit_scale
    z, z_zs = s * x_tilde @ t.t(), s * x @ h.t()
    kl = (z_zs.softmax(1) * (z_zs.log_softmax(1) - z.log_softmax(1))).sum() / z.numel()
    expected = F.cross_entropy(z, labels) + 3.0 * (t - h).abs().mean() + 2.0 * (x_tilde - x).abs().mean() + 0.5 * kl
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    assert torch.allclose(h, diversity_features(model, NAMES, DIVERSITY_TEMPLATES), atol=1e-6)
    loss.backward()
    assert model.text_prompts.grad.abs().sum() > 0 and model.vision_prompts.grad.abs().sum() > 0
    # without textual diversity, h̄ comes from the adapter's own templates
    plain = get_method("promptsrc", {"textual_diversity": False})
    own = plain.frozen_text_features(model, NAMES)
    assert torch.allclose(own, diversity_features(model, NAMES, ["a photo of a {}"]), atol=1e-6)
    with pytest.raises(RuntimeError, match="on_train_begin"):
        plain.loss(model(pixel_values, NAMES, return_zero_shot=True), labels, model)


def _model_with_prompts(value: float) -> MetaPromptModel:
    clip, processor = tiny_clip(seed=0)
    model = MetaPromptModel(clip, get_method("promptsrc").adapter_config(["a {}"], n_ctx=2, n_pro=2), processor)
    with torch.no_grad():
        model.text_prompts.fill_(value)
        model.vision_prompts.fill_(-value)
    return model


def test_gpa_hooks_weight_each_epoch_by_the_gaussian():
    method = get_method("promptsrc", {"gpa_mean": 2.0, "gpa_std": 1.0})
    model = _model_with_prompts(0.0)
    method.on_train_begin(model, NAMES)
    values = [1.0, 2.0, 4.0]
    for epoch, value in enumerate(values):
        with torch.no_grad():
            model.text_prompts.fill_(value)
            model.vision_prompts.fill_(-value)
        method.on_epoch_end(TrainerState(epoch + 1, epoch, 3, 0.0, 0.0, model=model))
    method.on_train_end(TrainerState(3, 2, 3, 0.0, 0.0, model=model))
    w = [gaussian_weight(e, 2.0, 1.0) for e in (1, 2, 3)]
    expected = sum(wi * v for wi, v in zip(w, values)) / sum(w)
    assert torch.allclose(model.text_prompts, torch.full_like(model.text_prompts, expected))
    assert torch.allclose(model.vision_prompts, torch.full_like(model.vision_prompts, -expected))
    # gpa=false keeps the last prompts; far tails of the Gaussian still give a weighted mean (float64 sums)
    off = get_method("promptsrc", {"gpa": False})
    off.on_train_begin(model, NAMES)
    off.on_epoch_end(TrainerState(1, 0, 1, 0.0, 0.0, model=model))
    off.on_train_end(TrainerState(1, 0, 1, 0.0, 0.0, model=model))
    assert torch.allclose(model.text_prompts, torch.full_like(model.text_prompts, expected))
    # far tails: both weights underflow float64 (exp(-1248)), their ratio exp(3997/3200) is kept
    tails = get_method("promptsrc", {"gpa_mean": 2000.0, "gpa_std": 40.0})
    tails.on_train_begin(model, NAMES)
    assert gaussian_weight(1, 2000.0, 40.0) == 0.0
    for epoch, value in enumerate((1.0, 3.0)):
        with torch.no_grad():
            model.text_prompts.fill_(value)
        tails.on_epoch_end(TrainerState(epoch + 1, epoch, 2, 0.0, 0.0, model=model))
    tails.on_train_end(TrainerState(2, 1, 2, 0.0, 0.0, model=model))
    ratio = math.exp((1999**2 - 1998**2) / (2 * 40.0**2))
    assert model.text_prompts.flatten()[0].item() == pytest.approx((1.0 + 3.0 * ratio) / (1 + ratio), rel=1e-6)


class _Spy(PromptSRC):
    """PromptSRC recording the prompts each epoch-end hook saw."""

    def __init__(self, *a, **k) -> None:
        super().__init__(*a, **k)
        self.seen: list[tuple[int, dict[str, torch.Tensor]]] = []

    def on_epoch_end(self, state: TrainerState) -> None:
        self.seen.append((state.epoch, {k: v.clone() for k, v in state.model.prompt_state_dict().items()}))
        super().on_epoch_end(state)


@pytest.mark.slow
def test_a_run_saves_the_gaussian_aggregate_of_its_epochs(tiny_clip_dir, domain_folder, tmp_path):
    args = MetaPromptTrainingArguments(
        method="promptsrc", method_args="gpa_mean=2,gpa_std=1", base_model=tiny_clip_dir, dataset_name=domain_folder,
        output_dir=str(tmp_path / "run"), shots=2, per_device_train_batch_size=4, num_train_epochs=3,
        learning_rate=0.05, warmup_epochs=0, do_eval=False,
    )  # fmt: skip
    spy = _Spy("promptsrc", {"gpa_mean": 2, "gpa_std": 1})
    train(args, method=spy)
    assert [e for e, _ in spy.seen] == [0, 1, 2]
    w = [gaussian_weight(e + 1, 2.0, 1.0) for e, _ in spy.seen]
    saved = load_file(tmp_path / "run" / "metaprompt_model.safetensors")
    for key in ("text_prompts", "vision_prompts"):
        mean = sum(wi * p[key].double() for wi, (_, p) in zip(w, spy.seen)) / sum(w)
        torch.testing.assert_close(saved[key], mean.float(), rtol=0, atol=1e-6)
        assert not torch.allclose(saved[key], spy.seen[-1][1][key], atol=1e-5)


def _examples_train():
    spec = importlib.util.spec_from_file_location("examples_train", os.path.join(ROOT, "examples", "train.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_promptsrc_trains_saves_reloads_and_predicts(tiny_clip_dir, domain_folder, tmp_path):
    out = tmp_path / "promptsrc"
    argv = ["--method", "promptsrc", "--method_args", "gpa_mean=1,image_loss_weight=5", "--n_ctx", "2"]
    argv += ["--n_pro", "2", "--prompt_depth", "2", "--base_model", tiny_clip_dir, "--dataset_name", domain_folder]
    argv += ["--shots", "2", "--per_device_train_batch_size", "4", "--max_steps", "2", "--output_dir", str(out)]
    assert _examples_train().main(argv) == 0
    config = json.loads((out / "metaprompt_config.json").read_text())
    assert config["method_config"]["name"] == "promptsrc" and config["method_config"]["image_loss_weight"] == 5.0
    saved = load_file(out / "metaprompt_model.safetensors")
    assert saved["text_prompts"].shape[:2] == (2, 2) and saved["vision_prompts"].shape[:2] == (2, 2)
    assert all(0 <= r["hm"] <= 100 for r in json.loads((out / "results.json").read_text()))

    loaded = MetaPromptModel.from_pretrained(out)
    images = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    probs = loaded.predict(images, NAMES[:3])
    assert probs.shape == (3, 3) and torch.allclose(probs.sum(-1), torch.ones(3))
    with torch.no_grad():  # predict scores s<x̃, t>
        logits = loaded.logit_scale * loaded.encode_image(images) @ loaded.encode_text(NAMES[:3]).t()
    torch.testing.assert_close(probs, logits.softmax(-1), rtol=0, atol=1e-6)


@pytest.mark.parametrize(
    "name, protocol, depth, epochs, gpa",
    [
        ("promptsrc_b2n_vitb16", "base2new", 9, 20, (15.0, 1.0)),
        ("promptsrc_xd_vitb16", "cross_dataset", 3, 20, (6.0, 10.0)),
    ],
)
def test_the_named_configs_hold_the_official_hyperparameters(name, protocol, depth, epochs, gpa):
    args = parse_args(["--config", os.path.join(ROOT, "examples", "configs", f"{name}.yaml")])
    cfg = args.build_method().config
    assert (args.method, args.protocol, args.prompt_depth, args.num_train_epochs) == (
        "promptsrc",
        protocol,
        depth,
        epochs,
    )
    assert (cfg.text_loss_weight, cfg.image_loss_weight, cfg.logit_loss_weight) == (25.0, 10.0, 1.0)
    assert (cfg.gpa_mean, cfg.gpa_std) == gpa
    assert (args.n_ctx, args.n_pro, args.ctx_init, args.per_device_train_batch_size) == (4, 4, "a photo of a", 4)
    assert (args.learning_rate, args.momentum, args.weight_decay, args.warmup_epochs) == (0.0025, 0.9, 5e-4, 1)
