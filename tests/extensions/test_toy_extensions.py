"""Extension from outside the package: a method, a protocol and a backbone defined in `toy_plugin.py` (this folder),
registered through `metaprompt_hf.register_*`, trained by `examples/train.py --plugins toy_plugin`, evaluated,
saved, reloaded with `from_pretrained` and used to predict — with no edit inside `src/` (docs/architecture.md §4)."""

from __future__ import annotations

import importlib.util
import json
import os
import sys

import pytest
import torch
from safetensors.torch import load_file

from metaprompt_hf import MetaPromptModel
from metaprompt_hf.backbones import BACKBONES
from metaprompt_hf.methods import METHODS
from metaprompt_hf.protocols import METRIC_KEYS, PROTOCOLS
from metaprompt_hf.testing import tiny_clip

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TOYS = {"method": ("toy_avg", METHODS), "protocol": ("all_classes", PROTOCOLS), "backbone": ("toy_dual", BACKBONES)}


@pytest.fixture
def fresh_plugin():
    """The plugin is imported by `--plugins` inside the test (not before), and unregistered afterwards so no other
    test sees a toy in the registries."""
    sys.modules.pop("toy_plugin", None)
    yield lambda: sys.modules["toy_plugin"]
    for name, registry in TOYS.values():
        registry.pop(name, None)
    METRIC_KEYS.pop("all_classes", None)
    sys.modules.pop("toy_plugin", None)


def _examples_train():
    spec = importlib.util.spec_from_file_location("examples_train", os.path.join(ROOT, "examples", "train.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _toy_base_model_dir(path) -> str:
    """A tiny random CLIP saved under the toy model type: only `config.json`'s `model_type` differs, so no plugin
    class is needed to write it (the run must find the toy classes through the plugin to read it)."""
    clip, processor = tiny_clip(seed=0)
    clip.save_pretrained(path)
    processor.save_pretrained(path)
    config = json.loads((path / "config.json").read_text())
    (path / "config.json").write_text(json.dumps(config | {"model_type": "toy_dual"}, indent=2))
    return str(path)


@pytest.mark.slow
def test_a_toy_method_protocol_and_backbone_train_save_reload_and_predict(fresh_plugin, domain_folder, tmp_path):
    train = _examples_train()
    base = _toy_base_model_dir(tmp_path / "toy-base")
    assert "toy_plugin" not in sys.modules and "toy_avg" not in METHODS
    out = tmp_path / "run"
    argv = ["--plugins", "toy_plugin", "--method", "toy_avg", "--method_args", "l2=0.05"]
    argv += ["--protocol", "all_classes", "--base_model", base, "--dataset_name", domain_folder]
    argv += ["--shots", "2", "--per_device_train_batch_size", "8", "--max_steps", "3", "--output_dir", str(out)]
    assert train.main(argv) == 0
    toy = fresh_plugin()  # --plugins imported it

    # The method: its hooks ran after each step, at the epoch's end and at the end of training ...
    assert toy.EVENTS == [("step", 1), ("step", 2), ("epoch", 2), ("step", 3), ("epoch", 3), ("train_end", 3)]
    # ... and the saved prompts are the hook's average over the steps, not the last step's prompts.
    saved = load_file(out / "metaprompt_model.safetensors")
    for name in ("text_prompts", "vision_prompts"):
        mean = torch.stack([p[name] for p in toy.STEP_PROMPTS]).mean(0)
        torch.testing.assert_close(saved[name], mean, rtol=0, atol=1e-6)
        assert not torch.equal(saved[name], toy.STEP_PROMPTS[-1][name])
    config = json.loads((out / "metaprompt_config.json").read_text())
    assert config["method_config"] == {"name": "toy_avg", "version": 1, "l2": 0.05}
    assert json.loads((out / "training_args.json").read_text())["plugins"] == "toy_plugin"

    # The protocol: its evaluation and its metric in results.json.
    result = json.loads((out / "results.json").read_text())[0]
    assert result["protocol"] == "all_classes" and 0 <= result["accuracy"] <= 100 and result["n_images"] > 0

    # The backbone: the prompts went through its calling convention; the adapter reloads onto it and predicts.
    assert toy.LAYER_CALLS["count"] > 0
    loaded = MetaPromptModel.from_pretrained(out)
    assert isinstance(loaded.backbone, toy.ToyDualBackbone)
    torch.testing.assert_close(loaded.text_prompts.detach(), saved["text_prompts"])
    images = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    classes = ["red apple", "blue sky", "black cat"]
    probs = loaded.predict(images, classes)
    assert probs.shape == (3, 3) and torch.allclose(probs.sum(-1), torch.ones(3))
    by_hand = MetaPromptModel(toy.ToyDualModel.from_pretrained(base), loaded.config, loaded.processor)
    with torch.no_grad():
        by_hand.text_prompts.copy_(saved["text_prompts"])
        by_hand.vision_prompts.copy_(saved["vision_prompts"])
    torch.testing.assert_close(by_hand.predict(images, classes), probs, rtol=0, atol=1e-6)


def test_unknown_plugin_and_unregistered_names_are_clear_errors(capsys):
    train = _examples_train()
    assert train.main(["--plugins", "no_such_plugin_module"]) == 2
    assert "plugins: could not import 'no_such_plugin_module': ModuleNotFoundError" in capsys.readouterr().err
    assert train.main(["--method", "toy_avg"]) == 2  # not registered without its plugin
    assert "method: expected one of ['zeroshot'" in capsys.readouterr().err
