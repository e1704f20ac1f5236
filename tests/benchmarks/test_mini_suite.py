"""Smoke test of the mini benchmark suite: `--quick` end to end, offline, on the embedded CLIP.

Structure only: CI asserts no accuracy numbers (the full suite's table is in the README, with its command).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from metaprompt_hf import miniworld

ROOT = Path(__file__).resolve().parents[2]
METHODS = {"zeroshot", "coop", "ivlp", "metaprompt_no_meta", "metaprompt"}


@pytest.fixture(scope="module")
def mini_cache(tmp_path_factory) -> Path:
    """One dataset cache for the module: generating the mini world is most of a quick run's time."""
    return tmp_path_factory.mktemp("mini-cache")


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory, mini_cache) -> tuple[Path, subprocess.CompletedProcess]:
    out = tmp_path_factory.mktemp("mini-quick")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    cmd = [sys.executable, str(ROOT / "benchmarks" / "mini_suite.py"), "--quick", "--output_dir", str(out)]
    cmd += ["--cache_dir", str(mini_cache)]
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


@pytest.mark.slow
def test_one_method_is_rerun_and_the_others_reused(quick_run, mini_cache, tmp_path):
    """`--methods M --reuse_runs runs.json`: M's runs are made again, every other method's entry is taken as is."""
    out, _ = quick_run
    cmd = [sys.executable, str(ROOT / "benchmarks" / "mini_suite.py"), "--quick", "--protocol", "dg"]
    cmd += ["--methods", "zeroshot", "--reuse_runs", str(out / "runs.json"), "--output_dir", str(tmp_path)]
    cmd += ["--cache_dir", str(mini_cache)]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    old = json.loads((out / "runs.json").read_text())
    new = json.loads((tmp_path / "runs.json").read_text())
    assert [e for e in new if e["method"] != "zeroshot"] == [e for e in old if e["method"] != "zeroshot"]
    assert sorted(e["target_domain"] for e in new if e["method"] == "zeroshot") == sorted(miniworld.DG_DOMAINS)
    settings = json.loads((tmp_path / "results.json").read_text())["settings"]
    assert settings["methods_run"] == ["zeroshot"] and settings["reused_runs"] == str(out / "runs.json")
    missing = [sys.executable, str(ROOT / "benchmarks" / "mini_suite.py"), "--reuse_runs", str(tmp_path / "no.json")]
    proc = subprocess.run(missing + ["--output_dir", str(tmp_path / "x")], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "--reuse_runs: no file" in proc.stderr


# ---------------------------------------------------------------------------------------------------- ablation
sys.path.insert(0, str(ROOT / "benchmarks"))
import mini_ablation  # noqa: E402

from metaprompt_hf.miniworld import union as miniworld_union  # noqa: E402


def test_ablation_uses_the_package_paired_stats():
    from metaprompt_hf import stats

    assert mini_ablation.paired_stats is stats.paired_stats  # one implementation (tests/compare/test_stats.py)


def _entry(variant, protocol, cell, seed, value, **extra):
    entry = {"variant": variant, "protocol": protocol, "seed": seed, "run_seconds": 1.0} | extra
    if protocol == "base2new":
        return entry | {"dataset": cell, "hm": value}
    return entry | {"dataset": "styles", "target_domain": cell, "accuracy": value}


def test_summarise_pairs_by_seed_and_averages_complete_seeds_only():
    ref = mini_ablation.REFERENCE
    entries = [
        _entry(ref, "base2new", "digits", 1, 50.0),
        _entry(ref, "base2new", "digits", 2, 60.0),
        _entry(ref, "base2new", "union", 1, 40.0),
        _entry("clean", "base2new", "digits", 1, 51.0),
        _entry("clean", "base2new", "digits", 2, 63.0),
        _entry("clean", "base2new", "union", 1, 45.0),
        _entry(ref, "dg", "sketch", 1, 70.0),
        _entry("clean", "dg", "sketch", 1, 69.0, meta_update_ratio=0.5, optimizer_steps=54),
    ]
    variants = {ref: {"method": ref}, "clean": {"method": "metaprompt", "meta_step": 1.0}}
    out = mini_ablation.summarise(entries, variants)
    assert out["seeds"] == [1, 2] and set(out["variants"]) == {"clean"}
    b2n = out["variants"]["clean"]["base2new"]
    assert b2n["digits"]["delta_hm"]["mean"] == 2.0 and b2n["digits"]["delta_hm"]["n"] == 2
    assert b2n["union"]["delta_hm"]["n"] == 1
    # seed 2 lacks union: the average holds seed 1 only, (1 + 5) / 2
    assert b2n["average"]["delta_hm"] == {"mean": 3.0, "se": None, "ci95": [None, None], "n": 1}
    assert out["variants"]["clean"]["dg"]["sketch"]["delta_acc"]["mean"] == -1.0
    assert out["variants"]["clean"]["config"] == variants["clean"]
    assert out["variants"]["clean"]["diagnostics"]["dg"]["meta_update_ratio"] == 0.5
    table = mini_ablation.markdown(out)
    assert "| clean | +2.00 ± 1.00" in table and "Domain generalisation" in table


def test_tune_uses_validation_only_and_picks_the_best(monkeypatch, tmp_path):
    seen = []

    def fake_run_specs(specs, opts):
        seen.extend(specs)
        out = []
        for s in specs:
            lr, beta = s["args"]["learning_rate"], s["args"].get("meta_step", 0.0)
            # validation score peaks at lr 0.008 (b2n), 0.002 (dg), and grows with β for "clean" only
            best = 0.008 if s["protocol"] == "base2new" else 0.002
            value = 60 - abs(math.log(lr / best)) + (beta if s["variant"] == "clean" else 0)
            cell = s["target_domain"] or s["dataset"]
            out.append(_entry(s["variant"], s["protocol"], cell, s["seed"], value, learning_rate=lr))
        return out

    monkeypatch.setattr(mini_ablation, "run_specs", fake_run_specs)
    opts = argparse.Namespace(
        quick=False, seeds=None, output_dir=tmp_path, max_steps=-1, max_eval_samples=None, variants=None, cells=None
    )
    record = mini_ablation.tune(opts)
    assert {s["eval_split"] for s in seen} == {"validation"}
    assert record["learning_rate"] == {"base2new": 0.008, "dg": 0.002}
    assert record["variants"]["clean"]["meta_step"] == max(mini_ablation.BETA_GRID)
    assert record["variants"]["faithful"]["meta_step"] == 0.2  # the reference's β, not tuned
    assert record["default_variant"] == "clean"
    assert json.loads((tmp_path / "ablation_hparams.json").read_text())["default_variant"] == "clean"


def test_union_class_names_are_unique_and_base_is_the_sources_base():
    names = miniworld_union.union_class_names()
    total = sum(len(miniworld.CLASS_NAMES[d]) for d in miniworld.B2N_DATASETS)
    assert len(names) == len(set(names)) == total >= 40
    base = names[: math.ceil(total / 2)]
    assert len(base) >= 20
    expected = [
        miniworld.TEMPLATES[d].format(c)[len("a photo of ") :]
        for d in miniworld.B2N_DATASETS
        for c in miniworld.base_new_classes(d)[0]
    ]
    assert base == expected
    assert miniworld_union.UNION_TEMPLATE.format(base[0]) == miniworld.TEMPLATES["digits"].format("zero")


@pytest.fixture(scope="module")
def quick_ablation(tmp_path_factory, mini_cache) -> tuple[Path, subprocess.CompletedProcess]:
    out = tmp_path_factory.mktemp("ablation-quick")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    cmd = [
        sys.executable,
        str(ROOT / "benchmarks" / "mini_suite.py"),
        "--ablation",
        "--quick",
        "--output_dir",
        str(out),
    ]
    cmd += ["--cache_dir", str(mini_cache)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=1800)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out, proc


@pytest.mark.slow
def test_quick_ablation_writes_the_interface_schema(quick_ablation, mini_cache):
    out, proc = quick_ablation
    result = json.loads((out / "ablation.json").read_text())
    assert result["seeds"] == [1, 2]
    assert set(result["variants"]) == set(mini_ablation.DEFAULT_VARIANTS) - {mini_ablation.REFERENCE}
    for record in result["variants"].values():
        assert isinstance(record["config"], dict) and "learning_rate" in record["config"]
        for key, metric in (("base2new", "delta_hm"), ("dg", "delta_acc")):
            assert "average" in record[key] and len(record[key]) >= 2
            for cell in record[key].values():
                stat = cell[metric]
                assert set(stat) == {"mean", "se", "ci95", "n"} and stat["n"] == 2 and len(stat["ci95"]) == 2
                assert stat["ci95"][0] <= stat["mean"] <= stat["ci95"][1]
    assert "union" in result["variants"]["clean"]["base2new"]
    runs = json.loads((out / "ablation_runs.json").read_text())
    assert {r["eval_split"] for r in runs} == {"test"}
    union = [r for r in runs if r["dataset"] == "union"]
    assert union and all(r["n_base_classes"] >= 20 for r in union)
    assert all("text_prompts_moved" in r and "meta_update_ratio" in r for r in runs)
    assert "| clean |" in (out / "ablation.md").read_text() and "wall time" in proc.stdout
    # resumable: a second invocation finds every run on disk and trains nothing
    again = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "mini_suite.py"),
            "--ablation",
            "--quick",
            "--output_dir",
            str(out),
            "--cache_dir",
            str(mini_cache),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert again.returncode == 0 and "0 to go" in again.stdout
