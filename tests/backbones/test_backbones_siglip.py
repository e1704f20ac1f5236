"""The SigLIP backbone: the frozen paths equal stock `SiglipModel` features, prompts reach the pooled rows, and a
MetaPrompt adapter on a SigLIP trains, saves, reloads and predicts (also through `examples/train.py`)."""

from __future__ import annotations

import json
import os

import pytest
import torch
import torch.nn.functional as F

from metaprompt_hf import MetaPromptConfig, MetaPromptModel
from metaprompt_hf.backbones import BACKBONES, SiglipBackbone, get_backbone
from metaprompt_hf.testing import tiny_siglip

CLASSES = ["cat", "dog", "big_red bus", "giraffe"]


def _stock_text(model, processor, texts):
    ids = processor.tokenizer(texts, padding="max_length", max_length=64, return_tensors="pt")["input_ids"]
    with torch.no_grad():
        return F.normalize(model.get_text_features(input_ids=ids).pooler_output, dim=-1)


def test_registry_picks_the_backbone_by_model_type(siglip_and_processor):
    model, _ = siglip_and_processor
    assert isinstance(get_backbone(model), SiglipBackbone) and BACKBONES["siglip"] is SiglipBackbone
    assert get_backbone(model).text_prompt_start == 0  # no start-of-text token


def test_placeholders_come_first_and_rows_are_padded_to_the_fixed_length(siglip_and_processor):
    model, processor = siglip_and_processor
    mp = MetaPromptModel(model, MetaPromptConfig(), processor)
    x = processor.tokenizer("X", add_special_tokens=False)["input_ids"][0]
    rows = mp._tokenize(CLASSES, check_placeholders=True)
    assert all(r[:2] == [x, x] for r in rows)
    assert mp._pad(rows).shape == (4, 64)


@pytest.mark.parametrize("attn", ["eager", "sdpa"])
def test_frozen_paths_equal_stock_siglip_features(attn):
    model, processor = tiny_siglip(attn_implementation=attn)
    mp = MetaPromptModel(model, MetaPromptConfig(templates=["a photo of a {}"]), processor)
    pixels = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        ref_image = F.normalize(model.get_image_features(pixel_values=pixels).pooler_output, dim=-1)
        x, x_tilde = mp.encode_image_pair(pixels)  # one batched call, the frozen half masked from the prompts
        out = mp(pixels, CLASSES, return_zero_shot=True)
    torch.testing.assert_close(mp.encode_frozen_image(pixels), ref_image, rtol=0, atol=1e-6)
    torch.testing.assert_close(x, ref_image, rtol=0, atol=1e-5)
    torch.testing.assert_close(x_tilde, mp.encode_image(pixels).detach(), rtol=0, atol=1e-5)
    assert (x_tilde - x).abs().max() > 1e-4
    names = [n.replace("_", " ") for n in CLASSES]
    torch.testing.assert_close(
        mp.encode_templates(CLASSES),
        _stock_text(model, processor, [f"a photo of a {n}" for n in names]),
        atol=1e-5,
        rtol=0,
    )
    ids = processor.tokenizer(
        [f"a photo of a {n}" for n in names], padding="max_length", max_length=64, return_tensors="pt"
    )["input_ids"]
    with torch.no_grad():
        stock = model(input_ids=ids, pixel_values=pixels).logits_per_image  # s<x, h> + bias, SigLIP's own logits
    torch.testing.assert_close(out.logits_zero_shot, stock, rtol=0, atol=1e-4)


def test_layer0_prompts_equal_to_placeholders_reproduce_stock_text_features(siglip_and_processor):
    model, processor = siglip_and_processor
    mp = MetaPromptModel(model, MetaPromptConfig(text_depth=1), processor)
    pid = processor.tokenizer("X", add_special_tokens=False)["input_ids"][0]
    with torch.no_grad():
        mp.text_prompts[0].copy_(model.text_model.embeddings.token_embedding.weight[pid].expand(2, -1))
        ours = mp.encode_text(CLASSES)
        deep = MetaPromptModel(model, MetaPromptConfig(), processor).encode_text(CLASSES)
    ref = _stock_text(model, processor, ["X X cat.", "X X dog.", "X X big red bus.", "X X giraffe."])
    torch.testing.assert_close(ours, ref, rtol=0, atol=1e-5)
    assert (deep - ref).abs().max() > 1e-4  # random deep prompts do reach the pooled (last) row


def test_siglip_adapter_trains_saves_reloads_and_predicts(tiny_siglip_dir, tmp_path):
    from metaprompt_hf.backbones import load_base_model, load_base_processor

    model, processor = load_base_model(tiny_siglip_dir), load_base_processor(tiny_siglip_dir)
    torch.manual_seed(0)
    mp = MetaPromptModel(model, MetaPromptConfig(), processor).train()
    pixels = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    labels = torch.tensor([0, 1, 2, 3])
    optimizer = torch.optim.SGD(mp.prompt_parameters(), lr=0.5)
    losses = []
    for _ in range(5):
        loss = mp(pixels, CLASSES, labels=labels).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]
    mp.eval()
    mp.save_pretrained(tmp_path / "adapter")
    saved = json.loads((tmp_path / "adapter" / "metaprompt_config.json").read_text())
    assert saved["base_model_name_or_path"] == tiny_siglip_dir and saved["text_hidden_size"] == 32
    loaded = MetaPromptModel.from_pretrained(tmp_path / "adapter")  # base and processor from the recorded folder
    assert isinstance(loaded.backbone, SiglipBackbone)
    torch.testing.assert_close(loaded.predict(pixels, CLASSES), mp.predict(pixels, CLASSES), rtol=0, atol=1e-6)


@pytest.mark.slow
def test_examples_train_runs_on_a_siglip_base(tiny_siglip_dir, domain_folder, tmp_path):
    from metaprompt_hf.training import main

    out = tmp_path / "run"
    argv = ["--base_model", tiny_siglip_dir, "--dataset_name", domain_folder, "--target_domain", "sketch"]
    argv += ["--protocol", "dg", "--shots", "2", "--max_steps", "3", "--output_dir", str(out)]
    assert main(argv) == 0
    config = json.loads((out / "metaprompt_config.json").read_text())
    assert config["base_model_name_or_path"] == tiny_siglip_dir
    assert "accuracy" in json.loads((out / "results.json").read_text())[0]
    assert os.path.isfile(out / "metaprompt_model.safetensors")
