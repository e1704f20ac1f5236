"""Command-line tools refuse bad input by name, before writing anything.

Each table row is one input and its expected outcome: `Works` (a correct result) or `Refused` (exit status 2 with
a message matching the pattern). Adding a case is one line.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
from dataclasses import dataclass

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@dataclass(frozen=True)
class Works:
    """Correct result: the command exits 0 and the report aggregates `n_entries` entries."""

    n_entries: int


@dataclass(frozen=True)
class Refused:
    """Clear error: exit status 2, stderr matches `pattern`, and no report is written."""

    pattern: str


def _evaluate_script():
    spec = importlib.util.spec_from_file_location("evaluate_runs", os.path.join(ROOT, "examples", "evaluate_runs.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


B2N = {"protocol": "base2new", "method": "m", "dataset": "d", "seed": 1, "base": 80.0, "new": 60.0, "hm": 68.57}
DG = {"protocol": "dg", "method": "m", "dataset": "d", "target_domain": "t", "seed": 1, "accuracy": 50.0}
MISSING = object()  # no results.json in the run folder
NO_FOLDER = object()  # the run folder itself does not exist

# (case, results.json text or MISSING / NO_FOLDER, expected)
RUNS: list[tuple[str, object, Works | Refused]] = [
    ("base-to-new entry", json.dumps([B2N]), Works(1)),
    ("DG entry", json.dumps([DG]), Works(1)),
    ("a single object", json.dumps(B2N), Works(1)),
    ("both protocols", json.dumps([B2N, DG]), Works(2)),
    ("no such folder", NO_FOLDER, Refused(r"run1: no such run folder")),
    ("no results.json", MISSING, Refused(r"run1: no results.json")),
    ("truncated JSON", json.dumps([B2N])[:30], Refused(r"run1/results.json: not valid JSON")),
    ("not UTF-8", b"\xff\xfe[{", Refused(r"run1/results.json: .*codec can't decode")),
    ("bare NaN", json.dumps([B2N]).replace("80.0", "NaN"), Refused(r"run1/results.json: entry 0: 'base' must be a finite number.*nan")),
    ("Infinity", json.dumps([DG]).replace("50.0", "Infinity"), Refused(r"'accuracy' must be a finite number.*inf")),
    ("metric as text", json.dumps([dict(B2N, hm="68")]), Refused(r"'hm' must be a finite number.*'68'")),
    ("metric missing", json.dumps([{k: v for k, v in B2N.items() if k != "hm"}]), Refused(r"run1/results.json: entry 0 \(base2new\) lacks \['hm'\]")),
    ("unknown protocol", json.dumps([dict(B2N, protocol="few")]), Refused(r"entry 0 needs a 'protocol'")),
    ("not an entry", json.dumps([1, 2]), Refused(r"entry 0 needs a 'protocol'")),
    ("empty list", "[]", Refused(r"run1/results.json: holds no result entries")),
    ("healthy run", json.dumps([dict(B2N, diverged=None)]), Works(1)),
    ("diverged run", json.dumps([dict(B2N, diverged="the training loss rose from 1.2 to 150")]), Refused(r"run1/results.json: entry 0 is from a run that diverged \(the training loss rose from 1.2 to 150\)")),
]  # fmt: skip


@pytest.mark.parametrize("content, expected", [r[1:] for r in RUNS], ids=[r[0] for r in RUNS])
def test_evaluate_runs_refuses_bad_run_folders_by_name(tmp_path, capsys, content, expected):
    run = tmp_path / "run1"
    good = tmp_path / "run0"  # a good run beside the bad one: one bad folder refuses the whole report
    good.mkdir()
    (good / "results.json").write_text(json.dumps([B2N]))
    if content is not NO_FOLDER:
        run.mkdir()
        if content is not MISSING:
            data = content if isinstance(content, bytes) else content.encode()
            (run / "results.json").write_bytes(data)
    report = tmp_path / "report"
    code = _evaluate_script().main(["--runs", str(good), str(run), "--report_dir", str(report)])
    err = capsys.readouterr().err
    if isinstance(expected, Refused):
        assert code == 2
        assert re.search(expected.pattern, err), err
        assert "Traceback" not in err and not report.exists()
        return
    assert code == 0, err
    per_seed = json.loads((report / "per_seed.json").read_text())
    assert len(per_seed) == 1 + expected.n_entries


# ------------------------------------------------------------------ training CLI
def _train_argv(tiny_clip_dir: str, domain_folder: str, out, *extra: str) -> list[str]:
    return [
        "--base_model", tiny_clip_dir, "--dataset_name", domain_folder, "--output_dir", str(out),
        "--shots", "1", "--per_device_train_batch_size", "2", "--warmup_epochs", "0", "--logging_steps", "1",
        "--do_eval", "False", *extra,
    ]  # fmt: skip


# (case, extra command-line flags, expected): flags that do not apply to the protocol are refused before any work.
FLAG_CASES: list[tuple[str, list[str], Works | Refused]] = [
    ("--target_domain under base2new", ["--protocol", "base2new", "--target_domain", "sketch"], Refused(r"target_domain: --protocol base2new has no held-out domain, so --target_domain 'sketch' would be ignored")),
    ("--mix_domains False under base2new", ["--protocol", "base2new", "--mix_domains", "False"], Refused(r"mix_domains: .*--protocol base2new")),
    ("--meta_num_class_groups under dg", ["--protocol", "dg", "--target_domain", "sketch", "--meta_num_class_groups", "3"], Refused(r"meta_num_class_groups: .*--protocol dg")),
    ("dg without --target_domain", ["--protocol", "dg"], Refused(r"target_domain: required with --protocol dg")),
    ("--eval_domains sources under base2new", ["--protocol", "base2new", "--eval_domains", "sources"], Refused(r"eval_domains: --protocol base2new has no held-out domain")),
    ("--eval_domains sources with --push_to_hub", ["--protocol", "dg", "--target_domain", "sketch", "--eval_domains", "sources", "--push_to_hub", "True"], Refused(r"eval_domains: a run scored on its source domains is a selection run")),
    ("--eval_domains not a choice", ["--protocol", "dg", "--target_domain", "sketch", "--eval_domains", "all"], Refused(r"eval_domains: expected one of \['target', 'sources'\]")),
    ("--max_steps 0 means: train --num_train_epochs", ["--max_steps", "0"], Works(0)),
]  # fmt: skip


@pytest.mark.parametrize("extra, expected", [r[1:] for r in FLAG_CASES], ids=[r[0] for r in FLAG_CASES])
def test_training_flags_that_do_not_apply_are_refused(tiny_clip_dir, domain_folder, tmp_path, capsys, extra, expected):
    from metaprompt_hf.training import parse_args

    argv = _train_argv(tiny_clip_dir, domain_folder, tmp_path / "out", *extra)
    if isinstance(expected, Refused):
        with pytest.raises(ValueError, match=expected.pattern):
            parse_args(argv)
        return
    parse_args(argv)  # accepted


@pytest.fixture(scope="module")
def checkpointed_run(tiny_clip_dir, domain_folder, tmp_path_factory):
    """A base-to-new run of 4 steps with checkpoints at steps 2 and 4."""
    from accelerate.state import AcceleratorState, GradientState

    from metaprompt_hf.training import main

    out = tmp_path_factory.mktemp("ckpt") / "run"
    AcceleratorState._reset_state(True)
    GradientState._reset_state()
    code = main(_train_argv(tiny_clip_dir, domain_folder, out, "--max_steps", "4", "--checkpointing_steps", "2"))
    assert code == 0
    assert (out / "checkpoint-2").is_dir() and (out / "checkpoint-4").is_dir()
    return out


def _truncate(path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _garble(path) -> None:
    path.write_text('{"progress": {"global_step": 2}, "schedule": ')


def _empty_object(path) -> None:
    path.write_text("{}")


def _wrong_types(path) -> None:
    state = json.loads(path.read_text())
    path.write_text(json.dumps(state | {"progress": "step two"}))


def _wrong_random_state(path) -> None:
    state = json.loads(path.read_text())
    path.write_text(json.dumps(state | {"python_random": [3, [1, 2], None]}))


def _remove(path) -> None:
    path.unlink()


# (case, checkpoint to resume, file to damage, damage, --max_steps, expected)
RESUME_CASES: list[tuple[str, str, str | None, object, str, Works | Refused]] = [
    ("resume step 2 to 4", "checkpoint-2", None, None, "4", Works(4)),
    ("resume step 4 with --max_steps 2", "checkpoint-4", None, None, "2", Refused(r"checkpoint-4 is at step 4, past --max_steps 2")),
    ("truncated prompts", "checkpoint-2", "metaprompt_model.safetensors", _truncate, "4", Refused(r"checkpoint-2/metaprompt_model.safetensors: cannot be read")),
    ("truncated optimizer state", "checkpoint-2", "optimizer.safetensors", _truncate, "4", Refused(r"checkpoint-2/optimizer.safetensors: cannot be read")),
    ("truncated RNG state", "checkpoint-2", "rng_state.safetensors", _truncate, "4", Refused(r"checkpoint-2/rng_state.safetensors: cannot be read")),
    ("garbage trainer_state.json", "checkpoint-2", "trainer_state.json", _garble, "4", Refused(r"checkpoint-2/trainer_state.json: not valid JSON")),
    ("trainer_state.json without fields", "checkpoint-2", "trainer_state.json", _empty_object, "4", Refused(r"checkpoint-2/trainer_state.json: .*'progress'")),
    ("trainer_state.json with a text step", "checkpoint-2", "trainer_state.json", _wrong_types, "4", Refused(r"checkpoint-2/trainer_state.json: 'progress' must hold a step count")),
    ("trainer_state.json with a garbled random state", "checkpoint-2", "trainer_state.json", _wrong_random_state, "4", Refused(r"checkpoint-2: the optimizer, schedule or random state .* does not fit this run")),
    ("missing RNG state", "checkpoint-2", "rng_state.safetensors", _remove, "4", Refused(r"checkpoint-2 has no rng_state.safetensors")),
    ("missing optimizer state", "checkpoint-2", "optimizer.safetensors", _remove, "4", Refused(r"checkpoint-2 has no optimizer.safetensors")),
]  # fmt: skip


@pytest.mark.parametrize(
    "checkpoint, damaged, damage, max_steps, expected",
    [r[1:] for r in RESUME_CASES],
    ids=[r[0] for r in RESUME_CASES],
)
def test_resume_refuses_unreadable_checkpoints_by_name(
    checkpointed_run, tiny_clip_dir, domain_folder, tmp_path, capsys, checkpoint, damaged, damage, max_steps, expected
):
    import shutil

    from accelerate.state import AcceleratorState, GradientState

    from metaprompt_hf.training import main

    out = tmp_path / "run"
    shutil.copytree(checkpointed_run, out)
    for name in os.listdir(out):  # only the checkpoint under test, so 'latest' would not pick another
        if name.startswith("checkpoint-") and name != checkpoint:
            shutil.rmtree(out / name)
    if damaged is not None:
        damage(out / checkpoint / damaged)
    AcceleratorState._reset_state(True)
    GradientState._reset_state()
    argv = _train_argv(tiny_clip_dir, domain_folder, out, "--max_steps", max_steps, "--checkpointing_steps", "2")
    code = main([*argv, "--resume_from_checkpoint", str(out / checkpoint)])
    err = capsys.readouterr().err
    if isinstance(expected, Refused):
        assert code == 2, err
        assert re.search(expected.pattern, err), err
        assert "Traceback" not in err
        return
    assert code == 0, err
    state = json.loads((out / f"checkpoint-{expected.n_entries}" / "trainer_state.json").read_text())
    assert state["progress"]["global_step"] == expected.n_entries


def test_failed_checkpoint_write_leaves_no_temporary_folder(
    tiny_clip_dir, domain_folder, tmp_path, monkeypatch, capsys
):
    """Disk full while a checkpoint is written: a clear error, and neither a temporary nor a half checkpoint left."""
    import errno

    import safetensors.torch
    from accelerate.state import AcceleratorState, GradientState

    from metaprompt_hf.training import main

    real = safetensors.torch.save_file

    def disk_full(tensors, filename, metadata=None):
        if os.path.basename(filename) == "optimizer.safetensors":
            raise OSError(errno.ENOSPC, "No space left on device", filename)
        return real(tensors, filename, metadata)

    monkeypatch.setattr(safetensors.torch, "save_file", disk_full)
    out = tmp_path / "run"
    AcceleratorState._reset_state(True)
    GradientState._reset_state()
    code = main(_train_argv(tiny_clip_dir, domain_folder, out, "--max_steps", "2", "--checkpointing_steps", "2"))
    err = capsys.readouterr().err
    assert code == 2 and "No space left on device" in err, err
    leftovers = [p for p in os.listdir(out) if p.startswith((".tmp", "checkpoint-")) or ".tmp" in p]
    assert leftovers == [], leftovers
