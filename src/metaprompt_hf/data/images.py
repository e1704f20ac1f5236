"""The image column of `datasets` rows, decoded through the `Image` feature in a `with_transform` (training,
evaluation and the few-shot draw; `predict` decodes with `images.decode_image` and needs no `datasets`).

A split keeps its images undecoded (`datasets.Image(decode=False)`: {"bytes", "path"}; `data.py`), so that one
unreadable file cannot stop a pass over the split. `with_decoded_images(rows)` is a view of the rows whose
`image` column is decoded on access: `datasets.Image().decode_example` opens the value (in-memory bytes, a local
path, or a remote or archived file such as `hf://...` or `zip://...::...`, which a plain `PIL.Image.open` cannot),
then `images.to_rgb` makes it the upright 8-bit RGB image every other route gives. A value that does not decode
gives `image=None` beside its name in `image_source`; callers skip it, log that name and count it.
"""

from __future__ import annotations

import struct
from typing import Any

from PIL import Image

from ..inputs.images import DECODE_ERRORS, to_rgb

#: What opening a row's image may raise for a bad file: Pillow's errors (`images.DECODE_ERRORS`), a missing file
#: (an `OSError`), and `struct.error` from a damaged EXIF block read by the `Image` feature's orientation check.
ROW_DECODE_ERRORS = (*DECODE_ERRORS, struct.error)


def describe(value: Any) -> str:
    """A row's image value as a name for messages: its path, or `<in-memory image>`."""
    if isinstance(value, dict):
        return str(value.get("path") or "<in-memory image>")
    return str(value)


def _feature() -> Any:
    import datasets

    return datasets.Image(decode=True)


def decode_row_image(value: Any) -> Image.Image | None:
    """One undecoded `datasets` image value ({"bytes", "path"}, or a path) → upright 8-bit RGB, or None when it is
    not a readable image (bytes win over the path, as in `datasets`)."""
    if isinstance(value, str):
        value = {"bytes": None, "path": value}
    if not isinstance(value, dict) or not (value.get("bytes") or value.get("path")):
        return None
    try:
        return to_rgb(_feature().decode_example({"bytes": value.get("bytes") or None, "path": value.get("path")}))
    except ROW_DECODE_ERRORS:
        return None


def _decode_batch(batch: dict[str, list[Any]]) -> dict[str, list[Any]]:
    """The `with_transform` function: {"image": [undecoded]} → {"image": [RGB or None], "image_source": [name]}."""
    values = batch["image"]
    return {"image": [decode_row_image(v) for v in values], "image_source": [describe(v) for v in values]}


def with_decoded_images(rows: Any) -> Any:
    """`rows` (a `datasets.Dataset` with an `image` column) → a view with only `image` (decoded RGB, or None for an
    unreadable file) and `image_source` (the file's name), decoded on access by `with_transform`."""
    import datasets

    images = rows.select_columns(["image"])
    if not isinstance(images.features["image"], datasets.Image) or images.features["image"].decode:
        images = images.cast_column("image", datasets.Image(decode=False))
    return images.with_transform(_decode_batch)
