"""The mini benchmark suite: every method on the embedded offline world, base-to-new and domain generalisation.

The paper's protocols (docs/method.md §6) on the mini world that ships with the package (`metaprompt_hf.miniworld`)
and the small CLIP pretrained on it (`src/metaprompt_hf/assets/mini-clip`):

- base-to-new over the 4 mini datasets (`digits`, `glyphs`, `shapes`, `objects`; each its own classes and style;
  first ceil(C/2) classes base), 16 shots per base class;
- domain generalisation over `styles` (photo, cartoon, painting, sketch), leaving each domain out in turn, 1 and
  5 shots per class per source domain;
- methods `zeroshot`, `coop`, `ivlp`, `metaprompt_no_meta`, `metaprompt`, seeds 1-3, the paper's schedule.

    python benchmarks/mini_suite.py --output_dir benchmarks/results        # full suite (3 seeds)
    python benchmarks/mini_suite.py --quick --output_dir /tmp/mini-quick   # smoke test: 1 seed, 2 steps
    python benchmarks/mini_suite.py --tune --output_dir /tmp/mini-tune     # learning-rate selection (validation)
    python benchmarks/mini_suite.py --ablation --tune --output_dir D       # meta-step ablation: selection (validation)
    python benchmarks/mini_suite.py --ablation --output_dir D              # meta-step ablation: paired test runs
    python benchmarks/mini_suite.py --methods metaprompt --reuse_runs benchmarks/results/runs.json --output_dir D
                                        # re-run one method (a changed default); the others' runs are reused

The `--ablation` mode (`benchmarks/mini_ablation.py`) compares every meta-update variant with
`metaprompt_no_meta` over 10 paired seeds and writes `ablation.json` / `ablation.md`; see that module.

Hyperparameters come from `benchmarks/mini_hparams.json`, written by `--tune`: for every trained method the same
grid of learning rates is scored on the VALIDATION split (mean base-to-new HM and mean DG accuracy, seed 1), and
the best one is kept. The test split is only ever used by the full suite.

Writes `results.json` ({"base2new": {method: {dataset: {base, new, hm, n_classes, std}}}, "dg": {method:
{target_domain: {acc, std, shots, "1shot": {acc, std}}}}}, percent, means over seeds; `acc` is 5-shot), the raw
per-run results (`runs.json`), `results.md` and `results.png`.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
HPARAMS = HERE / "mini_hparams.json"
METHODS = ("zeroshot", "coop", "ivlp", "metaprompt_no_meta", "metaprompt")
TRAINED = METHODS[1:]
LR_GRID = (0.002, 0.008, 0.032)
DEFAULT_LR = 0.002


def _runs(protocol_filter: str | None, quick: bool, shots_dg: tuple[int, ...]) -> list[dict[str, Any]]:
    from metaprompt_hf import miniworld

    runs = []
    if protocol_filter in (None, "base2new"):
        for dataset in miniworld.B2N_DATASETS:
            runs.append({"protocol": "base2new", "dataset": dataset, "shots": 16})
    if protocol_filter in (None, "dg"):
        for target in miniworld.DG_DOMAINS:
            for shots in shots_dg:
                runs.append(
                    {"protocol": "dg", "dataset": miniworld.DG_DATASET, "target_domain": target, "shots": shots}
                )
    return runs


def _train_args(run: dict[str, Any], method: str, seed: int, lr: float, out: Path, opts: argparse.Namespace):
    from metaprompt_hf.training import MetaPromptTrainingArguments

    b2n = run["protocol"] == "base2new"
    return MetaPromptTrainingArguments(
        base_model=opts.base_model,
        method=method,
        dataset_name=f"miniworld:{run['dataset']}",
        protocol=run["protocol"],
        target_domain=run.get("target_domain"),
        shots=run["shots"],
        seed=seed,
        eval_split=opts.eval_split,
        output_dir=str(out),
        overwrite_output_dir=True,
        # the paper's schedule (docs/method.md §4): 8 / 6 epochs, batch 16 / 32, one warm-up epoch, cosine
        num_train_epochs=8 if b2n else 6,
        per_device_train_batch_size=16 if b2n else 32,
        learning_rate=lr,
        max_steps=opts.max_steps,
        # 32-pixel images: a crop down to 8% of the area (the paper's setting at 224 px) leaves a few pixels, so
        # the crop keeps at least half of the image (the same for every method).
        crop_scale_min=0.5,
        max_eval_samples=opts.max_eval_samples,
        cache_dir=str(opts.cache_dir),
        logging_steps=1000,
    )


def run_all(
    opts: argparse.Namespace,
    lrs: dict[str, dict[str, float]],
    runs: list[dict],
    seeds: list[int],
    methods: tuple[str, ...] = METHODS,
) -> list[dict]:
    """Train and evaluate every (run, method, seed); returns the per-run result entries."""
    from accelerate.state import AcceleratorState, GradientState

    from metaprompt_hf.training import train

    results = []
    total = len(runs) * len(methods) * len(seeds)
    done = 0
    start = time.perf_counter()
    for run in runs:
        for method in methods:
            for seed in seeds:
                lr = lrs.get(method, {}).get(run["protocol"], DEFAULT_LR)
                tag = "-".join(
                    str(v)
                    for v in (
                        run["protocol"],
                        run["dataset"],
                        run.get("target_domain", ""),
                        run["shots"],
                        method,
                        seed,
                    )
                    if v != ""
                )
                AcceleratorState._reset_state(True)
                GradientState._reset_state()
                out = train(_train_args(run, method, seed, lr, opts.output_dir / "runs" / tag, opts))
                entry = out.results[0] | {"learning_rate": lr, "train_seconds": round(out.train_seconds, 2)}
                results.append(entry)
                done += 1
                if done % 10 == 0 or done == total:
                    print(f"[{done}/{total}] {time.perf_counter() - start:.0f}s", flush=True)
    return results


def _mean_std(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def summarise(results: list[dict]) -> dict[str, Any]:
    """Per-run entries → the results.json schema (means over seeds, percent)."""
    from metaprompt_hf.evaluation import harmonic_mean

    out: dict[str, Any] = {"base2new": defaultdict(dict), "dg": defaultdict(dict)}
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for r in results:
        key = (r["protocol"], r["method"], r["dataset"], r.get("target_domain"), r["shots"])
        groups[key].append(r)
    for (protocol, method, dataset, target, shots), rows in sorted(groups.items(), key=str):
        if protocol == "base2new":
            base, sb = _mean_std([r["base"] for r in rows])
            new, sn = _mean_std([r["new"] for r in rows])
            _, sh = _mean_std([r["hm"] for r in rows])
            name = dataset.split(":")[-1]
            out["base2new"][method][name] = {
                "base": base,
                "new": new,
                "hm": harmonic_mean(base, new),
                "n_classes": rows[0]["n_base_classes"] + rows[0]["n_new_classes"],
                "std": {"base": sb, "new": sn, "hm": sh},
                "seeds": len(rows),
            }
        else:
            acc, sa = _mean_std([r["accuracy"] for r in rows])
            cell = out["dg"][method].setdefault(target, {})
            if shots == 5 or "acc" not in cell:
                cell.update({"acc": acc, "std": sa, "shots": shots, "seeds": len(rows)})
            cell[f"{shots}shot"] = {"acc": acc, "std": sa}
    out["base2new"] = dict(out["base2new"])
    out["dg"] = dict(out["dg"])
    return out


def markdown(summary: dict[str, Any]) -> str:
    from metaprompt_hf.evaluation import harmonic_mean

    lines = []
    b2n = summary["base2new"]
    if b2n:
        datasets = sorted(next(iter(b2n.values())))
        lines += [
            "**Base-to-new** (16 shots, base / new / HM in %, mean over seeds):",
            "",
            "| method | " + " | ".join(datasets) + " | average (HM of means) |",
            "|---|" + "---|" * (len(datasets) + 1),
        ]
        for method in METHODS:
            if method not in b2n:
                continue
            cells = [
                f"{b2n[method][d]['base']:.1f} / {b2n[method][d]['new']:.1f} / **{b2n[method][d]['hm']:.1f}**"
                for d in datasets
            ]
            mb = statistics.fmean(b2n[method][d]["base"] for d in datasets)
            mn = statistics.fmean(b2n[method][d]["new"] for d in datasets)
            cells.append(f"{mb:.1f} / {mn:.1f} / **{harmonic_mean(mb, mn):.1f}**")
            lines.append(f"| {method} | " + " | ".join(cells) + " |")
    dg = summary["dg"]
    if dg:
        targets = sorted(next(iter(dg.values())))
        shot_keys = sorted({k for m in dg.values() for t in m.values() for k in t if k.endswith("shot")})
        lines += [
            "",
            "**Domain generalisation**, leave one domain out (target accuracy in %, mean ± std over seeds):",
            "",
        ]
        for key in shot_keys:
            lines += [
                f"{key[:-4]} shot(s) per class per source domain:",
                "",
                "| method | " + " | ".join(targets) + " | average |",
                "|---|" + "---|" * (len(targets) + 1),
            ]
            for method in METHODS:
                if method not in dg:
                    continue
                cells = [f"{dg[method][t][key]['acc']:.1f} ± {dg[method][t][key]['std']:.1f}" for t in targets]
                cells.append(f"**{statistics.fmean(dg[method][t][key]['acc'] for t in targets):.1f}**")
                lines.append(f"| {method} | " + " | ".join(cells) + " |")
            lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def chart(summary: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    b2n, dg = summary["base2new"], summary["dg"]
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.2))
    for ax, table, key, title in (
        (axes[0], b2n, "hm", "Base-to-new: HM"),
        (axes[1], dg, "acc", "DG (5-shot): target accuracy"),
    ):
        if not table:
            ax.set_visible(False)
            continue
        groups = sorted(next(iter(table.values())))
        methods = [m for m in METHODS if m in table]
        width = 0.8 / len(methods)
        x = np.arange(len(groups))
        for i, method in enumerate(methods):
            values = [table[method][g][key] for g in groups]
            errs = [
                table[method][g]["std"][key] if isinstance(table[method][g]["std"], dict) else table[method][g]["std"]
                for g in groups
            ]
            ax.bar(x + i * width, values, width, yerr=errs, label=method, capsize=2)
        ax.set_xticks(x + 0.4 - width / 2, groups)
        ax.set_ylabel("%")
        ax.set_title(title)
        ax.set_ylim(0, 100)
    axes[0].legend(fontsize=8, loc="lower left")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def tune(opts: argparse.Namespace) -> dict[str, dict[str, float]]:
    """Pick each trained method's learning rate on the validation split (seed 1), the same way for all."""
    opts.eval_split = "validation"
    scores: dict[str, dict[str, dict[float, float]]] = defaultdict(lambda: defaultdict(dict))
    trials = []
    for lr in LR_GRID:
        lrs = {m: {"base2new": lr, "dg": lr} for m in TRAINED}
        results = [r for r in run_all(opts, lrs, _runs(None, False, (5,)), [1]) if r["method"] in TRAINED]
        trials.extend(results)
        for method in TRAINED:
            mine = [r for r in results if r["method"] == method]
            scores[method]["base2new"][lr] = statistics.fmean(r["hm"] for r in mine if r["protocol"] == "base2new")
            scores[method]["dg"][lr] = statistics.fmean(r["accuracy"] for r in mine if r["protocol"] == "dg")
    chosen = {
        m: {p: max(LR_GRID, key=lambda lr: (scores[m][p][lr], -lr)) for p in ("base2new", "dg")} for m in TRAINED
    }
    record = {
        "selected_learning_rate": chosen,
        "validation_scores": {
            m: {p: {str(lr): round(v, 2) for lr, v in s.items()} for p, s in d.items()} for m, d in scores.items()
        },
        "grid": list(LR_GRID),
        "selection": "validation split, seed 1: mean HM over base-to-new datasets; mean 5-shot target accuracy over DG targets",
        "command": "python benchmarks/mini_suite.py --tune --output_dir " + str(opts.output_dir),
    }
    (opts.output_dir / "tuning_runs.json").write_text(json.dumps(trials, indent=1))
    HPARAMS.write_text(json.dumps(record, indent=2) + "\n")
    print(json.dumps(record["selected_learning_rate"], indent=2))
    return chosen


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output_dir", type=Path, required=True)
    parser.add_argument("--quick", action="store_true", help="1 seed, 2 steps, 5-shot DG only, 32 eval images")
    parser.add_argument("--tune", action="store_true", help="select learning rates on the validation split")
    parser.add_argument("--seeds", type=int, nargs="+", default=None, help="default 1-3 (suite), 1-10 (ablation)")
    parser.add_argument("--ablation", action="store_true", help="meta-step ablation, paired by seed")
    parser.add_argument("--jobs", type=int, default=2, help="ablation: runs in parallel (one thread each)")
    parser.add_argument(
        "--hparams", default=None, help="ablation: the --tune output (default results/ablation_hparams.json)"
    )
    parser.add_argument(
        "--variants", nargs="+", default=None, help="ablation: variants to run (default: see mini_ablation)"
    )
    parser.add_argument("--cells", nargs="+", default=None, help="ablation: only these datasets / DG targets")
    parser.add_argument(
        "--ablation_split",
        choices=["test", "validation"],
        default="test",
        help="ablation: split of the paired runs (validation: selection evidence; test: the final table)",
    )
    parser.add_argument("--summarise_only", action="store_true", help="ablation: summarise the runs on disk")
    parser.add_argument("--cache_dir", default=None, help="dataset cache (default <output_dir>/cache)")
    parser.add_argument("--base_model", default="embedded")
    parser.add_argument("--protocol", choices=["base2new", "dg"], default=None, help="run one protocol only")
    parser.add_argument("--max_steps", type=int, default=-1)
    parser.add_argument("--max_eval_samples", type=int, default=None)
    parser.add_argument("--overwrite", action="store_true", help="replace results already in --output_dir")
    parser.add_argument("--methods", nargs="+", choices=METHODS, default=None, help="suite: run only these methods")
    parser.add_argument(
        "--reuse_runs",
        type=Path,
        default=None,
        help="suite: a runs.json whose entries for the methods not in --methods complete the tables",
    )
    opts = parser.parse_args(argv)
    opts.argv = list(argv if argv is not None else sys.argv[1:])
    opts.eval_split = "test"
    opts.output_dir.mkdir(parents=True, exist_ok=True)
    if opts.jobs < 1:
        parser.error(f"--jobs: expected >= 1, got {opts.jobs}")
    if opts.seeds is not None:
        from metaprompt_hf.validation import check_seeds

        try:
            check_seeds(opts.seeds)
        except ValueError as err:
            parser.error(str(err))
    if opts.ablation:
        os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        sys.path.insert(0, str(HERE))
        import mini_ablation

        opts.eval_split = opts.ablation_split
        return mini_ablation.ablation(opts)
    if opts.tune and (opts.seeds or opts.quick):  # selection runs seed 1 at full length and rewrites mini_hparams.json
        parser.error("--tune selects on seed 1 with the full schedule; it takes neither --seeds nor --quick")
    shots_dg: tuple[int, ...] = (1, 5)
    if opts.quick:  # quick settings fill what the command line left open, and say so before any work
        given = [f for f, v in (("--seeds", opts.seeds), ("--max_eval_samples", opts.max_eval_samples)) if v]
        given += ["--max_steps"] if opts.max_steps > 0 else []
        opts.seeds, shots_dg = opts.seeds or [1], (5,)
        opts.max_steps = opts.max_steps if opts.max_steps > 0 else 2
        opts.max_eval_samples = opts.max_eval_samples or 32
        print(
            f"--quick: seeds {opts.seeds}, max_steps {opts.max_steps}, max_eval_samples {opts.max_eval_samples}, DG "
            f"shots {list(shots_dg)}" + (f" ({', '.join(given)} as given)" if given else "")
        )
    opts.seeds = opts.seeds or [1, 2, 3]
    if (opts.output_dir / "results.json").exists() and not opts.overwrite:
        print(f"error: {opts.output_dir}/results.json exists; pass --overwrite", file=sys.stderr)
        return 2
    opts.cache_dir = Path(opts.cache_dir) if opts.cache_dir else opts.output_dir / "cache"
    logging.getLogger("metaprompt_hf").setLevel(logging.WARNING)
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    start = time.perf_counter()
    if opts.tune:
        tune(opts)
        return 0
    lrs = json.loads(HPARAMS.read_text())["selected_learning_rate"] if HPARAMS.is_file() else {}
    methods = tuple(m for m in METHODS if m in (opts.methods or METHODS))
    reused: list[dict] = []
    if opts.reuse_runs is not None:
        if not opts.reuse_runs.is_file():
            parser.error(f"--reuse_runs: no file {opts.reuse_runs}")
        reused = [e for e in json.loads(opts.reuse_runs.read_text()) if e["method"] not in methods]
    results = reused + run_all(opts, lrs, _runs(opts.protocol, opts.quick, shots_dg), opts.seeds, methods)
    summary = summarise(results)
    summary["settings"] = {
        "seeds": opts.seeds,
        "quick": opts.quick,
        "max_steps": opts.max_steps,
        "learning_rates": lrs or "default",
        "methods_run": list(methods),
        "reused_runs": str(opts.reuse_runs) if opts.reuse_runs else None,
        "wall_seconds": round(time.perf_counter() - start, 1),
        "base_model": opts.base_model,
        "command": "python benchmarks/mini_suite.py " + " ".join(argv if argv is not None else sys.argv[1:]),
    }
    (opts.output_dir / "runs.json").write_text(json.dumps(results, indent=1))
    (opts.output_dir / "results.json").write_text(json.dumps(summary, indent=2))
    table = markdown(summary)
    (opts.output_dir / "results.md").write_text(table)
    chart(summary, opts.output_dir / "results.png")
    print(table)
    print(f"wall time {summary['settings']['wall_seconds']} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
