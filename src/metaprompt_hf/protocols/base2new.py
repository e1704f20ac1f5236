"""Base-to-new generalisation (docs/method.md §6.1): train on the first half of the classes, report accuracy on
base classes among base classes, on new classes among new classes, and their harmonic mean."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ..data.loading import DataError, ImageClassificationData
from ..hub.results import Metric, Report, combine_runs, harmonic_mean, mean, sample_std
from ..scoring import evaluate_set
from .base import (
    EvalSet,
    Protocol,
    ProtocolData,
    cap,
    check_common,
    class_groups,
    eval_rows,
    run_identity,
    sample_shots,
)


def base_new_split(num_classes: int) -> tuple[list[int], list[int]]:
    """The paper's split rule (docs/method.md §6.1, `subsample_classes`): sorted label ids, the first ceil(C/2) are
    base, the rest new."""
    m = math.ceil(num_classes / 2)
    return list(range(m)), list(range(m, num_classes))


class Base2NewProtocol(Protocol):
    name = "base2new"
    report = Report(
        metrics=(
            Metric("base", "base", "accuracy", "base-classes", "Base accuracy"),
            Metric("new", "new", "accuracy", "new-classes", "New accuracy"),
            # Over seeds, the HM of the mean base and mean new accuracy, as the paper's tables (§6.1).
            Metric(
                "hm",
                "HM",
                "harmonic_mean",
                "base-new",
                "Harmonic mean of base and new accuracy",
                of_means=("harmonic_mean", ("base", "new")),
            ),
        ),
        section="Base-to-new generalisation",
        about=(
            "Trained on the base half of each dataset's classes; evaluated among base classes (Base) and, with the "
            "same\nprompts, among the unseen new classes (New). HM = 2·B·N/(B+N). Accuracy in %."
        ),
        means_note=(
            "Means are over runs (seeds); the HM of a mean row is the HM of the mean base and new accuracies, as in "
            "the paper."
        ),
    )
    default_tokens = 2
    meta_prompts = "text"
    embedded_learning_rate = 0.008  # benchmarks/mini_hparams.json

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
        """`shots` images per base class from `train_split`; base and new evaluation sets from `eval_split`."""
        check_common(data, shots, train_split)
        train = data.splits[train_split]
        labels = np.asarray(train["label"])
        domains = np.asarray(train["domain"]) if "domain" in train.column_names else None
        names = data.class_names
        base, new = base_new_split(len(names))
        groups = class_groups(labels, base)
        absent = [names[c] for c in base if (c,) not in groups]
        if absent:
            raise DataError(f"shots: base class(es) {absent} have no images in split {train_split!r}")
        chosen, corrupt = sample_shots(
            train, groups, shots, seed, allow_fewer_shots, lambda k: f"class {names[k[0]]!r}"
        )
        rows_all, eval_indices = eval_rows(data, eval_split, train_split, chosen)
        eval_labels = np.asarray(rows_all["label"])
        eval_sets = {}
        for part, ids in (("base", base), ("new", new)):
            if not ids:
                continue
            idx = cap([int(i) for i in np.nonzero(np.isin(eval_labels, ids))[0]], max_eval_samples, seed)
            rows = rows_all.select(idx)
            remap = {c: i for i, c in enumerate(ids)}
            labels_part = [remap[int(x)] for x in rows["label"]]
            eval_sets[part] = EvalSet(rows, [names[c] for c in ids], labels_part, seen_classes=part == "base")
        return ProtocolData(
            train_rows=train.select(chosen),
            train_labels=[int(labels[i]) for i in chosen],
            train_domains=[int(domains[i]) for i in chosen] if domains is not None else None,
            train_class_names=[names[c] for c in base],
            eval_sets=eval_sets,
            fewshot={
                "split": train_split,
                "protocol": self.name,
                "seed": seed,
                "shots": shots,
                "rows": chosen,
                "base_classes": [names[c] for c in base],
                "new_classes": [names[c] for c in new],
                "eval_split": eval_indices,
            },
            skipped_corrupt=corrupt,
        )

    def evaluate(
        self, model: Any, proto: ProtocolData, data: ImageClassificationData, image_processor: Any, **kw: Any
    ) -> dict[str, Any]:
        base = evaluate_set(model, proto.eval_sets["base"], image_processor, **kw)
        entry: dict[str, Any] = {
            "base": base["accuracy"],
            "n_base_images": base["n"],
            "n_base_classes": len(proto.eval_sets["base"].class_names),
        }
        if "new" in proto.eval_sets:
            new = evaluate_set(model, proto.eval_sets["new"], image_processor, **kw)
            entry |= {
                "new": new["accuracy"],
                "n_new_images": new["n"],
                "n_new_classes": len(proto.eval_sets["new"].class_names),
                "hm": harmonic_mean(base["accuracy"], new["accuracy"]),
            }
            entry["skipped_images"] = base["skipped"] + new["skipped"]
        return entry

    def describe(self, entry: Mapping[str, Any]) -> str:
        if "new" not in entry:
            return f"Base {entry['base']:.2f}"
        return f"Base {entry['base']:.2f} | New {entry['new']:.2f} | HM {entry['hm']:.2f}"

    def aggregate(self, rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        """Mean base, mean new and HM(mean B, mean N) — the README convention of the reference (docs/method.md
        §6.1) — plus the mean of the per-seed HMs, each with its sample std."""
        values = combine_runs(rows, self.report)
        hms = [float(r["hm"]) for r in rows]
        return run_identity(rows) | {
            "base": values["base"],
            "new": values["new"],
            "hm": values["hm"],
            "mean_of_hms": mean(hms),
            "std": {
                "base": sample_std([float(r["base"]) for r in rows]),
                "new": sample_std([float(r["new"]) for r in rows]),
                "hm": sample_std(hms),
            },
        }

    def table_header(self) -> list[str]:
        return ["| method | dataset | seeds | base | new | HM |", "|---|---|---|---|---|---|"]

    def table_row(self, row: Mapping[str, Any]) -> str:
        s = row["std"]
        return (
            f"| {row['method']} | {row['dataset']} | {row['n_runs']} | {row['base']:.2f} ± {s['base']:.2f} | "
            f"{row['new']:.2f} ± {s['new']:.2f} | {row['hm']:.2f} |"
        )
