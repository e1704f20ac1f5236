"""What `predict` accepts and what it refuses, as a table: one line per input, each either a correct result (equal to
the same images given as PIL images) or a clear error naming the input. Adding a case is one line."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

NAMES = ["red apple", "blue sky", "yellow sun"]
RNG = np.random.default_rng(0)
ARRAYS = [(RNG.random((36, 40, 3)) * 255).astype("uint8") for _ in range(2)]


@pytest.fixture
def image_files(tmp_path) -> list[Path]:
    paths = []
    for i, a in enumerate(ARRAYS):
        paths.append(tmp_path / f"{i}.png")
        Image.fromarray(a).save(paths[-1])
    (tmp_path / "notes.txt").write_text("not an image")
    return paths


def _pixels(model) -> torch.Tensor:
    return model.preprocess([Image.fromarray(a) for a in ARRAYS])


# (case id, build the input from (model, files), expected: "same" = equals predict on the PIL images, else the
# regex the ValueError must match)
IMAGE_CASES = [
    ("str paths", lambda m, f: [str(p) for p in f], "same"),
    ("Path objects", lambda m, f: list(f), "same"),
    ("one str path", lambda m, f: str(f[0]), "same[:1]"),
    ("one Path", lambda m, f: f[0], "same[:1]"),
    ("pixel_values", lambda m, f: _pixels(m), "same"),
    ("one (3, H, W) tensor", lambda m, f: _pixels(m)[0], "same[:1]"),
    ("missing file", lambda m, f: [f[0], f[0].parent / "gone.png"], r"images\[1\]: no such file"),
    ("text file", lambda m, f: [f[0].parent / "notes.txt"], r"images\[0\]: .*notes.txt.* not a readable image"),
    ("None in a list", lambda m, f: [Image.fromarray(ARRAYS[0]), None], r"images\[1\]: expected .* got NoneType"),
    ("object() in a list", lambda m, f: [object()], r"images\[0\]: expected .* got object"),
    ("bytes", lambda m, f: b"\x89PNG", r"images: expected .* got bytes"),
    ("an int", lambda m, f: 42, r"images: expected PIL"),
    ("empty list", lambda m, f: [], r"images: got an empty list"),
    ("empty pixel batch", lambda m, f: torch.zeros(0, 3, 32, 32), r"pixel_values: got an empty batch"),
    ("uint8 0-255 pixels", lambda m, f: (_pixels(m) * 60 + 120).clamp(0, 255).byte(), r"pixel_values: .*dtype torch.uint8"),
    ("float 0-255 pixels", lambda m, f: (_pixels(m) * 60 + 120).clamp(0, 255), r"pixel_values: values reach .* not normalised"),
    ("NaN pixels", lambda m, f: _pixels(m).index_fill(0, torch.tensor([1]), float("nan")), r"pixel_values: samples \[1\] hold NaN"),
    ("inf pixels", lambda m, f: _pixels(m).index_fill(0, torch.tensor([0]), float("inf")), r"samples \[0\] hold NaN or infinite"),
    ("1 channel", lambda m, f: _pixels(m)[:, :1], r"pixel_values: expected 3 channels"),
    ("(H, W) tensor", lambda m, f: torch.zeros(32, 32), r"pixel_values: expected shape \(B, 3, H, W\)"),
]  # fmt: skip


@pytest.mark.parametrize("build, expected", [c[1:] for c in IMAGE_CASES], ids=[c[0] for c in IMAGE_CASES])
def test_image_inputs(model, image_files, build, expected):
    images = build(model, image_files)
    if expected.startswith("same"):
        reference = model.predict([Image.fromarray(a) for a in ARRAYS], NAMES)
        reference = reference[:1] if expected == "same[:1]" else reference
        torch.testing.assert_close(model.predict(images, NAMES), reference, rtol=0, atol=1e-6)
    else:
        with pytest.raises(ValueError, match=expected):
            model.predict(images, NAMES)


# (case id, keyword arguments of predict besides the images, regex of the ValueError or None for a correct result)
CALL_CASES = [
    ("distinct names", {"class_names": NAMES}, None),
    ("duplicate names", {"class_names": ["cat", "dog", "cat"]}, r"class_names\[2\]: 'cat' is the same class as class_names\[0\]"),
    ("names equal after _ -> space", {"class_names": ["red_apple", "red apple"]}, r"class_names\[1\].*class_names\[0\] \('red_apple'\)"),
    ("names equal after stripping", {"class_names": ["sky", " sky "]}, r"class_names\[1\]"),
    ("one string", {"class_names": "cat, dog"}, r"class_names: expected a list"),
    ("empty name", {"class_names": ["cat", " _ "]}, r"class_names\[1\]: expected a non-empty string"),
    ("batch_size 1", {"class_names": NAMES, "batch_size": 1}, None),
    ("batch_size 0", {"class_names": NAMES, "batch_size": 0}, r"batch_size: expected an integer >= 1, got 0"),
    ("batch_size -3", {"class_names": NAMES, "batch_size": -3}, r"batch_size: .* got -3"),
    ("batch_size True", {"class_names": NAMES, "batch_size": True}, r"batch_size: .* got True"),
    ("per-call templates", {"class_names": NAMES, "templates": ["a sketch of a {}"]}, None),
    ("template without {}", {"class_names": NAMES, "templates": ["a sketch"]}, r"templates\[0\]: expected exactly one"),
    ("template with a named field", {"class_names": NAMES, "templates": ["a {} {x}"]}, r"templates\[0\]"),
]  # fmt: skip


@pytest.mark.parametrize("kwargs, error", [c[1:] for c in CALL_CASES], ids=[c[0] for c in CALL_CASES])
def test_call_arguments(model, kwargs, error):
    images = [Image.fromarray(a) for a in ARRAYS]
    if error is None:
        probs = model.predict(images, **kwargs)
        assert probs.shape == (2, len(kwargs["class_names"])) and torch.allclose(probs.sum(-1), torch.ones(2))
    else:
        with pytest.raises(ValueError, match=error):
            model.predict(images, **kwargs)


def test_per_call_templates_equal_a_model_configured_with_them(model, clip_and_processor):
    from metaprompt_hf import MetaPromptConfig, MetaPromptModel

    clip, processor = clip_and_processor
    other = MetaPromptModel(model.clip, MetaPromptConfig(templates=["a sketch of a {}"]), processor)
    other.load_prompt_state_dict(model.prompt_state_dict())
    images = [Image.fromarray(a) for a in ARRAYS]
    per_call = model.predict(images, NAMES, templates=["a sketch of a {}"], return_zero_shot=True)
    configured = other.predict(images, NAMES, return_zero_shot=True)
    assert torch.equal(per_call[0], configured[0]) and torch.equal(per_call[1], configured[1])
    assert model.config.templates == ["a photo of a {}"]  # nothing stored
    assert not torch.equal(model.predict(images, NAMES, return_zero_shot=True)[1], per_call[1])
