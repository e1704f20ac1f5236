"""Running a protocol from training arguments: load the data, prepare the few-shot split, evaluate a model and
build the result entry (docs/method.md §6). `args` is any object with the fields of the training arguments."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..data.loading import DataError, ImageClassificationData, load_image_classification
from ..data.readers import load_standard
from ..data.readers.exported import export_info
from ..inputs.templates import templates_for_dataset
from ..methods import get_method
from .base import ProtocolData, check_eval_sets
from .registry import PROTOCOLS, get_protocol


def prepare_protocol(
    data: ImageClassificationData,
    *,
    protocol: str,
    shots: int,
    seed: int,
    train_split: str = "train",
    eval_split: str = "test",
    target_domain: str | None = None,
    allow_fewer_shots: bool = False,
    max_eval_samples: int | None = None,
    eval_domains: str = "target",
) -> ProtocolData:
    """Few-shot training rows and evaluation sets of the registered `protocol` (see each protocol's `prepare`).

    When `eval_split` is missing (e.g. an image folder without split folders), evaluation uses the rows of
    `train_split` that were not sampled for training. `eval_domains="sources"` (protocols with a held-out domain)
    scores the source domains' images instead of the target's, for model selection.
    """
    if protocol not in PROTOCOLS:
        raise DataError(f"protocol: expected one of {list(PROTOCOLS)}, got {protocol!r}")
    held_out = PROTOCOLS[protocol].needs_target_domain
    if eval_domains != "target" and not held_out:
        raise DataError(
            f"eval_domains: --protocol {protocol} has no held-out domain, so eval_domains={eval_domains!r} has no "
            "meaning; it applies to domain-generalisation protocols (dg)"
        )
    proto = PROTOCOLS[protocol].prepare(
        data,
        shots=shots,
        seed=seed,
        train_split=train_split,
        eval_split=eval_split,
        target_domain=target_domain,
        allow_fewer_shots=allow_fewer_shots,
        max_eval_samples=max_eval_samples,
        **({"eval_domains": eval_domains} if held_out else {}),
    )
    check_eval_sets(proto, data.name)
    return proto


def parse_class_names(value: str | None) -> list[str] | None:
    """`--class_names`: comma-separated, or a .txt file with one name per line."""
    if not value:
        return None
    if os.path.isfile(value):
        return [line.strip() for line in Path(value).read_text(encoding="utf-8").splitlines() if line.strip()]
    return [name.strip() for name in value.split(",") if name.strip()]


def run_templates(template: str | None, dataset_name: str) -> list[str]:
    """The frozen branch's templates: `--template` ('|'-separated) or the dataset's preset (docs/method.md §8)."""
    if template:
        return [t.strip() for t in template.split("|") if t.strip()]
    if dataset_name.startswith("miniworld:"):
        from .. import miniworld

        name = dataset_name.split(":", 1)[1]
        if name in miniworld.TEMPLATES:
            return [miniworld.TEMPLATES[name]]
        if name == miniworld.UNION:
            return [miniworld.UNION_TEMPLATE]
    exported = export_info(dataset_name)  # an export of a standard dataset: that dataset's preset
    return templates_for_dataset(exported["dataset_name"] if exported else dataset_name)


def load_dataset_for(args: Any) -> ImageClassificationData:
    """The dataset named by `args` (`--dataset_name`, with `--data_dir` for the standard layouts)."""
    if getattr(args, "data_dir", None):
        return load_standard(args.dataset_name, args.data_dir)
    return load_image_classification(
        args.dataset_name,
        config_name=args.dataset_config_name,
        image_column=args.image_column,
        label_column=args.label_column,
        domain_column=args.domain_column,
        class_names=parse_class_names(args.class_names),
        cache_dir=args.cache_dir,
        # `--train_dir` / `--validation_dir` where the arguments class has them (class folders read by imagefolder).
        train_dir=getattr(args, "train_dir", None),
        validation_dir=getattr(args, "validation_dir", None),
    )


def load_protocol_data(
    args: Any, data: ImageClassificationData | None = None
) -> tuple[ImageClassificationData, ProtocolData]:
    """The dataset named by `args` (or `data`, already loaded from the same arguments, when several runs share it)
    and its few-shot / evaluation split for `args.protocol` (raises `DataError`)."""
    data = load_dataset_for(args) if data is None else data
    proto = prepare_protocol(
        data,
        protocol=args.protocol,
        shots=args.shots,
        seed=args.seed,
        train_split=args.train_split,
        eval_split=args.eval_split,
        target_domain=args.target_domain,
        allow_fewer_shots=args.allow_fewer_shots,
        max_eval_samples=args.max_eval_samples,
        eval_domains=getattr(args, "eval_domains", "target"),
    )
    if getattr(args, "data_dir", None) and proto.train_rows is not None:
        # The standard layouts are shared between codebases: record the chosen files, not only row numbers.
        root = os.path.abspath(args.data_dir)
        proto.fewshot["files"] = [
            os.path.relpath(value["path"], root) for value in proto.train_rows.select_columns(["image"])["image"]
        ]
    elif proto.train_rows is not None and export_info(args.dataset_name):
        # An export keeps each image's path relative to DATA/: the same record as from the layout itself.
        proto.fewshot["files"] = [value["path"] for value in proto.train_rows.select_columns(["image"])["image"]]
    return data, proto


def evaluate_protocol(
    args: Any,
    model: Any,
    proto: ProtocolData,
    data: ImageClassificationData,
    processor: Any,
    accelerator: Any | None = None,
) -> dict[str, Any]:
    """The result entry of one run: its identity (protocol, method, dataset, seed, shots, split), the
    protocol's metrics in percent (base / new / HM, target-domain accuracy, ...) and its `report` (how to show
    them, `results.Report`)."""
    protocol = get_protocol(args.protocol)
    kind = get_method(args.method).eval_logits  # a class attribute: the method's own knobs do not change it
    kw = dict(accelerator=accelerator, batch_size=args.per_device_eval_batch_size, logits=kind)
    entry: dict[str, Any] = {
        "protocol": args.protocol,
        "method": args.method,
        "dataset": data.name,
        "seed": args.seed,
        "shots": args.shots,
        "eval_split": args.eval_split,
    }
    if protocol.target_templates:  # an adapter scored on another dataset uses that dataset's templates (§8)
        kw["templates"] = run_templates(args.template, data.name)
    entry |= protocol.evaluate(model, proto, data, processor.image_processor, **kw)
    entry["report"] = protocol.report.to_dict()  # what the model card needs, so it never looks the protocol up
    return entry


def format_results(entry: Mapping[str, Any]) -> str:
    """One line: `<method> on <dataset>: Base 81.20 | New 70.10 | HM 75.24` or `...: Target <domain> 55.00`."""
    return f"{entry['method']} on {entry['dataset']}: {get_protocol(entry['protocol']).describe(entry)}"
