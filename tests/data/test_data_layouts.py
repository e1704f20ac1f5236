"""The dataset layouts people have, read through `datasets.load_dataset`: an `imagefolder` with
`metadata.csv` / `metadata.jsonl` (optional domain column), folders of parquet or arrow files, and
`train_dir` / `validation_dir` class folders as in transformers' image-classification example."""

from __future__ import annotations

import csv
import json
import os

import datasets
import pytest
from PIL import Image

from metaprompt_hf.data.loading import DataError, load_image_classification

CLASSES = ["cat", "dog", "fox"]
DOMAINS = ["photo", "sketch"]


def _rows(n: int = 6) -> list[dict]:
    return [{"label": CLASSES[i % 3], "domain": DOMAINS[i // 3 % 2]} for i in range(n)]


def _write_images(folder, rows) -> list[str]:
    os.makedirs(folder, exist_ok=True)
    names = []
    for i, _ in enumerate(rows):
        names.append(f"{i}.png")
        Image.new("RGB", (12, 12), (40 * i % 255, 80, 120)).save(os.path.join(folder, names[-1]))
    return names


def _check(data, splits: dict[str, int], domains: list[str] | None) -> None:
    assert {k: len(v) for k, v in data.splits.items()} == splits
    assert data.class_names == CLASSES and data.domain_names == domains
    first = next(iter(data.splits.values()))
    assert isinstance(first.features["image"], datasets.Image) and not first.features["image"].decode
    assert first[0]["image"]["path"] or first[0]["image"]["bytes"]  # undecoded, read lazily by ImageDataset
    assert sorted(set(first["label"])) == list(range(len(CLASSES)))


def test_imagefolder_with_metadata_csv_and_a_domain_column(tmp_path):
    for split, n in (("train", 6), ("test", 3)):
        rows = _rows(n)
        names = _write_images(tmp_path / split, rows)
        with open(tmp_path / split / "metadata.csv", "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=["file_name", "label", "domain"])
            writer.writeheader()
            writer.writerows({"file_name": name, **row} for name, row in zip(names, rows))
    data = load_image_classification(str(tmp_path))
    _check(data, {"train": 6, "test": 3}, DOMAINS)
    train = data.splits["train"]
    assert [data.class_names[i] for i in train["label"]] == [r["label"] for r in _rows(6)]
    assert [data.domain_names[i] for i in train["domain"]] == [r["domain"] for r in _rows(6)]


def test_imagefolder_with_metadata_jsonl_and_other_column_names(tmp_path):
    rows = _rows(6)
    names = _write_images(tmp_path, rows)
    with open(tmp_path / "metadata.jsonl", "w") as f:
        for name, row in zip(names, rows):
            f.write(json.dumps({"file_name": name, "species": row["label"], "style": row["domain"]}) + "\n")
    data = load_image_classification(str(tmp_path), label_column="species", domain_column="style")
    _check(data, {"train": 6}, DOMAINS)
    with pytest.raises(DataError, match="label_column: .* no column 'label'"):
        load_image_classification(str(tmp_path))


@pytest.mark.parametrize("fmt", ["parquet", "arrow"])
def test_a_folder_of_parquet_or_arrow_files(tmp_path, fmt):
    features = datasets.Features(
        {"image": datasets.Image(), "label": datasets.ClassLabel(names=CLASSES), "domain": datasets.Value("string")}
    )
    for split, n in (("train", 6), ("validation", 3)):
        rows = _rows(n)
        names = _write_images(tmp_path / "images" / split, rows)
        ds = datasets.Dataset.from_dict(
            {
                "image": [str(tmp_path / "images" / split / name) for name in names],
                "label": [CLASSES.index(r["label"]) for r in rows],
                "domain": [r["domain"] for r in rows],
            },
            features=features,
        ).cast_column("image", datasets.Image())
        os.makedirs(tmp_path / "data", exist_ok=True)
        target = tmp_path / "data" / f"{split}-00000-of-00001.{fmt}"
        if fmt == "parquet":
            ds.to_parquet(str(target))  # embeds the image bytes
        else:
            ds.save_to_disk(str(tmp_path / "saved" / split))  # one arrow file per split
            (arrow,) = [f for f in os.listdir(tmp_path / "saved" / split) if f.endswith(".arrow")]
            os.replace(tmp_path / "saved" / split / arrow, target)
    data = load_image_classification(str(tmp_path / "data"))
    _check(data, {"train": 6, "validation": 3}, DOMAINS)


def test_train_dir_and_validation_dir(tmp_path):
    for split, n in (("train", 2), ("val", 1)):
        for name in CLASSES:
            _write_images(tmp_path / split / name, range(n))
    data = load_image_classification(
        "my-pets", train_dir=str(tmp_path / "train"), validation_dir=str(tmp_path / "val")
    )
    _check(data, {"train": 6, "validation": 3}, None)
    assert data.name == "my-pets"
    with pytest.raises(DataError, match="validation_dir: no such folder"):
        load_image_classification("x", train_dir=str(tmp_path / "train"), validation_dir=str(tmp_path / "nope"))


def test_mixed_parquet_and_arrow_is_refused(tmp_path):
    (tmp_path / "a.parquet").write_bytes(b"")
    (tmp_path / "b.arrow").write_bytes(b"")
    with pytest.raises(DataError, match="mixes parquet and arrow"):
        load_image_classification(str(tmp_path))


def test_a_class_folder_tree_still_uses_the_scanner(domain_folder):
    data = load_image_classification(domain_folder)
    assert data.domain_names == ["cartoon", "photo", "sketch"] and len(data.class_names) == 8


def test_train_dir_reaches_the_loader_from_the_arguments(tmp_path):
    from types import SimpleNamespace

    from metaprompt_hf.protocols.run import load_dataset_for

    for name in CLASSES:
        _write_images(tmp_path / "train" / name, range(2))
    args = SimpleNamespace(
        data_dir=None, dataset_name="pets", dataset_config_name=None, image_column="image", label_column="label",
        domain_column="domain", class_names=None, cache_dir=None, train_dir=str(tmp_path / "train"),
        validation_dir=None,
    )  # fmt: skip
    data = load_dataset_for(args)
    assert {k: len(v) for k, v in data.splits.items()} == {"train": 6} and data.class_names == CLASSES
