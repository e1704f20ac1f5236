"""The paper suite on the fake DATA/ tree: the dry run lists every run of the four tables, shards split whole groups,
a run is skipped once finished, and the table carries the published numbers beside ours.

The runs' commands are executed in-process (same scripts, same arguments) to keep the test fast."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _load(name: str, path: Path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


suite = _load("paper_suite", ROOT / "benchmarks" / "paper_suite.py")
paper_methods = sys.modules["paper_methods"]  # the sibling module it imports: each method's configs and numbers
FAST = "--max_steps 1 --shots 2 --per_device_train_batch_size 4 --per_device_eval_batch_size 16"


def _argv(data, out, table, *extra):
    return ["--data_dir", data, "--base_model", "unused", "--table", table, "--output_dir", str(out), *extra]


def test_dry_run_lists_every_run_of_the_four_tables(fake_data, tmp_path, capsys):  # noqa: F811
    counts = {}
    for table in suite.TABLES:
        assert suite.main(_argv(fake_data, tmp_path, table, "--dry_run", "--step_seconds", "0.5")) == 0
        line, estimate = capsys.readouterr().out.splitlines()[:2]
        counts[table] = int(line.split(": ")[1].split()[0])
        est = json.loads(estimate.removeprefix("estimate: "))
        assert est["runs"] == counts[table] and est["train_hours"] == est["train_steps"] * 0.5 / 3600
    # 11 datasets x 3 seeds; 18 held-out domains x 3; 3 ImageNet runs + 10 or 4 targets x 3
    assert counts == {"base2new": 33, "dg": 54, "cross_dataset": 33, "imagenet_shift": 15}
    runs = json.loads((tmp_path / "runs.json").read_text())
    assert len(runs) == 33 + 54 + 33 + 12  # the ImageNet training runs are shared by the two transfer tables
    dg = next(r for r in runs if r["id"] == "dg/office_home/real_world/seed2")
    assert "--target_domain real_world" in dg["command_line"] and f"--data_dir {fake_data}" in dg["command_line"]
    assert dg["command"][dg["command"].index("--config") + 1].endswith("dg_vitb16_5shot.yaml")


def test_shards_are_disjoint_and_keep_evaluations_with_their_training(fake_data, tmp_path):  # noqa: F811
    opts = suite.parse(_argv(fake_data, tmp_path, "cross_dataset"))
    runs = suite.plan(opts)
    shards = [suite.shard(runs, i, 2) for i in range(2)]
    assert sorted(r["id"] for s in shards for r in s) == sorted(r["id"] for r in runs)
    for part in shards:
        ids = [r["id"] for r in part]
        for r in part:
            if r["after"]:
                assert r["after"] in ids and ids.index(r["after"]) < ids.index(r["id"])
    with pytest.raises(SystemExit):
        suite.parse(_argv(fake_data, tmp_path, "dg", "--shard", "2/2"))


def _in_process(calls):
    train_script = _load("suite_train", ROOT / "examples" / "train.py")
    eval_script = _load("suite_evaluate_runs", ROOT / "examples" / "evaluate_runs.py")

    def call(command, stdout=None, stderr=None, cwd=None):
        calls.append(command)
        script = Path(command[1]).name
        return (train_script.main if script == "train.py" else eval_script.main)(command[2:])

    return call


def test_runs_resume_and_aggregate_beside_the_published_numbers(fake_data, tiny_clip_dir, tmp_path, monkeypatch):  # noqa: F811
    calls = []
    monkeypatch.setattr(suite.subprocess, "call", _in_process(calls))
    argv = ["--base_model", tiny_clip_dir, "--seeds", "1", "--train_args", FAST]
    common = ["--data_dir", fake_data, "--output_dir", str(tmp_path), *argv]
    assert suite.main([*common, "--table", "base2new", "--datasets", "dtd"]) == 0
    assert len(calls) == 1
    table = (tmp_path / "base2new_table.md").read_text()
    assert "| dtd | 1 |" in table and "68.35" in table and "79.57" in table and "Papers-with-Code" in table
    assert suite.main([*common, "--table", "base2new", "--datasets", "dtd"]) == 0
    assert len(calls) == 1  # finished: skipped
    # the transfer chain: the ImageNet run, then the evaluation on a 200-class (here 2-class) subset
    assert suite.main([*common, "--table", "imagenet_shift", "--datasets", "imagenet_r", "--shard", "0/1"]) == 0
    assert [Path(c[1]).name for c in calls[1:]] == ["train.py", "evaluate_runs.py"]
    rows = json.loads((tmp_path / "imagenet_shift_table.json").read_text())["rows"]
    assert [r["dataset"] for r in rows] == ["imagenet (source)", "imagenet_r"] and all(r["seeds"] == 1 for r in rows)


def test_an_interrupted_run_is_resumed_or_restarted(tmp_path):
    run = {"output_dir": str(tmp_path / "run"), "kind": "train", "command": ["train"]}
    assert suite._command_now(run) == ["train"]
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "fewshot_indices.json").write_text("{}")
    assert suite._command_now(run) == ["train", "--overwrite_output_dir"]
    (tmp_path / "run" / "checkpoint-8").mkdir()
    assert suite._command_now(run) == ["train", "--resume_from_checkpoint", "latest"]


def test_every_registered_method_has_configs_and_its_dry_run_lists_it(fake_data, tmp_path, capsys):  # noqa: F811
    from metaprompt_hf.methods import METHODS

    methods = paper_methods.SUITES
    assert set(METHODS) <= set(methods), "add the method's entry to benchmarks/paper_methods.py SUITES"
    for name, entry in methods.items():
        assert "base2new" in entry.configs and entry.configs.keys() <= {"base2new", "dg", "transfer"}, name
        for file in entry.configs.values():
            assert (ROOT / "examples" / "configs" / file).is_file(), (name, file)
        for row in entry.averages:  # each published number with the pinned source it was read from
            assert row.source and 0 < row.base <= 100 and 0 < row.new <= 100, name
            assert abs(row.hm - 2 * row.base * row.new / (row.base + row.new)) < 0.06, name
    assert suite.main(_argv(fake_data, tmp_path, "base2new", "--dry_run", "--method", "all")) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith(f"base2new: {33 * len(methods)} runs")
    listed = {line.split(":")[0]: line for line in out[2:]}
    assert set(listed) == set(methods) and all(": 33 runs" in line for line in listed.values())
    runs = json.loads((tmp_path / "runs.json").read_text())
    kg = next(r for r in runs if r["id"] == "kgcoop/base2new/dtd/seed1")
    assert kg["command"][kg["command"].index("--config") + 1].endswith("kgcoop_b2n_vitb16.yaml")
    assert "--method" not in kg["command"] and kg["output_dir"] == str(tmp_path / "kgcoop/base2new/dtd/seed1")
    coop = next(r for r in runs if r["id"] == "coop/base2new/dtd/seed1")
    assert coop["command"][coop["command"].index("--method") + 1] == "coop"
    assert next(r for r in runs if r["id"] == "base2new/dtd/seed1")["method"] == "metaprompt"  # ids as before
    # a method without a config for the table is refused alone and left out of `all`
    with pytest.raises(SystemExit):
        suite.parse(_argv(fake_data, tmp_path, "dg", "--method", "kgcoop"))
    assert "kgcoop" in suite.parse(_argv(fake_data, tmp_path, "dg", "--method", "all")).methods_without_config
    with pytest.raises(SystemExit):  # the suite owns --method
        suite.parse(_argv(fake_data, tmp_path, "base2new", "--train_args", "--method coop"))
    assert suite.main(["--list_methods"]) == 0
    listing = capsys.readouterr().out
    assert "| promptsrc |" in listing and "79.97" in listing and paper_methods.PROMPTSRC_README in listing


def test_another_method_runs_with_its_config_beside_its_published_numbers(
    fake_data, tiny_clip_dir, tmp_path, monkeypatch
):  # noqa: F811
    calls = []
    monkeypatch.setattr(suite.subprocess, "call", _in_process(calls))
    # the tiny CLIP's byte-level tokenizer spells the config's ctx_init "a photo of a" in 9 tokens
    argv = ["--base_model", tiny_clip_dir, "--seeds", "1", "--train_args", f"{FAST} --n_ctx 9", "--method", "kgcoop"]
    common = ["--data_dir", fake_data, "--output_dir", str(tmp_path), *argv]
    assert suite.main([*common, "--table", "base2new", "--datasets", "dtd"]) == 0
    assert len(calls) == 1 and calls[0][calls[0].index("--config") + 1].endswith("kgcoop_b2n_vitb16.yaml")
    saved = json.loads((tmp_path / "kgcoop" / "base2new" / "dtd" / "seed1" / "training_args.json").read_text())
    assert saved["method"] == "kgcoop"
    table = (tmp_path / "kgcoop" / "base2new_table.md").read_text()
    assert table.startswith("kgcoop\n") and "| dtd | 1 |" in table
    assert "| KgCoOp (its README) | 80.73 | 73.60 | 77.00 |" in table and paper_methods.KGCOOP_README in table
    rows = json.loads((tmp_path / "kgcoop" / "base2new_table.json").read_text())
    assert rows["method"] == "kgcoop" and rows["rows"][0]["published_hm"] is None
    assert not (tmp_path / "base2new_table.md").exists()  # MetaPrompt's table is not touched
