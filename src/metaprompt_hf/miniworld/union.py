"""`union` (`miniworld:union`): one base-to-new mini dataset with many classes, the union of the four base-to-new mini datasets.

The four mini datasets have 5-8 base classes each, so the class-split episodes of MetaPrompt's meta step
(docs/method.md §3.1: two groups of the base classes, 2-4 classes each) are near-solved 2-4-way problems. Their
union has 52 classes, 26 of them base, and held-out groups of 13 classes.

Class names are the datasets' hand-crafted templates without the shared "a photo of " prefix ("the digit zero",
"the letter a", "a circle, a type of shape", "a house"), and the union's template is "a photo of {}": the frozen
branch sees exactly the prompts of the source datasets (docs/method.md §8), and every name is unique. Label ids
put the base halves of the four datasets first (in dataset order) and their new halves after, so that the
union's first ceil(C/2) = 26 classes (base, docs/method.md §6) are exactly the sources' base classes.
"""

from __future__ import annotations

import math
import os

import datasets

from .benchmark import load_miniworld, save_to_cache
from .catalog import B2N_DATASETS, CLASS_NAMES, MINIWORLD_VERSION, TEMPLATES

UNION = "union"
UNION_TEMPLATE = "a photo of {}"
_PREFIX = "a photo of "
UNION_VERSION = "1"


def _source_names() -> list[tuple[str, int, str]]:
    """(source dataset, source label id, union class name) in union label-id order."""
    halves: list[list[tuple[str, int, str]]] = [[], []]
    for name in B2N_DATASETS:
        template = TEMPLATES[name]
        if not template.startswith(_PREFIX):
            raise ValueError(f"union: template of {name!r} does not start with {_PREFIX!r}: {template!r}")
        names = CLASS_NAMES[name]
        k = math.ceil(len(names) / 2)
        for i, cls in enumerate(names):
            halves[i >= k].append((name, i, template.format(cls)[len(_PREFIX) :]))
    return halves[0] + halves[1]


def union_class_names() -> list[str]:
    """The union's 52 class names in label-id order (base first: 26 classes)."""
    return [union for _, _, union in _source_names()]


def load_union(cache_dir: str | os.PathLike[str] | None = None) -> datasets.DatasetDict:
    """The union dataset (seed 0, the benchmark data), splits train / validation / test, columns `image` and
    `label` (`ClassLabel` named by `union_class_names`). Saved under `cache_dir` and reloaded when given."""
    target = None
    if cache_dir is not None:
        target = os.path.join(os.fspath(cache_dir), f"union-v{UNION_VERSION}-mw{MINIWORLD_VERSION}")
        if os.path.isfile(os.path.join(target, "dataset_dict.json")):
            return datasets.load_from_disk(target)
    order = _source_names()
    names = [union for _, _, union in order]
    remap = {(src, i): j for j, (src, i, _) in enumerate(order)}
    features = datasets.Features({"image": datasets.Image(), "label": datasets.ClassLabel(names=names)})
    splits = {}
    for split in ("train", "validation", "test"):
        parts = []
        for src in B2N_DATASETS:
            ds = load_miniworld(src, cache_dir=cache_dir)[split].select_columns(["image", "label"])
            ds = ds.cast_column("label", datasets.Value("int64"))
            ds = ds.map(lambda row, s=src: {"label": remap[(s, row["label"])]})
            parts.append(ds.cast(features))
        splits[split] = datasets.concatenate_datasets(parts)
    dd = datasets.DatasetDict(splits)
    return save_to_cache(dd, target)
