"""Result entries (a run's `results.json`) as the library reads them: self-describing, checked, summarised over
seeds, and the harmonic mean of base and new accuracy (docs/method.md §6.1).

Each entry carries a `report` written by the protocol that produced it (`protocols/base.py`): the metrics it holds
(key, column label, Hub metric type, config and name), the columns that identify it besides the dataset, and the
section of the model card it belongs to. The model card (`hub.py`) renders entries from that description alone, so
a protocol added from outside the package reaches the card with no change here. Entries written before reports
existed are described by `LEGACY_REPORTS`, data for the four protocols of that time.
"""

from __future__ import annotations

import json
import math
import os
import re
import statistics
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any


def harmonic_mean(base: float, new: float) -> float:
    """HM = 2·B·N / (B + N), 0 when both are 0 (docs/method.md §6.1). Scale-free: percents in, percent out."""
    return 0.0 if base + new == 0 else 2.0 * base * new / (base + new)


def mean(values: Sequence[float]) -> float:
    """The mean (nan for no values); one value is returned exactly."""
    return float(statistics.fmean(values)) if values else math.nan


def sample_std(values: Sequence[float]) -> float:
    """The sample standard deviation over runs (0 for a single run)."""
    return float(statistics.stdev(values)) if len(values) > 1 else 0.0


# What a metric of several runs is, beyond the mean of the runs' values: `of_means` names a combination of the
# means of other metrics (the paper's base-to-new HM is the HM of the mean base and mean new accuracy).
COMBINATIONS = {"harmonic_mean": harmonic_mean}
_PLACEHOLDER = re.compile(r"\{([a-z_]+)\}")


@dataclass(frozen=True)
class Metric:
    """One metric of a result entry (percent).

    Attributes:
        key: the entry's field, e.g. "hm".
        label: its column in tables, e.g. "HM".
        type: the Hub metric type of the model-index, e.g. "accuracy" or "harmonic_mean".
        config: the model-index metric config; `{field}` is replaced by the summary row's field (e.g.
            "target-domain-{target_domain}").
        name: the model-index metric name, with the same placeholders.
        of_means: (combination, [metric keys]): over several runs the metric is that combination of the others'
            means rather than the mean of its own values, e.g. ("harmonic_mean", ["base", "new"]).
    """

    key: str
    label: str
    type: str = "accuracy"
    config: str = "{protocol}"
    name: str = ""
    of_means: tuple[str, tuple[str, ...]] | None = None


@dataclass(frozen=True)
class Column:
    """A field that identifies an entry besides its dataset (e.g. the DG target domain), shown after the dataset."""

    key: str
    label: str
    default: str = ""


@dataclass(frozen=True)
class Report:
    """How a protocol's entries are reported (written into each entry as `report`).

    Attributes:
        metrics: the metrics, in table order.
        section: the model card's section title; None keeps the entries out of the card's tables (their numbers
            still go to the model-index).
        about: the paragraph under the section title.
        columns: identifying columns shown after the dataset.
        means_note: a sentence under the table when it has mean rows.
    """

    metrics: tuple[Metric, ...]
    section: str | None = None
    about: str = ""
    columns: tuple[Column, ...] = field(default_factory=tuple)
    means_note: str = ""

    @property
    def metric_keys(self) -> tuple[str, ...]:
        return tuple(m.key for m in self.metrics)

    def to_dict(self) -> dict[str, Any]:
        """The report as JSON types (lists, not tuples), so an entry in memory equals the one read back."""
        return json.loads(json.dumps(asdict(self)))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str = "report") -> Report:
        """Read a `report` of a results file (raises ValueError naming the bad field)."""
        try:
            metrics = tuple(Metric(**{**m, "of_means": _of_means(m.get("of_means"))}) for m in data["metrics"])
            columns = tuple(Column(**c) for c in data.get("columns") or ())
            report = cls(
                metrics=metrics,
                section=data.get("section"),
                about=str(data.get("about") or ""),
                columns=columns,
                means_note=str(data.get("means_note") or ""),
            )
        except (KeyError, TypeError, ValueError) as err:
            raise ValueError(f"{source}: not a valid report ({err})") from err
        if not metrics:
            raise ValueError(f"{source}: a report needs at least one metric")
        texts = [
            (f"metric {m.key!r}: {f}", getattr(m, f))
            for m in metrics
            for f in ("key", "label", "type", "config", "name")
        ]
        texts += [(f"column {c.key!r}: {f}", getattr(c, f)) for c in columns for f in ("key", "label", "default")]
        for where, value in texts + [("section", report.section if report.section is not None else "")]:
            if not isinstance(value, str):
                raise ValueError(f"{source}: {where} must be a string, got {value!r}")
        for m in metrics:
            if m.of_means is not None and m.of_means[0] not in COMBINATIONS:
                raise ValueError(f"{source}: metric {m.key!r}: of_means must be one of {sorted(COMBINATIONS)}")
        return report


def _of_means(value: Any) -> tuple[str, tuple[str, ...]] | None:
    if value is None:
        return None
    combination, keys = value
    return str(combination), tuple(str(k) for k in keys)


_HM = Metric("hm", "HM", "harmonic_mean", "base-new", "Harmonic mean of base and new accuracy")
_TRANSFER = Report(metrics=(Metric("accuracy", "accuracy", "accuracy", "{protocol}", "Accuracy ({protocol})"),))
LEGACY_REPORTS: dict[str, Report] = {
    "base2new": Report(
        metrics=(
            Metric("base", "base", "accuracy", "base-classes", "Base accuracy"),
            Metric("new", "new", "accuracy", "new-classes", "New accuracy"),
            Metric(**{**asdict(_HM), "of_means": ("harmonic_mean", ("base", "new"))}),
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
    ),
    "dg": Report(
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
    ),
    "cross_dataset": _TRANSFER,
    "imagenet_shift": _TRANSFER,
}
"""The reports of entries written before entries carried their own (the protocols of that time, as they were
rendered then); a test keeps them equal to those protocols' own reports."""


def report_of(entry: Mapping[str, Any], source: str = "results") -> Report:
    """The entry's own `report`, or the legacy description of its `protocol` (raises ValueError naming both)."""
    if "report" in entry:
        return Report.from_dict(entry["report"], f"{source}: report")
    protocol = entry.get("protocol")
    if protocol in LEGACY_REPORTS:
        return LEGACY_REPORTS[protocol]
    raise ValueError(
        f"{source} needs a 'protocol', one of {sorted(LEGACY_REPORTS)}, or a 'report' written by the protocol that "
        f"produced it; got protocol {protocol!r}"
    )


def check_results(items: Sequence[Any], source: str) -> None:
    """Each entry: a dict with a `protocol`, a report (its own or a legacy one) and at least one of its metrics,
    all finite numbers (raises ValueError naming the entry and the field)."""
    for i, item in enumerate(items):
        if not isinstance(item, Mapping) or not isinstance(item.get("protocol"), str):
            raise ValueError(f"{source}: entry {i} needs a 'protocol', e.g. one of {sorted(LEGACY_REPORTS)}")
        expected = report_of(item, f"{source}: entry {i}").metric_keys
        metrics = [k for k in expected if k in item]
        if not metrics:
            raise ValueError(f"{source}: entry {i} ({item['protocol']}) has none of the metrics {expected}")
        for key in metrics:
            value = item[key]
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ValueError(f"{source}: entry {i}: {key!r} must be a finite number (percent), got {value!r}")


def load_results(path: str | os.PathLike) -> list[dict[str, Any]]:
    """Read a results file written by the training/evaluation loop (`results.json`): a JSON object or a list of
    them, each with its `protocol`, its metrics in percent and (since reports exist) its `report`."""
    with open(path, encoding="utf-8") as f:
        try:
            data = json.load(f)
        except json.JSONDecodeError as err:
            raise ValueError(f"{path}: not valid JSON ({err})") from err
    items = data if isinstance(data, list) else [data]
    check_results(items, str(path))
    return items


def combine_runs(rows: Sequence[Mapping[str, Any]], report: Report) -> dict[str, float]:
    """The metrics of several runs of one setting (seeds): a single run keeps its numbers exactly; several are
    averaged, and a metric with `of_means` is that combination of the other metrics' means. A metric missing from
    some runs is left out rather than averaged over the others."""
    out: dict[str, float] = {}
    for metric in report.metrics:
        values = [float(r[metric.key]) for r in rows if metric.key in r]
        if values and len(values) == len(rows):
            out[metric.key] = values[0] if len(rows) == 1 else mean(values)
    if len(rows) > 1:
        for metric in report.metrics:
            if metric.of_means is not None and all(k in out for k in metric.of_means[1]):
                out[metric.key] = COMBINATIONS[metric.of_means[0]](*(out[k] for k in metric.of_means[1]))
    return out


def fill(text: str, row: Mapping[str, Any]) -> str:
    """`text` with each `{field}` replaced by the row's field (only plain names, never attribute access)."""
    return _PLACEHOLDER.sub(lambda m: str(row.get(m.group(1), m.group(0))), text)


def group_runs(
    results: Sequence[Mapping[str, Any]], key: Callable[[Mapping[str, Any]], tuple]
) -> dict[tuple, list[Mapping[str, Any]]]:
    """The entries grouped by `key(entry)` (the runs of one setting, over seeds), groups in first-seen order."""
    groups: dict[tuple, list[Mapping[str, Any]]] = {}
    for r in results:
        groups.setdefault(key(r), []).append(r)
    return groups
