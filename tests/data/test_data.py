from __future__ import annotations

import os

import datasets
import numpy as np
import pytest
import torch
from conftest import COLOURS, make_image_folder
from PIL import Image

from metaprompt_hf.data.batches import FewShotBatchSampler, ImageDataset, TrainTransform, collate
from metaprompt_hf.data.loading import DataError, load_image_classification
from metaprompt_hf.protocols import base_new_split, prepare_protocol
from metaprompt_hf.testing import image_processor

NAMES = sorted(COLOURS)


def test_domain_folder_aligns_labels_by_name_across_domains(domain_folder):
    data = load_image_classification(domain_folder)
    assert data.class_names == NAMES and data.domain_names == ["cartoon", "photo", "sketch"]
    split = data.splits["train"]
    assert len(split) == 3 * 8 * 6 - 6  # sketch lacks "purple plum"
    for row in split.select(range(0, len(split), 17)):
        folder_class = os.path.basename(os.path.dirname(row["image"]["path"]))
        folder_domain = os.path.basename(os.path.dirname(os.path.dirname(row["image"]["path"])))
        assert data.class_names[row["label"]] == folder_class  # never relabelled by position
        assert data.domain_names[row["domain"]] == folder_domain


def test_class_folder_and_split_folders(tmp_path):
    make_image_folder(tmp_path / "train", domains=None, per_class=3)
    make_image_folder(tmp_path / "val", domains=None, per_class=2, seed=1)
    data = load_image_classification(str(tmp_path))
    assert sorted(data.splits) == ["train", "validation"] and data.domain_names is None
    assert len(data.splits["train"]) == 24 and len(data.splits["validation"]) == 16


def test_saved_dataset_with_string_labels_and_string_domains(tmp_path):
    images = [Image.new("RGB", (8, 8), c) for c in ("red", "blue", "red", "blue")]
    ds = datasets.Dataset.from_dict(
        {"img": images, "kind": ["b_cat", "a_dog", "b_cat", "a_dog"], "site": ["x", "x", "y", "y"]}
    ).cast_column("img", datasets.Image())
    ds.save_to_disk(str(tmp_path / "saved"))
    data = load_image_classification(str(tmp_path / "saved"), label_column="kind", domain_column="site")
    assert data.class_names == ["a_dog", "b_cat"] and data.domain_names == ["x", "y"]
    assert data.splits["train"]["label"] == [1, 0, 1, 0]


def test_ids_without_names_need_class_names(tmp_path):
    ds = datasets.Dataset.from_dict({"image": [Image.new("RGB", (8, 8))] * 2, "label": [0, 1]})
    ds = ds.cast_column("image", datasets.Image())
    ds.save_to_disk(str(tmp_path / "ids"))
    with pytest.raises(DataError, match="--class_names"):
        load_image_classification(str(tmp_path / "ids"))
    data = load_image_classification(str(tmp_path / "ids"), class_names=["cat", "dog"])
    assert data.class_names == ["cat", "dog"]


@pytest.mark.parametrize(
    "kwargs, pattern",
    [
        ({"image_column": "picture"}, "image_column: .*'picture'"),
        ({"label_column": "target"}, "label_column: .*'target'"),
    ],
)
def test_missing_columns_are_named(tmp_path, kwargs, pattern):
    ds = datasets.Dataset.from_dict({"image": [Image.new("RGB", (8, 8))], "label": [0], "note": ["x"]})
    ds = ds.cast_column("image", datasets.Image()).cast_column("label", datasets.ClassLabel(names=["a"]))
    ds = ds.cast_column("note", datasets.Value("string"))
    ds = ds.rename_column("image", "photo")  # no column called "image", and it must be named explicitly
    ds.save_to_disk(str(tmp_path / "d"))
    if "image_column" not in kwargs:
        kwargs = kwargs | {"image_column": "photo"}
    with pytest.raises(DataError, match=pattern):
        load_image_classification(str(tmp_path / "d"), **kwargs)


def test_missing_paths_are_named(tmp_path):
    with pytest.raises(DataError, match="no such folder .*nowhere"):
        load_image_classification(str(tmp_path / "nowhere"))
    with pytest.raises(DataError, match="no class folders"):
        load_image_classification(str(tmp_path))
    with pytest.raises(DataError, match="could not be loaded from the Hub"):
        load_image_classification("someone/not-a-cached-dataset")


def test_base_new_split_rule():
    assert base_new_split(7) == ([0, 1, 2, 3], [4, 5, 6])
    assert base_new_split(10) == ([0, 1, 2, 3, 4], [5, 6, 7, 8, 9])


def test_base2new_protocol_samples_shots_per_base_class_by_seed(domain_folder):
    data = load_image_classification(domain_folder)
    p1 = prepare_protocol(data, protocol="base2new", shots=4, seed=1)
    assert p1.train_class_names == NAMES[:4]
    assert sorted(np.bincount(p1.train_labels).tolist()) == [4, 4, 4, 4]
    again = prepare_protocol(data, protocol="base2new", shots=4, seed=1)
    other = prepare_protocol(data, protocol="base2new", shots=4, seed=2)
    assert p1.fewshot["rows"] == again.fewshot["rows"] and p1.fewshot["rows"] != other.fewshot["rows"]
    base, new = p1.eval_sets["base"], p1.eval_sets["new"]
    assert base.class_names == NAMES[:4] and new.class_names == NAMES[4:]
    assert set(base.labels) == {0, 1, 2, 3} and set(new.labels) == {0, 1, 2, 3}  # remapped per half
    # no test split in a plain folder: evaluation uses the rows not sampled for training
    train_paths = {data.splits["train"][r]["image"]["path"] for r in p1.fewshot["rows"]}
    eval_paths = {r["path"] for r in base.rows["image"]}
    assert not train_paths & eval_paths


def test_dg_protocol_shots_per_source_domain_and_target_eval(domain_folder):
    data = load_image_classification(domain_folder)
    p = prepare_protocol(data, protocol="dg", shots=2, seed=1, target_domain="photo")
    assert [data.domain_names[d] for d in p.source_domains] == ["cartoon", "sketch"]
    pairs = list(zip(p.train_domains, p.train_labels))
    assert len(pairs) == 2 * (8 + 7)  # sketch lacks one class: skipped, not an error
    assert all(pairs.count(pair) == 2 for pair in set(pairs))
    target = p.eval_sets["target"]
    assert len(target.labels) == 8 * 6 and target.class_names == NAMES


def test_dg_source_domain_validation_never_scores_the_target(domain_folder):
    data = load_image_classification(domain_folder)
    target = prepare_protocol(data, protocol="dg", shots=2, seed=1, target_domain="photo")
    sources = prepare_protocol(data, protocol="dg", shots=2, seed=1, target_domain="photo", eval_domains="sources")
    assert sources.fewshot["rows"] == target.fewshot["rows"]  # the same training images, another eval set
    assert list(sources.eval_sets) == ["sources"] and sources.fewshot["eval_domains"] == "sources"
    scored = set(sources.eval_sets["sources"].rows["domain"])
    assert scored == set(sources.source_domains) and data.domain_names.index("photo") not in scored
    # the rows not sampled for training (a folder without a test split), of the two source domains only
    unused = len(data.splits["train"]) - len(sources.fewshot["rows"]) - len(target.eval_sets["target"].labels)
    assert len(sources.eval_sets["sources"].labels) == unused


@pytest.mark.parametrize(
    "kwargs, pattern",
    [
        ({"protocol": "dg", "target_domain": "photo", "eval_domains": "all"}, "eval_domains: expected one of"),
        ({"protocol": "base2new", "eval_domains": "sources"}, "eval_domains: --protocol base2new has no held-out"),
        (
            {"protocol": "dg", "target_domain": "painting"},
            r"'painting' is not a domain .*\['cartoon', 'photo', 'sketch'\]",
        ),
        ({"protocol": "dg", "target_domain": None}, "target_domain: required"),
        ({"protocol": "base2new", "shots": 50}, "class 'black cat' has 18 readable images, fewer than the 50"),
        ({"protocol": "base2new", "train_split": "test"}, "no split 'test'"),
        ({"protocol": "holdout"}, "protocol"),
    ],
)
def test_protocol_bad_input(domain_folder, kwargs, pattern):
    data = load_image_classification(domain_folder)
    with pytest.raises(DataError, match=pattern):
        prepare_protocol(data, **({"shots": 2, "seed": 1} | kwargs))


def test_dg_needs_two_source_domains(tmp_path):
    make_image_folder(tmp_path, domains=("photo", "sketch"), per_class=2)
    data = load_image_classification(str(tmp_path))
    with pytest.raises(DataError, match="at least two"):
        prepare_protocol(data, protocol="dg", shots=1, seed=1, target_domain="photo")
    single = tmp_path / "single"
    make_image_folder(single, domains=None, per_class=2)
    with pytest.raises(DataError, match="no domain column"):
        prepare_protocol(load_image_classification(str(single)), protocol="dg", shots=1, seed=1, target_domain="x")


def test_fewer_shots_fallback_is_logged(tmp_path, caplog):
    make_image_folder(tmp_path / "train", domains=None, per_class=3)
    make_image_folder(tmp_path / "test", domains=None, per_class=1)
    data = load_image_classification(str(tmp_path))
    p = prepare_protocol(data, protocol="base2new", shots=20, seed=1, allow_fewer_shots=True)
    assert len(p.train_labels) == 4 * 3
    assert "fewer than the 20" in caplog.text
    # Without a test split the same sample would leave no base image to evaluate: refused, not NaN.
    with pytest.raises(DataError, match="'base' evaluation set .* has no images"):
        prepare_protocol(
            load_image_classification(str(tmp_path / "train")),
            protocol="base2new",
            shots=20,
            seed=1,
            allow_fewer_shots=True,
        )


def test_corrupt_images_are_skipped_and_counted(tmp_path):
    make_image_folder(tmp_path, domains=None, per_class=3)
    bad = tmp_path / "black cat" / "9.png"
    bad.write_bytes(b"this is not a png")
    data = load_image_classification(str(tmp_path))
    p = prepare_protocol(data, protocol="base2new", shots=4, seed=0, allow_fewer_shots=True)
    assert p.skipped_corrupt == [str(bad)]  # every candidate was tried, the unreadable one skipped and counted
    assert p.train_labels.count(NAMES.index("black cat")) == 3
    assert str(bad) not in [r["path"] for r in data.splits["train"].select(p.fewshot["rows"])["image"]]
    # at evaluation the unreadable file is dropped by the collator, never a crash in a worker
    rows = data.splits["train"]
    idx = [i for i, v in enumerate(rows["image"]) if v["path"] == str(bad)][0]
    ds = ImageDataset(rows, rows["label"], None, image_processor(32))
    batch = collate([ds[idx], ds[idx + 1]])
    assert batch["corrupt"] == [str(bad)] and batch["pixel_values"].shape == (1, 3, 32, 32)


def test_train_transform_is_a_function_of_the_seed():
    t = TrainTransform(32, [0.5] * 3, [0.25] * 3, scale=(0.08, 1.0))
    img = Image.fromarray(np.random.default_rng(0).integers(0, 255, (40, 50, 3), dtype=np.uint8))
    a = t(img, np.random.default_rng(5))
    assert a.shape == (3, 32, 32)
    assert torch.equal(a, t(img, np.random.default_rng(5)))
    assert not torch.equal(a, t(img, np.random.default_rng(6)))


def test_domain_mixing_sampler_puts_two_domains_in_every_batch():
    domains = [0] * 10 + [1] * 3 + [2] * 4
    sampler = FewShotBatchSampler(len(domains), 4, seed=3, domains=domains, mix_domains=True)
    for epoch in range(3):
        sampler.set_epoch(epoch)
        batches = list(sampler)
        assert len(batches) == len(sampler)
        for batch in batches:
            assert len({domains[row] for row, _ in batch}) >= 2
        rows = [row for batch in batches for row, _ in batch]
        assert len(rows) == len(set(rows))
    sampler.set_epoch(0)
    first = list(sampler)
    sampler.set_epoch(0)
    assert list(sampler) == first  # reproducible per epoch
    sampler.set_epoch(1)
    assert list(sampler) != first  # reshuffled per epoch


def test_random_sampler_drops_last_only_with_a_full_batch():
    assert len(FewShotBatchSampler(10, 4, seed=0)) == 2
    assert len(FewShotBatchSampler(3, 4, seed=0)) == 1
