from __future__ import annotations

import json
import os

import pytest
import torch
from conftest import launch_two_cpu_processes
from safetensors.torch import load_file

HERE = os.path.dirname(os.path.abspath(__file__))


@pytest.mark.slow
@pytest.mark.parametrize("protocol", ["base2new", "dg"])
def test_two_processes_hold_identical_prompts(tiny_clip_dir, domain_folder, tmp_path, protocol):
    out = tmp_path / "ddp"
    extra = ["--target_domain", "sketch", "--shots", "2"] if protocol == "dg" else ["--shots", "4"]
    proc = launch_two_cpu_processes(
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
