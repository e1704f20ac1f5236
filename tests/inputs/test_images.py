"""`metaprompt_hf.inputs.images`: every Pillow mode decoded to the right 8-bit RGB pixels, or refused with a clear error.

One table: each row builds an input (a PIL image, file bytes or a datasets value) and states the expected outcome,
either pixels (`Pixels`) or an error (`Fails`). Adding a case is one line.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest
from PIL import Image

from metaprompt_hf.data.images import decode_row_image
from metaprompt_hf.inputs.images import decode_image, to_rgb

RED, BLUE, WHITE = (255, 0, 0), (0, 0, 255), (255, 255, 255)


@dataclass(frozen=True)
class Pixels:
    """Correct result: an RGB image of `size` whose pixel at each (x, y) key is the value (± `tol` per channel)."""

    at: dict[tuple[int, int], tuple[int, int, int]]
    size: tuple[int, int] = (4, 2)
    tol: int = 0


@dataclass(frozen=True)
class Fails:
    """Clear error: `decode_image` raises `error` with a message matching `match`; the dataset-row decoder
    (`decode_row_image`) gives None, so the row is skipped and named."""

    error: type[BaseException]
    match: str | None = None
    refused_as_a_row: bool = field(default=True)


def gray(mode: str, values: list[float], size: tuple[int, int] = (4, 2)) -> Image.Image:
    """A `mode` image whose rows are `values` repeated (left to right, one value per column group)."""
    dtype = {"I;16": np.uint16, "I": np.int32, "F": np.float32}[mode]
    row = np.repeat(np.asarray(values, dtype=np.float64), size[0] // len(values))
    return Image.fromarray(np.tile(row, (size[1], 1)).astype(dtype))


def sixteen_bit(mode: str, value: int) -> Image.Image:
    order = ">" if mode == "I;16B" else "<"
    return Image.frombytes(mode, (4, 2), np.full((2, 4), value, dtype=f"{order}u2").tobytes())


def saved(image: Image.Image, fmt: str, **kwargs: Any) -> bytes:
    buf = io.BytesIO()
    image.save(buf, fmt, **kwargs)
    return buf.getvalue()


def with_exif_orientation(orientation: int) -> bytes:
    """4x2 PNG, left half red, right half blue, with an EXIF orientation tag."""
    im = Image.new("RGB", (4, 2), BLUE)
    im.paste(RED, (0, 0, 2, 2))
    exif = Image.Exif()
    exif[0x0112] = orientation
    return saved(im, "PNG", exif=exif)


def palette(transparent_index: int | None) -> Image.Image:
    im = Image.new("P", (4, 2), 1)
    im.putpalette([*RED, *BLUE] + [0] * (256 * 3 - 6))
    im.paste(0, (0, 0, 2, 2))
    if transparent_index is not None:
        im.info["transparency"] = transparent_index
    return im


def gif_two_frames() -> bytes:
    frames = [Image.new("RGB", (4, 2), RED), Image.new("RGB", (4, 2), BLUE)]
    return saved(frames[0], "GIF", save_all=True, append_images=frames[1:])


def keyed(mode: str, key: Any, fill: Any) -> Image.Image:
    """A `mode` image filled with `fill` whose left half is the PNG colour key `key` (transparent)."""
    im = Image.new(mode, (4, 2), fill)
    im.paste(key, (0, 0, 2, 2))
    im.info["transparency"] = key
    return im


def sixteen_bit_keyed() -> bytes:
    im = gray("I;16", [1000, 25700])
    return saved(im, "PNG", transparency=1000)


LEFT, RIGHT = (0, 0), (3, 1)
CASES: list[tuple[str, Callable[[], Any], Pixels | Fails]] = [
    # 8-bit modes Pillow converts correctly
    ("RGB", lambda: Image.new("RGB", (4, 2), RED), Pixels({LEFT: RED})),
    ("L", lambda: Image.new("L", (4, 2), 100), Pixels({LEFT: (100, 100, 100)})),
    ("1", lambda: Image.new("1", (4, 2), 1), Pixels({LEFT: WHITE})),
    ("P", lambda: palette(None), Pixels({LEFT: RED, RIGHT: BLUE})),
    ("CMYK", lambda: Image.new("CMYK", (4, 2), (0, 255, 255, 0)), Pixels({LEFT: RED})),
    ("YCbCr", lambda: Image.new("YCbCr", (4, 2), (76, 85, 255)), Pixels({LEFT: RED}, tol=1)),
    ("HSV", lambda: Image.new("HSV", (4, 2), (0, 255, 255)), Pixels({LEFT: RED})),
    ("LAB grey", lambda: Image.new("LAB", (4, 2), (127, 128, 128)), Pixels({LEFT: (118, 118, 118)}, tol=2)),
    ("RGBX", lambda: Image.new("RGBX", (4, 2), (*RED, 0)), Pixels({LEFT: RED})),
    # 16-bit: scaled by the bit depth (Pillow's convert clips them to white)
    ("I;16", lambda: gray("I;16", [0, 25700]), Pixels({LEFT: (0, 0, 0), RIGHT: (100, 100, 100)})),
    ("I;16 full range", lambda: gray("I;16", [257, 65535]), Pixels({LEFT: (1, 1, 1), RIGHT: WHITE})),
    ("I;16L", lambda: sixteen_bit("I;16L", 25700), Pixels({LEFT: (100, 100, 100)})),
    ("I;16B", lambda: sixteen_bit("I;16B", 25700), Pixels({LEFT: (100, 100, 100)})),
    ("I;16 PNG file", lambda: saved(gray("I;16", [25700, 51400]), "PNG"), Pixels({LEFT: (100,) * 3, RIGHT: (200,) * 3})),
    ("I;16 TIFF file", lambda: saved(gray("I;16", [25700, 51400]), "TIFF"), Pixels({LEFT: (100,) * 3})),
    # 32-bit integer: by the range the values fit in
    ("I within 0..255", lambda: gray("I", [0, 200]), Pixels({LEFT: (0, 0, 0), RIGHT: (200, 200, 200)})),
    ("I within 0..65535", lambda: gray("I", [0, 25700]), Pixels({RIGHT: (100, 100, 100)})),
    ("I negative: min..max", lambda: gray("I", [-1000, 1000]), Pixels({LEFT: (0, 0, 0), RIGHT: WHITE})),
    ("I above 16 bits", lambda: gray("I", [0, 1 << 20]), Pixels({LEFT: (0, 0, 0), RIGHT: WHITE})),
    # 32-bit float: 0..1, 0..255, else min..max; non-finite refused
    ("F within 0..1", lambda: gray("F", [0.0, 0.4]), Pixels({LEFT: (0, 0, 0), RIGHT: (102, 102, 102)})),
    ("F within 0..255", lambda: gray("F", [0.0, 100.0]), Pixels({RIGHT: (100, 100, 100)})),
    ("F out of range", lambda: gray("F", [-1.0, 3.0]), Pixels({LEFT: (0, 0, 0), RIGHT: WHITE})),
    ("F constant 1000", lambda: gray("F", [1000.0]), Pixels({LEFT: (0, 0, 0)})),
    ("F with NaN", lambda: gray("F", [0.5, float("nan")]), Fails(ValueError, "NaN or infinite")),
    ("F with inf", lambda: gray("F", [0.5, float("inf")]), Fails(ValueError, "NaN or infinite")),
    # transparency: composited on white
    ("RGBA clear", lambda: Image.new("RGBA", (4, 2), (*RED, 0)), Pixels({LEFT: WHITE})),
    ("RGBA opaque", lambda: Image.new("RGBA", (4, 2), (*RED, 255)), Pixels({LEFT: RED})),
    ("RGBA half", lambda: Image.new("RGBA", (4, 2), (*RED, 128)), Pixels({LEFT: (255, 127, 127)}, tol=1)),
    ("LA clear", lambda: Image.new("LA", (4, 2), (0, 0)), Pixels({LEFT: WHITE})),
    ("La premultiplied", lambda: Image.new("La", (4, 2), (50, 128)), Pixels({LEFT: (177, 177, 177)}, tol=2)),
    ("RGBa premultiplied", lambda: Image.new("RGBa", (4, 2), (128, 0, 0, 128)), Pixels({LEFT: (255, 127, 127)}, tol=2)),
    ("PA clear", lambda: palette(None).convert("PA"), Pixels({LEFT: RED})),
    ("P transparent index", lambda: palette(0), Pixels({LEFT: WHITE, RIGHT: BLUE})),
    ("P transparent PNG", lambda: saved(palette(0), "PNG"), Pixels({LEFT: WHITE, RIGHT: BLUE})),
    ("L colour key", lambda: keyed("L", 0, 100), Pixels({LEFT: WHITE, RIGHT: (100, 100, 100)})),
    ("RGB colour key", lambda: keyed("RGB", BLUE, RED), Pixels({LEFT: WHITE, RIGHT: RED})),
    ("I;16 colour key PNG", sixteen_bit_keyed, Pixels({LEFT: WHITE, RIGHT: (100, 100, 100)})),
    # EXIF orientation applied (the left half is red before rotation)
    ("EXIF 1", lambda: with_exif_orientation(1), Pixels({LEFT: RED, RIGHT: BLUE})),
    ("EXIF 3 (180)", lambda: with_exif_orientation(3), Pixels({LEFT: BLUE, RIGHT: RED})),
    ("EXIF 6 (90 CW)", lambda: with_exif_orientation(6), Pixels({(0, 0): RED, (1, 3): BLUE}, size=(2, 4))),
    ("EXIF 8 (90 CCW)", lambda: with_exif_orientation(8), Pixels({(0, 0): BLUE, (1, 3): RED}, size=(2, 4))),
    # containers
    ("GIF: first frame", gif_two_frames, Pixels({LEFT: RED})),
    ("datasets value (bytes)", lambda: {"bytes": saved(Image.new("L", (4, 2), 7), "PNG"), "path": None}, Pixels({LEFT: (7, 7, 7)})),
    ("datasets value (bytes win over path)", lambda: {"bytes": saved(Image.new("L", (4, 2), 7), "PNG"), "path": "/nonexistent.png"}, Pixels({LEFT: (7, 7, 7)})),
    # refused
    ("not an image", lambda: b"this is not an image", Fails(OSError, "cannot identify image file")),
    ("truncated PNG", lambda: saved(Image.new("RGB", (64, 64), RED), "PNG")[:60], Fails(OSError)),
    ("missing file", lambda: "/nonexistent/image.png", Fails(FileNotFoundError, "nonexistent")),
    ("datasets value without bytes or path", lambda: {"bytes": None, "path": None}, Fails(ValueError, "neither bytes nor a path")),
    ("not an image type", lambda: 3.5, Fails(TypeError, "got float", refused_as_a_row=False)),
]  # fmt: skip


def _as_row_value(value: Any) -> Any:
    """The value as a `datasets` row stores it (undecoded), or None for a PIL image (rows never hold one)."""
    if isinstance(value, bytes):
        return {"bytes": value, "path": None}
    return None if isinstance(value, Image.Image) else value


@pytest.mark.parametrize("make, expected", [row[1:] for row in CASES], ids=[row[0] for row in CASES])
def test_decode(make, expected):
    """`decode_image` (predict) and `decode_row_image` (datasets' `Image` feature, training and evaluation) give the
    same pixels for the same file, and refuse the same files."""
    value = make()
    row_value = _as_row_value(value)
    if isinstance(expected, Fails):
        with pytest.raises(expected.error, match=expected.match):
            decode_image(value)
        if expected.refused_as_a_row:
            assert decode_row_image(row_value) is None
        return
    images = [decode_image(value)] + ([decode_row_image(row_value)] if row_value is not None else [])
    for image in images:
        assert image.mode == "RGB" and image.size == expected.size
        for xy, rgb in expected.at.items():
            got = image.getpixel(xy)
            assert max(abs(g - e) for g, e in zip(got, rgb)) <= expected.tol, f"pixel {xy}: {got} != {rgb}"


def test_sixteen_bit_photo_matches_its_eight_bit_version():
    """The issue's case: the same photo as 8-bit grey and as 16-bit grey decodes to the same pixels."""
    rng = np.random.default_rng(0)
    eight = rng.integers(0, 256, size=(16, 16), dtype=np.uint8)
    sixteen = Image.fromarray(eight.astype(np.uint16) * 257)
    assert sixteen.mode == "I;16"
    np.testing.assert_array_equal(np.asarray(to_rgb(sixteen))[..., 0], eight)


def test_predict_preprocessing_uses_the_same_conversion():
    """`MetaPromptModel.preprocess` turns a 16-bit image into the pixel values of its decoded RGB version."""
    from metaprompt_hf import MetaPromptConfig, MetaPromptModel
    from metaprompt_hf.testing import tiny_clip

    clip, processor = tiny_clip(seed=0)
    model = MetaPromptModel(clip, MetaPromptConfig(), processor)
    sixteen = gray("I;16", [6000, 60000], size=(40, 40))
    expected = processor.image_processor(images=[decode_image(sixteen)], return_tensors="pt")["pixel_values"]
    got = model.preprocess(sixteen)
    assert got.shape == expected.shape
    assert (got - expected).abs().max() < 1e-6
