"""The mini benchmark suite: every registered prompt learner on the embedded offline world, base-to-new and domain
generalisation, ranked with paired-seed intervals.

The paper's protocols (docs/method.md §6) on the mini world that ships with the package (`metaprompt_hf.miniworld`,
its design in docs/miniworld.md) and the small CLIP pretrained on it (`src/metaprompt_hf/assets/mini-clip`):

- base-to-new on the four mini datasets (`digits`, `glyphs`, `shapes`, `objects`; 16 shots per base class) and on
  `union` (52 classes, 26 base; 8 shots);
- domain generalisation on `styles`, each of its four domains held out in turn, 16 shots per class per source domain
  and enough epochs for at least `MIN_DG_STEPS` (180) optimizer steps;
- every method of `METHODS`, the same seeds for all (seed = few-shot sample and initialisation), so that
  differences are paired by seed.

    python benchmarks/mini_suite.py --tune --output_dir D      # learning rates on the VALIDATION split (seed 1)
    python benchmarks/mini_suite.py --output_dir D             # the leaderboard: test split, seeds 1-5
    python benchmarks/mini_suite.py --quick --output_dir D     # structure only: 1 seed, 2 steps, 2 cells (CI)
    python benchmarks/mini_suite.py --ablation [--tune] --output_dir D   # the meta-step ablation (mini_ablation.py)

`--tune` walks each trained method's learning-rate grid (`mini_leaderboard.LR_GRIDS`, the same for every method of
an optimizer family; every other point, then the neighbours of the best: `LR_SEARCH`) on the validation split,
seed 1, over the four small base-to-new datasets (mean HM) and the four DG targets (mean accuracy on each
target's SOURCE domains: no selection run scores the domain it holds out), and records the best with the digest of
the configuration it was tuned for in `benchmarks/mini_hparams.json`. The leaderboard refuses a method whose recorded digest differs from its current
configuration and names the command that re-tunes it. The test split is only read by the leaderboard runs.

Writes `D/leaderboard.json` (schema in `leaderboard_tables.py`), `D/leaderboard.md`, `D/runs.json` (one entry per
run) and `D/runs/<tag>.json` (resumable: a run already on disk is not run again).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

from mini_ablation import B2N_SMALL, SELECTION_SPLIT, _training_args, protocol_runs, run_spec, run_specs  # noqa: E402
from mini_leaderboard import (  # noqa: E402
    DG_SELECTION_DOMAINS,
    LR_SEARCH,
    ZEROSHOT,
    best_rate,
    check_tuning,
    config_digest,
    leaderboard,
    lr_grid,
    rates_to_score,
    weight_grid,
)

HPARAMS = HERE / "mini_hparams.json"
#: The leaderboard's methods, in table order: the frozen model, the baselines, MetaPrompt and the peer methods.
METHODS = (
    "zeroshot",
    "coop",
    "ivlp",
    "metaprompt_no_meta",
    "metaprompt",
    "cocoop",
    "kgcoop",
    "maple",
    "promptsrc",
    "mmrl",
)
SEEDS = (1, 2, 3, 4, 5)
TUNE_SEED = 1


def cells(quick: bool) -> list[dict[str, Any]]:
    """The suite's cells with their schedules (quick: the first small base-to-new dataset and one DG target)."""
    runs = protocol_runs(False)
    return [runs[0], runs[-1]] if quick else runs


def _args_for_digest(opts: argparse.Namespace) -> Any:
    def build(cell: dict[str, Any], method: str) -> Any:
        spec = run_spec(cell, method, {"method": method, "learning_rate": 0.001}, 0, "test", opts)
        return _training_args(spec, Path("/nonexistent"), "")

    return build


def digests(methods: list[str]) -> dict[str, str]:
    """Each method's configuration digest, of the full suite's runs (`--quick` runs are checked against it too)."""
    full = argparse.Namespace(max_steps=-1, max_eval_samples=None)
    return {m: config_digest(m, protocol_runs(False), _args_for_digest(full)) for m in methods}


def _specs(
    methods: list[str],
    lrs: dict[str, dict[str, float]],
    runs: list[dict[str, Any]],
    seeds: list[int],
    split: str,
    opts: argparse.Namespace,
    weights: dict[str, dict[str, dict[str, Any]]] | None = None,
) -> list[dict[str, Any]]:
    """One run spec per (cell, method, seed): the method's learning rate and weight overrides for the cell's
    protocol (zero-shot trains nothing; its learning rate is a placeholder)."""
    specs = []
    for cell in runs:
        protocol = cell["protocol"]
        for method in methods:
            args = {"method": method, "learning_rate": lrs[method][protocol] if method != ZEROSHOT else 0.002}
            args |= ((weights or {}).get(method) or {}).get(protocol) or {}
            specs += [run_spec(cell, method, args, seed, split, opts) for seed in seeds]
    return specs


def _select(entries: list[dict[str, Any]], keys: list[str], key_of: Any) -> tuple[dict[str, str], dict[str, Any]]:
    """Per protocol, the option (one of `keys`) with the best validation score (mean HM / mean accuracy), ties to
    the first; and every option's score."""
    scores: dict[str, dict[str, float]] = {"base2new": {}, "dg": {}}
    for key in keys:
        mine = [e for e in entries if key_of(e) == key]
        scores["base2new"][key] = statistics.fmean(e["hm"] for e in mine if e["protocol"] == "base2new")
        scores["dg"][key] = statistics.fmean(e["accuracy"] for e in mine if e["protocol"] == "dg")
    chosen = {p: max(keys, key=lambda k: (s[k], -keys.index(k))) for p, s in scores.items()}
    return chosen, {p: {k: round(v, 2) for k, v in s.items()} for p, s in scores.items()}


def _overrides_key(entry: dict[str, Any]) -> str:
    """The weight option a run was made with: its training-argument overrides besides method and learning rate."""
    config = {k: v for k, v in entry.get("config", {}).items() if k not in ("method", "learning_rate")}
    return json.dumps(config, sort_keys=True)


def _rate_scores(entries: list[dict[str, Any]], method: str, protocol: str) -> dict[float, float]:
    """Each scored learning rate's validation score for (method, protocol): mean HM (base-to-new) or mean accuracy
    (DG) over the protocol's tuning cells."""
    metric = "hm" if protocol == "base2new" else "accuracy"
    by_rate: dict[float, list[float]] = {}
    for e in entries:
        if e["method"] == method and e["protocol"] == protocol:
            by_rate.setdefault(float(e["learning_rate"]), []).append(e[metric])
    return {lr: statistics.fmean(v) for lr, v in by_rate.items()}


def tune(opts: argparse.Namespace, methods: list[str], digest: dict[str, str]) -> dict[str, Any]:
    """Select each trained method's learning rate per protocol by `LR_SEARCH` over its grid, then its own weights at
    that rate (`weight_grid`), on the validation split; update mini_hparams.json."""
    trained = [m for m in methods if m != ZEROSHOT]
    runs = [c for c in protocol_runs(False) if c["protocol"] == "dg" or c["dataset"] in B2N_SMALL]
    cells_of = {p: [c for c in runs if c["protocol"] == p] for p in ("base2new", "dg")}
    start = time.perf_counter()
    entries: list[dict[str, Any]] = []
    scores: dict[tuple[str, str], dict[float, float]] = {(m, p): {} for m in trained for p in cells_of}
    # Rounds of the search, each run in parallel across methods and protocols (two rounds on these grids).
    while True:
        specs = []
        for (method, protocol), scored in scores.items():
            for lr in rates_to_score(lr_grid(method), scored):
                specs += _specs(
                    [method], {method: {protocol: lr}}, cells_of[protocol], [TUNE_SEED], SELECTION_SPLIT, opts
                )
        if not specs:
            break
        entries += run_specs(specs, opts)
        scores = {(m, p): _rate_scores(entries, m, p) for (m, p) in scores}
    lrs = {m: {p: best_rate(lr_grid(m), scores[(m, p)]) for p in cells_of} for m in trained}
    lr_scores = {
        m: {p: {str(lr): round(v, 2) for lr, v in sorted(scores[(m, p)].items())} for p in cells_of} for m in trained
    }
    stage2 = []
    for method in trained:
        for option in weight_grid(method):
            weights = {method: {"base2new": option, "dg": option}}
            stage2 += _specs([method], lrs, runs, [TUNE_SEED], SELECTION_SPLIT, opts, weights)
    entries2 = run_specs(stage2, opts) if stage2 else []
    record = json.loads(HPARAMS.read_text()) if HPARAMS.is_file() else {}
    record = record if "methods" in record else {}  # a record of the former schema is replaced
    record.setdefault("methods", {})
    for method in trained:
        grid = list(lr_grid(method))
        row: dict[str, Any] = {
            "config_digest": digest[method],
            "learning_rate": lrs[method],
            "grid": grid,
            "validation_scores": lr_scores[method],
            "at_grid_edge": {p: lrs[method][p] in (grid[0], grid[-1]) for p in lrs[method]},
            "weights": {"base2new": {}, "dg": {}},
        }
        options = weight_grid(method)
        if options:
            keys = [json.dumps(o, sort_keys=True) for o in options]
            mine = [e for e in entries2 if e["method"] == method]
            chosen, scores = _select(mine, keys, _overrides_key)
            row["weights"] = {p: json.loads(k) for p, k in chosen.items()}
            row["weight_grid"] = options
            row["weight_validation_scores"] = scores
        record["methods"][method] = row
    record["selection"] = (
        f"validation split, seed {TUNE_SEED}: mean HM over {list(B2N_SMALL)} (base-to-new) and, for each DG "
        f"target, the accuracy on the validation images of its source domains ({DG_SELECTION_DOMAINS!r}: the "
        "held-out domain is never scored), averaged over the targets (dg); first the learning rate (method's "
        "weights at their defaults; the grid walked " + LR_SEARCH + "), then the method's own weights at the "
        "chosen rate; ties go to the smaller value"
    )
    record["lr_search"] = LR_SEARCH
    record["command"] = "python benchmarks/mini_suite.py " + " ".join(opts.argv)
    record.setdefault("wall_seconds", {})["+".join(trained)] = round(time.perf_counter() - start, 1)
    # runs_reused counts every run found on disk when asked for, this invocation's own included (the weights stage
    # asks again for the rate stage's default option): from an empty folder it equals the runs listed twice
    record["last_invocation"] = {
        "methods": trained,
        "wall_seconds": round(time.perf_counter() - start, 1),
        "runs_reused": getattr(opts, "runs_reused", 0),
        "jobs": opts.jobs,
    }
    # From an empty output folder this is the tuning's cost; the wall time above counts only what was not on disk.
    once = {e["tag"]: e for e in entries + entries2}  # the weights stage's default option is a rate-stage run
    record["run_seconds_total"] = round(sum(e.get("run_seconds", 0.0) for e in once.values()), 1)
    record["methods"] = dict(sorted(record["methods"].items()))
    tmp = HPARAMS.with_suffix(".tmp")
    tmp.write_text(json.dumps(record, indent=2) + "\n")
    os.replace(tmp, HPARAMS)
    (opts.output_dir / "tuning_runs.json").write_text(json.dumps(entries + entries2, indent=1))
    print(json.dumps({m: record["methods"][m]["learning_rate"] for m in trained}, indent=2))
    return record


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output_dir", type=Path, required=True)
    parser.add_argument("--quick", action="store_true", help="1 seed, 2 steps, 2 cells, 32 eval images (structure)")
    parser.add_argument("--tune", action="store_true", help="select learning rates on the validation split")
    parser.add_argument("--seeds", type=int, nargs="+", default=None, help="default 1-5 (suite), 1-10 (ablation)")
    parser.add_argument("--methods", nargs="+", default=None, help=f"only these methods (default: {list(METHODS)})")
    parser.add_argument("--jobs", type=int, default=2, help="runs in parallel (one thread each)")
    parser.add_argument("--ablation", action="store_true", help="meta-step ablation, paired by seed")
    parser.add_argument(
        "--hparams", default=None, help="ablation: the --tune output (default results/ablation_hparams.json)"
    )
    parser.add_argument("--variants", nargs="+", default=None, help="ablation: variants (default: see mini_ablation)")
    parser.add_argument("--cells", nargs="+", default=None, help="ablation: only these datasets / DG targets")
    parser.add_argument("--ablation_split", choices=["test", "validation"], default="test", help="ablation: split")
    parser.add_argument("--summarise_only", action="store_true", help="summarise the runs on disk")
    parser.add_argument("--cache_dir", default=None, help="dataset cache (default <output_dir>/cache)")
    parser.add_argument("--max_steps", type=int, default=-1)
    parser.add_argument("--max_eval_samples", type=int, default=None)
    parser.add_argument("--overwrite", action="store_true", help="replace a leaderboard already in --output_dir")
    opts = parser.parse_args(argv)
    opts.argv = list(argv if argv is not None else sys.argv[1:])
    if opts.jobs < 1:
        parser.error(f"--jobs: expected >= 1, got {opts.jobs}")
    if opts.seeds is not None:
        from metaprompt_hf.validation import check_seeds

        try:
            check_seeds(opts.seeds)
        except ValueError as err:
            parser.error(str(err))
    opts.output_dir.mkdir(parents=True, exist_ok=True)
    opts.cache_dir = Path(opts.cache_dir) if opts.cache_dir else opts.output_dir / "cache"
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    logging.getLogger("metaprompt_hf").setLevel(logging.WARNING)
    if opts.ablation:
        import mini_ablation

        opts.eval_split = opts.ablation_split
        return mini_ablation.ablation(opts)
    from metaprompt_hf.methods import METHODS as REGISTERED

    methods = list(opts.methods or METHODS)
    unknown = [m for m in methods if m not in REGISTERED]
    if unknown:
        parser.error(f"--methods: unknown method(s) {unknown}; registered: {sorted(REGISTERED)}")
    if opts.tune and (opts.seeds or opts.quick):
        parser.error("--tune selects on seed 1 with the full schedule; it takes neither --seeds nor --quick")
    start = time.perf_counter()
    digest = digests(methods)
    if opts.tune:
        tune(opts, methods, digest)
        return 0
    if opts.quick:  # quick settings fill what the command line left open, and say so before any work
        given = [f for f, v in (("--seeds", opts.seeds), ("--max_eval_samples", opts.max_eval_samples)) if v]
        given += ["--max_steps"] if opts.max_steps > 0 else []
        opts.seeds = opts.seeds or [1]
        opts.max_steps = opts.max_steps if opts.max_steps > 0 else 2
        opts.max_eval_samples = opts.max_eval_samples or 32
        print(
            f"--quick: seeds {opts.seeds}, max_steps {opts.max_steps}, max_eval_samples {opts.max_eval_samples}, "
            f"cells {[c.get('target_domain') or c['dataset'] for c in cells(True)]}"
            + (f" ({', '.join(given)} as given)" if given else "")
        )
    seeds = list(opts.seeds or SEEDS)
    board_path = opts.output_dir / "leaderboard.json"
    if board_path.exists() and not (opts.overwrite or opts.summarise_only):
        print(f"error: {board_path} exists; pass --overwrite", file=sys.stderr)
        return 2
    record = json.loads(HPARAMS.read_text()) if HPARAMS.is_file() else {}
    problems = check_tuning(record, methods, digest)
    if problems:
        print("error: " + "\n       ".join(problems), file=sys.stderr)
        return 2
    tuned = record.get("methods", {})
    lrs = {m: tuned[m]["learning_rate"] for m in methods if m != ZEROSHOT}
    weights = {m: tuned[m].get("weights") for m in methods if m != ZEROSHOT}
    runs = cells(opts.quick)
    entries = run_specs(_specs(methods, lrs, runs, seeds, "test", opts, weights), opts)
    dg = next(c for c in runs if c["protocol"] == "dg")
    b2n = next(c for c in runs if c["protocol"] == "base2new")
    board = {
        "seeds": seeds,
        "split": "test",
        "methods": leaderboard(entries, digest, tuned),
        "settings": {
            "command": "python benchmarks/mini_suite.py " + " ".join(opts.argv),
            "quick": opts.quick,
            "wall_seconds": round(time.perf_counter() - start, 1),
            "run_seconds_total": round(sum(e.get("run_seconds", 0.0) for e in entries), 1),
            "runs_reused": getattr(opts, "runs_reused", 0),
            "jobs": opts.jobs,
            "base_model": "embedded",
            "max_steps": opts.max_steps,
            "max_eval_samples": opts.max_eval_samples,
            "schedule": {c["protocol"]: {k: c[k] for k in ("epochs", "batch", "shots")} for c in (b2n, dg)},
            "cells": runs,
            "optimizer_steps": {
                p: sorted({e["optimizer_steps"] for e in entries if e["protocol"] == p and e.get("optimizer_steps")})
                for p in ("base2new", "dg")
            },
            "tuning": {"file": "benchmarks/mini_hparams.json", "command": record.get("command")},
        },
    }
    (opts.output_dir / "runs.json").write_text(json.dumps(entries, indent=1))
    board_path.write_text(json.dumps(board, indent=2) + "\n")
    from leaderboard_tables import leaderboard_markdown

    table = leaderboard_markdown(board)
    (opts.output_dir / "leaderboard.md").write_text(table)
    print(table)
    print(f"wall time {board['settings']['wall_seconds']} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
