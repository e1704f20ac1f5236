"""The embedded offline default: the small CLIP and the MetaPrompt adapter shipped in the package."""

from __future__ import annotations

import json

import pytest
import torch
from transformers import CLIPModel, CLIPProcessor

from metaprompt_hf import MetaPromptModel, miniworld
from metaprompt_hf.embedded import EMBEDDED_ADAPTER, EMBEDDED_CLIP, load_default_model, resolve_base_model


def test_embedded_clip_loads_with_stock_transformers_and_the_real_clip_tokenizer():
    clip = CLIPModel.from_pretrained(EMBEDDED_CLIP)
    processor = CLIPProcessor.from_pretrained(EMBEDDED_CLIP)
    ids = processor.tokenizer("a photo of a cat.")["input_ids"]
    assert ids == [49406, 320, 1125, 539, 320, 2368, 269, 49407]  # OpenAI's BPE, as the datasheet states
    assert clip.config.text_config.vocab_size == 49408
    assert (EMBEDDED_CLIP / "model.safetensors").stat().st_size <= 20 * 2**20
    assert resolve_base_model("embedded") == str(EMBEDDED_CLIP)
    assert resolve_base_model("openai/clip-vit-base-patch16") == "openai/clip-vit-base-patch16"


def test_embedded_adapter_names_the_embedded_base_and_holds_only_prompts():
    config = json.loads((EMBEDDED_ADAPTER / "metaprompt_config.json").read_text())
    assert config["base_model_name_or_path"] == "embedded"
    assert (EMBEDDED_ADAPTER / "metaprompt_model.safetensors").stat().st_size < 16_000  # prompts, never the CLIP


@pytest.fixture(scope="module")
def default_model() -> MetaPromptModel:
    return load_default_model()


def test_load_default_model_predicts_mini_world_test_images_well_above_chance(default_model, tmp_path):
    """The shipped adapter on held-out test images of its own dataset (objects, 14 classes, chance 7%); loaded
    again with `from_pretrained(folder, base_model="embedded")` it gives the same probabilities."""
    test = miniworld.load_miniworld("objects", cache_dir=tmp_path)["test"]
    names = test.features["label"].names
    rows = test.shuffle(seed=0).select(range(56))
    probs, zero_shot = default_model.predict(rows["image"], names, return_zero_shot=True)
    assert probs.shape == zero_shot.shape == (56, len(names))
    torch.testing.assert_close(probs.sum(-1), torch.ones(56))
    accuracy = (probs.argmax(-1) == torch.tensor(rows["label"])).float().mean().item()
    assert accuracy > 0.5, accuracy
    again = MetaPromptModel.from_pretrained(EMBEDDED_ADAPTER, base_model="embedded")
    torch.testing.assert_close(again.predict(rows["image"][:4], names), probs[:4])
