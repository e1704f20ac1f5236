"""Adapter folders are never read half-written: a writer process re-saving a folder while this process loads it
never yields a config paired with another save's weights; mixed or orphaned files are named or ignored."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time

import pytest
import torch

from metaprompt_hf import MetaPromptConfig, MetaPromptModel
from metaprompt_hf.adapters.files import read_adapter, save_adapter
from metaprompt_hf.constants import CONFIG_NAME, TMP_FOLDER_INFIX, WEIGHTS_NAME
from metaprompt_hf.testing import tiny_clip
from metaprompt_hf.utils import remove_orphan_siblings

SRC = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "src")

# Variant k: n_ctx = 1 + k % 3 (so a wrong pair also has wrong shapes) and every prompt value equal to k.
WRITER = """
import sys, time
import torch
from metaprompt_hf import MetaPromptConfig
from metaprompt_hf.adapters.files import save_adapter

folder, seconds = sys.argv[1], float(sys.argv[2])
print("ready", flush=True)
end, k = time.monotonic() + seconds, 0
while time.monotonic() < end:
    n = 1 + k % 3
    config = MetaPromptConfig(n_ctx=n, n_pro=1, templates=[f"a photo of a {{}}, save {k}"], text_depth=2,
                              vision_depth=2, text_hidden_size=32, vision_hidden_size=48, text_num_layers=3, vision_num_layers=2)
    save_adapter(folder, config, {"text_prompts": torch.full((2, n, 32), float(k)),
                                  "vision_prompts": torch.full((2, 1, 48), float(k))})
    k += 1
print(k)
"""


def _variant(k: int) -> tuple[MetaPromptConfig, dict[str, torch.Tensor]]:
    n = 1 + k % 3
    config = MetaPromptConfig(
        n_ctx=n, n_pro=1, templates=[f"a photo of a {{}}, save {k}"], text_depth=2, vision_depth=2, text_hidden_size=32,
        vision_hidden_size=48, text_num_layers=3, vision_num_layers=2,
    )  # fmt: skip
    return config, {
        "text_prompts": torch.full((2, n, 32), float(k)),
        "vision_prompts": torch.full((2, 1, 48), float(k)),
    }


@pytest.mark.parametrize("extra_file", [False, True], ids=["adapter-folder", "training-output-folder"])
def test_reader_never_pairs_files_of_two_saves_while_a_writer_process_resaves(tmp_path, extra_file):
    """Plain adapter folders are swapped whole; a folder holding other files (a training run's output) has its two
    files replaced one by one, and the config digest in the weights makes the reader read again."""
    folder = tmp_path / "adapter"
    save_adapter(folder, *_variant(0))
    if extra_file:
        (folder / "results.json").write_text("[]")
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(folder), "2.5"],
        env=os.environ | {"PYTHONPATH": SRC, "OMP_NUM_THREADS": "1"},
        stdout=subprocess.PIPE,
        text=True,
    )
    loads, mismatched, errors, seen = 0, 0, [], set()
    try:
        assert writer.stdout.readline().strip() == "ready"  # start reading once the writer is writing
        end = time.monotonic() + 2.0
        while time.monotonic() < end:
            try:
                files = read_adapter(str(folder))
            except Exception as err:  # noqa: BLE001 - every error is a failure, reported below
                errors.append(f"{type(err).__name__}: {err}")
                continue
            k = int(files.config.templates[0].rsplit(" ", 1)[1])  # the save number, written into the config
            tensors = files.tensors()
            loads += 1
            seen.add(k)
            mismatched += not all(bool((t == float(k)).all()) for t in tensors.values())
            mismatched += tensors["text_prompts"].shape[1] != files.config.n_ctx
    finally:
        saves = int(writer.communicate(timeout=60)[0].split()[-1])
    assert writer.returncode == 0
    assert saves > 10 and loads > 10 and len(seen) > 3, (saves, loads, len(seen))
    assert (mismatched, errors[:3]) == (0, [])
    assert (folder / "results.json").is_file() == extra_file  # other files of the folder are kept
    assert not [n for n in os.listdir(tmp_path) if TMP_FOLDER_INFIX in n]  # no temporary sibling left


def test_files_of_two_saves_are_a_clear_error_naming_the_file(tmp_path):
    save_adapter(tmp_path / "one", *_variant(1))
    save_adapter(tmp_path / "two", *_variant(4))  # same shapes, other values and config
    (tmp_path / "one" / CONFIG_NAME).write_bytes((tmp_path / "two" / CONFIG_NAME).read_bytes())
    with pytest.raises(ValueError, match=rf"{WEIGHTS_NAME}.*different {CONFIG_NAME}"):
        read_adapter(str(tmp_path / "one"))


def test_header_shapes_are_checked_before_anything_is_allocated(tmp_path):
    """A config asking for 2,000,000 text tokens with ordinary weights fails at once, naming the tensor."""
    clip, processor = tiny_clip()
    MetaPromptModel(clip, MetaPromptConfig(), processor).save_pretrained(tmp_path)
    config = MetaPromptConfig.from_pretrained(tmp_path)
    (tmp_path / CONFIG_NAME).write_text(
        config.to_json_string().replace('"n_ctx": 2', '"n_ctx": 2000000'), encoding="utf-8"
    )
    from safetensors import safe_open
    from safetensors.torch import save_file

    with safe_open(str(tmp_path / WEIGHTS_NAME), "pt") as f:  # drop the digest: a hand-edited folder
        save_file({k: f.get_tensor(k) for k in f.keys()}, str(tmp_path / WEIGHTS_NAME), {"format": "pt"})  # noqa: SIM118
    start = time.perf_counter()
    with pytest.raises(ValueError, match=r"'text_prompts' has shape \(3, 2, 32\).*\(3, 2000000, 32\)"):
        MetaPromptModel.from_pretrained(tmp_path, base_model=clip, processor=processor)
    assert time.perf_counter() - start < 2.0
    with pytest.raises(ValueError, match="n_ctx: 2000000 prompt tokens do not fit the 77-token"):
        MetaPromptModel(clip, MetaPromptConfig(n_ctx=2_000_000), processor)


def test_orphan_temporary_folders_are_ignored_and_cleaned(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    orphan = tmp_path / f".adapter{TMP_FOLDER_INFIX}{dead.stdout.strip()}-abc"
    orphan.mkdir()
    (orphan / CONFIG_NAME).write_text("{half written")
    live = tmp_path / f".adapter{TMP_FOLDER_INFIX}{os.getpid()}-def"  # a save in progress in this process
    live.mkdir()
    save_adapter(tmp_path / "adapter", *_variant(2))
    assert not orphan.exists() and live.exists()
    assert read_adapter(str(tmp_path / "adapter")).config.n_ctx == 3
    assert remove_orphan_siblings(tmp_path / "adapter") == []


def _truncate(path, keep):
    path.write_bytes(path.read_bytes()[:keep])


# (case id, damage done to a saved adapter folder, regex of the ValueError / FileNotFoundError; each names the file)
DAMAGE_CASES = [
    ("weights cut in the data", lambda d: _truncate(d / WEIGHTS_NAME, -10), rf"{WEIGHTS_NAME}: not a readable safetensors file .*outside the file"),
    ("weights cut in the header", lambda d: _truncate(d / WEIGHTS_NAME, 20), rf"{WEIGHTS_NAME}: not a readable safetensors file"),
    ("weights of 3 bytes", lambda d: _truncate(d / WEIGHTS_NAME, 3), rf"{WEIGHTS_NAME}: .*shorter than the 8-byte header"),
    ("weights missing", lambda d: os.remove(d / WEIGHTS_NAME), rf"has no {WEIGHTS_NAME}"),
    ("config not JSON", lambda d: (d / CONFIG_NAME).write_text("{oops"), rf"{CONFIG_NAME}: not valid JSON"),
    ("config with a string boolean", lambda d: (d / CONFIG_NAME).write_text((d / CONFIG_NAME).read_text().replace('"coupled_branches": true', '"coupled_branches": "false"')), rf"{CONFIG_NAME}: coupled_branches: expected true or false"),
    ("config without its save id", lambda d: (d / CONFIG_NAME).write_text(re.sub(r'\n  "save_id": "\w+",', "", (d / CONFIG_NAME).read_text())), rf"{WEIGHTS_NAME}: these weights were saved with a different {CONFIG_NAME}.*missing in the config"),
]  # fmt: skip


@pytest.mark.parametrize("damage, error", [c[1:] for c in DAMAGE_CASES], ids=[c[0] for c in DAMAGE_CASES])
def test_damaged_adapter_folders_are_clear_errors_naming_the_file(tmp_path, damage, error):
    save_adapter(tmp_path, *_variant(3))
    damage(tmp_path)
    with pytest.raises((ValueError, FileNotFoundError), match=error):
        read_adapter(str(tmp_path))
