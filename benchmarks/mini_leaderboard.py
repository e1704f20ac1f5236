"""The mini suite's leaderboard and tuning records: paired-seed statistics per method and cell, and the digest of the
configuration a method's hyperparameters were tuned for.

- `config_digest(method)` hashes everything a run of `method` depends on apart from the tuned learning rate and the
  seed: the method's config (`MethodConfig` defaults and version), every resolved training argument of each cell
  (β of the meta step, prompt sizes, schedule, crop, ...), the learning-rate grid and the mini world's version. A
  changed default changes the digest, and `check_tuning` then refuses to report the method until it is re-tuned.
- `leaderboard(entries, ...)` turns per-run entries into `leaderboard.json`: for every method and cell (and the
  average over cells) mean, standard error, 95 % t-interval and n over seeds, and the paired difference against
  `metaprompt_no_meta` and against `zeroshot` on the same seeds (same few-shot sample), docs/method.md §6.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import statistics
from collections import defaultdict
from typing import Any

from metaprompt_hf.stats import paired_stats

NO_META = "metaprompt_no_meta"
ZEROSHOT = "zeroshot"
#: The learning-rate grid of every trained method, by its optimizer: SGD methods share one grid; AdamW methods
#: (MMRL) the same grid divided by 4, as their official learning rates are lower (MMRL 0.001 against CoOp's 0.002
#: with SGD). Eight points, factors of 4 apart. The grid grew on validation evidence alone, each time because a
#: method's choice sat at an end: downwards twice (at 0.0005 CoOp's text prompts already move by more than their own
#: norm on the mini CLIP, so that point was not "barely training"), upwards once (CoCoOp's source-domain validation
#: accuracy still rose at 0.512). A choice at an end means the grid stopped before the optimum.
LR_GRIDS: dict[str, tuple[float, ...]] = {
    "sgd": (0.000125, 0.0005, 0.002, 0.008, 0.032, 0.128, 0.512, 2.048),
    "adamw": (0.00003125, 0.000125, 0.0005, 0.002, 0.008, 0.032, 0.128, 0.512),
}
#: How `--tune` walks a grid: every other point first (the coarse pass, factors of 16 apart), then the unscored
#: neighbours of the best point so far, until the best has both neighbours scored (one more round on these grids).
#: The chosen rate is then the best of the points scored and, unless it is an end of the grid, is bracketed by two
#: scored neighbours that are worse, which is what "inside the grid" means. It costs 6 of 8 points per (method,
#: protocol); on the full 8-point scores of every method it chose what the full grid chose (docs/miniworld.md,
#: "What the suite costs").
LR_SEARCH = "coarse-to-fine: odd grid indices, then the neighbours of the best until it is bracketed"
#: What DG validation scores when `--tune` chooses: the source domains' validation images (training-domain
#: validation), never the held-out target's. Scoring the target's validation images instead made "do not train" the
#: best choice of every method that cannot transfer from the sources, so their chosen rate was always the grid's
#: lowest (docs/miniworld.md, "Selection on the source domains").
DG_SELECTION_DOMAINS = "sources"
#: Each method's own weights, tuned after its learning rate with the same rule for all: the default and the default
#: divided and multiplied by 4 (several weights of one method move together).
WEIGHT_FACTORS = (0.25, 1.0, 4.0)
_WEIGHTS: dict[str, tuple[str, ...]] = {
    "kgcoop": ("weight",),
    "promptsrc": ("text_loss_weight", "image_loss_weight"),
    "mmrl": ("reg_weight",),
}
#: Training arguments that vary per run (or are the tuned value itself) and so stay out of the digest.
_PER_RUN = {
    "output_dir",
    "overwrite_output_dir",
    "seed",
    "learning_rate",
    "cache_dir",
    "eval_split",
    "logging_steps",
    "report_to",
    "disable_tqdm",
    "max_eval_samples",
    "max_steps",
    "hub_token",
}


def lr_grid(method: str) -> tuple[float, ...]:
    """The learning rates `--tune` tries for `method`."""
    from metaprompt_hf.methods import get_method

    return LR_GRIDS[get_method(method).optimizer]


def best_rate(grid: tuple[float, ...], scores: dict[float, float]) -> float:
    """The scored rate with the highest validation score; ties go to the smaller rate."""
    scored = [lr for lr in grid if lr in scores]
    return max(scored, key=lambda lr: (scores[lr], -scored.index(lr)))


def rates_to_score(grid: tuple[float, ...], scores: dict[float, float]) -> list[float]:
    """The rates `--tune` scores next (`LR_SEARCH`): the coarse pass when nothing is scored yet, then the unscored
    neighbours of the best rate so far; [] once the best is bracketed (or an end of the grid with its one
    neighbour scored): the search is over."""
    if not scores:
        return list(grid[1::2])
    i = grid.index(best_rate(grid, scores))
    return [grid[j] for j in (i - 1, i + 1) if 0 <= j < len(grid) and grid[j] not in scores]


def weight_grid(method: str) -> list[dict[str, Any]]:
    """The training-argument overrides `--tune` tries for `method`'s own weights after its learning rate ({} is the
    default); [] for a method without such weights. MetaPrompt's is β of the meta step (docs/method.md §3)."""
    from metaprompt_hf.meta import DEFAULT_META_STEP
    from metaprompt_hf.methods import get_method

    impl = get_method(method)
    if impl.meta is not None and method == "metaprompt":
        beta = DEFAULT_META_STEP[impl.meta.get("mode", "clean")]
        return [{"meta_step": beta * f} if f != 1.0 else {} for f in WEIGHT_FACTORS]
    names = _WEIGHTS.get(method, ())
    if not names:
        return []
    return [
        {"method_args": ",".join(f"{n}={getattr(impl.config, n) * f:g}" for n in names)} if f != 1.0 else {}
        for f in WEIGHT_FACTORS
    ]


def config_digest(method: str, cells: list[dict[str, Any]], training_args: Any) -> str:
    """sha256 (first 16 hex) of what a run of `method` depends on besides learning rate and seed.

    Args:
        method: a registered method name.
        cells: the suite's cells (`mini_ablation.protocol_runs(False)`), with their schedules.
        training_args: `(cell, method) -> MetaPromptTrainingArguments` for a cell, resolved as the suite runs it.
    """
    from metaprompt_hf.methods import get_method
    from metaprompt_hf.miniworld import MINIWORLD_VERSION

    impl = get_method(method)
    config = impl.config
    record: dict[str, Any] = {
        "method": method,
        "method_config": dataclasses.asdict(config) | {"version": getattr(config, "version", None)},
        "grid": list(lr_grid(method)) if method != ZEROSHOT else [],
        "weight_grid": weight_grid(method),
        "miniworld_version": MINIWORLD_VERSION,
        "dg_selection_domains": DG_SELECTION_DOMAINS,
        "lr_search": LR_SEARCH,
        "cells": [],
    }
    for cell in cells:
        args = training_args(cell, method)
        resolved = {f.name: getattr(args, f.name) for f in dataclasses.fields(args) if f.name not in _PER_RUN}
        record["cells"].append(json.loads(json.dumps(resolved, default=str)))
    return hashlib.sha256(json.dumps(record, sort_keys=True).encode()).hexdigest()[:16]


def check_tuning(record: dict[str, Any], methods: list[str], digests: dict[str, str]) -> list[str]:
    """The problems with `record` (mini_hparams.json) for `methods`: a method never tuned, or tuned for another
    configuration; each names the command that re-tunes it."""
    problems = []
    for method in methods:
        if method == ZEROSHOT:
            continue
        tuned = record.get("methods", {}).get(method)
        fix = f"re-tune with: python benchmarks/mini_suite.py --tune --methods {method} --output_dir D"
        if tuned is None:
            problems.append(f"mini_hparams.json: no tuning recorded for {method!r}; {fix}")
        elif tuned.get("config_digest") != digests[method]:
            problems.append(
                f"mini_hparams.json: {method!r} was tuned for configuration {tuned.get('config_digest')}, its "
                f"configuration is now {digests[method]} (a default, the schedule or the mini world changed); {fix}"
            )
    return problems


def _cell_key(entry: dict[str, Any]) -> tuple[str, str]:
    if entry["protocol"] == "base2new":
        return "base2new", entry["dataset"].split(":")[-1]
    return "dg", entry["target_domain"]


def _per_seed(entries: list[dict[str, Any]]) -> dict[str, dict[tuple[str, str], dict[int, dict[str, float]]]]:
    """method → (protocol, cell) → seed → metrics."""
    table: dict[str, dict[tuple[str, str], dict[int, dict[str, float]]]] = defaultdict(lambda: defaultdict(dict))
    for e in entries:
        protocol, cell = _cell_key(e)
        metrics = {k: e[k] for k in ("base", "new", "hm")} if protocol == "base2new" else {"acc": e["accuracy"]}
        table[e["method"]][(protocol, cell)][e["seed"]] = metrics
    return table


def _averages(cells: dict[tuple[str, str], dict[int, dict[str, float]]], protocol: str) -> dict[int, dict[str, float]]:
    """Per seed, the mean of each metric over the protocol's cells (only seeds present in every cell)."""
    mine = {c: v for (p, c), v in cells.items() if p == protocol}
    if not mine:
        return {}
    seeds = set.intersection(*(set(v) for v in mine.values()))
    keys = next(iter(next(iter(mine.values())).values())).keys()
    return {s: {k: statistics.fmean(v[s][k] for v in mine.values()) for k in keys} for s in sorted(seeds)}


def _stat(values: list[float]) -> dict[str, Any]:
    return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in paired_stats(values).items()} | {
        "ci95": [None if x is None else round(x, 4) for x in paired_stats(values)["ci95"]]
    }


def _paired(mine: dict[int, dict[str, float]], ref: dict[int, dict[str, float]] | None, key: str) -> dict[str, Any]:
    seeds = sorted(set(mine) & set(ref or {}))
    return _stat([mine[s][key] - ref[s][key] for s in seeds]) if ref else _stat([])


def leaderboard(entries: list[dict[str, Any]], digests: dict[str, str], tuned: dict[str, Any]) -> dict[str, Any]:
    """Per-run entries of the test split → the `methods` part of leaderboard.json (percent points)."""
    table = _per_seed(entries)
    cost = _costs(entries)
    movement = _movement(entries)
    for cells in table.values():  # the average over each protocol's cells, as one more cell
        for protocol in ("base2new", "dg"):
            avg = _averages(cells, protocol)
            if avg:
                cells[(protocol, "average")] = avg
    out: dict[str, Any] = {}
    for method, cells in table.items():
        row: dict[str, Any] = {
            "config_digest": digests.get(method),
            "learning_rate": tuned.get(method, {}).get("learning_rate"),
            "weights": tuned.get(method, {}).get("weights"),
            "cost": cost.get(method, {}),
            "prompt_movement": movement.get(method, {}),
            "base2new": {},
            "dg": {},
        }
        for (protocol, cell), seeds in sorted(cells.items()):
            metrics = ("base", "new", "hm") if protocol == "base2new" else ("acc",)
            main = "hm" if protocol == "base2new" else "acc"
            entry = {k: _stat([v[k] for v in seeds.values()]) for k in metrics}
            for ref_name, ref in (("no_meta", NO_META), ("zeroshot", ZEROSHOT)):
                if ref != method and ref in table:
                    entry[f"delta_{main}_vs_{ref_name}"] = _paired(seeds, table[ref].get((protocol, cell)), main)
            row[protocol][cell] = entry
        out[method] = row
    return out


def _costs(entries: list[dict[str, Any]]) -> dict[str, dict[str, dict[str, float]]]:
    """Mean training seconds per optimizer step per method and protocol, and its ratio to CoOp's."""
    per: dict[tuple[str, str], list[float]] = defaultdict(list)
    for e in entries:
        if e.get("optimizer_steps"):
            per[(e["method"], e["protocol"])].append(e["train_seconds"] / e["optimizer_steps"])
    mean = {k: statistics.fmean(v) for k, v in per.items()}
    out: dict[str, dict[str, dict[str, float]]] = defaultdict(dict)
    for (method, protocol), seconds in mean.items():
        coop = mean.get(("coop", protocol))
        out[method][protocol] = {"seconds_per_step": round(seconds, 4)} | (
            {"ratio_vs_coop": round(seconds / coop, 2)} if coop else {}
        )
    return dict(out)


def _movement(entries: list[dict[str, Any]]) -> dict[str, dict[str, dict[str, float]]]:
    """Median over runs of ‖θ − θ0‖ / ‖θ0‖ of the text and the vision prompts, per method and protocol: how far
    training moved the prompts from their initialisation (methods whose adapter has no such prompts: absent)."""
    per: dict[tuple[str, str, str], list[float]] = defaultdict(list)
    for e in entries:
        for kind in ("text", "vision"):
            moved, init = e.get(f"{kind}_prompts_moved"), e.get(f"{kind}_prompts_init_norm")
            if moved is not None and init:
                per[(e["method"], e["protocol"], kind)].append(moved / init)
    out: dict[str, dict[str, dict[str, float]]] = defaultdict(lambda: defaultdict(dict))
    for (method, protocol, kind), ratios in per.items():
        out[method][protocol][kind] = round(statistics.median(ratios), 3)
    return {m: dict(v) for m, v in out.items()}
