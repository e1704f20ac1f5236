"""The comparison's command line: every flag of `examples/train.py` (read by `training.arguments`, applied to every
method alike) plus the comparison's own (`CompareArguments`), and the per-method YAML files of `--config_dir`.

The training values are kept as given (`training.arguments.parse_arg_values`), not resolved: the defaults that
depend on the method (β of a meta variant, the embedded model's learning rate) are resolved once per method when
`plan.run_arguments` builds that method's `MetaPromptTrainingArguments`.
"""

from __future__ import annotations

import dataclasses
import os
import shlex
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..methods import METHODS
from ..training.arguments import TrainingArguments, parse_arg_values, read_arguments_yaml

DEFAULT_OUTPUT_DIR = "outputs/compare"
# Flags of examples/train.py that name one run; the comparison sets them per run.
PER_RUN_FLAGS = {
    "--method": "--methods a,b,c",
    "--seed": "--seeds N (the seeds are 1..N)",
    "--push_to_hub": "--push_best_to_hub REPO",
    "--resume_from_checkpoint": "re-running the same command (finished runs are kept, the others re-run)",
}
# Keys a --config_dir file may not set: the comparison sets them per run or once for all methods.
SHARED_KEYS = {"method", "seed", "output_dir", "overwrite_output_dir", "push_to_hub", "resume_from_checkpoint"}
SHARED_KEYS |= {"dataset_name", "data_dir", "protocol", "target_domain", "shots", "base_model", "eval_split"}


def _help(text: str, **kw: Any) -> Any:
    return field(metadata={"help": text}, **kw)


@dataclass
class CompareArguments:
    """The comparison's own flags."""

    _argument_group_name = "comparison"

    methods: str | None = _help(
        "Comma-separated methods to compare; default every registered one (" + ", ".join(METHODS) + ").",
        default=None,
    )
    seeds: int = _help("Seeds 1..N, paired across methods (same few-shot sample and seed); at least 2.", default=5)
    tune: bool = _help(
        "Choose each method's learning rate (and β of the meta variants) on the validation split, same grid and "
        "budget for every method; without it every method runs with its defaults.",
        default=False,
    )
    tune_lr_factors: str = _help(
        "--tune: learning rates tried, as factors of the method's default learning rate.", default="0.25,1,4"
    )
    tune_meta_steps: str = _help("--tune: β values tried for the methods with a meta step.", default="0.2,1,5")
    dry_run: bool = _help("Print the plan (runs and an estimate from one measured step) and stop.", default=False)
    push_best_to_hub: str | None = _help(
        "Hub repo to push the best method's adapter (median seed) to, with a card holding the comparison.",
        default=None,
    )
    config_dir: str | None = _help(
        "A folder of <method>.yaml files: training arguments of that method (e.g. its learning rate) on top of "
        "the common ones; a method without a file uses its defaults.",
        default=None,
    )

    def __post_init__(self) -> None:
        if self.seeds < 2:
            raise ValueError(
                f"seeds: a 95% interval needs at least two seeds, got --seeds {self.seeds}; use --seeds 2 or more "
                "(5 by default)"
            )
        for name in self.method_names:
            if name not in METHODS:
                raise ValueError(f"methods: unknown method {name!r}; the known methods are {list(METHODS)}")
        if len(set(self.method_names)) != len(self.method_names):
            raise ValueError(f"methods: a method is listed twice in {self.methods!r}")
        if len(self.method_names) < 2:
            raise ValueError(f"methods: a comparison needs at least two methods, got {self.methods!r}")
        if not self.lr_factors or min(self.lr_factors) <= 0:
            raise ValueError(f"tune_lr_factors: expected positive numbers, got {self.tune_lr_factors!r}")
        if not self.meta_steps or min(self.meta_steps) < 0:
            raise ValueError(f"tune_meta_steps: expected numbers >= 0, got {self.tune_meta_steps!r}")
        if self.config_dir is not None and not os.path.isdir(self.config_dir):
            raise FileNotFoundError(f"config_dir: no such folder {self.config_dir}")

    @property
    def method_names(self) -> list[str]:
        if self.methods is None:
            return list(METHODS)
        return [m.strip() for m in self.methods.split(",") if m.strip()]

    @property
    def seed_list(self) -> list[int]:
        return list(range(1, self.seeds + 1))

    @property
    def lr_factors(self) -> list[float]:
        return _floats(self.tune_lr_factors, "tune_lr_factors")

    @property
    def meta_steps(self) -> list[float]:
        return _floats(self.tune_meta_steps, "tune_meta_steps")


def _floats(text: str, name: str) -> list[float]:
    try:
        return [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ValueError(f"{name}: expected numbers separated by commas, got {text!r}") from None


@dataclass
class CompareSetup:
    """What the command line asked for: the common training values (unresolved), the comparison's flags, each
    method's own values from `--config_dir`, and the command as typed (for the report)."""

    values: dict[str, Any]
    options: CompareArguments
    method_values: dict[str, dict[str, Any]]
    command: str

    @property
    def output_dir(self) -> Path:
        return Path(self.values["output_dir"])


def parse_compare_args(argv: Sequence[str]) -> CompareSetup:
    """Read the command line; raises `ValueError` / `FileNotFoundError` naming the flag, file or key."""
    argv = list(argv)
    for token in argv:
        flag = token.split("=", 1)[0]
        if flag in PER_RUN_FLAGS:
            raise ValueError(f"{flag[2:]}: the comparison sets it per run; use {PER_RUN_FLAGS[flag]}")
    values, (options,) = parse_arg_values(argv, [CompareArguments])
    if not values["do_eval"]:
        raise ValueError("do_eval: the comparison scores every run, so --do_eval False would leave nothing to rank")
    default_out = next(f.default for f in dataclasses.fields(TrainingArguments) if f.name == "output_dir")
    if values["output_dir"] == default_out:
        values["output_dir"] = DEFAULT_OUTPUT_DIR
    values["disable_tqdm"] = True  # one overall bar (runs.py) instead of one per run
    method_values = {m: _method_file(options.config_dir, m) for m in options.method_names}
    if options.config_dir is not None:
        for path in sorted(Path(options.config_dir).glob("*.y*ml")):
            if path.stem not in METHODS:
                raise ValueError(f"config_dir: {path} names no method; the known methods are {list(METHODS)}")
    return CompareSetup(values, options, method_values, "python -m metaprompt_hf.compare " + shlex.join(argv))


def _method_file(config_dir: str | None, method: str) -> dict[str, Any]:
    """`<config_dir>/<method>.yaml` as a mapping of training arguments (empty without one)."""
    if config_dir is None:
        return {}
    candidates = [Path(config_dir, f"{method}{ext}") for ext in (".yaml", ".yml")]
    path = next((p for p in candidates if p.is_file()), None)
    if path is None:
        return {}
    values = read_arguments_yaml(path, "config_dir")
    shared = sorted(set(values) & SHARED_KEYS)
    if shared:
        raise ValueError(f"config_dir: {path} sets {shared}, which the comparison sets for every method alike")
    return values
