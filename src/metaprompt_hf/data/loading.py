"""Image-classification data for prompt learning: loading any supported source into one form (docs/method.md §4).
The paper's protocols (few-shot sampling, base/new and domain splits) live in `metaprompt_hf.protocols`; the
training batches (augmentation, dataset, collation, the few-shot batch sampler) in `metaprompt_hf.data.batches`.

Any of these loads into one normalised form (`ImageClassificationData`):
- a `datasets` Dataset/DatasetDict from the Hub or saved with `save_to_disk`;
- an image folder laid out `<class>/<image>` or `<domain>/<class>/<image>` (PACS / OfficeHome style, where a domain
  may lack some classes), optionally under `train/`, `validation/`, `test/` split folders;
- `miniworld:<name>`, the embedded offline mini benchmark (`metaprompt_hf.miniworld`).

Columns: an image, a `ClassLabel` label whose names are the class names, and optionally a domain.
"""

from __future__ import annotations

import logging
import os
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)

IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm"}
SPLIT_NAMES = ("train", "validation", "val", "test")
MINIWORLD_PREFIX = "miniworld:"


class DataError(ValueError):
    """Bad dataset input, raised before training starts with a message naming the path, column or class."""


@dataclass
class ImageClassificationData:
    """A dataset in normalised form.

    Attributes:
        splits: split name → `datasets.Dataset` with columns `image` (undecoded: {"bytes", "path"}), `label`
            (int) and, when known, `domain` (int).
        class_names: names of the label ids, in id order.
        domain_names: names of the domain ids, or None for a single-domain dataset.
        name: the dataset's name or path (used for template presets and reports).
    """

    splits: dict[str, Any]
    class_names: list[str]
    domain_names: list[str] | None
    name: str


# ---------------------------------------------------------------------------------------------------- loading
def load_image_classification(
    name_or_path: str,
    *,
    config_name: str | None = None,
    image_column: str = "image",
    label_column: str = "label",
    domain_column: str = "domain",
    class_names: Sequence[str] | None = None,
    cache_dir: str | None = None,
    train_dir: str | None = None,
    validation_dir: str | None = None,
) -> ImageClassificationData:
    """Load any supported dataset into `ImageClassificationData` (checks columns; raises `DataError`).

    `name_or_path` is a `miniworld:*` name, a Hub dataset id (with `config_name`), or a folder: a `save_to_disk`
    dataset, an `imagefolder` with `metadata.csv` / `metadata.jsonl` (its columns, e.g. `label` and an optional
    `domain`, name the classes and domains), a folder of parquet or arrow files, or a `<class>/<image>` /
    `<domain>/<class>/<image>` tree. `train_dir` / `validation_dir` (as in transformers' image-classification
    example) are `<class>/<image>` folders read by `datasets`' `imagefolder`, and replace `name_or_path`.
    """
    import datasets

    if name_or_path.startswith(MINIWORLD_PREFIX):
        from .. import miniworld

        sub = name_or_path[len(MINIWORLD_PREFIX) :]
        known = [*miniworld.DATASETS, miniworld.UNION]
        if sub not in known:
            raise DataError(f"dataset_name: unknown mini-world dataset {sub!r}; choose from {known}")
        if sub == miniworld.UNION:
            raw = miniworld.load_union(cache_dir=cache_dir)
        else:
            raw = miniworld.load_miniworld(sub, cache_dir=cache_dir)
    elif train_dir is not None or validation_dir is not None:
        raw = _load_split_folders(train_dir, validation_dir, cache_dir)
    elif os.path.isdir(name_or_path):
        if _is_saved_dataset(name_or_path):
            raw = datasets.load_from_disk(name_or_path)
        elif builder := _packaged_builder(name_or_path):
            raw = _load_packaged(builder, name_or_path, cache_dir)
        else:
            raw = _load_image_folder(name_or_path)
    elif os.path.exists(name_or_path):
        raise DataError(f"dataset_name: {name_or_path} is a file; expected a folder or a Hub dataset id")
    elif name_or_path.startswith((".", "/", "~")) or name_or_path.count("/") > 1:
        raise DataError(f"dataset_name: no such folder {name_or_path}")
    else:
        try:
            raw = datasets.load_dataset(name_or_path, config_name, cache_dir=cache_dir)
        except Exception as err:  # the Hub raises many types; all mean "could not get it"
            raise DataError(
                f"dataset_name: {name_or_path!r} is not a local folder and could not be loaded from the Hub "
                f"({type(err).__name__}: {err})"
            ) from err
    if isinstance(raw, datasets.Dataset):
        raw = datasets.DatasetDict({"train": raw})
    return _normalise(raw, name_or_path, image_column, label_column, domain_column, class_names)


METADATA_FILES = ("metadata.csv", "metadata.jsonl")
PACKAGED_FORMATS = {".parquet": "parquet", ".arrow": "arrow"}


def _packaged_builder(root: str, max_depth: int = 2) -> str | None:
    """The `datasets` builder for a folder laid out for one: `imagefolder` when it (or a folder below, up to
    `max_depth`) holds a metadata file, `parquet` / `arrow` when it holds those files; None for a plain tree."""
    found: set[str] = set()
    for folder, dirs, files in os.walk(root):
        depth = os.path.relpath(folder, root).count(os.sep) + (folder != root)
        if depth >= max_depth:
            dirs[:] = []
        if any(f in METADATA_FILES for f in files):
            return "imagefolder"
        found |= {PACKAGED_FORMATS[ext] for f in files if (ext := os.path.splitext(f)[1].lower()) in PACKAGED_FORMATS}
    if len(found) > 1:
        raise DataError(f"dataset_name: {root} mixes parquet and arrow files; keep one format")
    return found.pop() if found else None


def _load_packaged(builder: str, root: str, cache_dir: str | None) -> Any:
    """`datasets.load_dataset(builder, data_dir=root)`: split names come from the file and folder names
    (`train`, `validation`/`val`, `test`), as on the Hub."""
    import datasets

    try:
        raw = datasets.load_dataset(builder, data_dir=root, cache_dir=cache_dir)
    except Exception as err:  # builders raise many types for unreadable layouts
        raise DataError(f"dataset_name: {root} could not be read as {builder} ({type(err).__name__}: {err})") from err
    logger.info("%s folder %s: %s", builder, root, {k: len(v) for k, v in raw.items()})
    return raw


def _load_split_folders(train_dir: str | None, validation_dir: str | None, cache_dir: str | None) -> Any:
    import datasets

    data_files = {}
    for split, folder, flag in (("train", train_dir, "train_dir"), ("validation", validation_dir, "validation_dir")):
        if folder is None:
            continue
        if not os.path.isdir(folder):
            raise DataError(f"{flag}: no such folder {folder}")
        data_files[split] = os.path.join(folder, "**")
    try:
        return datasets.load_dataset("imagefolder", data_files=data_files, cache_dir=cache_dir)
    except Exception as err:
        raise DataError(
            f"train_dir/validation_dir: could not read {data_files} ({type(err).__name__}: {err})"
        ) from err


def _is_saved_dataset(path: str) -> bool:
    return any(os.path.isfile(os.path.join(path, f)) for f in ("dataset_dict.json", "state.json", "dataset_info.json"))


def _subdirs(folder: str) -> list[str]:
    return sorted(d for d in os.listdir(folder) if os.path.isdir(os.path.join(folder, d)) and not d.startswith("."))


def _is_image_file(folder: str, name: str) -> bool:
    return os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS and os.path.isfile(os.path.join(folder, name))


def _images_by_depth(root: str, max_depth: int = 4) -> dict[int, list[str]]:
    """Image files under `root` by depth (`root/x.png` is 1, `root/a/x.png` 2, ...), hidden folders skipped.

    Symlinked folders are followed (class folders are often links into a shared image store); the walk stops at
    `max_depth`, which is one level deeper than any layout reads, so images too deep are seen and named. A link to
    a folder that contains it (`loop -> .`) would show the same images at every depth: it is a `DataError` naming
    the link.
    """
    found: dict[int, list[str]] = defaultdict(list)
    stack = [(root, 1)]
    while stack:
        folder, depth = stack.pop()
        for name in os.listdir(folder):
            if name.startswith("."):
                continue
            path = os.path.join(folder, name)
            if os.path.islink(path) and os.path.isdir(path):
                target = os.path.realpath(path)
                if os.path.commonpath([target, os.path.realpath(folder)]) == target:
                    raise DataError(
                        f"dataset_name: {path} is a symbolic link to {target}, a folder that contains it (a loop); "
                        "remove the link or point it at a folder outside the dataset"
                    )
            if os.path.isdir(path):
                if depth < max_depth:
                    stack.append((path, depth + 1))
            elif _is_image_file(folder, name):
                found[depth].append(path)
    return {d: sorted(paths) for d, paths in found.items()}


def _list_some(paths: Sequence[str], root: str, limit: int = 5) -> str:
    shown = [os.path.relpath(p, root) for p in paths[:limit]]
    more = f" and {len(paths) - limit} more" if len(paths) > limit else ""
    return ", ".join(shown) + more


def _scan_folder(root: str) -> tuple[list[str], list[str], list[str | None]]:
    """(paths, class names, domain names) of `<class>/<img>` or `<domain>/<class>/<img>` under `root`.

    The layout is decided from every image in the tree: all images at depth 2 (`<class>/<img>`) or all at depth 3
    (`<domain>/<class>/<img>`). Anything else (a stray image beside the class folders of a domain, an image at the
    top, one nested too deep) would silently change what the tree means, so it is a `DataError` naming the files.
    """
    if not _subdirs(root):
        raise DataError(
            f"dataset_name: {root} holds no class folders (expected <class>/<image> or <domain>/<class>/<image>)"
        )
    by_depth = _images_by_depth(root)
    if not by_depth:
        raise DataError(
            f"dataset_name: no image files ({sorted(IMAGE_EXTENSIONS)}) under {root} within 4 folder levels "
            "(expected <class>/<image> or <domain>/<class>/<image>)"
        )
    layouts = {2: "<class>/<image>", 3: "<domain>/<class>/<image>"}
    counts = {d: len(by_depth.get(d, ())) for d in layouts}
    if not any(counts.values()):
        found = sorted(p for paths in by_depth.values() for p in paths)
        raise DataError(
            f"dataset_name: {root} holds no images in class folders (expected <class>/<image> or "
            f"<domain>/<class>/<image>); found only {_list_some(found, root)}"
        )
    depth = max(layouts, key=lambda d: (counts[d], d))  # the layout most images follow
    stray = sorted(p for d, paths in by_depth.items() if d != depth for p in paths)
    if stray:
        raise DataError(
            f"dataset_name: {root} is laid out {layouts[depth]} ({counts[depth]} images), but {len(stray)} image "
            f"file(s) are not at that depth: {_list_some(stray, root)}; move them into class folders or delete "
            "them, so the layout is one or the other throughout"
        )
    paths = by_depth[depth]
    parts = [os.path.relpath(p, root).split(os.sep) for p in paths]
    labels = [part[-2] for part in parts]
    domains: list[str | None] = [part[0] if depth == 3 else None for part in parts]
    empty = sorted(set(_subdirs(root)) - set(labels)) if depth == 2 else []
    if empty:
        logger.warning("image folder %s: class folder(s) without images, so not classes: %s", root, empty)
    return paths, labels, domains


def _load_image_folder(root: str) -> Any:
    import datasets

    children = _subdirs(root)
    split_dirs = [d for d in children if d.lower() in SPLIT_NAMES]
    roots = {("validation" if d.lower() == "val" else d.lower()): os.path.join(root, d) for d in split_dirs}
    if roots:
        others = [d for d in children if d not in split_dirs]
        loose = [os.path.join(root, f) for f in sorted(os.listdir(root)) if _is_image_file(root, f)]
        if others or loose:
            raise DataError(
                f"dataset_name: {root} holds split folders {split_dirs} and also "
                + (f"other folders {others}" if others else f"images {_list_some(loose, root)}")
                + "; put every class (or domain) folder inside the split folders, or use no split folders"
            )
        if len(set(roots)) != len(split_dirs):
            raise DataError(f"dataset_name: {root} holds both 'val' and 'validation' split folders: {split_dirs}")
    else:
        roots = {"train": root}
    scanned = {split: _scan_folder(path) for split, path in roots.items()}
    nested = {split: doms[0] is not None for split, (_, _, doms) in scanned.items()}
    if len(set(nested.values())) > 1:
        raise DataError(
            f"dataset_name: the split folders of {root} mix layouts: "
            + ", ".join(
                f"{split} is {'<domain>/<class>/<image>' if n else '<class>/<image>'}" for split, n in nested.items()
            )
        )
    all_classes = sorted({c for _, labels, _ in scanned.values() for c in labels})
    all_domains = sorted({d for _, _, doms in scanned.values() for d in doms if d is not None})
    features = {"image": datasets.Image(decode=False), "label": datasets.ClassLabel(names=all_classes)}
    if all_domains:
        features["domain"] = datasets.ClassLabel(names=all_domains)
    out = {}
    for split, (paths, labels, domains) in scanned.items():
        data: dict[str, list] = {"image": [{"path": p, "bytes": None} for p in paths], "label": labels}
        if all_domains:
            data["domain"] = domains
        out[split] = datasets.Dataset.from_dict(data, features=datasets.Features(features))
    logger.info("image folder %s: %s", root, {k: len(v) for k, v in out.items()})
    return datasets.DatasetDict(out)


def _normalise(
    raw: Any,
    source: str,
    image_column: str,
    label_column: str,
    domain_column: str,
    class_names: Sequence[str] | None,
) -> ImageClassificationData:
    import datasets

    first = next(iter(raw.values()))
    columns = first.column_names
    if image_column not in columns:
        candidates = [c for c, f in first.features.items() if isinstance(f, datasets.Image)]
        if len(candidates) == 1 and image_column == "image":
            image_column = candidates[0]
        else:
            raise DataError(f"image_column: {source} has no column {image_column!r}; its columns are {columns}")
    if label_column not in columns:
        raise DataError(f"label_column: {source} has no column {label_column!r}; its columns are {columns}")
    label_feature = first.features[label_column]
    if isinstance(label_feature, datasets.ClassLabel):
        names = list(class_names) if class_names else list(label_feature.names)
        if len(names) != label_feature.num_classes:
            raise DataError(f"class_names: {len(names)} names given for {label_feature.num_classes} label ids")
    elif label_feature.dtype in ("string", "large_string"):
        names = sorted(set().union(*(set(split[label_column]) for split in raw.values())))
        raw = datasets.DatasetDict(
            {k: v.cast_column(label_column, datasets.ClassLabel(names=names)) for k, v in raw.items()}
        )
    elif class_names:
        names = list(class_names)
    else:
        raise DataError(
            f"label_column: {label_column!r} of {source} holds ids without names (not a ClassLabel); pass "
            "--class_names with one name per id"
        )
    has_domain = domain_column in columns
    domain_names = None
    if has_domain:
        feature = first.features[domain_column]
        if isinstance(feature, datasets.ClassLabel):
            domain_names = list(feature.names)
        else:
            domain_names = sorted({str(v) for split in raw.values() for v in split[domain_column]})
            raw = datasets.DatasetDict(
                {
                    k: v.map(
                        lambda b: {domain_column: [domain_names.index(str(x)) for x in b[domain_column]]}, batched=True
                    ).cast_column(domain_column, datasets.ClassLabel(names=domain_names))
                    for k, v in raw.items()
                }
            )
    splits = {}
    for split_name, split in raw.items():
        keep = [image_column, label_column] + ([domain_column] if has_domain else [])
        split = split.select_columns(keep)
        rename = {image_column: "image", label_column: "label"} | ({domain_column: "domain"} if has_domain else {})
        split = split.rename_columns({k: v for k, v in rename.items() if k != v})
        if isinstance(split.features["image"], datasets.Image):
            split = split.cast_column("image", datasets.Image(decode=False))
        splits[split_name] = split
    num = len(names)
    for split_name, split in splits.items():
        labels = np.asarray(split["label"])
        if labels.size and (labels.min() < 0 or labels.max() >= num):
            raise DataError(f"label_column: split {split_name!r} has label ids outside 0..{num - 1}")
    return ImageClassificationData(splits=splits, class_names=names, domain_names=domain_names, name=source)
