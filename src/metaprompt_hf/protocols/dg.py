"""Domain generalisation, leave one domain out (docs/method.md §6.2): train on every class of the source domains,
report accuracy on the held-out target domain among all classes."""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Mapping
from typing import Any

import numpy as np

from ..data.loading import DataError, ImageClassificationData
from ..hub.results import Column, Metric, Report
from ..scoring import evaluate_set
from .base import EvalSet, Protocol, ProtocolData, cap, check_common, eval_rows, sample_shots

logger = logging.getLogger(__name__)

#: What a DG run scores: the held-out target domain (the reported metric), or the source domains' images of the
#: evaluation split (training-domain validation: model selection that never sees the target domain).
EVAL_DOMAINS = ("target", "sources")


class DGProtocol(Protocol):
    name = "dg"
    report = Report(
        metrics=(
            Metric(
                "accuracy",
                "accuracy",
                "accuracy",
                "target-domain-{target_domain}",
                "Accuracy on unseen domain {target_domain}",
            ),
        ),
        section="Domain generalisation",
        about="Trained on the source domains; evaluated on a target domain never seen in training. Accuracy in %.",
        columns=(Column("target_domain", "target domain", "target"),),
    )
    default_tokens = 4
    meta_prompts = "vision"  # leave-one-source-domain-out episodes (`base.draw_meta_episodes`)
    embedded_learning_rate = 0.128  # benchmarks/mini_hparams.json
    needs_target_domain = True

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
        eval_domains: str = "target",
    ) -> ProtocolData:
        """`shots` images per class PER SOURCE DOMAIN from `train_split`; every `eval_split` image of
        `target_domain`, among all classes, is evaluated. With `eval_domains="sources"` the source domains'
        `eval_split` images are evaluated instead: training-domain validation, which chooses hyperparameters
        without any image of the held-out domain (docs/method.md §6.2)."""
        if eval_domains not in EVAL_DOMAINS:
            raise DataError(f"eval_domains: expected one of {list(EVAL_DOMAINS)}, got {eval_domains!r}")
        check_common(data, shots, train_split)
        train = data.splits[train_split]
        labels = np.asarray(train["label"])
        domains = np.asarray(train["domain"]) if "domain" in train.column_names else None
        names = data.class_names
        if domains is None or not data.domain_names:
            raise DataError(f"protocol dg: {data.name} has no domain column; DG needs several domains")
        if target_domain is None:
            raise DataError(f"target_domain: required for protocol dg; domains are {data.domain_names}")
        if target_domain not in data.domain_names:
            raise DataError(
                f"target_domain: {target_domain!r} is not a domain of {data.name}; domains are {data.domain_names}"
            )
        target = data.domain_names.index(target_domain)
        sources = sorted({int(d) for d in domains if d != target})
        if len(sources) < 2:
            raise DataError(
                f"protocol dg: leaving {target_domain!r} out leaves {len(sources)} source domain(s) in {train_split!r}; "
                "DG needs at least two"
            )
        groups: dict[tuple, list[int]] = defaultdict(list)
        for row, (lab, dom) in enumerate(zip(labels, domains)):
            if dom != target:
                groups[(int(dom), int(lab))].append(row)
        missing = [
            (data.domain_names[d], names[c]) for d in sources for c in range(len(names)) if (d, c) not in groups
        ]
        if missing:
            logger.info("DG: %d (domain, class) pairs have no images and are skipped: %s", len(missing), missing[:10])
        chosen, corrupt = sample_shots(
            train,
            groups,
            shots,
            seed,
            allow_fewer_shots,
            lambda k: f"class {names[k[1]]!r} in domain {data.domain_names[k[0]]!r}",
        )
        rows_all, eval_indices = eval_rows(data, eval_split, train_split, chosen)
        eval_dom = np.asarray(rows_all["domain"])
        scored = eval_dom == target if eval_domains == "target" else np.isin(eval_dom, sources)
        scored_rows = rows_all.select(cap([int(i) for i in np.nonzero(scored)[0]], max_eval_samples, seed))
        return ProtocolData(
            train_rows=train.select(chosen),
            train_labels=[int(labels[i]) for i in chosen],
            train_domains=[int(domains[i]) for i in chosen],
            train_class_names=list(names),
            eval_sets={eval_domains: EvalSet(scored_rows, list(names), [int(x) for x in scored_rows["label"]])},
            source_domains=sources,
            fewshot={
                "split": train_split,
                "protocol": self.name,
                "target_domain": target_domain,
                "seed": seed,
                "shots": shots,
                "rows": chosen,
                "eval_split": eval_indices,
                "eval_domains": eval_domains,
            },
            skipped_corrupt=corrupt,
        )

    def evaluate(
        self, model: Any, proto: ProtocolData, data: ImageClassificationData, image_processor: Any, **kw: Any
    ) -> dict[str, Any]:
        scored = proto.fewshot.get("eval_domains", "target")
        result = evaluate_set(model, proto.eval_sets[scored], image_processor, **kw)
        return {
            "target_domain": proto.fewshot.get("target_domain"),
            # "sources": the accuracy is on the source domains' held-out images, not the target's (for selection)
            "eval_domains": scored,
            "accuracy": result["accuracy"],
            "n_images": result["n"],
            "source_domains": [data.domain_names[d] for d in proto.source_domains],
            "skipped_images": result["skipped"],
        }

    def describe(self, entry: Mapping[str, Any]) -> str:
        if entry.get("eval_domains") == "sources":
            return f"Sources ({entry['target_domain']} held out) {entry['accuracy']:.2f}"
        return f"Target {entry['target_domain']} {entry['accuracy']:.2f}"
