"""The pretraining corpus: image-caption pairs with web-like caption noise, disjoint from the benchmark."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor

import numpy as np
from PIL import Image

from .catalog import (
    _CLASS_FREQ_KEY,
    _FAMILY_NAMES,
    _GLYPHS,
    _P_CLUTTER,
    _P_GENERIC_CAPTION,
    _P_WRONG_CAPTION,
    _PRETRAIN_STREAM,
    PRETRAIN_MIX,
    PRETRAIN_STYLE_MIX,
    PRETRAIN_TAIL,
    _rng,
)
from .digits import _augment_digit, _digit_image, _real_digits, _real_partition
from .glyphs import _render_glyph
from .rendering import _render_parts

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
