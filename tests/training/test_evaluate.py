from __future__ import annotations

import importlib.util
import json
import math
import os
import statistics

import pytest

from metaprompt_hf.evaluation import aggregate, harmonic_mean, load_metric, markdown_table
from metaprompt_hf.training import MetaPromptTrainingArguments, train

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _evaluate_script():
    spec = importlib.util.spec_from_file_location(
        "evaluate_script", os.path.join(ROOT, "examples", "evaluate_runs.py")
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(autouse=True)
def fresh_accelerate_state():
    from accelerate.state import AcceleratorState, GradientState

    AcceleratorState._reset_state(True)
    GradientState._reset_state()


def test_shipped_metrics_load_by_path_offline():
    assert load_metric("accuracy").compute(predictions=[0, 1, 2, 2], references=[0, 1, 1, 2])["accuracy"] == 0.75
    assert harmonic_mean(80.0, 60.0) == pytest.approx(2 * 80 * 60 / 140)
    assert harmonic_mean(0.0, 0.0) == 0.0
    with pytest.raises(ValueError, match="no shipped metric"):
        load_metric("bleu")


def test_aggregate_mean_std_and_hm_of_means():
    runs = [
        {
            "protocol": "base2new",
            "method": "m",
            "dataset": "d",
            "seed": s,
            "base": b,
            "new": n,
            "hm": harmonic_mean(b, n),
        }
        for s, b, n in ((1, 80.0, 60.0), (2, 90.0, 50.0), (3, 70.0, 70.0))
    ] + [
        {"protocol": "dg", "method": "m", "dataset": "d", "target_domain": "t", "seed": s, "accuracy": a}
        for s, a in ((1, 40.0), (2, 50.0))
    ]
    rows = aggregate(runs)
    b2n = next(r for r in rows if r["protocol"] == "base2new")
    assert b2n["base"] == 80.0 and b2n["new"] == 60.0 and b2n["hm"] == pytest.approx(harmonic_mean(80, 60))
    assert b2n["std"]["base"] == pytest.approx(statistics.stdev([80, 90, 70]))
    assert b2n["mean_of_hms"] == pytest.approx(statistics.fmean(r["hm"] for r in runs[:3]))
    dg = next(r for r in rows if r["protocol"] == "dg")
    assert dg["accuracy"] == 45.0 and dg["std"]["accuracy"] == pytest.approx(math.sqrt(50))
    table = markdown_table(rows)
    assert "| m | d | 3 | 80.00 ± 10.00 | 60.00 ± 10.00 | 68.57 |" in table
    assert "| m | d | t | 2 | 45.00 ± 7.07 |" in table


def test_evaluate_script_aggregates_runs_and_reevaluates_adapters(tiny_clip_dir, domain_folder, tmp_path, capsys):
    runs = []
    for seed in (1, 2):
        out = tmp_path / f"seed{seed}"
        train(
            MetaPromptTrainingArguments(
                base_model=tiny_clip_dir,
                dataset_name=domain_folder,
                output_dir=str(out),
                seed=seed,
                shots=2,
                per_device_train_batch_size=4,
                max_steps=1,
                max_eval_samples=24,
            )
        )
        runs.append(str(out))
    script = _evaluate_script()
    report = tmp_path / "report"
    assert script.main(["--runs", *runs, "--report_dir", str(report)]) == 0
    per_seed = json.loads((report / "per_seed.json").read_text())
    rows = json.loads((report / "aggregate.json").read_text())
    assert [r["seed"] for r in per_seed] == [1, 2] and rows[0]["n_runs"] == 2 and rows[0]["seeds"] == [1, 2]
    assert rows[0]["base"] == pytest.approx(statistics.fmean(r["base"] for r in per_seed))
    assert (report / "results.md").read_text() in capsys.readouterr().out
    assert script.main(["--runs", *runs, "--report_dir", str(report)]) == 2  # nothing overwritten unasked
    # re-evaluating the saved adapters reproduces the numbers the runs wrote
    report2 = tmp_path / "report2"
    argv = [
        "--adapters",
        *runs,
        "--report_dir",
        str(report2),
        "--base_model",
        tiny_clip_dir,
        "--dataset_name",
        domain_folder,
        "--max_eval_samples",
        "24",
        "--shots",
        "2",
    ]
    assert script.main(argv) == 0
    again = json.loads((report2 / "per_seed.json").read_text())
    for a, b in zip(per_seed, again):
        assert (a["base"], a["new"], a["hm"]) == pytest.approx((b["base"], b["new"], b["hm"]))


def test_evaluate_set_under_accelerate_spans_several_batches(model, clip_and_processor):
    """Every batch enters its own autocast context (`accelerator.autocast()` can be entered only once); the result
    equals a direct argmax over the whole set."""
    import datasets
    import numpy as np
    import torch
    from accelerate import Accelerator
    from PIL import Image

    from metaprompt_hf.evaluation import evaluate_set
    from metaprompt_hf.protocols import EvalSet

    _, processor = clip_and_processor
    rng = np.random.default_rng(0)
    images = [Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)) for _ in range(7)]
    rows = datasets.Dataset.from_dict({"image": images}, features=datasets.Features({"image": datasets.Image()}))
    names = ["red apple", "blue sky", "black cat"]
    labels = [i % 3 for i in range(7)]
    eval_set = EvalSet(rows, names, labels)
    result = evaluate_set(model, eval_set, processor.image_processor, accelerator=Accelerator(cpu=True), batch_size=3)
    with torch.no_grad():
        pixel_values = processor.image_processor(images, return_tensors="pt")["pixel_values"]
        expected = (model(pixel_values, names).logits.argmax(-1) == torch.tensor(labels)).float().mean().item()
    assert result["n"] == 7 and result["skipped"] == 0
    assert result["accuracy"] == pytest.approx(100 * expected)  # percent
