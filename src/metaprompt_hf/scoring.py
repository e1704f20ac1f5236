"""Scoring a model on one evaluation set (docs/method.md §6): top-1 accuracy among the set's classes, the
building block of every protocol's `evaluate`. Aggregating runs is `protocols/report.py`'s.

Metrics go through `evaluate` modules shipped in the package (`metaprompt_hf/metrics/*`), built from their scripts,
since Hub metrics cannot be fetched offline (and a read-only `HF_HOME` must work).
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
from collections.abc import Sequence
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from tqdm.auto import tqdm

from .data.batches import ImageDataset, collate
from .data.loading import DataError
from .modeling.heads import seen_classes

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
    """Top-1 accuracy (percent) of `model` on `eval_set` among its classes (inside `heads.seen_classes()` when the
    set's classes are the ones trained on).

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
                with autocast(), seen_classes(eval_set.seen_classes):
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
