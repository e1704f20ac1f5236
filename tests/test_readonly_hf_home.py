"""A read-only, shared Hugging Face cache (HF_HOME) works for training, evaluation, `predict`, the pipeline and the
Space: nothing is written under it. Tests run as root, where a chmod does not stop writes, so the cache is both
made read-only (for non-root runs) and compared file by file before and after (which catches a write as root)."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

from conftest import make_image_folder

ROOT = Path(__file__).resolve().parents[1]
COMMIT = "0123456789abcdef0123456789abcdef01234567"


def _tree(root: Path) -> dict[str, tuple[int, int, int]]:
    """Every path under `root` with its mode, size and modification time (a write to anything changes this)."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            st = p.lstat()
            out[str(p.relative_to(root))] = (st.st_mode, st.st_size, st.st_mtime_ns)
    return out


def _read_only(root: Path) -> None:
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            if not p.is_symlink():
                p.chmod(p.stat().st_mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))
    root.chmod(root.stat().st_mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))


def test_training_evaluation_predict_pipeline_and_space_write_nothing_under_hf_home(tmp_path, tiny_clip_dir):
    hf_home = tmp_path / "shared-hf"
    repo = hf_home / "hub" / "models--testorg--tiny-clip"
    shutil.copytree(tiny_clip_dir, repo / "snapshots" / COMMIT)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(COMMIT)
    folder = make_image_folder(tmp_path / "images", domains=None, per_class=3)
    _read_only(hf_home)
    before = _tree(hf_home)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGINGFACE_"))}
    env |= {"HF_HOME": str(hf_home), "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    env |= {"PYTHONPATH": os.pathsep.join([str(ROOT / "src"), env.get("PYTHONPATH", "")]), "TMPDIR": str(tmp_path)}
    try:
        proc = subprocess.run(
            [sys.executable, str(ROOT / "tests" / "readonly_hf_home_worker.py"), folder, str(tmp_path / "run"),
             "testorg/tiny-clip"],
            env=env, capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        after = _tree(hf_home)
    finally:
        for dirpath, _, _ in os.walk(hf_home):
            os.chmod(dirpath, 0o755)  # so that pytest can clean up
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["train"] == 0 and 0 <= report["results"][0]["base"] <= 100
    assert len(report["predict"][0]) == 2 and {p["label"] for p in report["pipeline"]} == {"red apple", "white snow"}
    assert set(report["space"]) == {"red apple", "white snow"}
    assert after == before, f"written under HF_HOME: {sorted(k for k in set(after) ^ set(before))}"
