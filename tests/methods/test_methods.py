"""Methods as registered objects: each decides prompts, loss, meta step and hooks (methods/)."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch
import torch.nn.functional as F

from metaprompt_hf import MetaPromptConfig, MetaPromptModel
from metaprompt_hf.meta import MetaSettings
from metaprompt_hf.methods import METHODS, Method, MethodConfig, get_method, parse_method_args, register_method
from metaprompt_hf.modeling.losses import asymmetric_contrastive_loss
from metaprompt_hf.testing import tiny_clip
from metaprompt_hf.training import MetaPromptTrainingArguments, TrainingStep

NAMES = ["red apple", "blue sky", "green leaf", "black cat"]


def test_presets_decide_prompts_and_loss():
    cfg = {name: get_method(name).adapter_config(["a {}"], n_ctx=3, n_pro=2) for name in METHODS}
    assert (cfg["zeroshot"].n_ctx, cfg["zeroshot"].n_pro) == (0, 0) and not get_method("zeroshot").trains
    assert (cfg["coop"].n_ctx, cfg["coop"].n_pro, cfg["coop"].text_depth) == (3, 0, 1)
    assert not cfg["coop"].coupled_branches and not cfg["ivlp"].coupled_branches
    for name in (
        "metaprompt_no_meta",
        "metaprompt",
        "metaprompt_faithful",
        "metaprompt_second_order",
        "metaprompt_mldg",
    ):
        assert (cfg[name].n_ctx, cfg[name].n_pro, cfg[name].coupled_branches) == (3, 2, True), name
    assert [n for n in METHODS if get_method(n).uses_meta_step] == [
        "metaprompt",
        "metaprompt_second_order",
        "metaprompt_mldg",
        "metaprompt_mldg_second_order",
        "metaprompt_faithful",
    ]
    assert get_method("zeroshot").eval_logits == "logits_zero_shot"
    with pytest.raises(ValueError, match=r"method: expected one of \['zeroshot'"):
        get_method("lora")


def test_meta_variants_fix_their_fields_over_the_run_arguments():
    args = MetaPromptTrainingArguments(method="metaprompt", meta_step=0.5, meta_outer_reduction="mean")
    assert args.meta_settings() == MetaSettings(target="text", beta=0.5, reduction="mean")
    faithful = MetaPromptTrainingArguments(method="metaprompt_faithful", meta_step=0.5)
    assert faithful.meta_settings() == MetaSettings(target="text", mode="faithful", beta=0.5, zero_grad_drift=True)
    dg = MetaPromptTrainingArguments(method="metaprompt_second_order", protocol="dg", target_domain="x")
    meta = dg.meta_settings()
    assert (meta.target, meta.mode, meta.second_order, meta.chunk_size) == ("vision", "clean", True, 16)
    assert MetaPromptTrainingArguments(method="ivlp").meta_settings() is None


@pytest.mark.parametrize(
    "kwargs, beta",
    [
        ({"method": "metaprompt"}, 5.0),  # clean: validation-selected (benchmarks/results/ablation.md)
        ({"method": "metaprompt", "meta_mode": "faithful"}, 0.2),  # the reference's META_STEP
        ({"method": "metaprompt_faithful"}, 0.2),  # the preset fixes the mode, so the β of that mode
        ({"method": "metaprompt_mldg"}, 0.2),
        ({"method": "metaprompt_second_order"}, 5.0),
        ({"method": "metaprompt_faithful", "meta_step": 1.5}, 1.5),  # an explicit β always wins
    ],
)
def test_the_default_beta_is_the_variants(kwargs, beta):
    args = MetaPromptTrainingArguments(**kwargs)
    assert args.meta_step == beta and args.meta_settings().beta == beta


@pytest.mark.parametrize("method", ["coop", "ivlp", "metaprompt_no_meta"])
def test_the_step_trains_with_the_models_own_loss(method):
    """No second loss implementation: the step's loss is the model's `forward(labels=)` loss, L_AC for the coupled
    presets and CE on the prompted logits for CoOp / IVLP."""
    clip, processor = tiny_clip(seed=0)
    torch.manual_seed(0)
    args = MetaPromptTrainingArguments(method=method)
    model = MetaPromptModel(clip, args.adapter_config(["a photo of a {}"]), processor)
    pixel_values = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    labels = torch.tensor([0, 1, 2, 3])
    with torch.no_grad():
        out = model(pixel_values, NAMES)
    if get_method(method).coupled_branches:
        expected = asymmetric_contrastive_loss(out.logits, out.logits_image, out.logits_text, labels).loss
    else:
        expected = F.cross_entropy(out.logits, labels)
    optimizer = torch.optim.SGD(model.prompt_parameters(), lr=0.01)
    step = TrainingStep(model, optimizer, NAMES, meta=args.meta_settings(), method=args.build_method())
    result = step({"pixel_values": pixel_values, "labels": labels}, record=True)
    assert result.loss == pytest.approx(expected.item(), rel=1e-5)
    assert result.meta is None and len(result.updates) == 1


def test_the_adapter_config_names_its_method_and_version():
    config = get_method("ivlp").adapter_config(["a {}"], n_ctx=2, n_pro=2)
    assert config.method_config == {"name": "ivlp", "version": 1}
    assert MetaPromptConfig.from_dict(config.to_dict()).method_config == {"name": "ivlp", "version": 1}


@dataclass
class _Knobs(MethodConfig):
    weight: float = 1.0

    def __post_init__(self) -> None:
        if not self.weight >= 0:
            raise ValueError(f"weight: expected >= 0, got {self.weight!r}")


class _Weighted(Method):
    config_class = _Knobs


@pytest.mark.parametrize(
    "data, error",
    [
        ({"weight": 2.0}, None),
        ({"name": "w", "version": 1, "weight": 2.0}, None),
        ({"weight": -1.0}, r"method_args \(w\): weight: expected >= 0"),
        ({"wieght": 2.0}, r"unknown field\(s\) \['wieght'\]; known fields are \['weight'\]"),
        ({"version": 2, "weight": 2.0}, r"version 2 is newer than this metaprompt_hf understands \(1\)"),
    ],
)
def test_a_method_config_is_strict_about_fields_and_versions(data, error):
    if error is None:
        assert _Weighted("w", data).config.weight == 2.0
    else:
        with pytest.raises(ValueError, match=error):
            _Weighted("w", data)


@pytest.mark.parametrize(
    "text, parsed",
    [
        (None, {}),
        ('{"weight": 8.0, "mode": "x"}', {"weight": 8.0, "mode": "x"}),
        ("weight=8.0, mode=x", {"weight": 8.0, "mode": "x"}),
        ({"weight": 1}, {"weight": 1}),
    ],
)
def test_method_args_parse_json_pairs_or_mappings(text, parsed):
    assert parse_method_args(text) == parsed


def test_method_args_errors_name_the_field():
    with pytest.raises(ValueError, match="method_args: expected key=value pairs"):
        parse_method_args("weight")
    with pytest.raises(ValueError, match=r"method_args \(ivlp\): unknown field\(s\) \['weight'\]"):
        MetaPromptTrainingArguments(method="ivlp", method_args="weight=2")


def test_register_method_refuses_bad_classes_and_silent_replacement():
    with pytest.raises(TypeError, match="expected a subclass of metaprompt_hf.methods.Method"):
        register_method("bad", object)
    with pytest.raises(ValueError, match="method 'coop' is already registered"):
        register_method("coop", _Weighted)
    with pytest.raises(ValueError, match="method name: expected a non-empty word"):
        register_method("a,b", _Weighted)
