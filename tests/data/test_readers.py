"""Standard-layout readers on a fake DATA/ tree written in exactly CoOp's and Dassl's formats: class names,
label order and splits as those codebases read them, and one training + evaluation run per dataset family."""

from __future__ import annotations

import json
import os

import pytest

from metaprompt_hf.data.loading import DataError
from metaprompt_hf.data.readers import FOLDERS, READERS, load_standard
from metaprompt_hf.data.readers.fakes import ALL, FAKE_IMAGENET_NAMES, FAKE_SUBSET, write_fake_data
from metaprompt_hf.protocols import get_protocol, prepare_protocol
from metaprompt_hf.training import evaluate_adapter, parse_args, train


def test_every_dataset_of_the_interface_has_a_reader_and_a_fake(fake_data):
    names = {
        "imagenet", "caltech101", "oxford_pets", "stanford_cars", "oxford_flowers", "food101", "fgvc_aircraft",
        "sun397", "dtd", "eurosat", "ucf101", "imagenet_v2", "imagenet_sketch", "imagenet_a", "imagenet_r",
        "pacs", "vlcs", "office_home", "domainnet",
    }  # fmt: skip
    assert set(READERS) == set(FOLDERS) == set(ALL) == names
    assert set(os.listdir(fake_data)) == set(FOLDERS.values())
    for protocol in ("cross_dataset", "imagenet_shift"):
        assert set(get_protocol(protocol).target_datasets) <= names


def test_split_file_datasets_follow_the_json_labels_and_coop_renames(fake_data):
    data = load_standard("eurosat", fake_data)
    assert data.class_names[:4] == ["Annual Crop Land", "Forest", "Herbaceous Vegetation Land", "Highway or Road"]
    assert sorted(data.splits) == ["test", "train", "val"] and data.domain_names is None
    with open(os.path.join(fake_data, "eurosat", "split_zhou_EuroSAT.json"), encoding="utf-8") as f:
        split = json.load(f)
    rel, label, _ = split["test"][5]
    row = data.splits["test"][5]
    assert row["label"] == label and row["image"]["path"] == os.path.join(fake_data, "eurosat", "2750", rel)
    cars = load_standard("stanford_cars", fake_data)  # paths relative to the dataset folder itself
    assert cars.splits["train"][0]["image"]["path"].startswith(os.path.join(fake_data, "stanford_cars", "cars_train"))


def test_base_classes_are_the_first_half_of_the_split_file_labels(fake_data):
    data = load_standard("oxford_pets", fake_data)
    proto = prepare_protocol(data, protocol="base2new", shots=2, seed=1)
    assert proto.fewshot["base_classes"] == ["abyssinian", "american_bulldog"]
    assert proto.eval_sets["new"].class_names == ["basset_hound", "beagle"]
    assert len(proto.eval_sets["base"].labels) == 4 and proto.fewshot["eval_split"] == "test"


def test_fgvc_labels_are_variants_txt_lines(fake_data):
    data = load_standard("fgvc_aircraft", fake_data)
    assert data.class_names == ["707-320", "727-200", "737-200", "A300B4"]
    first = data.splits["test"][0]["image"]["path"]
    assert os.path.dirname(first) == os.path.join(fake_data, "fgvc_aircraft", "images") and first.endswith(".jpg")


def test_imagenet_family_class_names_and_the_200_class_subsets(fake_data):
    imagenet = load_standard("imagenet", fake_data)
    assert imagenet.class_names == FAKE_IMAGENET_NAMES and sorted(imagenet.splits) == ["test", "train"]
    v2 = load_standard("imagenet_v2", fake_data)  # folder "k" is line k of classnames.txt
    assert v2.class_names == FAKE_IMAGENET_NAMES and list(v2.splits) == ["test"]
    assert os.path.basename(os.path.dirname(v2.splits["test"][7]["image"]["path"])) == str(
        v2.splits["test"][7]["label"]
    )
    for name in ("imagenet_a", "imagenet_r"):
        data = load_standard(name, fake_data)  # README.txt beside the wnid folders is ignored
        assert data.class_names == [FAKE_IMAGENET_NAMES[i] for i in FAKE_SUBSET]
        proto = prepare_protocol(data, protocol="imagenet_shift", shots=16, seed=1)
        assert proto.train_rows is None and proto.eval_sets["all"].class_names == data.class_names


def test_dassl_domains_labels_and_target_splits(fake_data):
    pacs = load_standard("pacs", fake_data)
    assert pacs.domain_names == ["art_painting", "cartoon", "photo", "sketch"]
    assert pacs.class_names == ["dog", "elephant", "giraffe", "guitar"]  # 1-based labels in the lists
    proto = prepare_protocol(pacs, protocol="dg", shots=2, seed=1, target_domain="photo")
    assert len(proto.train_labels) == 3 * 4 * 2 and len(proto.eval_sets["target"].labels) == 4 * 3  # train+crossval
    vlcs = load_standard("vlcs", fake_data)
    assert vlcs.class_names == ["bird", "car", "chair", "dog"] and vlcs.domain_names[0] == "caltech"
    office = load_standard("office_home", fake_data)
    assert office.class_names == ["alarm_clock", "backpack", "batteries", "bed"]
    assert len(office.splits["test"]) == len(office.splits["train"]) + len(office.splits["val"])
    domainnet = load_standard("domainnet", fake_data)
    assert len(domainnet.domain_names) == 6 and domainnet.class_names[0] == "aircraft_carrier"


def test_bad_layouts_fail_naming_the_file(fake_data, tmp_path):
    with pytest.raises(DataError, match="expected one of"):
        load_standard("cifar10", fake_data)
    with pytest.raises(DataError, match="caltech-101"):
        load_standard("caltech101", str(tmp_path))
    write_fake_data(tmp_path, ["dtd"])
    os.remove(tmp_path / "dtd" / "split_zhou_DescribableTextures.json")
    with pytest.raises(DataError, match="split_zhou_DescribableTextures.json"):
        load_standard("dtd", str(tmp_path))
    write_fake_data(tmp_path, ["pacs"])
    with open(tmp_path / "pacs" / "splits" / "photo_train_kfold.txt", "a") as f:
        f.write("photo/dog/missing.jpg 1\n")
    with pytest.raises(DataError, match="missing.jpg"):
        load_standard("pacs", str(tmp_path))


def _run(clip, data, out, *extra):
    return parse_args(
        ["--base_model", clip, "--data_dir", data, "--output_dir", str(out), "--max_steps", "1"]
        + ["--per_device_train_batch_size", "4", "--per_device_eval_batch_size", "16", *extra]
    )


@pytest.mark.parametrize(
    ("dataset", "protocol", "extra"),
    [
        ("ucf101", "base2new", ["--shots", "2"]),  # CoOp split file
        ("fgvc_aircraft", "base2new", ["--shots", "1"]),  # FGVC text lists
        ("pacs", "dg", ["--shots", "1", "--target_domain", "sketch"]),  # Dassl lists
        ("office_home", "dg", ["--shots", "1", "--target_domain", "art"]),  # Dassl folders
    ],
)
def test_train_and_evaluate_per_family(tiny_clip_dir, fake_data, tmp_path, dataset, protocol, extra):
    out = train(
        _run(tiny_clip_dir, fake_data, tmp_path / "run", "--dataset_name", dataset, "--protocol", protocol, *extra)
    )
    r = out.results[0]
    assert r["dataset"] == dataset and r["protocol"] == protocol
    assert all(0 <= r[k] <= 100 for k in get_protocol(protocol).metric_keys)
    fewshot = json.loads((tmp_path / "run" / "fewshot_indices.json").read_text())
    assert len(fewshot["files"]) == len(fewshot["rows"]) > 0
    assert all(os.path.isfile(os.path.join(fake_data, f)) for f in fewshot["files"])  # relative to DATA/


def test_imagenet_adapter_transfers_with_the_target_templates(tiny_clip_dir, fake_data, tmp_path):
    out = train(
        _run(
            tiny_clip_dir,
            fake_data,
            tmp_path / "in",
            "--dataset_name",
            "imagenet",
            "--protocol",
            "cross_dataset",
            "--shots",
            "2",
        )
    )
    assert out.results[0]["n_classes"] == 4 and len(out.model.config.templates) == 8  # ImageNet's ensemble
    for target, n_classes in (("imagenet_r", 2), ("dtd", 4)):
        args = _run(
            tiny_clip_dir, fake_data, tmp_path / "eval", "--dataset_name", target, "--protocol", "cross_dataset"
        )
        entry = evaluate_adapter(args, tmp_path / "in")
        assert entry["dataset"] == target and entry["n_classes"] == n_classes and 0 <= entry["accuracy"] <= 100
    with pytest.raises(DataError, match="no 'train' split"):
        train(
            _run(
                tiny_clip_dir,
                fake_data,
                tmp_path / "bad",
                "--dataset_name",
                "imagenet_a",
                "--protocol",
                "cross_dataset",
            )
        )


def test_a_split_file_with_folder_names_gets_coops_renamed_classes(tmp_path):
    write_fake_data(tmp_path, ["eurosat"])
    path = tmp_path / "eurosat" / "split_zhou_EuroSAT.json"
    split = json.loads(path.read_text())
    raw = {"Annual Crop Land": "AnnualCrop", "Herbaceous Vegetation Land": "HerbaceousVegetation"}
    for rows in split.values():
        for row in rows:
            row[2] = raw.get(row[2], row[2])
    path.write_text(json.dumps(split))
    assert load_standard("eurosat", str(tmp_path)).class_names[:3] == [
        "Annual Crop Land",
        "Forest",
        "Herbaceous Vegetation Land",
    ]
    split["test"][0][2] = "Forest"  # label 0 named twice differently
    path.write_text(json.dumps(split))
    with pytest.raises(DataError, match="two names"):
        load_standard("eurosat", str(tmp_path))
