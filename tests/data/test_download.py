"""The download path offline, end to end: a Hugging Face cache pre-populated with small archives built from the
reader fakes, in the default repository's file layout (`dataset_sources.SOURCES`), is fetched with
`HF_HUB_OFFLINE=1`, checked and unpacked into the layout the readers read, then trained on with `--download`.

Base-to-new: EuroSAT (`eurosat.zip`, a file name read in the repository's listing). Domain shift: ImageNet-A
(`imagenet-adversarial.zip`, the repository's "domain generalization" part, CoOp's ImageNet → variants) and PACS
(Dassl's DG layout, which no readable Hub repository holds: fetched from a mirror named with --repo_id)."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import zipfile
from pathlib import Path

import pytest

from metaprompt_hf import download
from metaprompt_hf.data import sources as dataset_sources
from metaprompt_hf.data.extraction import ExtractionError, is_complete, read_marker, sha256_file
from metaprompt_hf.data.readers import FOLDERS, load_standard
from metaprompt_hf.data.readers.fakes import write_fake_data
from metaprompt_hf.data.sources import DEFAULT_REPO_ID, SOURCES
from metaprompt_hf.download import DownloadError, download_dataset

ROOT = Path(__file__).resolve().parents[2]
COMMIT = "c0ffee" + "0" * 34


def _zip_folder(src_root: str, folder: str, out: str, wrap: str | None) -> str:
    """`src_root/folder` zipped, its files under `wrap/` (or at the archive root)."""
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zf:
        for dirpath, _, files in sorted(os.walk(os.path.join(src_root, folder))):
            for f in sorted(files):
                path = os.path.join(dirpath, f)
                rel = os.path.relpath(path, os.path.join(src_root, folder))
                zf.write(path, f"{wrap}/{rel}" if wrap else rel)
    return out


def _put_in_cache(cache: str, repo_id: str, archives: dict[str, str], repo_type: str = "model", commit=COMMIT):
    """Archives laid out as `hf_hub_download` leaves them: LFS blobs named by their sha256, snapshot links."""
    repo_dir = os.path.join(cache, f"{repo_type}s--{repo_id.replace('/', '--')}")
    os.makedirs(os.path.join(repo_dir, "blobs"), exist_ok=True)
    os.makedirs(os.path.join(repo_dir, "snapshots", commit), exist_ok=True)
    os.makedirs(os.path.join(repo_dir, "refs"), exist_ok=True)
    for name, path in archives.items():
        digest = sha256_file(path)
        shutil.copy(path, os.path.join(repo_dir, "blobs", digest))
        os.symlink(os.path.join("..", "..", "blobs", digest), os.path.join(repo_dir, "snapshots", commit, name))
    with open(os.path.join(repo_dir, "refs", "main"), "w") as f:
        f.write(commit)
    return repo_dir


@pytest.fixture(scope="module")
def archives(tmp_path_factory):
    """Fake eurosat, imagenet_a, pacs and dtd archives: eurosat wrapped in its folder, imagenet_a without one."""
    src = write_fake_data(tmp_path_factory.mktemp("src"), ["eurosat", "imagenet_a", "pacs", "dtd"])
    out = tmp_path_factory.mktemp("archives")
    return {
        "eurosat": _zip_folder(src, "eurosat", str(out / "eurosat.zip"), "eurosat"),
        "imagenet_a": _zip_folder(src, "imagenet-adversarial", str(out / "imagenet-adversarial.zip"), None),
        "pacs": _zip_folder(src, "pacs", str(out / "pacs.zip"), "PACS"),
        "dtd": _zip_folder(src, "dtd", str(out / "dtd.zip"), "dtd"),
    }


@pytest.fixture
def cache(tmp_path, archives):
    path = str(tmp_path / "hub")
    _put_in_cache(path, DEFAULT_REPO_ID, {SOURCES[n].archive: archives[n] for n in ("eurosat", "imagenet_a")})
    _put_in_cache(path, "mirror/dassl-dg", {"pacs.zip": archives["pacs"]}, repo_type="dataset")
    return path


def test_cli_downloads_base_to_new_and_domain_shift_datasets_offline(cache, tmp_path, capsys):
    data = tmp_path / "DATA"
    assert os.environ["HF_HUB_OFFLINE"] == "1"
    assert download.main(["eurosat", "imagenet_a", "--data_dir", str(data), "--cache_dir", cache]) == 0
    assert capsys.readouterr().out.split() == [str(data / "eurosat"), str(data / "imagenet-adversarial")]
    eurosat = load_standard("eurosat", str(data))
    assert eurosat.class_names[0] == "Annual Crop Land" and len(eurosat.splits["train"]) > 0
    assert load_standard("imagenet_a", str(data)).splits["test"].num_rows > 0
    marker = read_marker(data / "eurosat")
    assert marker | {"sha256": None} == marker | {
        "archive": "eurosat.zip", "dataset": "eurosat", "repo_id": DEFAULT_REPO_ID, "repo_type": "model",
        "revision": "main", "commit": COMMIT, "sha256": None,
    }  # fmt: skip
    # A second run finds both complete and fetches nothing.
    shutil.rmtree(cache)
    assert download.main(["eurosat", "imagenet_a", "--data_dir", str(data), "--cache_dir", cache]) == 0


def test_dassl_dg_dataset_from_a_mirror(cache, tmp_path):
    with pytest.raises(DownloadError, match="pacs: no Hub repository holds pacs .* pass --repo_id"):
        download_dataset("pacs", tmp_path / "DATA", cache_dir=cache)
    out = download_dataset(
        "pacs", tmp_path / "DATA", repo_id="mirror/dassl-dg", repo_type="dataset", revision=COMMIT, cache_dir=cache
    )
    pacs = load_standard("pacs", str(tmp_path / "DATA"))
    assert out == tmp_path / "DATA" / "pacs" and pacs.domain_names == ["art_painting", "cartoon", "photo", "sketch"]


def test_offline_with_nothing_cached_names_dataset_repo_and_revision(tmp_path):
    with pytest.raises(DownloadError) as err:
        download_dataset("dtd", tmp_path / "DATA", cache_dir=str(tmp_path / "empty"))
    msg = str(err.value)
    assert "dtd: dtd.zip of model repository zhengli97/prompt_learning_dataset at revision d0e6ea3b" in msg
    assert "not in the Hugging Face cache" in msg and "HF_HUB_OFFLINE=1" in msg
    assert not (tmp_path / "DATA" / "dtd").exists()


def test_recorded_checksum_is_enforced_before_extraction(tmp_path, archives, monkeypatch):
    cache = str(tmp_path / "hub")
    _put_in_cache(cache, DEFAULT_REPO_ID, {"dtd.zip": archives["dtd"]}, commit=SOURCES["dtd"].revision)
    # The fake dtd.zip is not the recorded DTD archive (size and sha256 read on the Hub): refused.
    with pytest.raises(DownloadError, match="dtd: .* has \\d+ bytes, the recorded archive 626071992"):
        download_dataset("dtd", tmp_path / "DATA", cache_dir=cache)
    fake = sha256_file(archives["dtd"])
    entry = SOURCES["dtd"]
    monkeypatch.setitem(dataset_sources.SOURCES, "dtd", type(entry)(**{**entry.__dict__, "size": None}))
    with pytest.raises(ExtractionError, match=f"checksum mismatch .* sha256 {fake}, expected 5ba4d300"):
        download_dataset("dtd", tmp_path / "DATA", cache_dir=cache)
    assert not (tmp_path / "DATA" / "dtd").exists()
    # With the archive's own digest recorded (a mirror of the table), the same file installs.
    monkeypatch.setitem(
        dataset_sources.SOURCES, "dtd", type(entry)(**{**entry.__dict__, "size": None, "sha256": fake})
    )
    assert is_complete(download_dataset("dtd", tmp_path / "DATA", cache_dir=cache))
    assert read_marker(tmp_path / "DATA" / "dtd")["commit"] == SOURCES["dtd"].revision


def test_a_blob_that_does_not_match_the_hubs_sha256_is_refused(cache, tmp_path):
    repo_dir = os.path.join(cache, f"models--{DEFAULT_REPO_ID.replace('/', '--')}")
    blob = os.path.realpath(os.path.join(repo_dir, "snapshots", COMMIT, "eurosat.zip"))
    with open(blob, "ab") as f:
        f.write(b"tampered")
    with pytest.raises(ExtractionError, match="eurosat .*sha256 reported by the Hub.*checksum mismatch"):
        download_dataset("eurosat", tmp_path / "DATA", cache_dir=cache)
    assert not (tmp_path / "DATA" / "eurosat").exists()


def test_bad_names_and_existing_folders(cache, tmp_path, capsys):
    assert download.main(["imagenet", "--data_dir", str(tmp_path)]) == 2
    assert "['imagenet'] cannot be downloaded" in capsys.readouterr().err
    (tmp_path / "DATA" / FOLDERS["eurosat"]).mkdir(parents=True)
    with pytest.raises(DownloadError, match="exists but was not installed by a complete download"):
        download_dataset("eurosat", tmp_path / "DATA", cache_dir=cache)


def test_train_with_download(cache, tmp_path, tiny_clip_dir):
    spec = importlib.util.spec_from_file_location("train_recipe", ROOT / "examples" / "train.py")
    recipe = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(recipe)

    out = tmp_path / "run"
    argv = ["--base_model", tiny_clip_dir, "--dataset_name", "eurosat", "--data_dir", str(tmp_path / "DATA")]
    argv += ["--download", "--cache_dir", cache, "--output_dir", str(out), "--max_steps", "1", "--shots", "2"]
    argv += ["--per_device_train_batch_size", "4", "--per_device_eval_batch_size", "16"]
    assert recipe.main(argv) == 0
    assert json.loads((out / "results.json").read_text())[0]["dataset"] == "eurosat"
    assert is_complete(tmp_path / "DATA" / "eurosat")


def test_the_docs_list_every_dataset_with_its_archive_licence_and_source():
    text = (ROOT / "docs" / "paper_protocols.md").read_text()
    section = text.split("## Getting the data in one command", 1)[1].split("\n## ", 1)[0]
    for name, source in SOURCES.items():
        row = next((line for line in section.splitlines() if line.startswith(f"| `{name}` |")), None)
        assert row is not None, name
        assert f"`{source.archive}`" in row and source.licence in row and source.source in row, row
    assert "| `imagenet` |" in section and "python -m metaprompt_hf.download" in text.split("## ", 2)[1]


def test_download_flag_is_checked_before_the_run_starts(tmp_path):
    from metaprompt_hf.training import parse_args

    with pytest.raises(ValueError, match="download: needs --data_dir"):
        parse_args(["--dataset_name", "eurosat", "--download"])
    with pytest.raises(ValueError, match="dataset_name: --download fetches one of"):
        parse_args(["--dataset_name", "imagenet", "--data_dir", str(tmp_path), "--download"])
