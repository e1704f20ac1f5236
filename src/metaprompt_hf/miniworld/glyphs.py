"""Glyphs typed in the TrueType fonts bundled with matplotlib (letters and symbols of the ``glyphs`` dataset)."""

from __future__ import annotations

import functools
import glob
import importlib.util
import os

import numpy as np
from PIL import Image, ImageChops, ImageDraw, ImageFilter, ImageFont

from .catalog import _SS
from .colours import _contrasting, _hsv, _jitter, _vivid, colour_name
from .rendering import _clutter, _finish, _gradient_bg, _paint, _Shift

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
