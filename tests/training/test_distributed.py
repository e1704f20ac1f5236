from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

HERE = os.path.dirname(os.path.abspath(__file__))


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _launch(args: list[str], tmp_path) -> subprocess.CompletedProcess:
    """Two CPU processes under Accelerate (gloo DDP). `accelerate launch --cpu --num_processes 2` starts ONE
    process unless mpirun is configured (huggingface/accelerate#2741), so Accelerate's torchrun launcher is used
    with ACCELERATE_USE_CPU=1, which makes each process a MULTI_CPU rank."""
    accelerate = shutil.which("accelerate") or os.path.join(os.path.dirname(sys.executable), "accelerate")
    env = os.environ | {"ACCELERATE_USE_CPU": "1", "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    cmd = [
        accelerate,
        "launch",
        "--multi_gpu",
        "--num_processes",
        "2",
        "--num_machines",
        "1",
        "--mixed_precision",
        "no",
        "--dynamo_backend",
        "no",
        "--main_process_port",
        str(_free_port()),
        *args,
    ]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600, cwd=tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("protocol", ["base2new", "dg"])
def test_two_processes_hold_identical_prompts(tiny_clip_dir, domain_folder, tmp_path, protocol):
    out = tmp_path / "ddp"
    extra = ["--target_domain", "sketch", "--shots", "2"] if protocol == "dg" else ["--shots", "4"]
    proc = _launch(
        [
            os.path.join(HERE, "ddp_worker.py"),
            "--base_model",
            tiny_clip_dir,
            "--dataset_name",
            domain_folder,
            "--output_dir",
            str(out),
            "--protocol",
            protocol,
            "--max_steps",
            "3",
            "--per_device_train_batch_size",
            "4",
            "--learning_rate",
            "0.05",
            "--warmup_epochs",
            "0",
            "--max_eval_samples",
            "16",
            *extra,
        ],
        tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    p0, p1 = (load_file(str(out / f"rank{r}_prompts.safetensors")) for r in (0, 1))
    for key in p0:
        assert torch.equal(p0[key], p1[key]), key
    logs = [json.loads((out / f"rank{r}_log.json").read_text()) for r in (0, 1)]
    assert logs[0]["world_size"] == logs[1]["world_size"] == 2
    # different local batches (local losses differ), one global meta step (its losses are all-reduced)
    assert [s["loss"] for s in logs[0]["steps"]] != [s["loss"] for s in logs[1]["steps"]]
    for a, b in zip(logs[0]["steps"], logs[1]["steps"]):
        assert a["meta_test_loss"] == pytest.approx(b["meta_test_loss"], rel=1e-6)
    final = load_file(str(out / "metaprompt_model.safetensors"))
    for key in final:
        assert torch.equal(final[key], p0[key]), key
    assert json.loads((out / "results.json").read_text())[0]["protocol"] == protocol
