"""Checks and conversions of what users pass to `MetaPromptModel.predict` / `forward`: class names, images and
`pixel_values`, batch sizes. Everything refused is refused before any encoder runs, with a message naming the input
(and the index of the element) and the reason."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import torch

# Normalised pixels (mean/std of CLIP, SigLIP, ...) lie within a few units of 0; 0-255 values are far outside.
MAX_NORMALISED_ABS = 10.0


def clean_class_name(name: str) -> str:
    """The class name as the text encoders read it: `_` → space, outer blanks removed (docs/method.md §1.2)."""
    return name.replace("_", " ").strip()


def check_class_names(class_names: Any, *, unique: bool = False) -> None:
    """A non-empty list of non-empty strings; with `unique`, no two equal after `clean_class_name`."""
    if isinstance(class_names, str) or not isinstance(class_names, Sequence):
        raise ValueError(f"class_names: expected a list of strings, got {type(class_names).__name__}")
    if not class_names:
        raise ValueError("class_names: got an empty list")
    seen: dict[str, int] = {}
    for i, name in enumerate(class_names):
        if not isinstance(name, str) or not clean_class_name(name):
            raise ValueError(f"class_names[{i}]: expected a non-empty string, got {name!r}")
        cleaned = clean_class_name(name)
        if unique and cleaned in seen:
            j = seen[cleaned]
            raise ValueError(
                f"class_names[{i}]: {name!r} is the same class as class_names[{j}] ({class_names[j]!r}) once '_' is "
                f"read as a space; each class must be named once"
            )
        seen.setdefault(cleaned, i)


def check_batch_size(batch_size: Any) -> int:
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size: expected an integer >= 1, got {batch_size!r}")
    return batch_size


def check_pixel_values(pixel_values: torch.Tensor, num_channels: int | None = None) -> torch.Tensor:
    """(B, C, H, W) (or one (C, H, W) image) of finite, normalised floats, B >= 1 → (B, C, H, W)."""
    if pixel_values.ndim == 3:
        pixel_values = pixel_values.unsqueeze(0)
    if pixel_values.ndim != 4:
        raise ValueError(f"pixel_values: expected shape (B, 3, H, W), got {tuple(pixel_values.shape)}")
    if pixel_values.shape[0] == 0 or pixel_values.numel() == 0:
        raise ValueError(f"pixel_values: got an empty batch, shape {tuple(pixel_values.shape)}")
    if num_channels is not None and pixel_values.shape[1] != num_channels:
        raise ValueError(
            f"pixel_values: expected {num_channels} channels in dimension 1, got shape {tuple(pixel_values.shape)}"
        )
    if not pixel_values.is_floating_point():
        raise ValueError(
            f"pixel_values: expected normalised floats (the image processor's output), got dtype {pixel_values.dtype}"
            f"; pass PIL images or arrays to have them processed"
        )
    finite = torch.isfinite(pixel_values).flatten(1).all(dim=1)
    if not bool(finite.all()):
        bad = [int(i) for i in (~finite).nonzero().flatten()[:5]]
        raise ValueError(f"pixel_values: samples {bad} hold NaN or infinite values")
    peak = float(pixel_values.abs().max())
    if peak > MAX_NORMALISED_ABS:
        raise ValueError(
            f"pixel_values: values reach {peak:g}, so they are not normalised (the image processor gives values "
            f"within a few units of 0; 0-255 pixels must go through the processor: pass PIL images or arrays)"
        )
    return pixel_values


def as_image_list(images: Any) -> list[Any]:
    """One image or a sequence of them → a list of 8-bit RGB PIL images or arrays, decoding paths.

    Accepted elements: PIL images (any mode, converted as `images.to_rgb` does), numpy arrays (H, W, C) or (H, W),
    and paths (str or `os.PathLike`) to image files. Anything else is an error naming its index."""
    from PIL import Image

    if isinstance(images, (str, os.PathLike, Image.Image)) or (hasattr(images, "ndim") and images.ndim in (2, 3)):
        images = [images]
    elif isinstance(images, (bytes, bytearray)) or not isinstance(images, (list, tuple)):
        try:
            if isinstance(images, (bytes, bytearray)):
                raise TypeError
            images = list(images)  # any other sequence of images, e.g. a `datasets` column (`dataset["image"]`)
        except TypeError:
            kind = type(images).__name__
            raise ValueError(
                f"images: expected PIL image(s), arrays, file paths or pixel_values, got {kind}"
            ) from None
    if not images:
        raise ValueError("images: got an empty list")
    return [_one_image(im, i) for i, im in enumerate(images)]


def _one_image(image: Any, index: int) -> Any:
    from PIL import Image

    from .images import DECODE_ERRORS, decode_image, to_rgb

    if isinstance(image, Image.Image):
        try:
            return to_rgb(image)
        except ValueError as err:
            raise ValueError(f"images[{index}]: {err}") from err
    if isinstance(image, (str, os.PathLike)):
        try:
            return decode_image(image)
        except FileNotFoundError:
            raise ValueError(f"images[{index}]: no such file: {os.fspath(image)!r}") from None
        except DECODE_ERRORS as err:
            raise ValueError(f"images[{index}]: {os.fspath(image)!r} is not a readable image ({err})") from err
    if hasattr(image, "ndim") and hasattr(image, "dtype") and image.ndim in (2, 3) and min(image.shape) > 0:
        return image
    raise ValueError(
        f"images[{index}]: expected a PIL image, an (H, W, 3) array or a file path, got {type(image).__name__}"
    )
