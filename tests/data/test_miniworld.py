"""Tests of the offline mini world (``metaprompt_hf.miniworld``) and of the committed mini CLIP assets."""

from __future__ import annotations

import hashlib
import math
import os
import sys
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

try:
    from metaprompt_hf import miniworld as mw
except ImportError:  # not installed: run from a source checkout
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "src"))
    from metaprompt_hf import miniworld as mw
from metaprompt_hf.miniworld import digits

TINY = {"train": 2, "validation": 1, "test": 2}


def _digest(arr: np.ndarray) -> str:
    return hashlib.sha1(np.ascontiguousarray(arr, dtype=np.uint8).tobytes()).hexdigest()


def _arrays(ds) -> list[np.ndarray]:
    return [np.asarray(im) for im in ds["image"]]


@pytest.fixture(scope="module")
def tiny() -> dict:
    return {name: mw.load_miniworld(name, split_sizes=TINY) for name in mw.DATASETS}


def test_registry() -> None:
    assert len(mw.B2N_DATASETS) >= 4 and mw.DG_DATASET not in mw.B2N_DATASETS
    assert len(mw.DG_DOMAINS) >= 4
    for name in mw.B2N_DATASETS:
        assert 8 <= len(mw.CLASS_NAMES[name]) <= 20
    assert 7 <= len(mw.CLASS_NAMES[mw.DG_DATASET]) <= 12
    for name in mw.DATASETS:
        names = mw.CLASS_NAMES[name]
        assert len(set(names)) == len(names)
        assert all(n == n.strip().lower() and "_" not in n for n in names)
        tpl = mw.TEMPLATES[name]
        assert tpl.count("{}") == 1 and not tpl.endswith(".")
    base, new = mw.base_new_classes("shapes")
    assert len(base) == math.ceil(len(mw.CLASS_NAMES["shapes"]) / 2) and base + new == list(mw.CLASS_NAMES["shapes"])
    with pytest.raises(ValueError):
        mw.load_miniworld("imagenet")


@pytest.mark.parametrize("name", mw.DATASETS)
def test_shapes_and_features(tiny: dict, name: str) -> None:
    dd = tiny[name]
    assert set(dd) == {"train", "validation", "test"}
    n_cls = len(mw.CLASS_NAMES[name])
    n_dom = len(mw.DG_DOMAINS) if name == mw.DG_DATASET else 1
    for split, ds in dd.items():
        assert ds.features["label"].names == list(mw.CLASS_NAMES[name])
        assert len(ds) == TINY[split] * n_cls * n_dom
        assert sorted(set(ds["label"])) == list(range(n_cls))
        im = ds[0]["image"]
        assert im.mode == "RGB" and im.size == (32, 32)
        if name == mw.DG_DATASET:
            assert ds.features["domain"].names == list(mw.DG_DOMAINS)
            assert sorted(set(ds["domain"])) == list(range(n_dom))
        else:
            assert "domain" not in ds.column_names


def test_images_are_not_blank(tiny: dict) -> None:
    for name in mw.DATASETS:
        arrs = np.stack(_arrays(tiny[name]["test"])).astype(np.float32)
        assert arrs.std(axis=(1, 2, 3)).min() > 5.0, name
        assert len({_digest(a) for a in arrs}) == len(arrs), name


@pytest.mark.parametrize("name", ["digits", "glyphs", "styles"])
def test_determinism_and_prefix(tiny: dict, name: str) -> None:
    one = {"train": 1, "validation": 1, "test": 1}
    a = mw.load_miniworld(name, split_sizes=one)
    b = mw.load_miniworld(name, split_sizes=one)
    other = mw.load_miniworld(name, seed=1, split_sizes=one)
    for split in ("train", "validation", "test"):
        assert a[split]["label"] == b[split]["label"]
        assert [_digest(x) for x in _arrays(a[split])] == [_digest(x) for x in _arrays(b[split])]
        # smaller split sizes give a prefix of larger ones
        n = len(a[split])
        assert [_digest(x) for x in _arrays(a[split])] == [_digest(x) for x in _arrays(tiny[name][split])[:n]]
        assert a[split]["label"] == tiny[name][split]["label"][:n]
    assert [_digest(x) for x in _arrays(a["test"])] != [_digest(x) for x in _arrays(other["test"])]


def test_splits_are_disjoint(tiny: dict) -> None:
    for name in mw.DATASETS:
        seen: set[str] = set()
        for split in ("train", "validation", "test"):
            digests = {_digest(x) for x in _arrays(tiny[name][split])}
            assert not digests & seen, (name, split)
            seen |= digests


def test_cache_roundtrip(tmp_path: Path) -> None:
    a = mw.load_miniworld("shapes", split_sizes=TINY, cache_dir=tmp_path)
    assert any(p.name.startswith("shapes-seed0-px32") for p in tmp_path.iterdir())
    b = mw.load_miniworld("shapes", split_sizes=TINY, cache_dir=tmp_path)
    assert [_digest(x) for x in _arrays(a["test"])] == [_digest(x) for x in _arrays(b["test"])]
    assert b["test"].features["label"].names == list(mw.CLASS_NAMES["shapes"])


def test_pretraining_corpus_deterministic_and_covering() -> None:
    a = mw.pretraining_corpus(24, seed=0)
    b = mw.pretraining_corpus(24, seed=0)
    c = mw.pretraining_corpus(24, seed=1)
    assert [cap for _, cap in a] == [cap for _, cap in b]
    assert [_digest(np.asarray(im)) for im, _ in a] == [_digest(np.asarray(im)) for im, _ in b]
    assert [_digest(np.asarray(im)) for im, _ in a] != [_digest(np.asarray(im)) for im, _ in c]
    assert all(im.size == (32, 32) and im.mode == "RGB" and cap for im, cap in a)
    # chunked generation gives the same items
    imgs, caps, tags = mw.pretraining_arrays(8, seed=0, start=16)
    assert caps == [cap for _, cap in a[16:]] and len(tags) == 8
    assert [_digest(x) for x in imgs] == [_digest(np.asarray(im)) for im, _ in a[16:]]
    assert math.isclose(sum(mw.PRETRAIN_MIX.values()), 1.0) and math.isclose(sum(mw.PRETRAIN_STYLE_MIX.values()), 1.0)
    assert mw.PRETRAIN_STYLE_MIX["sketch"] <= 0.05


def test_benchmark_shift_is_benchmark_only(monkeypatch: pytest.MonkeyPatch) -> None:
    before = mw.pretraining_arrays(12, seed=0)
    monkeypatch.setitem(mw.BENCH_SHIFT, "shapes", {"pattern": 1.0})
    monkeypatch.setitem(mw.BENCH_SHIFT, "objects", {"duotone": 1.0, "occlude": 1.0})
    after = mw.pretraining_arrays(12, seed=0)
    assert [_digest(x) for x in before[0]] == [_digest(x) for x in after[0]] and before[1] == after[1]
    for name in ("shapes", "objects"):
        plain = mw.render_image(name, 0, rng=np.random.default_rng(5))
        shifted = mw.render_image(name, 0, rng=np.random.default_rng(5), shift_rng=np.random.default_rng(6))
        assert plain.shape == shifted.shape == (32, 32, 3) and _digest(plain) != _digest(shifted)


def test_real_digits_disjoint_from_pretraining() -> None:
    bench, pre = digits._real_partition()
    bench_rows = {row for rows in bench.values() for row in rows}
    assert not bench_rows & set(pre)
    assert len(bench_rows) + len(pre) == 5000 + 1797
    needed = sum(mw.SPLIT_SIZES["digits"].values())
    assert all(len(rows) >= needed for rows in bench.values())
    # pixel level: no benchmark digit image equals a pretraining source image
    pre_digests = {_digest(np.asarray(digits._digit_image(s, i, 32).convert("RGB"))) for s, i in pre}
    dd = mw.load_miniworld("digits", split_sizes={"train": 4, "validation": 4, "test": 4})
    for split in dd:
        assert not {_digest(x) for x in _arrays(dd[split])} & pre_digests


def test_procedural_pretraining_images_not_in_benchmark(tiny: dict) -> None:
    imgs, _, tags = mw.pretraining_arrays(300, seed=0)
    pre = {_digest(x) for x, t in zip(imgs, tags) if not t.startswith("digits_real")}
    for name in ("glyphs", "shapes", "objects", "styles"):
        for split in tiny[name]:
            assert not {_digest(x) for x in _arrays(tiny[name][split])} & pre


# ----------------------------------------------------------------------------------------------------------------
# Committed mini CLIP
# ----------------------------------------------------------------------------------------------------------------

ASSETS = Path(mw.__file__).resolve().parents[1] / "assets" / "mini-clip"
needs_assets = pytest.mark.skipif(not (ASSETS / "model.safetensors").exists(), reason="mini-clip assets not built")


@needs_assets
def test_assets_files() -> None:
    for f in (
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
        "vocab.json",
        "merges.txt",
        "preprocessor_config.json",
        "processor_config.json",
        "DATASHEET.md",
    ):
        assert (ASSETS / f).is_file(), f
    assert (ASSETS / "model.safetensors").stat().st_size <= 20_000_000
    sheet = (ASSETS / "DATASHEET.md").read_text()
    for word in ("Command", "Wall time", "validation", "test", "sketch", "MIT", "CC BY-SA 3.0", "BSD-3"):
        assert word in sheet, word


@needs_assets
def test_assets_load_and_zero_shot_above_chance() -> None:
    import torch
    from transformers import AutoProcessor, CLIPModel, CLIPProcessor, CLIPTokenizer

    model = CLIPModel.from_pretrained(ASSETS).eval()
    processor = CLIPProcessor.from_pretrained(ASSETS)
    tok = CLIPTokenizer.from_pretrained(ASSETS)
    assert type(AutoProcessor.from_pretrained(ASSETS)).__name__ == "CLIPProcessor"
    assert tok("a photo of a cat.").input_ids == [49406, 320, 1125, 539, 320, 2368, 269, 49407]
    assert len(tok) == model.config.text_config.vocab_size == 49408
    assert model.config.text_config.eos_token_id == 49407 and model.config.vision_config.image_size == 32

    for name in ("digits", "shapes", "styles"):
        ds = mw.load_miniworld(name, split_sizes={"train": 1, "validation": 1, "test": 6})["test"]
        names = ds.features["label"].names
        with torch.no_grad():
            enc = processor(text=[mw.TEMPLATES[name].format(c) for c in names], padding=True, return_tensors="pt")
            txt = model.get_text_features(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"])
            px = processor(images=list(ds["image"]), return_tensors="pt")["pixel_values"]
            assert tuple(px.shape[1:]) == (3, 32, 32)
            img = model.get_image_features(pixel_values=px)
        txt = getattr(txt, "pooler_output", txt)
        img = getattr(img, "pooler_output", img)
        pred = (torch.nn.functional.normalize(img, dim=-1) @ torch.nn.functional.normalize(txt, dim=-1).T).argmax(-1)
        acc = float((pred.numpy() == np.asarray(ds["label"])).mean())
        chance = 1.0 / len(names)
        # a clear margin over chance: more than 4 binomial standard deviations for these sample sizes
        assert acc > chance + 4 * math.sqrt(chance * (1 - chance) / len(ds)), (name, acc)


def test_styles_images_are_negatives_in_every_domain(monkeypatch):
    """DG v2 (docs/miniworld.md): every `styles` benchmark image, whatever its domain, is a photographic negative of
    the image the same streams give without that shift; pretraining images (no shift stream) never are."""
    from metaprompt_hf.miniworld import catalog

    for domain in mw.DG_DOMAINS:
        shifted = mw.render_image(
            "styles", 3, rng=np.random.default_rng(5), domain=domain, shift_rng=np.random.default_rng(6)
        )
        monkeypatch.setitem(catalog.BENCH_SHIFT, "styles", {**catalog.BENCH_SHIFT["styles"], "invert": 0.0})
        plain = mw.render_image(
            "styles", 3, rng=np.random.default_rng(5), domain=domain, shift_rng=np.random.default_rng(6)
        )
        monkeypatch.undo()
        # the negative is taken before the final box downsampling, so equal up to rounding
        assert np.abs(shifted.astype(int) - (255 - plain.astype(int))).max() <= 1, domain
    assert catalog.BENCH_SHIFT["styles"]["invert"] == 1.0 and catalog.MINIWORLD_VERSION == "2"
