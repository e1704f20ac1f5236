"""Evaluation of the paper's protocols (docs/method.md §6): base / new accuracy and their harmonic mean, DG
target-domain accuracy, per-seed results and their aggregate (mean ± std) as JSON and Markdown.

Metrics go through `evaluate` modules shipped in the package (`metaprompt_hf/metrics/*`) and loaded by path,
since Hub metrics cannot be fetched offline.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import statistics
import tempfile
from collections import defaultdict
from collections.abc import Mapping, Sequence
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from tqdm.auto import tqdm

from .batches import ImageDataset, collate
from .data import DataError

if TYPE_CHECKING:
    from .protocols import EvalSet

logger = logging.getLogger(__name__)

METRICS_DIR = Path(__file__).resolve().parent / "metrics"


@cache
def load_metric(name: str) -> Any:
    """An `evaluate` metric shipped with the package ("accuracy" or "harmonic_mean"), built from its script.

    Not through `evaluate.load(path)`, which copies the script into `$HF_HOME/modules` and keeps lock files in
    `$HF_HOME/metrics`: a read-only shared `HF_HOME` would fail evaluation. Scores are kept in memory; the only
    thing written is the metric's empty cache folder, under `HF_METRICS_CACHE` when the user sets it, else the
    temporary folder (`TMPDIR`)."""
    import importlib.util

    import evaluate

    path = METRICS_DIR / name / f"{name}.py"
    if not path.is_file():
        raise ValueError(f"metric: no shipped metric {name!r} under {METRICS_DIR}")
    spec = importlib.util.spec_from_file_location(f"metaprompt_hf_metric_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    (metric_class,) = (
        v
        for v in vars(module).values()
        if isinstance(v, type) and issubclass(v, evaluate.EvaluationModule) and v.__module__ == module.__name__
    )
    cache_dir = os.environ.get("HF_METRICS_CACHE") or os.path.join(tempfile.gettempdir(), "metaprompt_hf-metrics")
    return metric_class(keep_in_memory=True, cache_dir=cache_dir)


def harmonic_mean(base: float, new: float) -> float:
    """HM = 2·B·N / (B + N) (docs/method.md §6.1)."""
    return float(load_metric("harmonic_mean").compute(base=[base], new=[new])["harmonic_mean"])


@torch.no_grad()
def evaluate_set(
    model: Any,
    eval_set: EvalSet,
    image_processor: Any,
    *,
    accelerator: Any | None = None,
    batch_size: int = 100,
    logits: str = "logits",
    num_workers: int = 0,
    templates: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Top-1 accuracy (percent) of `model` on `eval_set` among its classes.

    Args:
        model: a `MetaPromptModel` (unwrapped).
        logits: which output to score: "logits" (z^o for MetaPrompt, s<x̃,t> for IVLP/CoOp) or "logits_zero_shot".
        templates: templates of the frozen branch for this evaluation (default: the adapter's own).
        accelerator: when given, the images are sharded over processes and gathered (`gather_for_metrics`).

    Returns:
        {"accuracy": %, "n": images scored, "skipped": unreadable images}.
    """
    dataset = ImageDataset(eval_set.rows, eval_set.labels, None, image_processor)
    loader = torch.utils.data.DataLoader(
        dataset, batch_size=batch_size, shuffle=False, collate_fn=collate, num_workers=num_workers
    )
    if accelerator is not None:
        loader = accelerator.prepare_data_loader(loader)
    was_training = model.training
    model.eval()
    predictions, references, skipped = [], [], 0
    # A fresh context per batch: `accelerator.autocast()` is a generator-based context manager, usable only once.
    autocast = accelerator.autocast if accelerator is not None else contextlib.nullcontext
    try:
        # A progress bar on the main process of a training/evaluation run (none for library calls without one).
        show = accelerator is not None and accelerator.is_local_main_process
        for batch in tqdm(loader, desc="evaluating", disable=not show, leave=False):
            skipped += len(batch["corrupt"])
            if batch["labels"].numel() == 0:
                pred = batch["labels"]
            else:
                with autocast():
                    out = model(
                        batch["pixel_values"],
                        eval_set.class_names,
                        return_zero_shot=logits == "logits_zero_shot",
                        templates=templates,
                    )
                pred = getattr(out, logits).argmax(-1)
            labels = batch["labels"].to(pred.device)
            if accelerator is not None:
                pred, labels = accelerator.gather_for_metrics((pred, labels))
            predictions.append(pred.cpu())
            references.append(labels.cpu())
    finally:
        model.train(was_training)
    if accelerator is not None:
        skipped = int(accelerator.reduce(torch.tensor(skipped, device=accelerator.device), "sum").item())
    preds = torch.cat(predictions).tolist() if predictions else []
    refs = torch.cat(references).tolist() if references else []
    if skipped:
        logger.warning("evaluation skipped %d unreadable image(s)", skipped)
    if not refs:  # an accuracy over nothing is NaN: say why instead
        raise DataError(f"evaluation: none of the {len(eval_set.labels)} images of the set could be read")
    # The shipped metric returns a fraction (evaluate's convention); results are in percent, as in the paper.
    accuracy = 100.0 * load_metric("accuracy").compute(predictions=preds, references=refs)["accuracy"]
    return {"accuracy": accuracy, "n": len(preds), "skipped": skipped}


def aggregate(results: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Mean ± sample std over seeds, per (method, protocol, dataset, target domain).

    Base-to-new rows report mean base, mean new and HM(mean B, mean N) — the README convention of the reference
    (docs/method.md §6.1) — plus the mean of per-seed HMs.
    """
    groups: dict[tuple, list[Mapping[str, Any]]] = defaultdict(list)
    for r in results:
        key = (r.get("method", "metaprompt"), r["protocol"], r.get("dataset", ""), r.get("target_domain"))
        groups[key].append(r)
    out = []
    for (method, protocol, dataset, target), rows in sorted(groups.items(), key=lambda kv: str(kv[0])):
        entry: dict[str, Any] = {
            "method": method,
            "protocol": protocol,
            "dataset": dataset,
            "seeds": sorted(r.get("seed") for r in rows if r.get("seed") is not None),
            "n_runs": len(rows),
        }
        if protocol == "base2new":
            base = [float(r["base"]) for r in rows]
            new = [float(r["new"]) for r in rows]
            entry.update(
                base=_mean(base),
                new=_mean(new),
                hm=harmonic_mean(_mean(base), _mean(new)),
                mean_of_hms=_mean([float(r["hm"]) for r in rows]),
                std={"base": _std(base), "new": _std(new), "hm": _std([float(r["hm"]) for r in rows])},
            )
        else:
            acc = [float(r["accuracy"]) for r in rows]
            entry.update(target_domain=target, accuracy=_mean(acc), std={"accuracy": _std(acc)})
        out.append(entry)
    return out


def _mean(values: Sequence[float]) -> float:
    return float(statistics.fmean(values)) if values else math.nan


def _std(values: Sequence[float]) -> float:
    return float(statistics.stdev(values)) if len(values) > 1 else 0.0


def markdown_table(rows: Sequence[Mapping[str, Any]]) -> str:
    """Aggregated rows (from `aggregate`) as Markdown tables, one per protocol."""
    lines: list[str] = []
    b2n = [r for r in rows if r["protocol"] == "base2new"]
    dg = [r for r in rows if r["protocol"] != "base2new"]  # accuracy protocols: DG and the transfer protocols
    if b2n:
        lines += ["| method | dataset | seeds | base | new | HM |", "|---|---|---|---|---|---|"]
        for r in b2n:
            s = r["std"]
            lines.append(
                f"| {r['method']} | {r['dataset']} | {r['n_runs']} | {r['base']:.2f} ± {s['base']:.2f} | "
                f"{r['new']:.2f} ± {s['new']:.2f} | {r['hm']:.2f} |"
            )
    if dg:
        if lines:
            lines.append("")
        lines += ["| method | dataset | target domain | seeds | accuracy |", "|---|---|---|---|---|"]
        for r in dg:
            lines.append(
                f"| {r['method']} | {r['dataset']} | {r['target_domain'] or '—'} | {r['n_runs']} | "
                f"{r['accuracy']:.2f} ± {r['std']['accuracy']:.2f} |"
            )
    return "\n".join(lines) + "\n"
