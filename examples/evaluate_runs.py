"""Evaluate MetaPrompt runs and aggregate them over seeds (mean ± std) into JSON and a Markdown table.

(Not named `evaluate.py`: a script of that name beside train.py would shadow the `evaluate` library.)

Aggregate the `results.json` that `examples/train.py` wrote into each run folder:

    python examples/evaluate_runs.py --runs runs/b2n-seed1 runs/b2n-seed2 runs/b2n-seed3 --report_dir runs/report

Or re-evaluate saved adapters on a dataset (any argument of train.py selects the data and protocol):

    python examples/evaluate_runs.py --adapters runs/b2n-seed1 runs/b2n-seed2 --dataset_name path/to/imagefolder \
        --protocol base2new --base_model openai/clip-vit-base-patch16 --report_dir runs/report

Writes `per_seed.json` (every run), `aggregate.json` and `results.md` into --report_dir. Base-to-new rows give
mean base, mean new and HM(mean B, mean N), plus the mean of per-seed HMs (docs/method.md §6.1).
"""

import argparse
import os
import sys

from metaprompt_hf.evaluation import aggregate, markdown_table
from metaprompt_hf.hub.card import load_results
from metaprompt_hf.hub.results import report_of
from metaprompt_hf.protocols import PROTOCOLS
from metaprompt_hf.training import evaluate_adapter, parse_args
from metaprompt_hf.utils import atomic_write_json, atomic_write_text


def read_runs(runs: list[str]) -> tuple[list[dict], list[str]]:
    """The entries of every run's results.json, and one message per run folder that cannot be used (naming it):
    missing, not standard JSON, not a list of result entries, with a missing or non-finite metric, or from a run
    that diverged."""
    results, problems = [], []
    for run in runs:
        path = os.path.join(run, "results.json")
        if not os.path.isdir(run):
            problems.append(f"{run}: no such run folder")
            continue
        if not os.path.isfile(path):
            problems.append(f"{run}: no results.json (was the run finished?)")
            continue
        try:
            entries = load_results(path)
        except (OSError, ValueError) as err:  # unreadable, not JSON, not UTF-8, NaN, or not result entries
            problems.append(str(err) if path in str(err) else f"{path}: {err}")
            continue
        if not entries:
            problems.append(f"{path}: holds no result entries")
        for i, entry in enumerate(entries):
            if entry["protocol"] not in PROTOCOLS:  # aggregating runs is the protocol's
                problems.append(f"{path}: entry {i}: protocol {entry['protocol']!r} is not one of {list(PROTOCOLS)}")
                continue
            missing = [k for k in report_of(entry).metric_keys if k not in entry]
            if missing:
                problems.append(f"{path}: entry {i} ({entry['protocol']}) lacks {missing}")
            if entry.get("diverged"):  # recorded by training: its numbers are not a result to average
                problems.append(f"{path}: entry {i} is from a run that diverged ({entry['diverged']})")
        results.extend(entries)
    return results, problems


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], add_help=True)
    parser.add_argument("--runs", nargs="*", default=[], help="run folders holding results.json")
    parser.add_argument("--adapters", nargs="*", default=[], help="adapter folders to (re-)evaluate")
    parser.add_argument("--report_dir", required=True, help="where per_seed.json, aggregate.json, results.md go")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing report")
    own, rest = parser.parse_known_args(argv)
    if not own.runs and not own.adapters:
        parser.error("give --runs and/or --adapters")
    # The other arguments configure the evaluation of --adapters; without adapters they would be ignored, and an
    # --output_dir would lose to --report_dir.
    if rest and not own.adapters:
        parser.error(f"{rest[0]}: evaluation arguments apply to --adapters only; --runs are read as they are")
    if any(a.split("=", 1)[0] == "--output_dir" for a in rest):
        parser.error("--output_dir: the report goes to --report_dir")
    report = [os.path.join(own.report_dir, n) for n in ("per_seed.json", "aggregate.json", "results.md")]
    if not own.overwrite and any(os.path.exists(p) for p in report):
        print(f"error: {own.report_dir} already holds a report; pass --overwrite", file=sys.stderr)
        return 2
    results, problems = read_runs(own.runs)
    if problems:
        for problem in problems:
            print(f"error: {problem}", file=sys.stderr)
        print(f"error: {len(problems)} run folder(s) refused; nothing was written", file=sys.stderr)
        return 2
    if own.adapters:
        try:
            args = parse_args([*rest, "--output_dir", own.report_dir])
        except (ValueError, OSError) as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
        for adapter in own.adapters:
            entry = evaluate_adapter(args, adapter)
            entry["adapter"] = adapter
            results.append(entry)
    rows = aggregate(results)
    os.makedirs(own.report_dir, exist_ok=True)
    atomic_write_json(report[0], results)
    atomic_write_json(report[1], rows)
    table = markdown_table(rows)
    atomic_write_text(report[2], table)
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
