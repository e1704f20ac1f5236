"""Smoke test of the mini benchmark suite (issue 4): `--quick` end to end, offline, on the embedded CLIP.

Structure only: CI asserts no accuracy numbers (the full suite's table is in the README, with its command).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from metaprompt_hf import miniworld

ROOT = Path(__file__).resolve().parents[1]
METHODS = {"zeroshot", "coop", "ivlp", "metaprompt_no_meta", "metaprompt"}


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    out = tmp_path_factory.mktemp("mini-quick")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    cmd = [sys.executable, str(ROOT / "benchmarks" / "mini_suite.py"), "--quick", "--output_dir", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out, proc


@pytest.mark.slow
def test_quick_suite_writes_every_method_dataset_and_domain(quick_run):
    out, proc = quick_run
    results = json.loads((out / "results.json").read_text())
    assert set(results["base2new"]) == METHODS and set(results["dg"]) == METHODS
    for method in METHODS:
        assert set(results["base2new"][method]) == set(miniworld.B2N_DATASETS)
        for dataset, cell in results["base2new"][method].items():
            assert {"base", "new", "hm", "n_classes", "std"} <= set(cell)
            assert set(cell["std"]) == {"base", "new", "hm"}
            assert cell["n_classes"] == len(miniworld.CLASS_NAMES[dataset])
        assert set(results["dg"][method]) == set(miniworld.DG_DOMAINS)
        for cell in results["dg"][method].values():
            assert {"acc", "std"} <= set(cell)
    assert results["settings"]["quick"] is True and results["settings"]["seeds"] == [1]
    runs = json.loads((out / "runs.json").read_text())
    assert len(runs) == len(METHODS) * (len(miniworld.B2N_DATASETS) + len(miniworld.DG_DOMAINS))
    table = (out / "results.md").read_text()
    assert "**Base-to-new**" in table and "**Domain generalisation**" in table
    assert all(f"| {m} |" in table for m in METHODS)
    assert (out / "results.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "wall time" in proc.stdout


@pytest.mark.slow
def test_existing_results_are_not_overwritten(quick_run):
    out, _ = quick_run
    before = (out / "results.json").read_bytes()
    cmd = [sys.executable, str(ROOT / "benchmarks" / "mini_suite.py"), "--quick", "--output_dir", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "results.json exists; pass --overwrite" in proc.stderr
    assert (out / "results.json").read_bytes() == before
