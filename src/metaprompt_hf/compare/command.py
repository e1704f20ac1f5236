"""`python -m metaprompt_hf.compare`: the whole comparison in order — read the command line, check everything
that can be checked before training, print the plan, tune (with `--tune`), run, report, push (with
`--push_best_to_hub`)."""

from __future__ import annotations

import dataclasses
import hashlib
import os
import platform
import shlex
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from ..training import USER_ERRORS
from ..utils import atomic_write_json, atomic_write_text
from .arguments import CompareArguments, CompareSetup, parse_compare_args
from .plan import (
    RunSpec,
    check_output_dir,
    clear_output_dir,
    describe_plan,
    make_spec,
    preflight,
    run_arguments,
    write_manifest,
)
from .processes import is_main_process, process_state
from .publish import push_best
from .report import markdown, plot, summarise, summary_lines
from .runs import check_pairing, measure_steps, metric_key, run_all
from .tune import lr_trials, planned_trials, tune


def _print(*lines: str) -> None:
    if is_main_process():
        print("\n".join(lines), flush=True)


def train_command(setup: CompareSetup, method: str, overrides: dict[str, Any]) -> str:
    """`examples/train.py` for `method` with the comparison's training flags, its `--config_dir` values and its
    tuned ones."""
    own = {f"--{f.name}" for f in dataclasses.fields(CompareArguments)} | {"--output_dir"}
    tokens, argv = [], shlex.split(setup.command)[3:]
    i = 0
    while i < len(argv):
        flag = argv[i].split("=", 1)[0]
        takes_value = "=" not in argv[i] and i + 1 < len(argv) and not argv[i + 1].startswith("--")
        if flag in own:
            i += 2 if takes_value else 1
            continue
        tokens.append(argv[i])
        i += 1
    extra = setup.method_values.get(method, {}) | overrides
    for key, value in extra.items():
        tokens += [f"--{key}", str(value)]
    tokens += ["--method", method, "--output_dir", str(setup.output_dir / f"{method}-final")]
    return "accelerate launch examples/train.py " + shlex.join(tokens)


def hardware() -> str:
    if torch.cuda.is_available():
        return torch.cuda.get_device_name(0)
    return f"CPU ({os.cpu_count()} cores, {torch.get_num_threads()} torch threads, {platform.machine()})"


def compare(argv: Sequence[str] | None = None, *, api: Any | None = None) -> dict[str, Any] | None:
    """Run the comparison; returns `comparison.json`'s content (None with `--dry_run`). Bad input raises
    `ValueError` / `DataError` / `OSError` before any training. `api`: a stand-in for `HfApi` (tests)."""
    start = time.perf_counter()
    setup = parse_compare_args(sys.argv[1:] if argv is None else argv)
    opts = setup.options
    processes = process_state().num_processes
    defaults = {m: run_arguments(setup, m, 1, Path(".")) for m in opts.method_names}  # every method's flags valid
    replace = check_output_dir(setup)
    first = defaults[opts.method_names[0]]
    pre = preflight(setup, first, opts.tune)
    runs_dir = setup.output_dir / "runs"

    def specs_for(overrides: dict[str, dict[str, Any]]) -> list[RunSpec]:
        return [
            make_spec(setup, pre, m, s, runs_dir / m / f"seed-{s}", processes, **overrides.get(m, {}))
            for s in opts.seed_list  # seed-major: an interrupted comparison leaves complete pairs
            for m in opts.method_names
        ]

    specs = specs_for({})
    probe = specs + (
        [s for grid in lr_trials(setup, pre, processes).values() for s in grid.values()] if opts.tune else []
    )
    # outside the output folder, so that a dry run (or one stopped while measuring) leaves nothing there; the same
    # path on every process of a launch
    tag = hashlib.sha256(str(setup.output_dir.resolve()).encode()).hexdigest()[:12]
    probe_dir = Path(tempfile.gettempdir()) / f"metaprompt-compare-probe-{tag}"
    step_seconds = measure_steps(probe, pre.data, probe_dir)
    _print(*describe_plan(setup, specs, step_seconds, planned_trials(setup, pre, processes) if opts.tune else 0))
    if opts.dry_run:
        return None
    if is_main_process():
        if replace:
            clear_output_dir(setup)
        write_manifest(setup)
    overrides: dict[str, dict[str, Any]] = {}
    tuning = None
    if opts.tune:
        tuning = tune(setup, pre, processes)
        overrides = {m: r["chosen"] for m, r in tuning["methods"].items()}
        if is_main_process():
            atomic_write_json(setup.output_dir / "tuning.json", tuning)
        specs = specs_for(overrides)
        todo = sum(s.finished() is None for s in specs)
        _print(f"Tuned: {overrides}; {len(specs) - todo} runs finished already, {todo} to run")
    records = run_all(specs, pre.data)
    check_pairing(specs)
    metric, _ = metric_key(first.protocol)
    by_method = {r["method"]: r for r in records}
    settings = {
        "command": setup.command,
        "wall_seconds": round(time.perf_counter() - start, 1),
        "run_seconds_total": round(sum(r["run_seconds"] for r in records), 1),
        "train_seconds_total": round(sum(r["train_seconds"] for r in records), 1),
        "eval_split": first.eval_split,
        "base_model": first.base_model,
        "hardware": hardware(),
        "processes": processes,
        "memory_kind": "CUDA max_memory_allocated" if torch.cuda.is_available() else "peak RSS of the process",
        "hyperparameters": {
            m: {
                "learning_rate": r["learning_rate"] if r["adapter_bytes"] else None,
                "meta_step": r["meta_step"],
                "source": "tuned on validation" if m in overrides else "default",
            }
            for m, r in by_method.items()
        },
        "tuning": tuning,
        "train_command": "",
    }
    summary = summarise(
        records,
        dataset=pre.data.name,
        protocol=first.protocol,
        metric=metric,
        seeds=opts.seed_list,
        shots=first.shots,
        tuned=opts.tune,
        settings=settings,
    )
    best = summary["ranking"][0]
    settings["train_command"] = train_command(setup, best, overrides.get(best, {}))
    settings["wall_seconds"] = round(time.perf_counter() - start, 1)
    if is_main_process():
        out = setup.output_dir
        atomic_write_json(out / "comparison.json", summary)
        atomic_write_text(out / "comparison.md", markdown(summary))
        plot(summary, out / "comparison.png")
        _print(f"wrote {out / 'comparison.json'}, comparison.md (the table) and comparison.png (the plot)", "")
        _print(*summary_lines(summary))
        if opts.push_best_to_hub:
            push_best(
                summary, out, opts.push_best_to_hub, api=api, token=first.hub_token, private=first.hub_private_repo
            )
            _print(f"pushed {best} to {opts.push_best_to_hub}")
    return summary


def main(argv: Sequence[str] | None = None) -> int:
    """The command: bad input becomes a clear message and exit status 2."""
    from datasets.utils.logging import disable_progress_bar
    from transformers.utils.logging import disable_progress_bar as disable_loading_bars

    disable_progress_bar()  # the comparison's own bar says where the work is
    disable_loading_bars()
    try:
        compare(argv)
    except (ValueError, *USER_ERRORS) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: finished runs are kept; re-run the same command to resume", file=sys.stderr)
        return 130
    finally:
        process_state().destroy_process_group()
    return 0
