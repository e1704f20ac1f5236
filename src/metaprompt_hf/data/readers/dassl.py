"""Readers for the domain-generalisation datasets as Dassl and the MetaPrompt code lay them out under `DATA/`.

Each reader returns every domain in Dassl's domain order, with a `train` split (the source-domain training lists),
a `val` split and a `test` split holding, per domain, what Dassl evaluates when that domain is the target. The
DG protocol then trains on the `train` rows of the source domains and evaluates on the `test` rows of the target,
exactly as the leave-one-domain-out runs of https://github.com/Vill-Lab/2024-TIP-MetaPrompt/tree/main/datasets
(pacs.py, vlcs.py, office_home.py, domainnet.py: the few-shot `*FS` variants) do:
- PACS: `pacs/images/<domain>/<class>/<img>` and `pacs/splits/<domain>_{train,crossval}_kfold.txt`
  (`<domain>/<class>/<img> <label from 1>`); target = train + crossval lists; one known-bad sketch image skipped
  (https://github.com/KaiyangZhou/Dassl.pytorch/blob/master/dassl/data/datasets/dg/pacs.py);
- VLCS: `vlcs/` (MetaPrompt) or `VLCS/` (Dassl) `<DOMAIN>/{train,crossval,test}/<folder>/*.jpg`, labels by
  sorted folder, names bird, car, chair, dog, person; target = its `test` folder (dg/vlcs.py);
- Office-Home: `office_home/` (MetaPrompt) or `office_home_dg/` (Dassl) `<domain>/{train,val}/<class>/*.jpg`,
  labels by sorted folder, names = lower-cased folder; target = train + val (dg/office_home_dg.py, digits_dg.py);
- DomainNet: `domainnet/splits/<domain>_{train,test}.txt` (`<domain>/<class>/<img> <label from 0>`); target = its
  test list (da/domainnet.py).
"""

from __future__ import annotations

import glob
import os

from ..loading import ImageClassificationData
from .common import Items, build, class_names_from, dataset_dir, need_dir, need_file, read_lines, visible

DOMAINS: dict[str, list[str]] = {
    "pacs": ["art_painting", "cartoon", "photo", "sketch"],
    "vlcs": ["caltech", "labelme", "pascal", "sun"],
    "office_home": ["art", "clipart", "product", "real_world"],
    "domainnet": ["clipart", "infograph", "painting", "quickdraw", "real", "sketch"],
}
PACS_ERROR_PATHS = {"sketch/dog/n02103406_4068-1.png"}
VLCS_CLASSES = ["bird", "car", "chair", "dog", "person"]


def _from_list(path: str, image_root: str, label_offset: int, domain: int, items: Items, skip=()) -> None:
    """Lines `<domain>/<class>/<img> <label>`; the class name is the path's class folder."""
    for line in read_lines(path):
        rel, _, label = line.rpartition(" ")
        if rel in skip:
            continue
        items.add(os.path.join(image_root, rel), int(label) - label_offset, rel.split("/")[-2], domain)


def read_pacs(data_dir: str) -> ImageClassificationData:
    root = dataset_dir(data_dir, ["pacs", "PACS"], "pacs")
    image_root = need_dir(os.path.join(root, "images"), "<domain>/<class>/<image>")
    split_dir = need_dir(os.path.join(root, "splits"), "<domain>_{train,crossval}_kfold.txt")
    splits = {"train": Items(), "val": Items(), "test": Items()}
    for d, domain in enumerate(DOMAINS["pacs"]):
        train = need_file(os.path.join(split_dir, f"{domain}_train_kfold.txt"), "PACS training list")
        val = need_file(os.path.join(split_dir, f"{domain}_crossval_kfold.txt"), "PACS validation list")
        _from_list(train, image_root, 1, d, splits["train"], PACS_ERROR_PATHS)
        _from_list(val, image_root, 1, d, splits["val"], PACS_ERROR_PATHS)
        _from_list(train, image_root, 1, d, splits["test"], PACS_ERROR_PATHS)
        _from_list(val, image_root, 1, d, splits["test"], PACS_ERROR_PATHS)
    return build("pacs", splits, class_names_from(splits, split_dir), DOMAINS["pacs"])


def _sorted_folders(split_dir: str, domain: int, items: Items, names: list[str] | None) -> None:
    """Dassl's folder reader: labels by sorted class folder, `*.jpg` files."""
    for label, folder in enumerate(visible(split_dir)):
        cname = names[label] if names is not None else folder.lower()
        for p in sorted(glob.glob(os.path.join(glob.escape(split_dir), glob.escape(folder), "*.jpg"))):
            items.add(p, label, cname, domain)


def read_vlcs(data_dir: str) -> ImageClassificationData:
    root = dataset_dir(data_dir, ["vlcs", "VLCS"], "vlcs")
    splits = {"train": Items(), "val": Items(), "test": Items()}
    for d, domain in enumerate(DOMAINS["vlcs"]):
        for ours, theirs in (("train", "train"), ("val", "crossval"), ("test", "test")):
            folder = need_dir(os.path.join(root, domain.upper(), theirs), "one folder per class")
            _sorted_folders(folder, d, splits[ours], VLCS_CLASSES)
    return build("vlcs", splits, class_names_from(splits, root), DOMAINS["vlcs"], check_files=False)


def read_office_home(data_dir: str) -> ImageClassificationData:
    root = dataset_dir(data_dir, ["office_home", "office_home_dg"], "office_home")
    splits = {"train": Items(), "val": Items(), "test": Items()}
    for d, domain in enumerate(DOMAINS["office_home"]):
        for split in ("train", "val"):
            folder = need_dir(os.path.join(root, domain, split), "one folder per class")
            _sorted_folders(folder, d, splits[split], None)
            _sorted_folders(folder, d, splits["test"], None)
    return build("office_home", splits, class_names_from(splits, root), DOMAINS["office_home"], check_files=False)


def read_domainnet(data_dir: str) -> ImageClassificationData:
    root = dataset_dir(data_dir, ["domainnet"], "domainnet")
    split_dir = need_dir(os.path.join(root, "splits"), "<domain>_{train,test}.txt")
    splits = {"train": Items(), "test": Items()}
    for d, domain in enumerate(DOMAINS["domainnet"]):
        for split in ("train", "test"):
            path = need_file(os.path.join(split_dir, f"{domain}_{split}.txt"), "DomainNet list")
            _from_list(path, root, 0, d, splits[split])
    return build("domainnet", splits, class_names_from(splits, split_dir), DOMAINS["domainnet"])
