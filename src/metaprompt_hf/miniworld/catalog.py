"""What the mini world contains: datasets, class names, templates, split sizes, the pretraining mix and
the benchmark-only shifts, plus the keyed random streams every image is drawn from."""

from __future__ import annotations

from typing import Any

import numpy as np

#: Bump when the generated data change; it is part of the on-disk cache key.
MINIWORLD_VERSION = "2"

B2N_DATASETS: tuple[str, ...] = ("digits", "glyphs", "shapes", "objects")
DG_DATASET: str = "styles"
DG_DOMAINS: tuple[str, ...] = ("photo", "cartoon", "painting", "sketch")
DATASETS: tuple[str, ...] = (*B2N_DATASETS, DG_DATASET)

_DIGIT_NAMES = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")

# (class name, character). The order is deliberate: letters and symbols alternate, so that both the base half
# (first ceil(C/2) label ids) and the new half hold letters and symbols.
_GLYPHS: tuple[tuple[str, str], ...] = (
    ("letter a", "a"),
    ("question mark", "?"),
    ("letter e", "e"),
    ("dollar sign", "$"),
    ("letter g", "g"),
    ("ampersand", "&"),
    ("letter k", "k"),
    ("percent sign", "%"),
    ("letter m", "m"),
    ("at sign", "@"),
    ("letter r", "r"),
    ("plus sign", "+"),
    ("letter x", "x"),
    ("hash sign", "#"),
    ("letter b", "b"),
    ("asterisk", "*"),
)

_SHAPE_NAMES = (
    "circle",
    "triangle",
    "square",
    "star",
    "heart",
    "cross",
    "hexagon",
    "diamond",
    "crescent",
    "arrow",
    "ring",
    "pentagon",
)

_OBJECT_NAMES = (
    "house",
    "tree",
    "car",
    "fish",
    "flower",
    "cup",
    "umbrella",
    "boat",
    "key",
    "sun",
    "cloud",
    "mushroom",
    "apple",
    "mountain",
)

_STYLE_CLASS_NAMES = ("house", "tree", "car", "fish", "flower", "umbrella", "boat", "star", "heart", "sun")

#: Class names per dataset, in label-id order (``ClassLabel.names``).
CLASS_NAMES: dict[str, tuple[str, ...]] = {
    "digits": _DIGIT_NAMES,
    "glyphs": tuple(name for name, _ in _GLYPHS),
    "shapes": _SHAPE_NAMES,
    "objects": _OBJECT_NAMES,
    "styles": _STYLE_CLASS_NAMES,
}

#: The hand-crafted template of each dataset (``"{}"`` is the class name; no trailing period, docs/method.md §8).
TEMPLATES: dict[str, str] = {
    "digits": "a photo of the digit {}",
    "glyphs": "a photo of the {}",
    "shapes": "a photo of a {}, a type of shape",
    "objects": "a photo of a {}",
    "styles": "a photo of a {}",
}

#: Images per class and split for the base-to-new datasets; for ``styles`` the numbers are per (domain, class).
SPLIT_SIZES: dict[str, dict[str, int]] = {
    "digits": {"train": 32, "validation": 16, "test": 50},
    "glyphs": {"train": 32, "validation": 16, "test": 40},
    "shapes": {"train": 32, "validation": 16, "test": 40},
    "objects": {"train": 32, "validation": 16, "test": 40},
    "styles": {"train": 16, "validation": 16, "test": 30},
}

_SPLITS = ("train", "validation", "test")
_BENCH_STREAM = 0
_PRETRAIN_STREAM = 1
_SS = 3  # supersampling factor of procedural drawings

# Real digits: a fixed (seed-independent) partition into a benchmark part and a pretraining part.
_REAL_PARTITION_KEY = 20_250_117
_N_BENCH_MNIST = 66  # per class, out of 500
_N_BENCH_UCI = 32  # per class, out of ~180

#: Sources of the pretraining corpus and their probabilities.
PRETRAIN_MIX: dict[str, float] = {
    "digits_real": 0.10,
    "digits_typed": 0.06,
    "glyphs": 0.22,
    "shapes": 0.27,
    "objects": 0.35,
}

#: Exponent of the long-tailed class frequencies within each family of the pretraining corpus (0: uniform).
PRETRAIN_TAIL = 0.7
_CLASS_FREQ_KEY = 31_337
_FAMILY_NAMES: dict[str, tuple[str, ...]] = {
    "digits": _DIGIT_NAMES,
    "glyphs": tuple(name for name, _ in _GLYPHS),
    "shapes": _SHAPE_NAMES,
    "objects": _OBJECT_NAMES,
}

#: Rendering styles of shapes and objects in the pretraining corpus. ``sketch`` is deliberately rare.
PRETRAIN_STYLE_MIX: dict[str, float] = {
    "flat": 0.24,
    "clipart": 0.24,
    "photo": 0.20,
    "cartoon": 0.15,
    "painting": 0.145,
    "sketch": 0.025,
}

# Caption noise of the pretraining corpus (web-like): captions without the class, captions with a wrong class.
_P_GENERIC_CAPTION = 0.05
_P_WRONG_CAPTION = 0.07
#: Benchmark-only departures from the pretraining distribution, per dataset (like real downstream datasets, which
#: never look exactly like CLIP's web data), with the probability that an image gets them: MNIST-M-like texture
#: blending of the real digits, outlined (hollow) glyphs, striped shape fills, duotone recolouring of the objects;
#: for ``styles`` occluding bars and, in every domain, a photographic negative (version 2: a dataset-wide look the
#: source domains teach and the held-out domain shares, docs/miniworld.md). The pretraining corpus never contains them, so they leave room
#: for few-shot adaptation; unused keys of ``_Shift`` (``scale``, ``thicken``) are available for variants.
BENCH_SHIFT: dict[str, dict[str, Any]] = {
    "digits": {"blend": 0.75},
    "glyphs": {"hollow": 0.75},
    "shapes": {"pattern": 0.75},
    "objects": {"duotone": 0.75},
    "styles": {"occlude": 0.5, "invert": 1.0},
}
_SHIFT_KEY = 99
# Probability of distractor clutter behind the object (benchmark, pretraining).
_P_CLUTTER = {_BENCH_STREAM: 0.5, _PRETRAIN_STREAM: 0.25}


def _rng(*keys: int) -> np.random.Generator:
    """Return an independent generator keyed by non-negative integers."""
    return np.random.default_rng([int(k) for k in keys])
