"""Adapter heads (modeling/heads.py): an adapter whose method registers a head owns tensors beyond its prompts and
forms its own logits. A toy head registered from this test: its tensors are saved under `head.<name>`, read back
strictly (missing, unexpected and mis-shaped keys are named), and several adapters on one base keep their own
logits per call; adapters without a head are untouched."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch import nn

from metaprompt_hf import MetaPromptConfig, MetaPromptModel
from metaprompt_hf.constants import CONFIG_NAME, WEIGHTS_NAME
from metaprompt_hf.modeling.heads import ADAPTER_HEADS, AdapterHead, register_adapter_head

NAMES = ["red apple", "blue sky", "green leaf"]


class ToyHead(AdapterHead):
    """logits = exp(τ) · <x̃, t + w>, with a learned log-temperature τ (1,) and a class-agnostic shift w (P,)."""

    def __init__(self, config, backbone) -> None:
        super().__init__(config, backbone)
        self.log_tau = nn.Parameter(torch.zeros(1))
        self.shift = nn.Parameter(torch.zeros(backbone.model.config.projection_dim))

    @classmethod
    def expected_shapes(cls, config):
        return {"log_tau": (1,), "shift": (None,)}

    def logits(self, model, image_embeds, class_names, *, adapter_name):
        t = model.encode_text(class_names, adapter_name=adapter_name)
        return self.log_tau.exp() * image_embeds @ (t + self.shift).t()


@pytest.fixture
def toy_head(monkeypatch):
    monkeypatch.setitem(ADAPTER_HEADS, "toy_head", ToyHead)
    return ToyHead


def toy_config(**kw) -> MetaPromptConfig:
    return MetaPromptConfig(
        n_ctx=2, n_pro=0, coupled_branches=False, method_config={"name": "toy_head", "version": 1}, **kw
    )


def toy_model(clip_and_processor) -> MetaPromptModel:
    clip, processor = clip_and_processor
    torch.manual_seed(0)
    model = MetaPromptModel(clip, toy_config(), processor)
    head = model.adapters["default"].head
    with torch.no_grad():
        head.log_tau.fill_(0.5)
        head.shift.normal_(0, 0.3)
    return model.eval()


def expected_logits(model, pixel_values, adapter_name=None):
    head = model.adapters[adapter_name or model.active_adapter].head
    with torch.no_grad():
        x = model.encode_frozen_image(pixel_values)
        t = model.encode_text(NAMES, adapter_name=adapter_name)
        return head.log_tau.exp() * x @ (t + head.shift).t()


def test_registry_refuses_what_is_not_a_head_and_replacing_a_name(toy_head):
    import metaprompt_hf

    assert metaprompt_hf.register_adapter_head is register_adapter_head and metaprompt_hf.AdapterHead is AdapterHead
    with pytest.raises(TypeError, match="subclass of AdapterHead"):
        register_adapter_head("other", nn.Linear)
    with pytest.raises(ValueError, match="already registered"):
        register_adapter_head("toy_head", type("Other", (AdapterHead,), {}))
    assert register_adapter_head("toy_head", ToyHead) is ToyHead  # the same class again is fine


def test_the_head_forms_the_logits_and_trains(toy_head, clip_and_processor, pixel_values):
    model = toy_model(clip_and_processor)
    assert list(model.prompt_state_dict()) == ["text_prompts", "head.log_tau", "head.shift"]
    with torch.no_grad():
        out = model(pixel_values, NAMES)
    torch.testing.assert_close(out.logits, expected_logits(model, pixel_values), rtol=0, atol=1e-5)
    params = model.prompt_parameters()
    assert len(params) == 3 and params[1] is model.adapters["default"].head.log_tau
    model.train()
    model(pixel_values, NAMES, labels=torch.tensor([0, 1, 2, 0])).loss.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in params)


def test_save_and_load_keep_the_head(toy_head, clip_and_processor, pixel_values, tmp_path):
    model = toy_model(clip_and_processor)
    model.save_pretrained(tmp_path / "a")
    assert set(load_file(tmp_path / "a" / WEIGHTS_NAME)) == {"text_prompts", "head.log_tau", "head.shift"}
    clip, processor = clip_and_processor
    loaded = MetaPromptModel.from_pretrained(tmp_path / "a", base_model=clip, processor=processor)
    for key, value in model.prompt_state_dict().items():
        torch.testing.assert_close(loaded.prompt_state_dict()[key], value, rtol=0, atol=0)
    assert not any(p.requires_grad for p in loaded.prompt_parameters())
    torch.testing.assert_close(loaded.predict(pixel_values, NAMES), model.predict(pixel_values, NAMES), rtol=0, atol=0)
    trainable = MetaPromptModel.from_pretrained(
        tmp_path / "a", base_model=clip, processor=processor, is_trainable=True
    )
    assert all(p.requires_grad for p in trainable.prompt_parameters())


def _rewrite_weights(folder, change) -> None:
    path = folder / WEIGHTS_NAME
    with safe_open(path, "pt") as f:
        metadata = f.metadata()
    tensors = load_file(path)
    change(tensors)
    save_file(tensors, path, metadata)  # same save id: only the tensors differ


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda t: t.pop("head.shift"), r"missing \['head.shift'\], unexpected \[\]"),
        (lambda t: t.update({"head.extra": torch.zeros(2)}), r"missing \[\], unexpected \['head.extra'\]"),
        (lambda t: t.update({"head.log_tau": torch.zeros(2)}), r"tensor 'head.log_tau' has shape \(2,\), .* \(1,\)"),
        (lambda t: t.update({"head.shift": torch.zeros(5)}), r"tensor 'head.shift' has shape \(5,\), .* \(16,\)"),
    ],
    ids=["missing", "unexpected", "shape-from-config", "shape-from-base-model"],
)
def test_head_keys_are_read_strictly(toy_head, clip_and_processor, tmp_path, change, message):
    model = toy_model(clip_and_processor)
    model.save_pretrained(tmp_path / "a")
    _rewrite_weights(tmp_path / "a", change)
    clip, processor = clip_and_processor
    with pytest.raises(ValueError, match=message):
        MetaPromptModel.from_pretrained(tmp_path / "a", base_model=clip, processor=processor)
    with pytest.raises(ValueError, match=message):
        model.load_adapter(tmp_path / "a", "second")
    assert model.adapter_names == ["default"]


def test_a_head_whose_method_is_not_registered_is_named(toy_head, clip_and_processor, tmp_path):
    toy_model(clip_and_processor).save_pretrained(tmp_path / "a")
    config = json.loads((tmp_path / "a" / CONFIG_NAME).read_text())
    config["method_config"]["name"] = "unknown_plugin_method"
    (tmp_path / "a" / CONFIG_NAME).write_text(json.dumps(config))
    clip, processor = clip_and_processor
    with pytest.raises(ValueError, match="no adapter head is registered for method 'unknown_plugin_method'"):
        MetaPromptModel.from_pretrained(tmp_path / "a", base_model=clip, processor=processor)


def test_adapters_with_and_without_a_head_share_one_base(toy_head, clip_and_processor, pixel_values, tmp_path):
    clip, processor = clip_and_processor
    toy_model(clip_and_processor).save_pretrained(tmp_path / "toy")
    torch.manual_seed(3)
    plain = MetaPromptModel(clip, MetaPromptConfig(n_ctx=2, n_pro=0, coupled_branches=False), processor)
    plain.save_pretrained(tmp_path / "plain")
    assert set(load_file(tmp_path / "plain" / WEIGHTS_NAME)) == {"text_prompts"}
    with torch.no_grad():
        plain_logits = plain.eval()(pixel_values, NAMES).logits
    model = MetaPromptModel.from_pretrained(tmp_path / "plain", base_model=clip, processor=processor)
    model.load_adapter(tmp_path / "toy", "toy")
    assert model.adapters["default"].head is None and model.adapters["toy"].head is not None
    with torch.no_grad():
        toy = model(pixel_values, NAMES, adapter_name="toy").logits
        default = model(pixel_values, NAMES).logits
    torch.testing.assert_close(toy, expected_logits(model, pixel_values, "toy"), rtol=0, atol=1e-5)
    torch.testing.assert_close(default, plain_logits, rtol=0, atol=1e-6)
