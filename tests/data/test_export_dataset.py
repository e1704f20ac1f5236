"""Exporting a standard layout as a `datasets` dataset: it loads with `load_dataset`, holds the official splits,
class names, domains and the few-shot config, and training on it draws the same few-shot sample and ends with the
same adapter as training on the folder layout."""

from __future__ import annotations

import json
from pathlib import Path

import datasets
import pytest
from safetensors.torch import load_file

from metaprompt_hf import export_dataset as export_module
from metaprompt_hf.data.loading import DataError
from metaprompt_hf.data.readers import load_standard
from metaprompt_hf.data.readers.fakes import write_fake_data
from metaprompt_hf.export_dataset import export_dataset, push_dataset
from metaprompt_hf.protocols import prepare_protocol
from metaprompt_hf.training import parse_args, train


@pytest.fixture(scope="module")
def fake_data(tmp_path_factory) -> str:
    return write_fake_data(tmp_path_factory.mktemp("DATA"), ["eurosat", "pacs"])


@pytest.fixture(scope="module")
def exported(fake_data, tmp_path_factory) -> str:
    out = tmp_path_factory.mktemp("exports") / "eurosat-export"
    assert export_module.main(["eurosat", "--data_dir", fake_data, "--output_dir", str(out), "--seeds", "1", "2",
                               "--shots", "2"]) == 0  # fmt: skip
    return str(out)


def test_export_loads_with_datasets_and_keeps_splits_names_and_fewshot(fake_data, exported):
    layout = load_standard("eurosat", fake_data)
    for ds in (datasets.load_dataset("parquet", data_dir=exported), datasets.load_dataset(exported)):
        assert set(ds) == {"train", "validation", "test"}
        assert ds["train"].features["label"].names == layout.class_names
        assert [len(ds[s]) for s in ("train", "validation", "test")] == [len(layout.splits[s]) for s in SPLITS]
        assert ds["train"]["label"] == layout.splits["train"]["label"]
    row = datasets.load_dataset("parquet", data_dir=exported)["train"].cast_column(
        "image", datasets.Image(decode=False)
    )[0]
    assert row["image"]["path"].startswith("eurosat/2750/") and row["image"]["bytes"][:2] == b"\xff\xd8"  # JPEG
    fewshot = datasets.load_dataset(exported, "fewshot")["train"]
    assert [(r["seed"], r["shots"], r["protocol"]) for r in fewshot] == [(1, 2, "base2new"), (2, 2, "base2new")]
    assert fewshot[0]["rows"] == prepare_protocol(layout, protocol="base2new", shots=2, seed=1).fewshot["rows"]
    card = (Path(exported) / "README.md").read_text()
    assert "license: mit" in card and "https://github.com/phelber/EuroSAT" in card


SPLITS = ("train", "val", "test")


def _train(out, *data_args, tiny_clip_dir):
    argv = ["--base_model", tiny_clip_dir, *data_args, "--output_dir", str(out), "--max_steps", "2", "--shots", "2"]
    argv += ["--per_device_train_batch_size", "4", "--per_device_eval_batch_size", "16", "--seed", "2"]
    return train(parse_args(argv))


def test_training_on_the_export_draws_the_same_sample_and_adapter(fake_data, exported, tmp_path, tiny_clip_dir):
    a = _train(tmp_path / "layout", "--dataset_name", "eurosat", "--data_dir", fake_data, tiny_clip_dir=tiny_clip_dir)
    b = _train(tmp_path / "export", "--dataset_name", exported, tiny_clip_dir=tiny_clip_dir)
    few_a = (tmp_path / "layout" / "fewshot_indices.json").read_text()
    few_b = (tmp_path / "export" / "fewshot_indices.json").read_text()
    assert few_a == few_b and len(json.loads(few_a)["files"]) == 2 * 2  # 2 shots x 2 base classes
    wa = load_file(tmp_path / "layout" / "metaprompt_model.safetensors")
    wb = load_file(tmp_path / "export" / "metaprompt_model.safetensors")
    assert wa.keys() == wb.keys() and all((wa[k] == wb[k]).all() for k in wa)
    cfg_a, cfg_b = (json.loads((tmp_path / r / "metaprompt_config.json").read_text()) for r in ("layout", "export"))
    assert cfg_a["templates"] == cfg_b["templates"]  # EuroSAT's preset, from the export's recorded name
    assert a.results[0]["base"] == b.results[0]["base"] and a.results[0]["new"] == b.results[0]["new"]


def test_dg_export_has_domains_and_a_sample_per_target(fake_data, tmp_path):
    out = export_dataset("pacs", fake_data, str(tmp_path / "pacs"), seeds=[1], shots=[1])
    ds = datasets.load_dataset("parquet", data_dir=str(out))
    assert ds["train"].features["domain"].names == ["art_painting", "cartoon", "photo", "sketch"]
    fewshot = datasets.load_dataset(str(out), "fewshot")["train"]
    assert fewshot["target_domain"] == ["art_painting", "cartoon", "photo", "sketch"]
    layout = load_standard("pacs", fake_data)
    expected = prepare_protocol(layout, protocol="dg", shots=1, seed=1, target_domain="sketch").fewshot["rows"]
    assert fewshot[3]["rows"] == expected


def test_refusals_and_push(fake_data, exported, tmp_path):
    with pytest.raises(DataError, match="exists; choose a new folder"):
        export_dataset("eurosat", fake_data, exported)
    assert export_module.main(["imagenet_x", "--data_dir", fake_data, "--output_dir", str(tmp_path / "x")]) == 2
    calls = []

    class FakeApi:
        def create_repo(self, repo_id, **kw):
            calls.append(("create", repo_id, kw["repo_type"]))

        def upload_folder(self, **kw):
            calls.append(("upload", kw["repo_id"], kw["repo_type"], sorted(p.name for p in kw_path(kw))))

    def kw_path(kw):
        return Path(kw["folder_path"]).iterdir()

    push_dataset(exported, "me/eurosat-fewshot", api=FakeApi())
    assert calls == [
        ("create", "me/eurosat-fewshot", "dataset"),
        ("upload", "me/eurosat-fewshot", "dataset", ["README.md", "data", "fewshot", "metaprompt_dataset.json"]),
    ]
