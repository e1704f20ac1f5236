"""Readers for the base-to-new / cross-dataset datasets as CoOp lays them out under `DATA/` (the layout CoOp,
CoCoOp, MaPLe, PromptSRC and the MetaPrompt code share).

Label ids and class names are the ones those codebases use, so "base = the first half of the labels" picks the
same classes as the published results:
- nine datasets read CoOp's fixed split file `split_zhou_<Name>.json`: {"train"|"val"|"test": [[relative image
  path, label, class name], ...]}, paths relative to the image folder
  (https://github.com/KaiyangZhou/CoOp/blob/main/datasets/oxford_pets.py, `read_split`);
- FGVC-Aircraft reads `variants.txt` (label = line number) and `images_variant_{train,val,test}.txt`
  (https://github.com/KaiyangZhou/CoOp/blob/main/datasets/fgvc_aircraft.py);
- ImageNet reads `classnames.txt` (`<wnid> <name>`) and `images/{train,val}/<wnid>/`, labels in sorted-wnid order;
  its validation set is the test set (https://github.com/KaiyangZhou/CoOp/blob/main/datasets/imagenet.py);
- ImageNet-V2 (folders `0`..`999` = lines of classnames.txt), -Sketch, -A and -R (sorted wnid folders; A and R
  hold 200 of them, and are classified among those 200) are test-only
  (https://github.com/KaiyangZhou/CoOp/blob/main/datasets/imagenetv2.py, imagenet_sketch.py, imagenet_a.py,
  imagenet_r.py).
"""

from __future__ import annotations

import os
from collections import OrderedDict

from ..loading import DataError, ImageClassificationData
from .common import (
    Items,
    build,
    class_names_from,
    dataset_dir,
    image_files,
    need_dir,
    need_file,
    read_json,
    read_lines,
    visible,
)

# (folder under DATA, image folder inside it, split file): https://github.com/KaiyangZhou/CoOp/blob/main/DATASETS.md
SPLIT_FILE_DATASETS: dict[str, tuple[str, str, str]] = {
    "caltech101": ("caltech-101", "101_ObjectCategories", "split_zhou_Caltech101.json"),
    "oxford_pets": ("oxford_pets", "images", "split_zhou_OxfordPets.json"),
    "stanford_cars": ("stanford_cars", "", "split_zhou_StanfordCars.json"),
    "oxford_flowers": ("oxford_flowers", "jpg", "split_zhou_OxfordFlowers.json"),
    "food101": ("food-101", "images", "split_zhou_Food101.json"),
    "sun397": ("sun397", "SUN397", "split_zhou_SUN397.json"),
    "dtd": ("dtd", "images", "split_zhou_DescribableTextures.json"),
    "eurosat": ("eurosat", "2750", "split_zhou_EuroSAT.json"),
    "ucf101": ("ucf101", "UCF-101-midframes", "split_zhou_UCF101.json"),
}

# CoOp renames these folder names when it builds the split files (datasets/eurosat.py and caltech101.py,
# NEW_CNAMES); a split file written from the raw folder names is renamed the same way.
RENAMED_CLASSES: dict[str, dict[str, str]] = {
    "eurosat": {
        "AnnualCrop": "Annual Crop Land",
        "Forest": "Forest",
        "HerbaceousVegetation": "Herbaceous Vegetation Land",
        "Highway": "Highway or Road",
        "Industrial": "Industrial Buildings",
        "Pasture": "Pasture Land",
        "PermanentCrop": "Permanent Crop Land",
        "Residential": "Residential Buildings",
        "River": "River",
        "SeaLake": "Sea or Lake",
    },
    "caltech101": {"airplanes": "airplane", "Faces": "face", "Leopards": "leopard", "Motorbikes": "motorbike"},
}

SPLITS = ("train", "val", "test")


def read_split_file(name: str, data_dir: str) -> ImageClassificationData:
    """One of `SPLIT_FILE_DATASETS` from its `split_zhou_*.json`."""
    folder, image_sub, split_name = SPLIT_FILE_DATASETS[name]
    root = dataset_dir(data_dir, [folder], name)
    image_dir = need_dir(os.path.join(root, image_sub), f"{name} images") if image_sub else root
    path = need_file(os.path.join(root, split_name), f"CoOp's fixed split of {name}")
    split = read_json(path)
    if not isinstance(split, dict) or any(not isinstance(split.get(s), list) for s in SPLITS):
        raise DataError(f"data_dir: {path} must map 'train', 'val' and 'test' to lists of [path, label, class name]")
    rename = RENAMED_CLASSES.get(name, {})
    splits: dict[str, Items] = {}
    for s in SPLITS:
        items = Items()
        for i, entry in enumerate(split[s]):
            if not (isinstance(entry, list) and len(entry) == 3 and isinstance(entry[1], int)):
                raise DataError(
                    f"data_dir: {path} {s}[{i}] should be [relative path, label, class name], got {entry!r}"
                )
            rel, label, cname = entry
            items.add(os.path.join(image_dir, rel), label, rename.get(cname, cname))
        splits[s] = items
    return build(name, splits, class_names_from(splits, path))


def read_fgvc_aircraft(data_dir: str) -> ImageClassificationData:
    root = dataset_dir(data_dir, ["fgvc_aircraft"], "fgvc_aircraft")
    classnames = read_lines(need_file(os.path.join(root, "variants.txt"), "the 100 variant names, one per line"))
    label_of = {c: i for i, c in enumerate(classnames)}
    image_dir = need_dir(os.path.join(root, "images"), "FGVC-Aircraft images")
    splits: dict[str, Items] = {}
    for s in SPLITS:
        path = need_file(os.path.join(root, f"images_variant_{s}.txt"), "lines '<image id> <variant>'")
        items = Items()
        for line in read_lines(path):
            image_id, _, variant = line.partition(" ")
            if variant not in label_of:
                raise DataError(f"data_dir: {path}: variant {variant!r} is not in variants.txt")
            items.add(os.path.join(image_dir, image_id + ".jpg"), label_of[variant], variant)
        splits[s] = items
    return build("fgvc_aircraft", splits, classnames)


def read_classnames(path: str) -> OrderedDict[str, str]:
    """CoOp's `classnames.txt`: `<wnid> <class name with spaces>` per line, in file order."""
    out: OrderedDict[str, str] = OrderedDict()
    for line in read_lines(need_file(path, "CoOp's ImageNet class names, '<wnid> <name>' per line")):
        folder, _, cname = line.partition(" ")
        out[folder] = cname
    return out


def _wnid_folders(root: str, classnames: OrderedDict[str, str], source: str) -> tuple[list[str], Items]:
    folders = [f for f in visible(root) if os.path.isdir(os.path.join(root, f))]
    unknown = [f for f in folders if f not in classnames]
    if unknown:
        raise DataError(f"data_dir: {source} has folders not in classnames.txt: {unknown[:5]}")
    items = Items()
    for label, folder in enumerate(folders):
        for p in image_files(os.path.join(root, folder)):
            items.add(p, label, classnames[folder])
    return folders, items


def read_imagenet(data_dir: str) -> ImageClassificationData:
    root = dataset_dir(data_dir, ["imagenet"], "imagenet")
    classnames = read_classnames(os.path.join(root, "classnames.txt"))
    train_dir = need_dir(os.path.join(root, "images", "train"), "one folder per wnid")
    val_dir = need_dir(os.path.join(root, "images", "val"), "one folder per wnid; ImageNet's test set")
    folders, train = _wnid_folders(train_dir, classnames, train_dir)
    val_folders, test = _wnid_folders(val_dir, classnames, val_dir)
    if val_folders != folders:
        raise DataError(f"data_dir: {val_dir} and {train_dir} hold different class folders")
    return build("imagenet", {"train": train, "test": test}, [classnames[f] for f in folders], check_files=False)


def read_imagenet_v2(data_dir: str) -> ImageClassificationData:
    root = dataset_dir(data_dir, ["imagenetv2"], "imagenet_v2")
    classnames = read_classnames(os.path.join(root, "classnames.txt"))
    image_dir = need_dir(os.path.join(root, "imagenetv2-matched-frequency-format-val"), "folders 0..999")
    items = Items()
    names = list(classnames.values())
    for label, cname in enumerate(names):
        folder = need_dir(os.path.join(image_dir, str(label)), f"images of class {label} ({cname})")
        for p in image_files(folder):
            items.add(p, label, cname)
    return build("imagenet_v2", {"test": items}, names, check_files=False)


def _read_wnid_test_set(name: str, folder: str, image_sub: str, data_dir: str) -> ImageClassificationData:
    root = dataset_dir(data_dir, [folder], name)
    classnames = read_classnames(os.path.join(root, "classnames.txt"))
    image_dir = need_dir(os.path.join(root, image_sub), "one folder per wnid")
    folders, items = _wnid_folders(image_dir, classnames, image_dir)
    return build(name, {"test": items}, [classnames[f] for f in folders], check_files=False)


def read_imagenet_sketch(data_dir: str) -> ImageClassificationData:
    return _read_wnid_test_set("imagenet_sketch", "imagenet-sketch", "images", data_dir)


def read_imagenet_a(data_dir: str) -> ImageClassificationData:
    """ImageNet-A: its 200 wnid folders, classified among those 200 classes."""
    return _read_wnid_test_set("imagenet_a", "imagenet-adversarial", "imagenet-a", data_dir)


def read_imagenet_r(data_dir: str) -> ImageClassificationData:
    """ImageNet-R: its 200 wnid folders, classified among those 200 classes."""
    return _read_wnid_test_set("imagenet_r", "imagenet-rendition", "imagenet-r", data_dir)
