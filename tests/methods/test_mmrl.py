"""`--method mmrl` (docs/methods/mmrl.md): its adapter (the head's representation tokens, projections and proj_rep,
no prompts), the inserting injection, the loss against its formula, the decoupled evaluation (fused logits only on
the classes trained on), and runs through `examples/train.py` on every protocol that save, reload and predict as
the trained model did."""

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
from metaprompt_hf.modeling.heads import classes_seen, seen_classes
from metaprompt_hf.modeling.mmrl_head import LOGIT_SCALE
from metaprompt_hf.testing import tiny_clip

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
NAMES = ["red apple", "blue sky", "green leaf", "black cat"]
KNOBS = {"n_rep_tokens": 3, "rep_dim": 16}


def head_keys(layers: int) -> set[str]:
    keys = {"head.compound_rep_tokens", "head.proj_rep"}
    return keys | {
        f"head.compound_rep_tokens_{t}proj.{k}.{w}"
        for t in ("r2v", "r2t")
        for k in range(layers)
        for w in ("weight", "bias")
    }


def mmrl_model(**knobs) -> MetaPromptModel:
    clip, processor = tiny_clip(seed=0)
    config = get_method("mmrl", KNOBS | knobs).adapter_config(["a photo of a {}."], n_ctx=4, n_pro=4)
    torch.manual_seed(0)
    model = MetaPromptModel(clip, config, processor)
    with torch.no_grad():  # far from the init, so the inserted tokens move the features
        for p in model.adapters["default"].head.parameters():
            p.normal_(0, 0.3)
    return model


def test_the_adapter_is_the_head_only_with_one_projection_per_layer_and_tower():
    config = get_method("mmrl", KNOBS).adapter_config(["a {}"], n_ctx=4, n_pro=4, prompt_depth=3)
    assert (config.n_ctx, config.n_pro, config.coupled_branches) == (0, 0, False)
    assert config.method_config == {"name": "mmrl", "version": 1, "alpha": 0.7, "reg_weight": 1.0,
                                    "n_rep_tokens": 3, "rep_dim": 16, "rep_layers": None}  # fmt: skip
    model = mmrl_model()
    head = model.adapters["default"].head
    # default layers: the upper half of the shallower tower (the tiny CLIP's vision tower has 2 layers) = [1, 2]
    assert head.layers == [0, 1]
    shapes = {k: tuple(v.shape) for k, v in model.prompt_state_dict().items()}
    assert set(shapes) == head_keys(2)
    assert shapes["head.proj_rep"] == (48, 16) and shapes["head.compound_rep_tokens_r2tproj.1.weight"] == (32, 16)
    method = get_method("mmrl")
    assert method.trains and method.optimizer == "adamw"
    assert method.trainable_parameters(model) == model.prompt_parameters() == list(head.parameters())
    fresh = MetaPromptModel(tiny_clip(seed=0)[0], config).adapters["default"].head
    # the official `_get_clones`: every layer's projection starts as a copy of one initialised Linear
    torch.testing.assert_close(
        fresh.compound_rep_tokens_r2vproj[0].weight, fresh.compound_rep_tokens_r2vproj[1].weight
    )


@pytest.mark.parametrize(
    "knobs, error",
    [
        ({"alpha": 1.5}, r"alpha: expected 0.0 <= alpha <= 1.0"),
        ({"rep_layers": [3, 2]}, r"rep_layers: expected increasing layer numbers"),
        ({"n_rep_tokens": 0}, r"n_rep_tokens: expected an integer >= 1"),
    ],
)
def test_bad_knobs_are_refused_by_name(knobs, error):
    with pytest.raises(ValueError, match=error):
        get_method("mmrl", knobs)


def test_layers_beyond_the_base_model_and_other_backbones_are_refused(siglip_and_processor):
    clip, processor = tiny_clip(seed=0)
    config = get_method("mmrl", {"rep_layers": [2, 3]}).adapter_config(["a {}"], n_ctx=0, n_pro=0)
    with pytest.raises(ValueError, match=r"method_config.rep_layers: expected increasing layer numbers in 1..2"):
        MetaPromptModel(clip, config, processor)  # the vision tower has 2 layers
    siglip, sig_processor = siglip_and_processor
    with pytest.raises(ValueError, match="mmrl: the head reads CLIP's vision rows; base model type 'siglip'"):
        MetaPromptModel(siglip, get_method("mmrl").adapter_config(["a {}"], n_ctx=0, n_pro=0), sig_processor)
    with pytest.raises(ValueError, match="ctx_init: mmrl has no learned text context"):
        get_method("mmrl").adapter_config(["a {}"], n_ctx=2, n_pro=0, ctx_init="a photo")


def test_inserted_tokens_leave_every_other_call_unchanged():
    """The hooks act only inside the head's calls: the frozen encoders give the stock transformers features."""
    model = mmrl_model().eval()
    clip = model.base_model
    images = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    ids = model.processor.tokenizer(NAMES, padding=True, return_tensors="pt")
    with torch.no_grad():
        out = model(images, NAMES, return_zero_shot=True)
        x = F.normalize(clip.visual_projection(clip.vision_model(pixel_values=images).pooler_output), dim=-1)
        h = F.normalize(clip.text_projection(clip.text_model(**ids).pooler_output), dim=-1)
        template = model.encode_templates(NAMES, ["{}"])
    torch.testing.assert_close(out.frozen_image_embeds, x, rtol=0, atol=1e-6)
    torch.testing.assert_close(template, h, rtol=0, atol=1e-5)
    assert (out.image_embeds - x).abs().max() > 1e-3  # while the head's own pass sees its tokens


def test_loss_logits_and_gradients_equal_the_formula():
    model = mmrl_model()
    head = model.adapters["default"].head
    images = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    labels = torch.tensor([0, 2, 3])
    method = get_method("mmrl", KNOBS | {"reg_weight": 0.5})
    out = model(images, NAMES, **method.forward_kwargs())
    loss = method.loss(out, labels, model)
    grads = torch.autograd.grad(loss, method.trainable_parameters(model))
    assert all(g.abs().sum() > 0 for g in grads)  # every tensor of the head is trained

    x_tilde, t = out.image_embeds, out.text_embeds
    x, h = model.encode_frozen_image(images), model.encode_templates(NAMES)
    z, z_rep = out.logits_class, out.logits_rep
    torch.testing.assert_close(z, LOGIT_SCALE * x_tilde @ t.t(), rtol=0, atol=1e-5)
    expected = 0.7 * F.cross_entropy(z, labels) + 0.3 * F.cross_entropy(z_rep, labels)
    expected = expected + 0.5 * (1 - (x_tilde * x).sum(-1).mean()) + 0.5 * (1 - (t * h).sum(-1).mean())
    torch.testing.assert_close(loss, expected, rtol=0, atol=1e-5)
    # forward(labels=) gives the adapter's loss with its own weights (reg_weight 1.0 from the config)
    with_labels = model(images, NAMES, labels=labels)
    assert with_labels.loss.item() == pytest.approx(
        (0.7 * F.cross_entropy(z, labels) + 0.3 * F.cross_entropy(z_rep, labels)
         + (1 - (x_tilde * x).sum(-1).mean()) + (1 - (t * h).sum(-1).mean())).item(), abs=1e-5)  # fmt: skip
    assert head.alpha == 0.7


def test_fused_logits_only_on_seen_classes():
    model = mmrl_model().eval()
    images = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    assert not classes_seen()
    with torch.no_grad():
        new = model(images, NAMES)
        with seen_classes():
            assert classes_seen()
            base = model(images, NAMES)
        probs = model.predict(images, NAMES)
    assert not classes_seen()
    torch.testing.assert_close(new.logits, new.logits_class, rtol=0, atol=0)
    torch.testing.assert_close(base.logits, 0.7 * base.logits_class + 0.3 * base.logits_rep, rtol=0, atol=1e-5)
    assert (base.logits - new.logits).abs().max() > 1e-2
    torch.testing.assert_close(probs, new.logits.softmax(-1), rtol=0, atol=1e-6)  # predict: any class names


def test_the_protocols_say_which_sets_are_seen(domain_folder):
    from metaprompt_hf.data.loading import load_image_classification
    from metaprompt_hf.protocols import get_protocol

    data = load_image_classification(domain_folder)
    b2n = get_protocol("base2new").prepare(data, shots=1, seed=1)
    assert b2n.eval_sets["base"].seen_classes and not b2n.eval_sets["new"].seen_classes
    dg = get_protocol("dg").prepare(data, shots=1, seed=1, target_domain="sketch")
    assert not dg.eval_sets["target"].seen_classes
    # cross-dataset: only the source (ImageNet) is scored as seen, as the official test() tells it by name; a target,
    # even one with a train split, is not
    xd = get_protocol("cross_dataset").prepare(data, shots=1, seed=1)
    assert not xd.eval_sets["all"].seen_classes
    data.name = "/data/imagenet"
    assert get_protocol("cross_dataset").prepare(data, shots=1, seed=1).eval_sets["all"].seen_classes


def test_evaluation_scores_the_fusion_on_seen_sets_only(monkeypatch):
    from metaprompt_hf import scoring
    from metaprompt_hf.protocols.base import EvalSet

    seen = []

    class Model(torch.nn.Module):
        def forward(self, pixel_values, class_names, **kw):
            seen.append(classes_seen())
            return type("Out", (), {"logits": torch.zeros(pixel_values.shape[0], len(class_names))})

    batch = {"pixel_values": torch.zeros(2, 3, 4, 4), "labels": torch.tensor([0, 1]), "corrupt": []}
    monkeypatch.setattr(scoring, "ImageDataset", lambda *a, **k: [0])
    monkeypatch.setattr(scoring.torch.utils.data, "DataLoader", lambda *a, **k: [batch])
    monkeypatch.setattr(
        scoring, "load_metric", lambda name: type("M", (), {"compute": lambda *a, **k: {"accuracy": 0.5}})()
    )
    for flag in (True, False):
        scoring.evaluate_set(Model(), EvalSet([0, 1], ["a", "b"], [0, 1], seen_classes=flag), None)
    assert seen == [True, False]


def _examples_train():
    spec = importlib.util.spec_from_file_location("examples_train", os.path.join(ROOT, "examples", "train.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
@pytest.mark.parametrize(
    "protocol",
    [["--protocol", "base2new"], ["--protocol", "dg", "--target_domain", "sketch"], ["--protocol", "cross_dataset"]],
    ids=["b2n", "dg", "xd"],
)
def test_mmrl_trains_saves_reloads_and_predicts(tiny_clip_dir, domain_folder, tmp_path, protocol):
    out = tmp_path / "mmrl"
    argv = ["--method", "mmrl", "--method_args", "n_rep_tokens=3,rep_dim=16", "--base_model", tiny_clip_dir]
    argv += ["--dataset_name", domain_folder, "--shots", "2", "--per_device_train_batch_size", "4", *protocol]
    argv += ["--max_steps", "3", "--max_eval_samples", "12", "--learning_rate", "0.01", "--output_dir", str(out)]
    train = _examples_train()
    trained, save = [], train.save_adapter
    train.save_adapter = lambda run, model: (trained.append(model), save(run, model))[1]
    assert train.main(argv) == 0
    config = json.loads((out / "metaprompt_config.json").read_text())
    assert config["method_config"]["name"] == "mmrl" and config["method_config"]["rep_dim"] == 16
    saved = load_file(out / "metaprompt_model.safetensors")
    assert set(saved) == head_keys(2)
    results = json.loads((out / "results.json").read_text())
    assert results and all(0 <= (r.get("hm", r.get("accuracy"))) <= 100 for r in results)

    loaded = MetaPromptModel.from_pretrained(out)
    (model,) = trained
    for key, value in model.prompt_state_dict().items():  # trained (AdamW moved them) and saved as trained
        torch.testing.assert_close(value.cpu(), saved[key], rtol=0, atol=0, msg=key)
        torch.testing.assert_close(loaded.prompt_state_dict()[key], value.cpu(), rtol=0, atol=0, msg=key)
    images = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    probs = loaded.predict(images, NAMES[:3])
    torch.testing.assert_close(probs, model.eval().predict(images, NAMES[:3]), rtol=0, atol=1e-6)
    with torch.no_grad():  # and not frozen CLIP's: the reloaded head inserts its tokens
        plain = (LOGIT_SCALE * loaded.encode_frozen_image(images) @ loaded.encode_templates(NAMES[:3]).t()).softmax(-1)
    assert (probs - plain).abs().max() > 1e-4


@pytest.mark.slow
def test_mmrl_adapters_serve_the_pipeline_and_share_a_base(tmp_path):
    from metaprompt_hf import pipeline

    a, b = mmrl_model(), mmrl_model(rep_layers=[2])
    a.save_pretrained(tmp_path / "a")
    b.save_pretrained(tmp_path / "b")
    model = MetaPromptModel.from_pretrained(tmp_path / "a", base_model=a.base_model, processor=a.processor)
    model.load_adapter(tmp_path / "b", "b")
    images = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        torch.testing.assert_close(model(images, NAMES).logits, a.eval()(images, NAMES).logits, rtol=0, atol=1e-5)
        torch.testing.assert_close(
            model(images, NAMES, adapter_name="b").logits, b.eval()(images, NAMES).logits, rtol=0, atol=1e-5
        )
    from PIL import Image

    classify = pipeline(model=model)
    picture = Image.new("RGB", (32, 32), (200, 30, 30))
    scores = classify(picture, candidate_labels=NAMES)
    expected = model.predict([picture], NAMES)[0]
    assert [s["label"] for s in scores] == [NAMES[i] for i in expected.argsort(descending=True)]
    assert scores[0]["score"] == pytest.approx(expected.max().item(), abs=1e-5)


@pytest.mark.parametrize(
    "name, protocol, epochs, batch, reg_weight, warmup, template",
    [
        ("mmrl_b2n_vitb16", "base2new", 10, 4, 1.0, 1, None),
        ("mmrl_b2n_imagenet_vitb16", "base2new", 5, 32, 0.5, 1, "a photo of a {}."),
        ("mmrl_xd_vitb16", "cross_dataset", 1, 32, 0.2, 0, "a photo of a {}."),
    ],
)
def test_the_named_configs_hold_the_official_hyperparameters(
    name, protocol, epochs, batch, reg_weight, warmup, template
):
    from metaprompt_hf.training import parse_args

    args = parse_args(["--config", os.path.join(ROOT, "examples", "configs", f"{name}.yaml")])
    method = args.build_method()
    assert (args.method, args.protocol, args.shots, args.template) == ("mmrl", protocol, 16, template)
    assert method.config == type(method.config)(0.7, reg_weight, 5, 512, [6, 7, 8, 9, 10, 11, 12])
    assert (args.num_train_epochs, args.per_device_train_batch_size, args.per_device_eval_batch_size) == (
        epochs,
        batch,
        250,
    )
    assert (method.optimizer, args.learning_rate, args.weight_decay) == ("adamw", 0.001, 5e-4)
    assert (args.warmup_epochs, args.warmup_lr, args.lr_scheduler_type, args.crop_scale_min) == (
        warmup,
        1e-5,
        "cosine",
        0.5,
    )


def test_eager_and_sdpa_attention_agree_with_the_rebuilt_causal_mask():
    """Eager attention gets an explicit mask, rebuilt for the longer text sequence; SDPA's may be implicit."""
    images = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(4))
    outs = []
    for attn in ("eager", "sdpa"):
        clip, processor = tiny_clip(seed=0, attn_implementation=attn)
        config = get_method("mmrl", KNOBS).adapter_config(["a photo of a {}."], n_ctx=0, n_pro=0)
        torch.manual_seed(0)
        model = MetaPromptModel(clip, config, processor).eval()
        with torch.no_grad():
            for p in model.adapters["default"].head.parameters():
                p.normal_(0, 0.3, generator=torch.Generator().manual_seed(p.numel()))
            outs.append(model(images, NAMES))
    torch.testing.assert_close(outs[0].text_embeds, outs[1].text_embeds, rtol=0, atol=1e-5)
    torch.testing.assert_close(outs[0].logits_rep, outs[1].logits_rep, rtol=0, atol=1e-4)
