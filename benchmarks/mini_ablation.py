"""Ablation of MetaPrompt's meta step on the mini world: every meta-update variant against `metaprompt_no_meta`,
paired by seed (`python benchmarks/mini_suite.py --ablation ...`).

Protocols (docs/method.md §6), sized so that the meta step has something to do and the full run fits in about
90 minutes on 2 CPU cores:

- base-to-new: the four mini datasets (16 shots, batch 16, 8 epochs: the paper's schedule) and `union`
  (`miniworld:union`, `metaprompt_hf.miniworld.union`: 52 classes, 26 base; 8 shots, batch 32, 8 epochs), so that the class-split
  episodes hold 13-way problems instead of 2-4-way ones;
- domain generalisation on `styles`, leave one domain out, 16 shots per class and source domain, batch 16, at
  least `MIN_DG_STEPS` optimizer steps (more epochs when needed): at 5 shots and batch 32 the paper's schedule gives
  24 steps and the prompts barely leave their initialisation (docs/miniworld.md says why this design).

Selection on the VALIDATION split only (`--tune`; a DG cell scores its source domains there, never the held-out
one): (1) the learning rate is `metaprompt_no_meta`'s as the mini suite's own validation tuning chose it
(`benchmarks/mini_hparams.json`), shared by every variant, so that a variant differs from the reference by its meta
phase alone (and the reference's runs are the suite's); (2) β of every variant with a β knob from `BETA_GRID` at
that learning rate; (3) the default variant: best mean of the validation base-to-new HM average and DG accuracy
average. The final runs (`--ablation` without `--tune`) read those choices and touch the test split once.

Every run is written to `<output_dir>/runs/<tag>.json` as soon as it ends (the tag holds a hash of its full
configuration), and a restarted command skips the runs already there, so the ablation is resumable.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import json
import math
import os
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:  # the sibling report module, also when this file is imported by path
    sys.path.insert(0, str(HERE))

from ablation_report import REFERENCE, _metric, cell_name, markdown, summarise  # noqa: E402, F401  (summarise: the tests' entry point)
from mini_leaderboard import DG_SELECTION_DOMAINS  # noqa: E402

from metaprompt_hf.stats import paired_stats  # noqa: E402, F401  (the one implementation, re-exported)

DEFAULT_HPARAMS = HERE / "results" / "ablation_hparams.json"
#: The split every hyperparameter is chosen on; the test split is read only by the final runs.
SELECTION_SPLIT = "validation"
#: Variant name → training arguments it sets (on top of the protocol's). "meta_step" is replaced by the tuned β
#: for the variants listed in `TUNED_BETA`.
VARIANTS: dict[str, dict[str, Any]] = {
    REFERENCE: {"method": "metaprompt_no_meta"},
    "clean": {"method": "metaprompt", "meta_mode": "clean", "meta_step": 0.2},
    "clean_second_order": {"method": "metaprompt", "meta_mode": "clean", "meta_second_order": True, "meta_step": 0.2},
    # the reference code's step with torch 1.10's zero-filled grads (docs/method.md §3.3), β as in the reference
    "faithful": {"method": "metaprompt", "meta_mode": "faithful", "meta_zero_grad_drift": True, "meta_step": 0.2},
    # MLDG's objective through the main optimizer, together with the in-domain step (docs/method.md §3.2)
    "mldg": {"method": "metaprompt", "meta_mode": "mldg", "meta_step": 1.0},
    "mldg_second_order": {"method": "metaprompt", "meta_mode": "mldg", "meta_second_order": True, "meta_step": 1.0},
    "mldg_instead": {"method": "metaprompt", "meta_mode": "mldg", "meta_mldg_in_domain": False, "meta_step": 1.0},
}
TUNED_BETA = ("clean", "clean_second_order", "mldg", "mldg_second_order", "mldg_instead")
#: What `--tune` and the ablation run unless `--variants` says otherwise (second order costs twice the first).
DEFAULT_VARIANTS = (REFERENCE, "clean", "faithful", "mldg")
BETA_GRID = (0.2, 1.0, 5.0)  # β of clean's outer update / weight of MLDG's held-out term
TUNE_SEEDS = (1,)
SEEDS = tuple(range(1, 11))
MIN_DG_STEPS = 180  # the DG design of docs/miniworld.md: enough steps for the sources to teach the dataset's look
B2N_SMALL = ("digits", "glyphs", "shapes", "objects")
UNION = "union"
DG_TARGETS = ("photo", "cartoon", "painting", "sketch")
DG_SHOTS = 16  # the whole train pool of each (class, source domain): data, not only steps, must grow


# ---------------------------------------------------------------------------------------------------- runs
def protocol_runs(quick: bool, cells: list[str] | None = None) -> list[dict[str, Any]]:
    """The (protocol, dataset or target) cells of the ablation with their schedule (only `cells` when given)."""
    b2n = [{"protocol": "base2new", "dataset": d, "shots": 16, "batch": 16, "epochs": 8} for d in B2N_SMALL]
    b2n.append({"protocol": "base2new", "dataset": UNION, "shots": 8, "batch": 32, "epochs": 8})
    dg_steps_per_epoch = (len(DG_TARGETS) - 1) * 10 * DG_SHOTS // 16  # 3 source domains x 10 classes
    dg_epochs = max(6, math.ceil(MIN_DG_STEPS / dg_steps_per_epoch))
    dg = [
        {
            "protocol": "dg",
            "dataset": "styles",
            "target_domain": t,
            "shots": DG_SHOTS,
            "batch": 16,
            "epochs": dg_epochs,
        }
        for t in DG_TARGETS
    ]
    runs = [b2n[-1], dg[-1]] if quick else b2n + dg
    if cells:
        unknown = sorted(set(cells) - {cell_name(r) for r in b2n + dg})
        if unknown:
            raise ValueError(f"--cells: unknown cell(s) {unknown}; choose from {[cell_name(r) for r in b2n + dg]}")
        runs = [r for r in b2n + dg if cell_name(r) in cells]
    return runs


def _config_tag(spec: dict[str, Any]) -> str:
    return hashlib.sha1(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:10]


def run_spec(
    run: dict[str, Any], variant: str, overrides: dict[str, Any], seed: int, split: str, opts: argparse.Namespace
) -> dict[str, Any]:
    """Everything that determines one run's result (and its file name)."""
    spec = {
        "variant": variant,
        "protocol": run["protocol"],
        "dataset": run["dataset"],
        "target_domain": run.get("target_domain"),
        "shots": run["shots"],
        "per_device_train_batch_size": run["batch"],
        "num_train_epochs": run["epochs"],
        "seed": seed,
        "eval_split": split,
        "max_steps": opts.max_steps,
        "max_eval_samples": opts.max_eval_samples,
        "args": dict(overrides),
    }
    if split == SELECTION_SPLIT and run["protocol"] == "dg":
        # Selection never sees the held-out domain: DG validation scores the source domains' validation images
        # (training-domain validation, docs/miniworld.md). Only then is the key set, so the tags (and the cached
        # runs) of every other run stay what they were.
        spec["eval_domains"] = DG_SELECTION_DOMAINS
    spec["tag"] = "-".join(
        str(x) for x in (variant, run["protocol"], cell_name(run), f"s{seed}", split, _config_tag(spec))
    )
    return spec


def _training_args(spec: dict[str, Any], out: Path, cache_dir: str) -> Any:
    from metaprompt_hf.training import MetaPromptTrainingArguments

    return MetaPromptTrainingArguments(
        base_model="embedded",
        dataset_name=f"miniworld:{spec['dataset']}",
        protocol=spec["protocol"],
        target_domain=spec["target_domain"],
        shots=spec["shots"],
        seed=spec["seed"],
        eval_split=spec["eval_split"],
        eval_domains=spec.get("eval_domains", "target"),
        output_dir=str(out),
        overwrite_output_dir=True,
        num_train_epochs=spec["num_train_epochs"],
        per_device_train_batch_size=spec["per_device_train_batch_size"],
        max_steps=spec["max_steps"],
        crop_scale_min=0.5,  # 32-px images, as the mini suite
        max_eval_samples=spec["max_eval_samples"],
        cache_dir=cache_dir,
        logging_steps=10_000,
        **spec["args"],
    )


@functools.cache
def _processor(base_model: str, revision: str | None, cache_dir: str | None) -> Any:
    """The base model's processor, loaded once per worker process: it is frozen and stateless, and loading it costs
    more than a short run's training."""
    from metaprompt_hf.backbones import load_base_processor, resolve_base_model

    return load_base_processor(resolve_base_model(base_model), revision=revision, cache_dir=cache_dir)


def _initial_prompts(model: Any) -> dict[str, Any]:
    """θ0 of the text and vision prompts of a freshly built model."""
    return {
        name: value.detach().clone().float()
        for name in ("text_prompts", "vision_prompts")
        if (value := getattr(model, name, None)) is not None
    }


def _prompt_movement(model: Any, initial: dict[str, Any]) -> dict[str, float]:
    """‖θ − θ0‖ and ‖θ0‖ of the text and vision prompts."""
    import torch

    moved = {}
    for name, then in initial.items():
        now = getattr(model, name).detach().float()
        moved[f"{name}_moved"] = float(torch.linalg.vector_norm(now - then))
        moved[f"{name}_init_norm"] = float(torch.linalg.vector_norm(then))
    return moved


def execute(spec: dict[str, Any], out_root: str, cache_dir: str) -> dict[str, Any]:
    """Train and evaluate one run; write `<out_root>/runs/<tag>.json` atomically; return the entry."""
    import logging
    import shutil

    import torch
    from accelerate.state import AcceleratorState, GradientState

    from metaprompt_hf.protocols.run import run_templates
    from metaprompt_hf.training import build_model, train

    logging.getLogger("metaprompt_hf").setLevel(logging.WARNING)
    torch.set_num_threads(1)
    AcceleratorState._reset_state(True)
    GradientState._reset_state()
    work = Path(out_root) / "work" / spec["tag"]
    args = _training_args(spec, work, cache_dir)
    start, cpu = time.perf_counter(), time.process_time()
    # The run's own model, built through the library's seam with the worker's one processor (no monkeypatching).
    processor = _processor(args.base_model, args.base_model_revision, args.cache_dir)
    model = build_model(args, run_templates(args.template, args.dataset_name), processor=processor)
    initial = _initial_prompts(model)
    out = train(args, model=model)
    entry = out.results[0] | {
        "variant": spec["variant"],
        "tag": spec["tag"],
        "learning_rate": args.learning_rate,
        "config": spec["args"],
        "optimizer_steps": out.global_step,
        "train_seconds": round(out.train_seconds, 2),
        "run_seconds": round(time.perf_counter() - start, 2),
        "cpu_seconds": round(time.process_time() - cpu, 2),
        "dataset": spec["dataset"],
    }
    if out.model is not None and args.method != "zeroshot":
        entry |= _prompt_movement(out.model, initial)
    entry.setdefault("meta_update_ratio", None)
    path = Path(out_root) / "runs" / f"{spec['tag']}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    tmp.write_text(json.dumps(entry, indent=1))
    os.replace(tmp, path)
    shutil.rmtree(work, ignore_errors=True)
    return entry


def run_specs(specs: list[dict[str, Any]], opts: argparse.Namespace) -> list[dict[str, Any]]:
    """Run every spec not already on disk (resumable), `opts.jobs` at a time; returns all entries."""
    runs_dir = opts.output_dir / "runs"
    done = {p.stem: p for p in runs_dir.glob("*.json")} if runs_dir.is_dir() else {}
    todo = [s for s in specs if s["tag"] not in done]
    if getattr(opts, "summarise_only", False):
        print(f"{len(specs) - len(todo)} of {len(specs)} runs on disk; summarising those", flush=True)
        return [json.loads(done[s["tag"]].read_text()) for s in specs if s["tag"] in done]
    print(f"{len(specs) - len(todo)} of {len(specs)} runs already done; {len(todo)} to go", flush=True)
    # every run found on disk when asked for, this invocation's own included: a record's wall time measures the
    # suite only when none came from an earlier invocation (leaderboard_tables.from_scratch_cost)
    opts.runs_reused = getattr(opts, "runs_reused", 0) + len(specs) - len(todo)
    start = time.perf_counter()
    if todo:
        # the union dataset is built once here, not by several workers at a time
        from metaprompt_hf.miniworld import load_union

        if any(s["dataset"] == UNION for s in todo):
            load_union(cache_dir=str(opts.cache_dir))
        ctx = get_context("spawn")
        with ProcessPoolExecutor(max_workers=opts.jobs, mp_context=ctx) as pool:
            futures = [pool.submit(execute, s, str(opts.output_dir), str(opts.cache_dir)) for s in todo]
            for i, future in enumerate(futures, 1):
                future.result()
                if i % 10 == 0 or i == len(futures):
                    print(f"[{i}/{len(futures)}] {time.perf_counter() - start:.0f}s", flush=True)
    return [json.loads((runs_dir / f"{s['tag']}.json").read_text()) for s in specs]


def _selected_variants(opts: argparse.Namespace) -> list[str]:
    names = list(opts.variants or DEFAULT_VARIANTS)
    unknown = [v for v in names if v not in VARIANTS]
    if unknown:
        raise ValueError(f"--variants: unknown variant(s) {unknown}; choose from {list(VARIANTS)}")
    return [REFERENCE] + [v for v in names if v != REFERENCE]


def _validation_score(entries: list[dict[str, Any]], protocol: str) -> float:
    return statistics.fmean(_metric(e) for e in entries if e["protocol"] == protocol)


def suite_learning_rate() -> dict[str, float]:
    """`metaprompt_no_meta`'s learning rates as the mini suite's validation tuning chose them (mini_hparams.json):
    the ablation pairs every variant with the reference at the reference's own selected rate."""
    path = HERE / "mini_hparams.json"
    record = json.loads(path.read_text()) if path.is_file() else {}
    row = record.get("methods", {}).get(REFERENCE)
    if row is None:
        raise SystemExit(
            f"error: {path}: no tuning of {REFERENCE!r}; run python benchmarks/mini_suite.py --tune --methods "
            f"{REFERENCE} --output_dir D first"
        )
    return {p: float(v) for p, v in row["learning_rate"].items()}


def tune(opts: argparse.Namespace) -> dict[str, Any]:
    """β per variant, then the default variant, on the validation split, at the reference's learning rate selected
    by the mini suite (`suite_learning_rate`)."""
    runs = protocol_runs(opts.quick, opts.cells)
    seeds = opts.seeds or list(TUNE_SEEDS)
    split = SELECTION_SPLIT
    beta_grid = BETA_GRID[:2] if opts.quick else BETA_GRID
    chosen_lr = {"base2new": 0.008, "dg": 0.008} if opts.quick else suite_learning_rate()
    lr_scores = {"source": "benchmarks/mini_hparams.json (metaprompt_no_meta)"}
    variant_scores: dict[str, dict[str, Any]] = {}
    chosen: dict[str, dict[str, Any]] = {}
    for variant in _selected_variants(opts):
        config = VARIANTS[variant]
        betas = beta_grid if variant in TUNED_BETA else (config.get("meta_step"),)
        scores = {}
        for beta in betas:
            specs = []
            for run in runs:
                args = dict(config) | {"learning_rate": chosen_lr[run["protocol"]]}
                if beta is not None:
                    args["meta_step"] = beta
                specs += [run_spec(run, variant, args, s, split, opts) for s in seeds]
            mine = run_specs(specs, opts)
            b2n, dg = _validation_score(mine, "base2new"), _validation_score(mine, "dg")
            scores[str(beta)] = {"base2new": b2n, "dg": dg, "mean": (b2n + dg) / 2}
        best = max(scores, key=lambda b: scores[b]["mean"])
        variant_scores[variant] = scores
        chosen[variant] = dict(config) | ({"meta_step": float(best)} if best != "None" else {})
    default = max(
        (v for v in variant_scores if v != REFERENCE),
        key=lambda v: max(s["mean"] for s in variant_scores[v].values()),
    )
    record = {
        "learning_rate": chosen_lr,
        "variants": chosen,
        "default_variant": default,
        "validation_scores": {"learning_rate": lr_scores, "variants": variant_scores},
        "grids": {"meta_step": list(beta_grid)},
        "seeds": seeds,
        "selection": "validation split: the learning rate is metaprompt_no_meta's as the mini suite selected it "
        "(benchmarks/mini_hparams.json); β per variant and the default variant by the mean of the mean HM over "
        "base-to-new datasets and the mean DG accuracy, each DG target scored on its source domains' validation "
        f"images ({DG_SELECTION_DOMAINS!r}; the held-out domain is never scored)",
        "command": "python benchmarks/mini_suite.py " + " ".join(opts.argv),
    }
    path = opts.output_dir / "ablation_hparams.json"
    path.write_text(json.dumps(record, indent=2) + "\n")
    print(json.dumps({k: record[k] for k in ("learning_rate", "variants", "default_variant")}, indent=2))
    return record


# ---------------------------------------------------------------------------------------------------- main
def ablation(opts: argparse.Namespace) -> int:
    """`--ablation`: the final paired runs on the test split (or `--tune` on validation)."""
    opts.cache_dir = Path(opts.cache_dir or opts.output_dir / "cache")
    if opts.quick:
        opts.max_steps = 2 if opts.max_steps <= 0 else opts.max_steps
        opts.max_eval_samples = opts.max_eval_samples or 32
        opts.seeds = opts.seeds or [1, 2]
    start = time.perf_counter()
    if opts.tune:
        tune(opts)
        print(f"wall time {time.perf_counter() - start:.1f} s")
        return 0
    hparams_path = Path(opts.hparams) if opts.hparams else DEFAULT_HPARAMS
    if opts.quick and not opts.hparams:
        hparams = {
            "learning_rate": {"base2new": 0.008, "dg": 0.002},
            "variants": {v: VARIANTS[v] for v in _selected_variants(opts)},
        }
    elif hparams_path.is_file():
        hparams = json.loads(hparams_path.read_text())
    else:
        print(f"error: --hparams: no file {hparams_path}; run --ablation --tune first", file=sys.stderr)
        return 2
    seeds = opts.seeds or list(SEEDS)
    variants = hparams["variants"]
    if opts.variants:
        missing = [v for v in _selected_variants(opts) if v not in variants]
        if missing:
            print(f"error: --variants: {missing} not tuned in {hparams_path}", file=sys.stderr)
            return 2
        variants = {v: variants[v] for v in _selected_variants(opts)}
    specs = []
    runs = protocol_runs(opts.quick, opts.cells)
    for seed in seeds:  # seed-major: an interrupted run leaves complete pairs
        for run in runs:
            for variant, config in variants.items():
                args = dict(config) | {"learning_rate": hparams["learning_rate"][run["protocol"]]}
                specs.append(run_spec(run, variant, args, seed, opts.eval_split, opts))
    entries = run_specs(specs, opts)
    summary = summarise(entries, {v: c | {"learning_rate": hparams["learning_rate"]} for v, c in variants.items()})
    summary["settings"] = {
        "seeds": seeds,
        "quick": opts.quick,
        "runs": [dict(r) for r in runs],
        "eval_split": opts.eval_split,
        "cpu_seconds_total": round(sum(e.get("cpu_seconds", 0.0) for e in entries), 1),
        "learning_rate": hparams["learning_rate"],
        "default_variant": hparams.get("default_variant"),
        "hparams": str(hparams_path) if not opts.quick or opts.hparams else "quick defaults",
        "jobs": opts.jobs,
        "wall_seconds_this_invocation": round(time.perf_counter() - start, 1),
        "run_seconds_total": round(sum(e["run_seconds"] for e in entries), 1),
        "command": "python benchmarks/mini_suite.py " + " ".join(opts.argv),
    }
    (opts.output_dir / "ablation_runs.json").write_text(json.dumps(entries, indent=1))
    (opts.output_dir / "ablation.json").write_text(json.dumps(summary, indent=2) + "\n")
    table = markdown(summary)
    (opts.output_dir / "ablation.md").write_text(table)
    print(table)
    print(f"wall time {summary['settings']['wall_seconds_this_invocation']} s")
    return 0
