"""One way to turn any image Pillow opens into the 8-bit RGB image CLIP's processor expects.

Used by `MetaPromptModel.predict` (`decode_image` on paths and bytes, `to_rgb` on PIL images), by the demo Space, and
by training and evaluation after `datasets`' `Image` feature has opened a row's file (`dataset_images`), so a file
gives the same pixels everywhere.

Pillow's own `convert("RGB")` is right for the 8-bit modes but clips the wider ones: a 16-bit grayscale photo
(`I;16`, values up to 65535) comes out all white. `to_rgb` scales those instead:

- `I;16`, `I;16L`, `I;16B`, `I;16N` (16-bit unsigned): by their bit depth, v * 255 / 65535;
- `I` (32-bit signed integer): by the range the values fit in: 0..255 as 8-bit (what Pillow does), 0..65535 as
  16-bit, anything else (negative values, or above 65535) stretched from the image's own min..max;
- `F` (32-bit float): 0..1 as the float convention (x 255), 0..255 as 8-bit values, anything else stretched from
  min..max; NaN or infinite pixels are refused (`ValueError`).

The EXIF orientation is applied (a phone photo taken upright is upright), and images with transparency (an alpha
band, a palette or colour key with transparency, premultiplied `RGBa`/`La`) are composited on a white background,
as a browser shows them. Multi-frame files (GIF, TIFF) give their first frame.
"""

from __future__ import annotations

import io
import os
from typing import Any

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

BACKGROUND = (255, 255, 255)
"""Colour that transparent pixels are composited on (white, as browsers and the Space show them)."""

SIXTEEN_BIT_MODES = frozenset({"I;16", "I;16L", "I;16B", "I;16N"})
DECODE_ERRORS = (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError)
"""What Pillow (and `to_rgb`) raise for a file that is not a readable image."""


def to_rgb(image: Image.Image) -> Image.Image:
    """A decoded PIL image of any mode → an upright 8-bit RGB image of the same size (or the transposed size).

    Raises:
        ValueError: a float image with NaN or infinite pixels, an unreadable EXIF block, or a mode Pillow cannot
            convert to RGB (the message names the mode).
    """
    try:
        image = ImageOps.exif_transpose(image)
    except Exception as err:  # Pillow's EXIF parser raises many types on garbage; all mean "unreadable"
        raise ValueError(f"the image's EXIF orientation cannot be read ({type(err).__name__}: {err})") from err
    if image.mode in SIXTEEN_BIT_MODES or image.mode in ("I", "F"):
        return _wide_to_rgb(image)
    if image.has_transparency_data:
        return _composite(image.convert("LA") if image.mode == "La" else image)
    if image.mode == "RGB":
        return image
    try:
        return image.convert("RGB")
    except ValueError as err:
        raise ValueError(f"images of mode {image.mode!r} cannot be converted to RGB ({err})") from err


def _composite(image: Image.Image) -> Image.Image:
    rgba = image.convert("RGBA")
    background = Image.new("RGBA", rgba.size, (*BACKGROUND, 255))
    return Image.alpha_composite(background, rgba).convert("RGB")


def _wide_to_rgb(image: Image.Image) -> Image.Image:
    """`I;16*`, `I` or `F` → RGB, scaled as the module docstring says (never clipped)."""
    raw = np.asarray(image)
    values = raw.astype(np.float64)
    if image.mode == "F" and not np.isfinite(values).all():
        raise ValueError("the float (mode 'F') image holds NaN or infinite pixels")
    lo, hi = (float(values.min()), float(values.max())) if values.size else (0.0, 0.0)
    if image.mode in SIXTEEN_BIT_MODES:
        scaled = values * (255.0 / 65535.0)
    elif image.mode == "F" and lo >= 0.0 and hi <= 1.0:
        scaled = values * 255.0
    elif lo >= 0.0 and hi <= 255.0:
        scaled = values
    elif image.mode == "I" and lo >= 0.0 and hi <= 65535.0:
        scaled = values * (255.0 / 65535.0)
    else:
        scaled = (values - lo) * (255.0 / (hi - lo)) if hi > lo else np.zeros_like(values)
    gray = Image.fromarray(np.rint(scaled).clip(0, 255).astype(np.uint8), mode="L")
    transparency = image.info.get("transparency")
    if isinstance(transparency, (int, float)):  # a PNG colour key on 16-bit grayscale
        alpha = Image.fromarray(np.where(raw == transparency, 0, 255).astype(np.uint8), mode="L")
        gray.putalpha(alpha)
        return _composite(gray)
    return gray.convert("RGB")


def decode_image(value: Any) -> Image.Image:
    """Open and fully decode an image → upright 8-bit RGB (`to_rgb`).

    Args:
        value: a PIL image, a path (str or `os.PathLike`), raw file bytes, a binary file object, or an undecoded
            `datasets.Image` value (`{"bytes": ..., "path": ...}`; bytes win when both are set).

    Raises:
        One of `DECODE_ERRORS`: not an image, truncated or corrupt, too many pixels, or not convertible.
        TypeError: `value` is none of the above.
    """
    if isinstance(value, Image.Image):
        return to_rgb(value)
    if isinstance(value, dict):
        data, path = value.get("bytes"), value.get("path")
        if not data and not path:
            raise ValueError("the image value has neither bytes nor a path")
        source: Any = io.BytesIO(data) if data else path
    elif isinstance(value, (bytes, bytearray, memoryview)):
        source = io.BytesIO(value)
    elif isinstance(value, (str, os.PathLike)) or hasattr(value, "read"):
        source = value
    else:
        raise TypeError(f"expected a PIL image, a path, bytes or a datasets image value, got {type(value).__name__}")
    with Image.open(source) as img:
        img.load()
        return to_rgb(img)
