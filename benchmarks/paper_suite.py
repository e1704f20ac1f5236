"""Reproduce the paper's tables on the standard datasets: list, run (resumably, one shard of the list at a time) and
aggregate every run of a table, with the published MetaPrompt numbers and the difference beside ours.

    python benchmarks/paper_suite.py --data_dir DATA --base_model openai/clip-vit-base-patch16 \
        --table base2new --output_dir runs/paper --dry_run           # writes runs/paper/runs.json, prints the count
    python benchmarks/paper_suite.py ... --table base2new --shard 0/4  # one of 4 shards (e.g. a job-array index)
    python benchmarks/paper_suite.py ... --table base2new --aggregate_only

Tables (docs/method.md §6; the data layouts are those of `metaprompt_hf.data.readers`):
- base2new: 11 datasets x seeds, base / new / HM per dataset (config examples/configs/b2n_vitb16.yaml);
- dg: PACS, VLCS, Office-Home, DomainNet, every held-out domain x seeds, 5 shots (dg_vitb16_5shot.yaml);
- cross_dataset: one ImageNet run per seed (16 shots, all classes), evaluated on the 10 other datasets;
- imagenet_shift: the same ImageNet runs evaluated on ImageNet-V2, -Sketch, -A, -R (A and R: their 200 classes).

A run is finished when its results file exists, so re-running the same command skips it; a run that stopped midway
resumes from its last epoch checkpoint. Evaluation runs stay in the shard of the training run they need.

`--method NAME` runs another registered method with its own named configs and prints its published numbers, with
their sources, beside ours (`benchmarks/paper_methods.py`; `--list_methods` prints them all); its runs live under
OUTPUT_DIR/NAME/. `--method all` plans every method (with `--dry_run`: the count of each). The default is MetaPrompt.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

from metaprompt_hf.data.readers import DG_DOMAINS
from metaprompt_hf.evaluation import harmonic_mean
from metaprompt_hf.protocols import get_protocol
from metaprompt_hf.utils import atomic_write_text
from metaprompt_hf.validation import check_seeds

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT / "benchmarks") not in sys.path:  # the sibling module, also when this script is loaded by path
    sys.path.insert(0, str(ROOT / "benchmarks"))
from paper_methods import SUITES, MethodSuite, get_suite, published_markdown  # noqa: E402

TABLES = ("base2new", "dg", "cross_dataset", "imagenet_shift")
B2N_DATASETS = (
    "imagenet", "caltech101", "oxford_pets", "stanford_cars", "oxford_flowers", "food101", "fgvc_aircraft",
    "sun397", "dtd", "eurosat", "ucf101",
)  # fmt: skip
DG_DATASETS = ("pacs", "vlcs", "office_home", "domainnet")
DEFAULT_METHOD = "metaprompt"
KINDS = {"base2new": "base2new", "dg": "dg", "cross_dataset": "transfer", "imagenet_shift": "transfer"}

# Approximate sizes of the real datasets, for the time estimate only: (classes, evaluated images) from CoOp's
# DATASETS.md / CoCoOp's tables; DG: images per domain evaluated as the target (Dassl's splits; VLCS: its test
# folders, about 30% of each domain).
SIZES = {
    "imagenet": (1000, 50000), "caltech101": (100, 2465), "oxford_pets": (37, 3669), "stanford_cars": (196, 8041),
    "oxford_flowers": (102, 2463), "food101": (101, 30300), "fgvc_aircraft": (100, 3333), "sun397": (397, 19850),
    "dtd": (47, 1692), "eurosat": (10, 8100), "ucf101": (101, 3783), "imagenet_v2": (1000, 10000),
    "imagenet_sketch": (1000, 50889), "imagenet_a": (200, 7500), "imagenet_r": (200, 30000),
}  # fmt: skip
DG_SIZES = {
    "pacs": (7, {"art_painting": 2048, "cartoon": 2344, "photo": 1670, "sketch": 3929}),
    "vlcs": (5, {"caltech": 425, "labelme": 797, "pascal": 1013, "sun": 985}),
    "office_home": (65, {"art": 2427, "clipart": 4365, "product": 4439, "real_world": 4357}),
    "domainnet": (345, {"clipart": 14604, "infograph": 15582, "painting": 21850, "quickdraw": 51750,
                        "real": 52041, "sketch": 20916}),
}  # fmt: skip


# ---------------------------------------------------------------------------------------------------- the plan
def _config_path(suite: MethodSuite, kind: str) -> Path:
    return ROOT / "examples" / "configs" / suite.configs[kind]


def _config(suite: MethodSuite, kind: str) -> dict[str, Any]:
    with open(_config_path(suite, kind), encoding="utf-8") as f:
        return yaml.safe_load(f)


def _steps(suite: MethodSuite, kind: str, n_train: int, train_args: list[str]) -> int:
    if "--max_steps" in train_args:
        return int(train_args[train_args.index("--max_steps") + 1])
    cfg = _config(suite, kind)
    return int(cfg["num_train_epochs"]) * math.ceil(n_train / int(cfg["per_device_train_batch_size"]))


def _train_run(opts: argparse.Namespace, table: str, kind: str, run_id: str, dataset: str, seed: int, **kw: Any):
    method, suite = opts.method, get_suite(opts.method)
    run_id = run_id if method == DEFAULT_METHOD else f"{method}/{run_id}"
    out = os.path.join(opts.output_dir, run_id)
    command = [sys.executable, str(ROOT / "examples" / "train.py"), "--config", str(_config_path(suite, kind))]
    if suite.method_arg:
        command += ["--method", suite.method_arg]
    command += ["--base_model", opts.base_model, "--data_dir", opts.data_dir, "--dataset_name", dataset]
    command += ["--seed", str(seed), "--output_dir", out, "--checkpointing_steps", "epoch"]
    if kind == "transfer":
        command += ["--protocol", "cross_dataset"]
    if kw.get("target_domain"):
        command += ["--target_domain", kw["target_domain"]]
    command += opts.train_args
    shots = int(_config(suite, kind)["shots"])
    if kind == "dg":
        classes, domains = DG_SIZES[dataset]
        n_train, n_eval = shots * classes * (len(domains) - 1), domains[kw["target_domain"]]
    else:
        classes, n_eval = SIZES[dataset]
        n_train = shots * (math.ceil(classes / 2) if kind == "base2new" else classes)
    return {
        "id": run_id, "table": table, "kind": "train", "method": method, "dataset": dataset, "seed": seed,
        "target_domain": kw.get("target_domain"), "output_dir": out, "done_file": os.path.join(out, "results.json"),
        "group": run_id, "after": None, "command": command, "command_line": shlex.join(command),
        "steps": _steps(suite, kind, n_train, opts.train_args), "eval_images": n_eval,
    }  # fmt: skip


def _eval_run(opts: argparse.Namespace, table: str, train: dict[str, Any], target: str) -> dict[str, Any]:
    run_id = f"{table}/{target}/seed{train['seed']}"
    run_id = run_id if train["method"] == DEFAULT_METHOD else f"{train['method']}/{run_id}"
    out = os.path.join(opts.output_dir, run_id)
    command = [sys.executable, str(ROOT / "examples" / "evaluate_runs.py"), "--adapters", train["output_dir"]]
    command += ["--report_dir", out, "--base_model", opts.base_model, "--data_dir", opts.data_dir]
    command += ["--dataset_name", target, "--protocol", table, *opts.eval_args]
    return {
        "id": run_id, "table": table, "kind": "eval", "method": train["method"], "dataset": target, "seed": train["seed"], "target_domain": None,
        "output_dir": out, "done_file": os.path.join(out, "per_seed.json"), "group": train["group"],
        "after": train["id"], "command": command, "command_line": shlex.join(command), "steps": 0,
        "eval_images": SIZES[target][1],
    }  # fmt: skip


def plan(opts: argparse.Namespace) -> list[dict[str, Any]]:
    """Every run of `opts.table` for each of `opts.methods`, in execution order (a training run before the
    evaluations that need it)."""
    runs: list[dict[str, Any]] = []
    for method in opts.methods:
        runs += _plan_method(argparse.Namespace(**{**vars(opts), "method": method}))
    return runs


def _plan_method(opts: argparse.Namespace) -> list[dict[str, Any]]:
    keep = set(opts.datasets) if opts.datasets else None
    runs: list[dict[str, Any]] = []
    if opts.table == "base2new":
        for dataset in B2N_DATASETS:
            for seed in opts.seeds:
                if keep is None or dataset in keep:
                    runs.append(
                        _train_run(opts, "base2new", "base2new", f"base2new/{dataset}/seed{seed}", dataset, seed)
                    )
    elif opts.table == "dg":
        for dataset in DG_DATASETS:
            for target in DG_DOMAINS[dataset]:
                for seed in opts.seeds:
                    if keep is None or dataset in keep:
                        run_id = f"dg/{dataset}/{target}/seed{seed}"
                        runs.append(_train_run(opts, "dg", "dg", run_id, dataset, seed, target_domain=target))
    else:
        protocol = get_protocol(opts.table)
        source = protocol.source_dataset
        for seed in opts.seeds:
            # Shared by cross_dataset and imagenet_shift: one ImageNet run per seed serves both tables.
            train = _train_run(opts, opts.table, "transfer", f"{source}_all_classes/seed{seed}", source, seed)
            runs.append(train)
            runs += [
                _eval_run(opts, opts.table, train, t) for t in protocol.target_datasets if keep is None or t in keep
            ]
    return runs


def shard(runs: list[dict[str, Any]], index: int, count: int) -> list[dict[str, Any]]:
    """Shard `index` of `count` (0-based): whole groups (a training run with its evaluations), round-robin."""
    groups = list(dict.fromkeys(r["group"] for r in runs))
    mine = {g for i, g in enumerate(groups) if i % count == index}
    return [r for r in runs if r["group"] in mine]


def estimate(
    runs: list[dict[str, Any]], step_seconds: float | None, images_per_second: float | None
) -> dict[str, Any]:
    """Optimizer steps and evaluated images of `runs`, and GPU hours when the rates are known."""
    steps = sum(r["steps"] for r in runs)
    images = sum(r["eval_images"] for r in runs)
    out: dict[str, Any] = {"runs": len(runs), "train_steps": steps, "eval_images": images}
    if step_seconds is not None:
        out["step_seconds"] = step_seconds
        out["train_hours"] = steps * step_seconds / 3600
    if images_per_second is not None:
        out["eval_images_per_second"] = images_per_second
        out["eval_hours"] = images / images_per_second / 3600
    if "train_hours" in out and "eval_hours" in out:
        out["gpu_hours"] = out["train_hours"] + out["eval_hours"]
    return out


# ---------------------------------------------------------------------------------------------------- running
def _is_done(run: dict[str, Any]) -> bool:
    return os.path.isfile(run["done_file"])


def _command_now(run: dict[str, Any]) -> list[str]:
    """The run's command, told how to treat what an interrupted attempt left behind."""
    out = Path(run["output_dir"])
    if not (out.is_dir() and any(out.iterdir())):
        return run["command"]
    if run["kind"] == "eval":
        return [*run["command"], "--overwrite"]
    if any(p.name.startswith("checkpoint-") for p in out.iterdir()):
        return [*run["command"], "--resume_from_checkpoint", "latest"]
    return [*run["command"], "--overwrite_output_dir"]


def execute(runs: list[dict[str, Any]], log_dir: Path) -> tuple[list[str], list[str], list[str]]:
    """Run what is not finished, in order; returns (ran, skipped, failed) run ids."""
    ran, skipped, failed = [], [], []
    by_id = {r["id"]: r for r in runs}
    log_dir.mkdir(parents=True, exist_ok=True)
    for run in runs:
        if _is_done(run):
            skipped.append(run["id"])
            print(f"skip (finished): {run['id']}")
            continue
        if run["after"] and not _is_done(by_id[run["after"]]):
            failed.append(run["id"])
            print(f"skip (needs {run['after']}, not finished): {run['id']}")
            continue
        log = log_dir / (run["id"].replace("/", "__") + ".log")
        print(f"run: {run['id']}  (log: {log})", flush=True)
        start = time.perf_counter()
        with open(log, "w", encoding="utf-8") as f:
            code = subprocess.call(_command_now(run), stdout=f, stderr=subprocess.STDOUT, cwd=ROOT)
        print(f"  exit {code} after {time.perf_counter() - start:.0f} s", flush=True)
        (ran if code == 0 and _is_done(run) else failed).append(run["id"])
    return ran, skipped, failed


def measure_step_seconds(run: dict[str, Any], steps: int) -> float:
    """Seconds per optimizer step of `run`: two short runs of `steps` and 2 x `steps` steps, differenced, so model
    loading, data reading and evaluation cancel out."""
    times = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in (steps, 2 * steps):
            command = list(run["command"])
            command[command.index("--output_dir") + 1] = os.path.join(tmp, f"steps{n}")
            command += ["--max_steps", str(n), "--do_eval", "false", "--checkpointing_steps", str(10**9)]
            start = time.perf_counter()
            subprocess.run(command, check=True, capture_output=True, cwd=ROOT)
            times.append(time.perf_counter() - start)
    return max(times[1] - times[0], 0.0) / steps


# ---------------------------------------------------------------------------------------------------- tables
def _results(run: dict[str, Any]) -> list[dict[str, Any]]:
    if not _is_done(run):
        return []
    with open(run["done_file"], encoding="utf-8") as f:
        return json.load(f)


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else math.nan


def _fmt(value: float | None) -> str:
    return "—" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.2f}"


def _diff(ours: float, published: float | None) -> str:
    return "—" if published is None or math.isnan(ours) else f"{ours - published:+.2f}"


def aggregate(runs: list[dict[str, Any]], table: str, method: str = DEFAULT_METHOD) -> tuple[dict[str, Any], str]:
    """The table of `method` as JSON rows and Markdown, ours beside its published numbers (with their source)."""
    suite = get_suite(method)
    by_dataset: dict[str, list[dict[str, Any]]] = {}
    for run in runs:
        if table in ("cross_dataset", "imagenet_shift") and run["kind"] == "train":
            key = f"{run['dataset']} (source)"
        else:
            key = run["dataset"]
        by_dataset.setdefault(key, []).extend(_results(run))
    rows: list[dict[str, Any]] = []
    if table == "base2new":
        lines = ["| Dataset | seeds | Base | New | HM | published HM | Δ HM |", "|---|---|---|---|---|---|---|"]
        for dataset, entries in by_dataset.items():
            base, new = _mean([e["base"] for e in entries]), _mean([e["new"] for e in entries])
            hm = harmonic_mean(base, new) if entries else math.nan
            pub = suite.b2n_hm.get(dataset)
            rows.append(
                {"dataset": dataset, "seeds": len(entries), "base": base, "new": new, "hm": hm, "published_hm": pub}
            )
            lines.append(
                f"| {dataset} | {len(entries)} | {_fmt(base)} | {_fmt(new)} | {_fmt(hm)} | {_fmt(pub)} | {_diff(hm, pub)} |"
            )
        done = [r for r in rows if r["seeds"]]
        mean_hm = _mean([r["hm"] for r in done])
        mb, mn = _mean([r["base"] for r in done]), _mean([r["new"] for r in done])
        hm_of_means = harmonic_mean(mb, mn) if done else math.nan
        pub_mean = suite.b2n_hm_mean
        lines.append(
            f"| **Average** (mean of HMs) | | {_fmt(mb)} | {_fmt(mn)} | {_fmt(mean_hm)} | {_fmt(pub_mean)} | {_diff(mean_hm, pub_mean)} |"
        )
        lines += [
            "",
            f"| Average over {len(done)} of {len(rows)} datasets | Base | New | HM (of the means) |",
            "|---|---|---|---|",
            f"| ours | {_fmt(mb)} | {_fmt(mn)} | {_fmt(hm_of_means)} |",
        ]
        for j in suite.averages:
            lines += [
                f"| {j.label} | {j.base:.2f} | {j.new:.2f} | {j.hm:.2f} |",
                f"| Δ | {_diff(mb, j.base)} | {_diff(mn, j.new)} | {_diff(hm_of_means, j.hm)} |",
            ]
        sources = [f"published HM per dataset and its mean: {suite.b2n_hm_source}"] if suite.b2n_hm else []
        if method == DEFAULT_METHOD:
            sources += [f"journal averages (base / new / HM): {j.source}" for j in suite.averages]
        else:
            sources += [f"{j.label}: {j.source}" for j in suite.averages] or ["published: none recorded"]
        summary = {
            "mean_of_hms": mean_hm,
            "base": mb,
            "new": mn,
            "hm_of_means": hm_of_means,
            "datasets_done": len(done),
        }
    elif table == "dg":
        lines = [
            "| Dataset | target domain: accuracy (seeds) | average | published (5-shot) | Δ |",
            "|---|---|---|---|---|",
        ]
        for dataset in dict.fromkeys(r["dataset"] for r in runs):
            per_domain = {}
            for run in runs:
                if run["dataset"] == dataset:
                    per_domain.setdefault(run["target_domain"], []).extend(e["accuracy"] for e in _results(run))
            cells = ", ".join(f"{d} {_fmt(_mean(v))} ({len(v)})" for d, v in per_domain.items())
            avg = _mean([_mean(v) for v in per_domain.values() if v]) if all(per_domain.values()) else math.nan
            pub = suite.dg_5shot.get(dataset)
            rows.append(
                {
                    "dataset": dataset,
                    "per_domain": {d: _mean(v) for d, v in per_domain.items()},
                    "accuracy": avg,
                    "published": pub,
                }
            )
            lines.append(f"| {dataset} | {cells} | {_fmt(avg)} | {_fmt(pub)} | {_diff(avg, pub)} |")
        sources = [
            f"published: {suite.dg_source} (mean over target domains and 3 seeds); an average needs every domain"
            if suite.dg_source
            else "published: none recorded; an average needs every domain"
        ]
        summary = {}
    else:
        lines = ["| Dataset | seeds | accuracy | published |", "|---|---|---|---|"]
        for dataset, entries in by_dataset.items():
            acc = _mean([e["accuracy"] for e in entries])
            rows.append({"dataset": dataset, "seeds": len(entries), "accuracy": acc, "published": None})
            lines.append(f"| {dataset} | {len(entries)} | {_fmt(acc)} | — |")
        targets = [r for r in rows if not r["dataset"].endswith("(source)") and r["seeds"]]
        avg = _mean([r["accuracy"] for r in targets])
        lines.append(f"| **Average of targets** | | {_fmt(avg)} | — |")
        sources = [f"published: {suite.transfer_source}"]
        summary = {"target_average": avg}
    if suite.config_note:
        sources.append(f"config: {suite.config_note}")
    text = "\n".join(lines) + "\n\n" + "\n".join(f"- {s}" for s in sources) + "\n"
    if method != DEFAULT_METHOD:
        text = f"{method}\n\n{text}"
    out = {"table": table, "rows": rows, "summary": summary, "sources": sources}
    return ({"method": method, **out} if method != DEFAULT_METHOD else out), text


# ---------------------------------------------------------------------------------------------------- CLI
def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    listing = argv is not None and "--list_methods" in argv or argv is None and "--list_methods" in sys.argv
    p.add_argument("--data_dir", required=not listing, help="the DATA/ folder in the CoOp / Dassl layouts")
    p.add_argument("--base_model", required=not listing, help="base CLIP (Hub id or folder)")
    p.add_argument("--table", required=not listing, choices=TABLES)
    p.add_argument("--output_dir", required=not listing)
    p.add_argument(
        "--method",
        default=DEFAULT_METHOD,
        choices=[*SUITES, "all"],
        help="the method to run, with its named configs (benchmarks/paper_methods.py); all: every one",
    )
    p.add_argument("--list_methods", action="store_true", help="print every method's configs and published numbers")
    p.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    p.add_argument("--datasets", nargs="+", default=None, help="only these datasets (targets for transfer tables)")
    p.add_argument("--dry_run", action="store_true", help="write runs.json and print the count; run nothing")
    p.add_argument("--shard", default="0/1", help="i/n: run shard i (0-based) of n")
    p.add_argument("--aggregate_only", action="store_true", help="only build the table from finished runs")
    p.add_argument("--step_seconds", type=float, default=None, help="measured seconds per training step")
    p.add_argument("--measure_steps", type=int, default=0, help="measure the step time with two short runs")
    p.add_argument("--eval_images_per_second", type=float, default=None, help="measured evaluation throughput")
    p.add_argument("--train_args", default="", help="extra arguments for examples/train.py, one string")
    p.add_argument("--eval_args", default="", help="extra arguments for examples/evaluate_runs.py, one string")
    opts = p.parse_args(argv)
    opts.train_args, opts.eval_args = shlex.split(opts.train_args), shlex.split(opts.eval_args)
    if opts.list_methods:
        return opts
    # A method without a config for this table's kind (e.g. no DG config) is refused alone, left out of `all`.
    kind = KINDS[opts.table]
    if opts.method != "all" and kind not in get_suite(opts.method).configs:
        p.error(f"--method {opts.method}: no {kind} config in benchmarks/paper_methods.py for --table {opts.table}")
    candidates = list(SUITES) if opts.method == "all" else [opts.method]
    opts.methods = [m for m in candidates if kind in SUITES[m].configs]
    opts.methods_without_config = [m for m in candidates if m not in opts.methods]
    try:
        check_seeds(opts.seeds)
    except ValueError as err:
        p.error(str(err))
    # The suite sets these per run; one repeated in --train_args / --eval_args would silently win (argparse keeps the
    # last value), e.g. one --seed for every seed of the table.
    for name, given, owned in (
        ("--train_args", opts.train_args, SUITE_TRAIN_FLAGS),
        ("--eval_args", opts.eval_args, SUITE_EVAL_FLAGS),
    ):
        clash = sorted({a.split("=", 1)[0] for a in given} & set(owned))
        if clash:
            p.error(f"{name}: {clash} are set by the suite for each run; use the suite's own options instead")
    try:
        index, count = (int(x) for x in opts.shard.split("/"))
    except ValueError:
        p.error(f"--shard: expected i/n, got {opts.shard!r}")
    if not 0 <= index < count:
        p.error(f"--shard: expected 0 <= i < n, got {opts.shard!r}")
    opts.shard_index, opts.shard_count = index, count
    opts.output_dir = os.path.abspath(opts.output_dir)
    opts.data_dir = os.path.abspath(opts.data_dir)
    return opts


SUITE_TRAIN_FLAGS = (
    "--config", "--method", "--base_model", "--data_dir", "--dataset_name", "--seed", "--output_dir", "--protocol", "--target_domain",
)  # fmt: skip
SUITE_EVAL_FLAGS = ("--adapters", "--report_dir", "--base_model", "--data_dir", "--dataset_name", "--protocol")


def _write_runs(path: Path, runs: list[dict[str, Any]]) -> None:
    """Merge into runs.json by id, so several tables can share one output folder."""
    old = json.loads(path.read_text()) if path.is_file() else []
    ids = {r["id"] for r in runs}
    atomic_write_text(path, json.dumps([r for r in old if r["id"] not in ids] + runs, indent=1))


def main(argv: list[str] | None = None) -> int:
    opts = parse(argv)
    if opts.list_methods:
        print(published_markdown(list(SUITES)))
        return 0
    out = Path(opts.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    runs = plan(opts)
    mine = shard(runs, opts.shard_index, opts.shard_count)
    if opts.dry_run:
        _write_runs(out / "runs.json", runs)
        step = opts.step_seconds
        if step is None and opts.measure_steps and mine:
            step = measure_step_seconds(next(r for r in mine if r["kind"] == "train"), opts.measure_steps)
        est = estimate(runs, step, opts.eval_images_per_second)
        print(f"{opts.table}: {len(runs)} runs ({len(mine)} in shard {opts.shard}); written to {out / 'runs.json'}")
        print("estimate: " + json.dumps(est))
        if opts.method != DEFAULT_METHOD:
            for method in opts.methods:
                print(
                    f"{method}: {sum(r['method'] == method for r in runs)} runs ({get_suite(method).configs[KINDS[opts.table]]})"
                )
            for method in opts.methods_without_config:
                print(f"{method}: no {KINDS[opts.table]} config, not planned")
        return 0
    failed: list[str] = []
    if not opts.aggregate_only:
        ran, skipped, failed = execute(mine, out / "logs")
        print(f"shard {opts.shard}: {len(ran)} ran, {len(skipped)} already finished, {len(failed)} failed")
    for method in opts.methods:
        rows, text = aggregate([r for r in runs if r["method"] == method], opts.table, method)
        folder = out if method == DEFAULT_METHOD else out / method
        folder.mkdir(parents=True, exist_ok=True)
        atomic_write_text(folder / f"{opts.table}_table.json", json.dumps(rows, indent=1))
        atomic_write_text(folder / f"{opts.table}_table.md", text)
        print(text)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
