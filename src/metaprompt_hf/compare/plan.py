"""The comparison's plan: one run per (method, seed), each identified by a digest of its configuration and data;
the checks made before any training (the dataset holds enough images for `--shots` at every seed, the output
folder holds no other comparison); the printed plan with an estimate from one measured step per method.

Run folders are `<output_dir>/runs/<method>/seed-<seed>/`, ordinary training output folders. A run is finished
when its marker `compare_run.json` (written atomically, last) carries the digest of the run asked for now.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..data.loading import DataError, ImageClassificationData
from ..protocols import get_protocol, load_protocol_data
from ..protocols.run import load_dataset_for
from ..training.arguments import MetaPromptTrainingArguments
from .arguments import CompareSetup
from .processes import process_state

MARKER = "compare_run.json"
MANIFEST = "comparison_plan.json"
# Training arguments that change neither the trained prompts nor the scores: left out of the digests.
NOT_IN_DIGEST = {
    "output_dir",
    "overwrite_output_dir",
    "logging_steps",
    "report_to",
    "push_to_hub",
    "hub_model_id",
    "hub_private_repo",
    "hub_token",
    "dataloader_num_workers",
    "checkpointing_steps",
    "checkpoints_total_limit",
    "resume_from_checkpoint",
    "cache_dir",
    "per_device_eval_batch_size",
    "disable_tqdm",
    "class_chunk_size",
}
# What makes two output folders the same comparison (the rest may change between invocations: its runs re-run).
IDENTITY_KEYS = (
    "dataset_name",
    "data_dir",
    "dataset_config_name",
    "train_dir",
    "validation_dir",
    "protocol",
    "target_domain",
    "shots",
    "base_model",
    "eval_split",
)
DATA_PATH_KEYS = ("dataset_name", "data_dir", "train_dir", "validation_dir", "class_names")


def _digest(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


@dataclass
class RunSpec:
    """One training run of the comparison.

    Attributes:
        method, seed: what it trains.
        args: its complete training arguments (output_dir = `folder`).
        config_digest: the method's configuration and the data, the same for every seed.
        digest: `config_digest` with the seed and its few-shot sample: the run's identity on disk.
        steps: optimizer steps it will take (0 for a method without prompts).
        kind: "run" (the comparison, on the evaluation split) or "tune" (a validation trial of `--tune`).
    """

    method: str
    seed: int
    args: MetaPromptTrainingArguments
    config_digest: str
    digest: str
    steps: int
    kind: str = "run"

    @property
    def folder(self) -> Path:
        return Path(self.args.output_dir)

    def finished(self) -> dict[str, Any] | None:
        """The run's marker when it finished with this configuration and data, else None."""
        marker = self.folder / MARKER
        if not marker.is_file():
            return None
        record = json.loads(marker.read_text(encoding="utf-8"))
        return record if record.get("digest") == self.digest else None


@dataclass
class Preflight:
    """The data loaded once, and per seed the few-shot sample and training-set size every method will get."""

    data: ImageClassificationData
    fingerprint: str
    fewshot: dict[int, dict[str, Any]]
    train_sizes: dict[int, int]


def run_arguments(
    setup: CompareSetup, method: str, seed: int, folder: Path, **overrides: Any
) -> MetaPromptTrainingArguments:
    """The training arguments of one run: the common values, the method's `--config_dir` file, then `overrides`
    (tuned values). Raises `ValueError` naming the field, as `examples/train.py` does."""
    values = setup.values | setup.method_values.get(method, {}) | overrides
    values |= {"method": method, "seed": seed, "output_dir": str(folder), "overwrite_output_dir": False}
    return MetaPromptTrainingArguments(**values)


def config_digest(args: MetaPromptTrainingArguments, fingerprint: str) -> str:
    """The digest of a method's configuration (every result-changing argument but the seed) and the data."""
    values = {k: v for k, v in dataclasses.asdict(args).items() if k not in NOT_IN_DIGEST | {"seed"}}
    return _digest({"args": values, "data": fingerprint})


def data_fingerprint(setup: CompareSetup, data: ImageClassificationData) -> str:
    """The data's identity: its names, its splits' sizes and classes, and for local paths every file's relative
    path and size (a changed folder re-runs the runs made on the old one)."""
    files = {}
    for key in DATA_PATH_KEYS:
        path = setup.values.get(key)
        if path and os.path.isdir(path):
            h = hashlib.sha256()
            for root, dirs, names in os.walk(path):
                dirs.sort()
                for name in sorted(names):
                    full = os.path.join(root, name)
                    h.update(f"{os.path.relpath(full, path)}\0{os.path.getsize(full)}\n".encode())
            files[key] = h.hexdigest()
        elif path and os.path.isfile(path):
            files[key] = hashlib.sha256(Path(path).read_bytes()).hexdigest()
    return _digest(
        {
            "names": {k: setup.values.get(k) for k in IDENTITY_KEYS},
            "files": files,
            "splits": {name: len(split) for name, split in data.splits.items()},
            "classes": data.class_names,
            "domains": data.domain_names,
        }
    )


def preflight(setup: CompareSetup, args: MetaPromptTrainingArguments, tune: bool) -> Preflight:
    """Load the data once and draw every seed's few-shot sample the way a training run does (`DataError` as
    `examples/train.py` reports it: too few images for `--shots`, a missing split, ...), before any training."""
    with process_state().main_process_first():
        data = load_dataset_for(args)
    if tune and "validation" not in data.splits:
        raise DataError(
            f"tune: {data.name} has no 'validation' split to choose hyperparameters on (it has {sorted(data.splits)}); "
            "tuning never uses the evaluation split, so run without --tune or give the dataset a validation split"
        )
    fewshot, sizes = {}, {}
    for seed in setup.options.seed_list:
        _, proto = load_protocol_data(dataclasses.replace(args, seed=seed), data)
        if proto.train_rows is None:
            raise DataError(f"dataset_name: {data.name} has no {args.train_split!r} split to train on")
        fewshot[seed] = {"rows": proto.fewshot.get("rows")}
        sizes[seed] = len(proto.train_labels)
    return Preflight(data, data_fingerprint(setup, data), fewshot, sizes)


def planned_steps(args: MetaPromptTrainingArguments, train_size: int, num_processes: int) -> int:
    """Optimizer steps of a run, as `training.loop.train_loop` counts them."""
    if not args.build_method().trains:
        return 0
    if args.max_steps > 0:
        return args.max_steps
    batches = math.ceil(train_size / (args.per_device_train_batch_size * num_processes))
    return args.num_train_epochs * max(1, math.ceil(batches / args.gradient_accumulation_steps))


def make_spec(
    setup: CompareSetup,
    pre: Preflight,
    method: str,
    seed: int,
    folder: Path,
    num_processes: int,
    kind: str = "run",
    **overrides: Any,
) -> RunSpec:
    args = run_arguments(setup, method, seed, folder, **overrides)
    cdigest = config_digest(args, pre.fingerprint)
    digest = _digest({"config": cdigest, "seed": seed, "fewshot": pre.fewshot[seed], "kind": kind})
    return RunSpec(
        method, seed, args, cdigest, digest, planned_steps(args, pre.train_sizes[seed], num_processes), kind
    )


# ---------------------------------------------------------------------------------------------------- output folder
def identity(setup: CompareSetup) -> dict[str, Any]:
    return {k: setup.values.get(k) for k in IDENTITY_KEYS}


def check_output_dir(setup: CompareSetup) -> bool:
    """Refuse an output folder that holds another comparison, or other files, unless `--overwrite_output_dir`.
    Returns whether another comparison is to be replaced (`clear_output_dir`, once the plan is printed). Raises
    `DataError` naming the folder."""
    out = setup.output_dir
    if out.exists() and not out.is_dir():
        raise DataError(f"output_dir: {out} exists and is not a folder")
    if not out.is_dir() or not any(out.iterdir()):
        return False
    manifest = out / MANIFEST
    if not manifest.is_file():
        if setup.values["overwrite_output_dir"]:
            return False
        raise DataError(
            f"output_dir: {out} is not empty and holds no comparison ({MANIFEST} is missing); pass a new "
            "--output_dir, or --overwrite_output_dir to write the comparison into it"
        )
    theirs = json.loads(manifest.read_text(encoding="utf-8")).get("identity", {})
    mine = identity(setup)
    if theirs == mine:
        return False  # the same comparison: resume it
    if not setup.values["overwrite_output_dir"]:
        differ = {k: (theirs.get(k), mine[k]) for k in mine if theirs.get(k) != mine[k]}
        raise DataError(
            f"output_dir: {out} holds another comparison's runs (differs in {', '.join(differ)}: "
            + "; ".join(f"{k} {a!r} there, {b!r} now" for k, (a, b) in differ.items())
            + "). Re-run that comparison's own command to resume it, pass a new --output_dir, or pass "
            "--overwrite_output_dir to replace it"
        )
    return True


def clear_output_dir(setup: CompareSetup) -> None:
    """Remove another comparison's runs, trials and reports (`--overwrite_output_dir`); other files stay."""
    out = setup.output_dir
    for name in ("runs", "tune"):
        shutil.rmtree(out / name, ignore_errors=True)
    for name in (MANIFEST, "comparison.json", "comparison.md", "comparison.png", "tuning.json"):
        (out / name).unlink(missing_ok=True)


def write_manifest(setup: CompareSetup) -> None:
    from ..utils import atomic_write_json

    setup.output_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_json(setup.output_dir / MANIFEST, {"identity": identity(setup), "command": setup.command})


# ---------------------------------------------------------------------------------------------------- the plan
def describe_plan(
    setup: CompareSetup, specs: list[RunSpec], step_seconds: dict[str, float], tune_specs: int = 0
) -> list[str]:
    """The printed plan: runs (methods × seeds), how many are finished already, and the estimated training time."""
    opts = setup.options
    todo = [s for s in specs if s.finished() is None]
    metric = "HM" if "hm" in get_protocol(setup.values["protocol"]).metric_keys else "accuracy"
    lines = [
        f"Plan: {len(opts.method_names)} methods × {opts.seeds} seeds = {len(specs)} runs on {setup.values['dataset_name']}"
        f" ({setup.values['protocol']}, {setup.values['shots']} shots, ranked by {metric}) in {setup.output_dir}",
        f"  methods: {', '.join(opts.method_names)}; seeds: {opts.seed_list}; "
        + ("hyperparameters tuned on the validation split" if opts.tune else "each method's default hyperparameters"),
        f"  {len(specs) - len(todo)} runs finished already (kept), {len(todo)} to run"
        + (f", after {tune_specs} validation trials of --tune" if tune_specs else ""),
    ]
    if step_seconds:
        seconds = sum(step_seconds.get(s.method, 0.0) * s.steps for s in todo)
        per_step = ", ".join(f"{m} {t:.3g} s" for m, t in step_seconds.items())
        lines.append(
            f"  estimate: about {_duration(seconds)} of training steps (measured steps per method: {per_step}); "
            "loading and evaluation come on top"
        )
    return lines


def _duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.1f} min"
