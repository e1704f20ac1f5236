"""A tiny fake `DATA/` tree in exactly the standard layouts (folder names, split files, JSON structures), for tests
and for trying the paper suite without the real data: a handful of classes, a few colour-coded images each."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable

import numpy as np
from PIL import Image

from .coop import RENAMED_CLASSES, SPLIT_FILE_DATASETS
from .dassl import DOMAINS

FAKE_WNIDS = ["n01440764", "n01443537", "n01484850", "n01491361"]
FAKE_IMAGENET_NAMES = ["tench", "goldfish", "great white shark", "tiger shark"]
# A and R hold a subset of ImageNet's classes (200 of 1000 in the real data); here 2 of 4.
FAKE_SUBSET = [1, 3]
PER_SPLIT = {"train": 3, "val": 1, "test": 2}
PACS_CLASSES = ["dog", "elephant", "giraffe", "guitar"]  # the first 4 of PACS's 7, in label order
OFFICE_HOME_FOLDERS = ["Alarm_Clock", "Backpack", "Batteries", "Bed"]
DOMAINNET_CLASSES = ["aircraft_carrier", "airplane", "alarm_clock", "ambulance"]

# class names (as the split file gives them) and the relative image path pattern of each split-file dataset
_SPLIT_FILE_CLASSES = {
    "caltech101": (["accordion", "airplane", "anchor", "ant"], "{folder}/image_{i:04d}.jpg"),
    "oxford_pets": (["abyssinian", "american_bulldog", "basset_hound", "beagle"], "{folder}_{i}.jpg"),
    "stanford_cars": (
        ["2000 AM General Hummer SUV", "2012 Acura RL Sedan", "2012 Acura TL Sedan", "2007 Acura TL Type-S"],
        "cars_train/{n:05d}.jpg",
    ),
    "oxford_flowers": (
        ["pink primrose", "hard-leaved pocket orchid", "canterbury bells", "sweet pea"],
        "image_{n:05d}.jpg",
    ),
    "food101": (["apple_pie", "baby_back_ribs", "baklava", "beef_carpaccio"], "{folder}/{n}.jpg"),
    "sun397": (["abbey", "airplane cabin", "airport terminal", "alley"], "a/{folder}/sun_{n:04d}.jpg"),
    "dtd": (["banded", "blotchy", "braided", "bubbly"], "{folder}/{folder}_{i:04d}.jpg"),
    "eurosat": (["AnnualCrop", "Forest", "HerbaceousVegetation", "Highway"], "{folder}/{folder}_{i}.jpg"),
    "ucf101": (
        ["Apply_Eye_Makeup", "Apply_Lipstick", "Archery", "Baby_Crawling"],
        "{folder}/v_{folder}_g{i:02d}_c01.jpg",
    ),
}


class _Painter:
    def __init__(self, seed: int = 0, size: int = 12) -> None:
        self.rng = np.random.default_rng(seed)
        self.size = size

    def save(self, path: str, label: int, domain: int = 0) -> None:
        colour = np.array([(60 * label) % 256, (100 + 50 * label) % 256, (200 - 40 * label) % 256]) + 20 * domain
        noise = self.rng.normal(0, 20, (self.size, self.size, 3))
        pixels = np.clip(colour[None, None, :] + noise, 0, 255).astype("uint8")
        os.makedirs(os.path.dirname(path), exist_ok=True)
        Image.fromarray(pixels).save(path, format="JPEG")


def _write(path: str, text: str) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)


def _classnames_txt(path: str) -> None:
    _write(path, "".join(f"{w} {n}\n" for w, n in zip(FAKE_WNIDS, FAKE_IMAGENET_NAMES)))


def _split_file_dataset(root: str, name: str, paint: _Painter) -> None:
    folder, image_sub, split_name = SPLIT_FILE_DATASETS[name]
    classes, pattern = _SPLIT_FILE_CLASSES[name]
    base = os.path.join(root, folder)
    image_dir = os.path.join(base, image_sub) if image_sub else base
    rename = RENAMED_CLASSES.get(name, {})
    split: dict[str, list] = {}
    n = 0
    for s, count in PER_SPLIT.items():
        split[s] = []
        for label, cname in enumerate(classes):
            for _ in range(count):
                n += 1
                rel = pattern.format(folder=cname.replace(" ", "_"), i=n, n=n)
                paint.save(os.path.join(image_dir, rel), label)
                split[s].append([rel, label, rename.get(cname, cname)])
    _write(os.path.join(base, split_name), json.dumps(split))


def _fgvc(root: str, paint: _Painter) -> None:
    base = os.path.join(root, "fgvc_aircraft")
    variants = ["707-320", "727-200", "737-200", "A300B4"]
    _write(os.path.join(base, "variants.txt"), "".join(v + "\n" for v in variants))
    n = 1000000
    for s, count in PER_SPLIT.items():
        lines = []
        for label, v in enumerate(variants):
            for _ in range(count):
                n += 1
                paint.save(os.path.join(base, "images", f"{n}.jpg"), label)
                lines.append(f"{n} {v}\n")
        _write(os.path.join(base, f"images_variant_{s}.txt"), "".join(lines))


def _imagenet_family(root: str, paint: _Painter, which: set[str]) -> None:
    if "imagenet" in which:
        base = os.path.join(root, "imagenet")
        _classnames_txt(os.path.join(base, "classnames.txt"))
        for split, count in (("train", PER_SPLIT["train"]), ("val", PER_SPLIT["test"])):
            for label, wnid in enumerate(FAKE_WNIDS):
                for i in range(count):
                    paint.save(os.path.join(base, "images", split, wnid, f"{wnid}_{i}.JPEG"), label)
    if "imagenet_v2" in which:
        base = os.path.join(root, "imagenetv2")
        _classnames_txt(os.path.join(base, "classnames.txt"))
        for label in range(len(FAKE_WNIDS)):
            for i in range(2):
                paint.save(
                    os.path.join(base, "imagenetv2-matched-frequency-format-val", str(label), f"{i}.jpeg"), label
                )
    for name, folder, sub, labels in (
        ("imagenet_sketch", "imagenet-sketch", "images", range(len(FAKE_WNIDS))),
        ("imagenet_a", "imagenet-adversarial", "imagenet-a", FAKE_SUBSET),
        ("imagenet_r", "imagenet-rendition", "imagenet-r", FAKE_SUBSET),
    ):
        if name not in which:
            continue
        base = os.path.join(root, folder)
        _classnames_txt(os.path.join(base, "classnames.txt"))
        for label in labels:
            for i in range(2):
                paint.save(os.path.join(base, sub, FAKE_WNIDS[label], f"{i}.jpg"), label, domain=2)
        if sub != "images":
            _write(os.path.join(base, sub, "README.txt"), "fake\n")


def _pacs(root: str, paint: _Painter) -> None:
    base = os.path.join(root, "pacs")
    for d, domain in enumerate(DOMAINS["pacs"]):
        lists: dict[str, list[str]] = {"train": [], "crossval": []}
        for label, cname in enumerate(PACS_CLASSES):
            for i in range(3):
                rel = f"{domain}/{cname}/pic_{i:03d}.jpg"
                paint.save(os.path.join(base, "images", rel), label, d)
                lists["train" if i < 2 else "crossval"].append(f"{rel} {label + 1}\n")
        for split, lines in lists.items():
            _write(os.path.join(base, "splits", f"{domain}_{split}_kfold.txt"), "".join(lines))


def _vlcs(root: str, paint: _Painter) -> None:
    for d, domain in enumerate(DOMAINS["vlcs"]):
        for split, count in (("train", 2), ("crossval", 1), ("test", 2)):
            for label in range(4):
                for i in range(count):
                    paint.save(os.path.join(root, "vlcs", domain.upper(), split, str(label), f"{i}.jpg"), label, d)


def _office_home(root: str, paint: _Painter) -> None:
    for d, domain in enumerate(DOMAINS["office_home"]):
        for split, count in (("train", 2), ("val", 1)):
            for label, folder in enumerate(OFFICE_HOME_FOLDERS):
                for i in range(count):
                    paint.save(os.path.join(root, "office_home", domain, split, folder, f"{i:05d}.jpg"), label, d)


def _domainnet(root: str, paint: _Painter) -> None:
    base = os.path.join(root, "domainnet")
    for d, domain in enumerate(DOMAINS["domainnet"]):
        lists: dict[str, list[str]] = {"train": [], "test": []}
        for label, cname in enumerate(DOMAINNET_CLASSES):
            for i in range(3):
                rel = f"{domain}/{cname}/{domain}_{label:03d}_{i:06d}.jpg"
                paint.save(os.path.join(base, rel), label, d)
                lists["train" if i < 2 else "test"].append(f"{rel} {label}\n")
        for split, lines in lists.items():
            _write(os.path.join(base, "splits", f"{domain}_{split}.txt"), "".join(lines))


ALL = (
    "imagenet", *SPLIT_FILE_DATASETS, "fgvc_aircraft", "imagenet_v2", "imagenet_sketch", "imagenet_a", "imagenet_r",
    "pacs", "vlcs", "office_home", "domainnet",
)  # fmt: skip


def write_fake_data(root: str | os.PathLike, names: Iterable[str] | None = None, seed: int = 0) -> str:
    """Write fake datasets `names` (default: all 19) under `root` in their standard layouts; returns `root`."""
    root = str(root)
    which = set(ALL if names is None else names)
    unknown = which - set(ALL)
    if unknown:
        raise ValueError(f"names: unknown dataset(s) {sorted(unknown)}; choose from {list(ALL)}")
    paint = _Painter(seed)
    _imagenet_family(root, paint, which)
    for name in SPLIT_FILE_DATASETS:
        if name in which:
            _split_file_dataset(root, name, paint)
    for name, writer in (
        ("fgvc_aircraft", _fgvc),
        ("pacs", _pacs),
        ("vlcs", _vlcs),
        ("office_home", _office_home),
        ("domainnet", _domainnet),
    ):
        if name in which:
            writer(root, paint)
    return root


if __name__ == "__main__":  # python -m metaprompt_hf.data.readers.fakes OUT_DIR
    import sys

    print(write_fake_data(sys.argv[1] if len(sys.argv) > 1 else "fake_DATA"))
