"""`--tune`: each method's learning rate, then β of the methods with a meta step, chosen on the VALIDATION split
(never the evaluation split; under dg its source domains' images, never the held-out domain's), from the same grids
with the same budget for every method: the learning rates are the same factors of each method's default, one trial
per grid value, on the first seed. The trials are ordinary runs under `<output_dir>/tune/<method>/`, resumable like
the comparison's; the choices go to `tuning.json`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..protocols import get_protocol
from .arguments import CompareSetup
from .plan import Preflight, RunSpec, make_spec, run_arguments
from .runs import run_all

TUNE_SPLIT = "validation"


def _best(scores: dict[float, float]) -> float:
    """The value with the best validation score; ties go to the smaller value."""
    return max(scores, key=lambda v: (scores[v], -v))


def tune_domains(setup: CompareSetup) -> str:
    """What the validation trials score: under a protocol with a held-out domain (dg) the source domains' validation
    images, so that choosing a hyperparameter never looks at the target domain (training-domain validation)."""
    return "sources" if get_protocol(setup.values["protocol"]).needs_target_domain else "target"


def _trial(setup: CompareSetup, pre: Preflight, method: str, tag: str, processes: int, **kw: Any) -> RunSpec:
    seed = setup.options.seed_list[0]
    folder = setup.output_dir / "tune" / method / tag
    kw |= {"eval_split": TUNE_SPLIT, "eval_domains": tune_domains(setup)}
    return make_spec(setup, pre, method, seed, folder, processes, "tune", **kw)


def lr_trials(setup: CompareSetup, pre: Preflight, processes: int) -> dict[str, dict[float, RunSpec]]:
    """Stage 1: the learning-rate grid of every method that trains (at its default β)."""
    trials: dict[str, dict[float, RunSpec]] = {}
    for method in setup.options.method_names:
        default = run_arguments(setup, method, 1, Path("."))
        if not default.build_method().trains:
            continue
        grid = sorted({round(default.learning_rate * f, 10) for f in setup.options.lr_factors})
        trials[method] = {lr: _trial(setup, pre, method, f"lr-{lr:g}", processes, learning_rate=lr) for lr in grid}
    return trials


def tune(setup: CompareSetup, pre: Preflight, processes: int) -> dict[str, Any]:
    """Run the validation trials and return `tuning.json`'s record: per method the chosen values, the grids and
    every trial's validation score. Methods without prompts (zero-shot) have nothing to tune."""
    stage1 = lr_trials(setup, pre, processes)
    specs = [s for grid in stage1.values() for s in grid.values()]
    scores = dict(zip((s.digest for s in specs), run_all(specs, pre.data, desc="tune lr"), strict=True))
    out: dict[str, Any] = {
        "split": TUNE_SPLIT,
        "eval_domains": tune_domains(setup),
        "seed": setup.options.seed_list[0],
        "methods": {},
    }
    stage2: dict[str, dict[float, RunSpec]] = {}
    for method, grid in stage1.items():
        lr_scores = {lr: scores[s.digest]["score"] for lr, s in grid.items()}
        lr = _best(lr_scores)
        chosen = {"learning_rate": lr}
        out["methods"][method] = {"chosen": chosen, "learning_rate": {f"{k:g}": v for k, v in lr_scores.items()}}
        if grid[lr].args.uses_meta_step:
            default_beta = grid[lr].args.meta_step
            stage2[method] = {
                beta: (
                    grid[lr]
                    if beta == default_beta
                    else _trial(
                        setup, pre, method, f"lr-{lr:g}-beta-{beta:g}", processes, learning_rate=lr, meta_step=beta
                    )
                )
                for beta in sorted(set(setup.options.meta_steps) | {default_beta})
            }
    specs = [s for grid in stage2.values() for s in grid.values()]
    scores |= dict(zip((s.digest for s in specs), run_all(specs, pre.data, desc="tune β"), strict=True))
    for method, grid in stage2.items():
        beta_scores = {beta: scores[s.digest]["score"] for beta, s in grid.items()}
        out["methods"][method]["chosen"]["meta_step"] = _best(beta_scores)
        out["methods"][method]["meta_step"] = {f"{k:g}": v for k, v in beta_scores.items()}
    for method, record in out["methods"].items():
        record["trials"] = len(record["learning_rate"]) + len(record.get("meta_step", {})) - (method in stage2)
    out["grids"] = {"learning_rate_factors": setup.options.lr_factors, "meta_step": setup.options.meta_steps}
    return out


def planned_trials(setup: CompareSetup, pre: Preflight, processes: int) -> int:
    """How many validation trials `--tune` runs at most (for the plan)."""
    stage1 = lr_trials(setup, pre, processes)
    n = sum(len(grid) for grid in stage1.values())
    for grid in stage1.values():
        spec = next(iter(grid.values()))
        if spec.args.uses_meta_step:
            n += len(set(setup.options.meta_steps) - {spec.args.meta_step})
    return n
