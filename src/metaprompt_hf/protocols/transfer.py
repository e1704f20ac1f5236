"""Transfer protocols: train on every class of a source dataset (ImageNet, 16 shots), then score the same adapter
on other datasets among all their classes, each with its own templates (docs/method.md §6).

- cross-dataset: ImageNet → Caltech101, OxfordPets, StanfordCars, Flowers102, Food101, FGVCAircraft, SUN397, DTD,
  EuroSAT, UCF101 (the CoCoOp protocol);
- ImageNet shift: ImageNet → ImageNet-V2, -Sketch, -A, -R, A and R among their 200 classes.

The same module serves the training run (a dataset with a train split: shots per class over all classes) and the
evaluation runs (a test-only dataset, or any dataset evaluated with a saved adapter).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np

from ..data.loading import DataError, ImageClassificationData
from ..hub.results import Metric, Report
from ..inputs.templates import dataset_key
from ..scoring import evaluate_set
from .base import EvalSet, Protocol, ProtocolData, cap, check_common, class_groups, eval_rows, sample_shots

logger = logging.getLogger(__name__)


class CrossDatasetProtocol(Protocol):
    name = "cross_dataset"
    # No section of the model card's tables (the numbers go to its model-index, the metric config naming the
    # protocol); `examples/evaluate_runs.py` tabulates them.
    report = Report(metrics=(Metric("accuracy", "accuracy", "accuracy", "{protocol}", "Accuracy ({protocol})"),))
    default_tokens = 2
    meta_prompts = "text"
    target_templates = True
    source_dataset: ClassVar[str] = "imagenet"
    target_datasets: ClassVar[tuple[str, ...]] = (
        "caltech101",
        "oxford_pets",
        "stanford_cars",
        "oxford_flowers",
        "food101",
        "fgvc_aircraft",
        "sun397",
        "dtd",
        "eurosat",
        "ucf101",
    )

    def prepare(
        self,
        data: ImageClassificationData,
        *,
        shots: int,
        seed: int,
        train_split: str = "train",
        eval_split: str = "test",
        target_domain: str | None = None,
        allow_fewer_shots: bool = False,
        max_eval_samples: int | None = None,
    ) -> ProtocolData:
        """`shots` images per class over ALL classes of `train_split` (none for a test-only dataset); every
        `eval_split` image is evaluated among all classes."""
        names = data.class_names
        chosen: list[int] = []
        corrupt: list[str] = []
        train_rows, train_labels = None, []
        if train_split in data.splits:
            check_common(data, shots, train_split)
            train = data.splits[train_split]
            labels = np.asarray(train["label"])
            groups = class_groups(labels, range(len(names)))
            absent = [names[c] for c in range(len(names)) if (c,) not in groups]
            if absent:
                raise DataError(f"shots: class(es) {absent[:10]} have no images in split {train_split!r}")
            chosen, corrupt = sample_shots(
                train, groups, shots, seed, allow_fewer_shots, lambda k: f"class {names[k[0]]!r}"
            )
            train_rows, train_labels = train.select(chosen), [int(labels[i]) for i in chosen]
            rows_all, eval_indices = eval_rows(data, eval_split, train_split, chosen)
        elif eval_split in data.splits:
            logger.info("%s has no %r split: evaluation only", data.name, train_split)
            rows_all, eval_indices = data.splits[eval_split], eval_split
        else:
            raise DataError(
                f"eval_split: {data.name} has neither {train_split!r} nor {eval_split!r}; it has {sorted(data.splits)}"
            )
        # The source's own classes (trained on): a dataset with a train split that is the protocol's source, as the
        # official MMRL test() tells its source (ImageNet) from the targets by name (docs/methods/mmrl.md).
        seen = train_rows is not None and dataset_key(data.name) == dataset_key(self.source_dataset)
        idx = cap(list(range(len(rows_all))), max_eval_samples, seed)
        rows = rows_all.select(idx) if len(idx) != len(rows_all) else rows_all
        return ProtocolData(
            train_rows=train_rows,
            train_labels=train_labels,
            train_domains=None,
            train_class_names=list(names),
            eval_sets={"all": EvalSet(rows, list(names), [int(x) for x in rows["label"]], seen_classes=seen)},
            fewshot={
                "split": train_split,
                "protocol": self.name,
                "seed": seed,
                "shots": shots,
                "rows": chosen,
                "eval_split": eval_indices,
            },
            skipped_corrupt=corrupt,
        )

    def evaluate(
        self, model: Any, proto: ProtocolData, data: ImageClassificationData, image_processor: Any, **kw: Any
    ) -> dict[str, Any]:
        result = evaluate_set(model, proto.eval_sets["all"], image_processor, **kw)
        return {
            "accuracy": result["accuracy"],
            "n_images": result["n"],
            "n_classes": len(proto.eval_sets["all"].class_names),
            "skipped_images": result["skipped"],
        }

    def describe(self, entry: Mapping[str, Any]) -> str:
        return f"Accuracy {entry['accuracy']:.2f} ({entry.get('n_classes', '?')} classes)"


class ImageNetShiftProtocol(CrossDatasetProtocol):
    name = "imagenet_shift"
    target_datasets = ("imagenet_v2", "imagenet_sketch", "imagenet_a", "imagenet_r")
