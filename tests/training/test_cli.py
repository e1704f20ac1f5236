"""The example scripts as a user runs them: `accelerate launch examples/train.py ...` in a subprocess."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _accelerate_launch(args: list[str]) -> subprocess.CompletedProcess:
    accelerate = shutil.which("accelerate") or os.path.join(os.path.dirname(sys.executable), "accelerate")
    cmd = [
        accelerate,
        "launch",
        "--num_processes",
        "1",
        "--num_machines",
        "1",
        "--mixed_precision",
        "no",
        "--dynamo_backend",
        "no",
        os.path.join(ROOT, "examples", "train.py"),
        *args,
    ]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=os.environ | {"OMP_NUM_THREADS": "2"})


@pytest.mark.slow
def test_paper_config_trains_and_evaluates_with_a_tiny_clip(tiny_clip_dir, domain_folder, tmp_path):
    out = tmp_path / "run"
    proc = _accelerate_launch(
        [
            "--config",
            os.path.join(ROOT, "examples/configs/dg_vitb16_5shot.yaml"),
            "--base_model",
            tiny_clip_dir,
            "--dataset_name",
            domain_folder,
            "--target_domain",
            "sketch",
            "--max_steps",
            "4",
            "--output_dir",
            str(out),
        ]
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads((out / "results.json").read_text())[0]
    assert result["protocol"] == "dg" and result["shots"] == 5 and result["target_domain"] == "sketch"
    assert "Target sketch" in proc.stdout


def test_bad_input_through_the_script_exits_non_zero_with_the_message(tiny_clip_dir, tmp_path):
    proc = subprocess.run(
        [
            sys.executable,
            os.path.join(ROOT, "examples", "train.py"),
            "--base_model",
            tiny_clip_dir,
            "--dataset_name",
            str(tmp_path / "missing"),
            "--output_dir",
            str(tmp_path / "o"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 2
    assert f"error: dataset_name: no such folder {tmp_path / 'missing'}" in proc.stderr
    assert "Traceback" not in proc.stderr
