"""Image-folder layouts: decided from the whole tree, and every tree that fits no layout refused by name.

One table: each row is a tree (relative paths of the files to create; `.png` files are real images) and its
expected outcome: what is read (`Reads`) or the error (`Refused`). Adding a case is one line.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

import pytest
from PIL import Image

from metaprompt_hf.data.loading import DataError, load_image_classification


@dataclass(frozen=True)
class Reads:
    """Correct result: the split sizes, the class names and the domain names (None: no domain column)."""

    splits: dict[str, int]
    classes: list[str]
    domains: list[str] | None = None


@dataclass(frozen=True)
class Refused:
    """Clear error: `DataError` whose message matches every pattern (e.g. the stray files by name)."""

    patterns: tuple[str, ...]


def imgs(prefix: str, n: int = 2) -> list[str]:
    return [f"{prefix}/{i}.png" for i in range(n)]


FLAT = imgs("cat") + imgs("dog")  # <class>/<img>
NESTED = imgs("photo/cat") + imgs("photo/dog") + imgs("sketch/cat") + imgs("sketch/dog")  # <domain>/<class>/<img>

CASES: list[tuple[str, list[str], Reads | Refused]] = [
    ("class folders", FLAT, Reads({"train": 4}, ["cat", "dog"])),
    ("domain folders", NESTED, Reads({"train": 8}, ["cat", "dog"], ["photo", "sketch"])),
    ("domain lacking a class", NESTED + imgs("art/cat"), Reads({"train": 10}, ["cat", "dog"], ["art", "photo", "sketch"])),
    ("non-image files ignored", FLAT + ["README.md", "cat/labels.txt", "dog/notes.csv"], Reads({"train": 4}, ["cat", "dog"])),
    ("hidden folders ignored", FLAT + imgs(".cache/thumbs"), Reads({"train": 4}, ["cat", "dog"])),
    ("empty class folder", FLAT + ["bird/notes.txt"], Reads({"train": 4}, ["cat", "dog"])),
    ("split folders", [f"train/{p}" for p in FLAT] + [f"test/{p}" for p in FLAT[:3]], Reads({"train": 4, "test": 3}, ["cat", "dog"])),
    ("val is validation", [f"train/{p}" for p in FLAT] + [f"val/{p}" for p in FLAT], Reads({"train": 4, "validation": 4}, ["cat", "dog"])),
    ("split folders with domains", [f"train/{p}" for p in NESTED] + [f"test/{p}" for p in NESTED], Reads({"train": 8, "test": 8}, ["cat", "dog"], ["photo", "sketch"])),
    # the case: one stray image at <root>/<domain>/ turned the tree into <class>/<img> with class "photo"
    ("stray image beside class folders", NESTED + ["photo/stray.png"], Refused((r"<domain>/<class>/<image> \(8 images\)", r"photo/stray\.png"))),
    ("several strays, all named", NESTED + ["photo/a.png", "sketch/b.png"], Refused((r"2 image file\(s\)", r"photo/a\.png", r"sketch/b\.png"))),
    ("stray class-level images are the minority", FLAT + FLAT + imgs("cat/sub", 1), Refused((r"<class>/<image>", r"cat/sub/0\.png"))),
    ("image below a class folder", NESTED + ["photo/cat/extra/x.png"], Refused((r"photo/cat/extra/x\.png",))),
    ("image at the top", FLAT + ["top.png"], Refused((r"top\.png",))),
    ("too deep", imgs("a/b/c"), Refused((r"no images in class folders", r"a/b/c/0\.png"))),
    ("far too deep", imgs("a/b/c/d"), Refused((r"no image files .* within 4 folder levels",))),
    ("images only at the top", ["x.png", "y.png"], Refused((r"no class folders",))),
    ("no images at all", ["cat/readme.txt"], Refused((r"no image files",))),
    ("empty folder", [], Refused((r"no class folders",))),
    ("split folders and class folders", [f"train/{p}" for p in FLAT] + imgs("bird"), Refused((r"split folders \['train'\] and also other folders \['bird'\]",))),
    ("split folders and a top image", [f"train/{p}" for p in FLAT] + ["top.png"], Refused((r"split folders", r"top\.png"))),
    ("val and validation", [f"train/{p}" for p in FLAT] + [f"val/{p}" for p in FLAT] + [f"validation/{p}" for p in FLAT], Refused((r"both 'val' and 'validation'",))),
    ("splits with different layouts", [f"train/{p}" for p in NESTED] + [f"test/{p}" for p in FLAT], Refused((r"mix layouts", r"train is <domain>/<class>/<image>", r"test is <class>/<image>"))),
    ("stray inside a split", [f"train/{p}" for p in NESTED] + ["train/photo/x.png"], Refused((r"data/train is laid out .*: photo/x\.png",))),
]  # fmt: skip


def build(root: str, files: list[str]) -> None:
    os.makedirs(root, exist_ok=True)
    for rel in files:
        path = os.path.join(root, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        if rel.endswith(".png"):
            Image.new("RGB", (4, 4), (len(rel) * 9 % 256, 0, 0)).save(path)
        else:
            with open(path, "w") as f:
                f.write("not an image\n")


@pytest.mark.parametrize("files, expected", [row[1:] for row in CASES], ids=[row[0] for row in CASES])
def test_layout(tmp_path, files, expected):
    root = str(tmp_path / "data")
    build(root, files)
    if isinstance(expected, Refused):
        with pytest.raises(DataError) as info:
            load_image_classification(root)
        for pattern in expected.patterns:
            assert re.search(pattern, str(info.value)), str(info.value)
        return
    data = load_image_classification(root)
    assert {k: len(v) for k, v in data.splits.items()} == expected.splits
    assert data.class_names == expected.classes
    assert data.domain_names == expected.domains
    if expected.domains:  # labels and domains come from the path, not from the order of the walk
        for split in data.splits.values():
            for row in split:
                *_, domain, cls, _ = row["image"]["path"].split(os.sep)
                assert data.class_names[row["label"]] == cls and data.domain_names[row["domain"]] == domain


# ------------------------------------------------------------------ evaluation sets of a protocol
@dataclass(frozen=True)
class Evaluates:
    """Correct result: the evaluation sets and their sizes."""

    sizes: dict[str, int]


def classes(names: str, n: int = 2, prefix: str = "") -> list[str]:
    return [p for name in names for p in imgs(f"{prefix}{name}", n)]


DOMAINS3 = [f"{d}/{p}" for d in ("art", "photo", "sketch") for p in classes("ab")]

# (case, tree, prepare_protocol keywords, expected): NaN or a meaningless 100% would otherwise come out after training
EVAL_CASES: list[tuple[str, list[str], dict, Evaluates | Refused]] = [
    ("4 classes: 2 base, 2 new", classes("abcd", 3), {}, Evaluates({"base": 4, "new": 6})),
    ("1 class", classes("a", 3), {}, Refused((r"'base' evaluation set .* single class \['a'\]",))),
    ("2 classes", classes("ab", 3), {}, Refused((r"'base' evaluation set .* single class \['a'\]",))),
    ("3 classes: 1 new", classes("abc", 3), {}, Refused((r"'new' evaluation set .* single class \['c'\]",))),
    ("shots take every base image", classes("abcd", 2), {"shots": 2}, Refused((r"'base' evaluation set .* no images \(from 'train minus training rows'\)",))),
    ("fewer shots take every base image", classes("abcd", 2), {"shots": 5, "allow_fewer_shots": True}, Refused((r"'base' evaluation set .* no images",))),
    ("test split lacks the new classes", [f"train/{p}" for p in classes("abcd")] + [f"test/{p}" for p in classes("ab")], {}, Refused((r"'new' evaluation set .* no images \(from 'test'\)",))),
    ("DG", DOMAINS3, {"protocol": "dg", "target_domain": "art"}, Evaluates({"target": 4})),
    ("DG target missing from the test split", [f"train/{p}" for p in DOMAINS3] + [f"test/photo/{p}" for p in classes("ab")], {"protocol": "dg", "target_domain": "art"}, Refused((r"'target' evaluation set .* no images \(from 'test'\)",))),
]  # fmt: skip


@pytest.mark.parametrize("files, kwargs, expected", [r[1:] for r in EVAL_CASES], ids=[r[0] for r in EVAL_CASES])
def test_evaluation_sets_checked_before_training(tmp_path, files, kwargs, expected):
    from metaprompt_hf.protocols import prepare_protocol

    root = str(tmp_path / "data")
    build(root, files)
    data = load_image_classification(root)
    kwargs = {"protocol": "base2new", "shots": 1, "seed": 0} | kwargs
    if isinstance(expected, Refused):
        with pytest.raises(DataError) as info:
            prepare_protocol(data, **kwargs)
        for pattern in expected.patterns:
            assert re.search(pattern, str(info.value)), str(info.value)
        return
    proto = prepare_protocol(data, **kwargs)
    assert {k: len(v.rows) for k, v in proto.eval_sets.items()} == expected.sizes
