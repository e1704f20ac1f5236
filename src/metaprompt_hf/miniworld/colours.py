"""Colours of the mini world: vivid random colours, named colour words for captions and per-part palettes."""

from __future__ import annotations

import colorsys
from collections.abc import Sequence
from typing import Any

import numpy as np


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
