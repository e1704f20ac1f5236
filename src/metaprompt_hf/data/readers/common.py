"""What the standard-layout readers share: building the normalised dataset from (path, label, domain) lists, and
the checks that make a wrong or incomplete `DATA/` folder fail with the file it is about."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ..loading import IMAGE_EXTENSIONS, DataError, ImageClassificationData

logger = logging.getLogger(__name__)


@dataclass
class Items:
    """One split as parallel lists: absolute image paths, label ids, class names and (DG) domain ids."""

    paths: list[str] = field(default_factory=list)
    labels: list[int] = field(default_factory=list)
    names: list[str] = field(default_factory=list)
    domains: list[int] = field(default_factory=list)

    def add(self, path: str, label: int, name: str, domain: int | None = None) -> None:
        self.paths.append(path)
        self.labels.append(int(label))
        self.names.append(name)
        if domain is not None:
            self.domains.append(int(domain))


def dataset_dir(data_dir: str, folders: Sequence[str], name: str) -> str:
    """`data_dir/<folder>` for the first of `folders` that exists (CoOp and Dassl spell some differently)."""
    if not os.path.isdir(data_dir):
        raise DataError(f"data_dir: no such folder {data_dir}")
    for folder in folders:
        path = os.path.join(data_dir, folder)
        if os.path.isdir(path):
            return path
    raise DataError(f"data_dir: {name} expects a folder {' or '.join(folders)!s} under {data_dir}")


def need_file(path: str, what: str) -> str:
    if not os.path.isfile(path):
        raise DataError(f"data_dir: missing {path} ({what})")
    return path


def need_dir(path: str, what: str) -> str:
    if not os.path.isdir(path):
        raise DataError(f"data_dir: missing folder {path} ({what})")
    return path


def read_lines(path: str) -> list[str]:
    with open(path, encoding="utf-8") as f:
        return [line.strip() for line in f if line.strip()]


def read_json(path: str) -> Any:
    with open(path, encoding="utf-8") as f:
        try:
            return json.load(f)
        except json.JSONDecodeError as err:
            raise DataError(f"data_dir: {path} is not valid JSON ({err})") from err


def visible(path: str) -> list[str]:
    """Entries of `path` not starting with '.', sorted (Dassl's `listdir_nohidden(sort=True)`). A symbolic link to
    a folder that contains it (`loop -> .`) would be read as one more class folder: a `DataError` naming it."""
    names = sorted(f for f in os.listdir(path) if not f.startswith("."))
    here = os.path.realpath(path)
    for name in names:
        link = os.path.join(path, name)
        if os.path.islink(link) and os.path.commonpath([(target := os.path.realpath(link)), here]) == target:
            raise DataError(
                f"data_dir: {link} is a symbolic link to {target}, a folder that contains it (a loop); remove it"
            )
    return names


def image_files(folder: str) -> list[str]:
    """The image files of `folder`, sorted; one directory read, no stat per file (ImageNet has 1.28M)."""
    with os.scandir(folder) as entries:
        names = [
            e.name
            for e in entries
            if not e.name.startswith(".") and os.path.splitext(e.name)[1].lower() in IMAGE_EXTENSIONS and e.is_file()
        ]
    return [os.path.join(folder, n) for n in sorted(names)]


def class_names_from(splits: dict[str, Items], source: str) -> list[str]:
    """Label id → class name, in label order, as Dassl's `get_lab2cname`; every split must agree and the ids
    must be 0..C-1."""
    mapping: dict[int, str] = {}
    for split, items in splits.items():
        for label, name in zip(items.labels, items.names):
            if mapping.setdefault(label, name) != name:
                raise DataError(
                    f"data_dir: {source} ({split}) gives label {label} two names: {mapping[label]!r} and {name!r}"
                )
    if not mapping:
        raise DataError(f"data_dir: {source} lists no images")
    missing = sorted(set(range(max(mapping) + 1)) - set(mapping))
    if missing or min(mapping) < 0:
        raise DataError(f"data_dir: {source} has label ids outside 0..{len(mapping) - 1} or gaps at {missing[:10]}")
    return [mapping[i] for i in range(len(mapping))]


def build(
    name: str,
    splits: dict[str, Items],
    class_names: list[str],
    domain_names: list[str] | None = None,
    check_files: bool = True,
) -> ImageClassificationData:
    """The normalised dataset (`data.ImageClassificationData`) of `splits`; images stay undecoded paths."""
    import datasets

    features: dict[str, Any] = {"image": datasets.Image(decode=False), "label": datasets.ClassLabel(names=class_names)}
    if domain_names is not None:
        features["domain"] = datasets.ClassLabel(names=domain_names)
    out = {}
    for split, items in splits.items():
        if not items.paths:
            continue
        if check_files:
            absent = [p for p in items.paths if not os.path.isfile(p)]
            if absent:
                raise DataError(
                    f"data_dir: {len(absent)} image(s) of {name}'s {split} split are missing, e.g. {absent[:3]}"
                )
        data: dict[str, list] = {"image": [{"path": p, "bytes": None} for p in items.paths], "label": items.labels}
        if domain_names is not None:
            data["domain"] = items.domains
        out[split] = datasets.Dataset.from_dict(data, features=datasets.Features(features))
    logger.info("%s: %s images, %d classes", name, {k: len(v) for k, v in out.items()}, len(class_names))
    return ImageClassificationData(splits=out, class_names=class_names, domain_names=domain_names, name=name)
