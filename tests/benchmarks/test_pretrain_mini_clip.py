"""The pieces of `benchmarks/pretrain_mini_clip.py` on tiny inputs: preprocessing, weight-decay groups, and a
deterministic contrastive step (the property its before/after comparisons rely on)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
import mini_clip_pretraining  # noqa: E402
import mini_clip_processor  # noqa: E402

from metaprompt_hf.testing import byte_level_tokenizer  # noqa: E402

TINY = dict(
    seed=0, text_hidden=16, text_layers=1, text_heads=2, vision_hidden=16, vision_layers=1, vision_heads=2,
    image_size=8, patch_size=4, projection_dim=8, lr=1e-3, weight_decay=0.1, steps=2, warmup=1, batch_size=4,
    log_every=1,
)  # fmt: skip


def test_pixel_tensor_is_what_the_saved_processor_produces():
    images = np.random.default_rng(0).integers(0, 256, (3, 8, 8, 3), dtype=np.uint8)
    processor = mini_clip_processor.build_processor(byte_level_tokenizer(), 8)
    expected = processor(images=[Image.fromarray(x) for x in images], return_tensors="pt")["pixel_values"]
    torch.testing.assert_close(mini_clip_processor.pixel_tensor(images), expected)


def test_weight_decay_only_on_matrices():
    model = mini_clip_pretraining.build_model(argparse.Namespace(**TINY))
    decay, no_decay = mini_clip_pretraining.param_groups(model, 0.1)
    names = {id(p): n for n, p in model.named_parameters()}
    assert len(decay["params"]) + len(no_decay["params"]) == len(names)
    assert (decay["weight_decay"], no_decay["weight_decay"]) == (0.1, 0.0)
    assert all(p.ndim == 2 and "embedding" not in names[id(p)] for p in decay["params"])
    assert {"logit_scale", "text_model.embeddings.token_embedding.weight"} <= {
        names[id(p)] for p in no_decay["params"]
    }


def test_pretraining_is_deterministic_for_a_seed():
    args = argparse.Namespace(**TINY)
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (8, 8, 8, 3), generator=g, dtype=torch.uint8).numpy()
    ids = torch.randint(0, 49406, (8, 6), generator=g)
    ids[:, 0], ids[:, -1] = mini_clip_processor.BOS_ID, mini_clip_processor.EOS_ID
    cap_idx = torch.tensor([0, 1, 2, 3, 0, 1, 2, 3])  # repeated captions: positives of each other
    states = []
    for _ in range(2):
        model = mini_clip_pretraining.build_model(args)
        before = {k: v.clone() for k, v in model.state_dict().items()}
        result = mini_clip_pretraining.pretrain(model, images, ids, cap_idx, args)
        assert result["steps_done"] == 2 and np.isfinite(result["final_loss"])
        states.append(model.state_dict())
    assert not torch.equal(before["visual_projection.weight"], states[1]["visual_projection.weight"])
    for key, value in states[0].items():
        assert torch.equal(value, states[1][key]), key
