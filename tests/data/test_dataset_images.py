"""`metaprompt_hf.data.images`: dataset rows decoded through `datasets`' `Image` feature in a `with_transform`,
unreadable files named and skipped, and the training / evaluation datasets built on it."""

from __future__ import annotations

import io
import logging
import zipfile

import datasets
import numpy as np
import pytest
import torch
from PIL import Image

from metaprompt_hf.data.batches import ImageDataset, collate
from metaprompt_hf.data.images import decode_row_image, with_decoded_images
from metaprompt_hf.inputs.images import decode_image


def _png(color: tuple[int, int, int], size: tuple[int, int] = (8, 8)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, "PNG")
    return buf.getvalue()


def _rows(tmp_path) -> datasets.Dataset:
    archive = tmp_path / "images.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("inside/blue.png", _png((0, 0, 255)))
    values = [
        {"bytes": _png((255, 0, 0)), "path": "red.png"},
        {"bytes": None, "path": str(tmp_path / "missing.png")},
        {"bytes": b"not an image", "path": "garbage.png"},
        # a file inside an archive: the Image feature opens chained URLs, which a plain PIL.Image.open cannot
        {"bytes": None, "path": f"zip://inside/blue.png::{archive}"},
    ]
    features = datasets.Features(
        {"image": datasets.Image(decode=False), "label": datasets.Value("int64"), "extra": datasets.Value("string")}
    )
    return datasets.Dataset.from_dict(
        {"image": values, "label": [0, 1, 0, 1], "extra": ["a", "b", "c", "d"]}, features=features
    )


def test_rows_decode_through_the_image_feature_and_bad_files_are_named(tmp_path):
    rows = _rows(tmp_path)
    view = with_decoded_images(rows)
    assert view.column_names == ["image"] and rows.column_names == ["image", "label", "extra"]  # rows untouched
    red, missing, garbage, blue = (view[i] for i in range(4))
    assert red["image"].mode == "RGB" and red["image"].getpixel((0, 0)) == (255, 0, 0)
    assert blue["image"].getpixel((3, 3)) == (0, 0, 255)
    assert missing["image"] is None and missing["image_source"] == str(tmp_path / "missing.png")
    assert garbage["image"] is None and garbage["image_source"] == "garbage.png"
    with pytest.raises(OSError):  # what a plain open of the same value does
        decode_image(f"zip://inside/blue.png::{tmp_path / 'images.zip'}")


def test_a_decoding_image_column_is_read_undecoded_first(tmp_path):
    """A split whose column decodes eagerly would raise on the garbage row; the view re-casts it."""
    rows = _rows(tmp_path).select([0, 2]).cast_column("image", datasets.Image(decode=True))
    view = with_decoded_images(rows)
    assert view[0]["image"].getpixel((0, 0)) == (255, 0, 0) and view[1]["image"] is None


def test_decode_row_image_matches_decode_image_on_the_same_bytes():
    rng = np.random.default_rng(0)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (5, 7, 3), dtype=np.uint8)).save(buf, "PNG")
    data = buf.getvalue()
    a, b = decode_row_image({"bytes": data, "path": None}), decode_image(data)
    assert a.size == b.size and a.tobytes() == b.tobytes()


def test_image_dataset_skips_and_logs_unreadable_rows_by_name(tmp_path, caplog):
    from transformers import CLIPImageProcessor

    processor = CLIPImageProcessor(size={"shortest_edge": 8}, crop_size={"height": 8, "width": 8})
    rows = _rows(tmp_path)
    dataset = ImageDataset(rows, rows["label"], None, processor)
    with caplog.at_level(logging.WARNING, logger="metaprompt_hf"):
        batch = collate([dataset[i] for i in range(4)])
    assert batch["pixel_values"].shape == (2, 3, 8, 8) and batch["index"].tolist() == [0, 3]
    assert batch["corrupt"] == [str(tmp_path / "missing.png"), "garbage.png"]
    assert "garbage.png" in caplog.text and "missing.png" in caplog.text


def test_a_training_dataset_decodes_each_row_once_within_its_budget(tmp_path, monkeypatch):
    """A training set keeps its decoded images for the next epoch (`DECODED_CACHE_BYTES`): the second epoch reads no
    row back from Arrow and gives the same items; past the budget rows are decoded again; an evaluation set (read
    once) keeps nothing."""
    from transformers import CLIPImageProcessor

    from metaprompt_hf.data import batches
    from metaprompt_hf.data.batches import TrainTransform

    processor = CLIPImageProcessor(size={"shortest_edge": 8}, crop_size={"height": 8, "width": 8})
    rows = _rows(tmp_path)
    reads: list[int] = []

    def counting(view):
        class Counting:
            def __getitem__(self, i):
                reads.append(i)
                return view[i]

        return Counting()

    def epoch(dataset, seed):
        return [dataset[(i, seed)] for i in range(4)]

    original = batches.with_decoded_images
    monkeypatch.setattr(batches, "with_decoded_images", lambda r: counting(original(r)))
    transform = TrainTransform(8, [0.5] * 3, [0.25] * 3)
    train = ImageDataset(rows, rows["label"], None, processor, transform)
    first, second = epoch(train, 7), epoch(train, 7)
    assert sorted(reads) == [0, 1, 2, 3]  # each row read once, the unreadable ones included
    for a, b in zip(first, second):
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a if k == "pixel_values")
    fresh = ImageDataset(rows, rows["label"], None, processor, transform)  # nothing kept: the same items
    for a, b in zip(first, epoch(fresh, 7)):
        assert a.get("corrupt") == b.get("corrupt") and all(torch.equal(a[k], b[k]) for k in a if k == "pixel_values")

    reads.clear()
    monkeypatch.setattr(batches, "DECODED_CACHE_BYTES", 8 * 8 * 3)  # room for one 8×8 RGB image
    small = ImageDataset(rows, rows["label"], None, processor, transform)
    epoch(small, 7), epoch(small, 7)
    assert sorted(reads) == [0, 1, 2, 3, 3]  # red kept, the unreadable rows cost nothing, blue is past the budget

    reads.clear()
    evaluation = ImageDataset(rows, rows["label"], None, processor)
    [evaluation[i] for i in range(4)], [evaluation[i] for i in range(4)]
    assert sorted(reads) == [0, 0, 1, 1, 2, 2, 3, 3]
