"""The protocol interface and what every protocol shares: the few-shot sample, the evaluation rows, the result
containers (docs/method.md §6).

A protocol turns a loaded dataset (`data.ImageClassificationData`) into a few-shot training set and evaluation
sets (`prepare`), says which meta-learning episodes its training uses (`meta_episodes`, built by `episodes.py`),
scores a model on its evaluation sets (`evaluate`) and owns its results: the `report` written into each result
entry (its metrics with their names and Hub types, its model card section; read by the library's card in
`hub.py` without knowing the protocol), their aggregation over seeds (`aggregate`) and their table rows
(`table_header`, `table_row`). Everything protocol-specific lives in one module per protocol; `registry.py`
holds the registry. Nothing outside `protocols/` branches on a protocol's name.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import torch

from ..data.images import with_decoded_images
from ..data.loading import DataError, ImageClassificationData
from ..episodes import class_split_episodes, domain_split_episodes
from ..hub.results import Metric, Report, combine_runs, sample_std

if TYPE_CHECKING:
    from ..episodes import Episode

logger = logging.getLogger(__name__)


@dataclass
class EvalSet:
    """Rows of one split to evaluate, classified among `class_names` (labels remapped to 0..len-1). `seen_classes`:
    the classes the adapter trains on, in its training domain (base-to-new's base set; a transfer protocol's source
    dataset, ImageNet), scored inside `heads.seen_classes()` (MMRL's fused logits, docs/methods/mmrl.md)."""

    rows: Any
    class_names: list[str]
    labels: list[int]
    domains: list[int] | None = None
    seen_classes: bool = False


@dataclass
class ProtocolData:
    """Few-shot training set and evaluation sets of one protocol run.

    Attributes:
        train_rows: `datasets.Dataset` of the few-shot training images.
        train_labels: their labels remapped to 0..len(train_class_names)-1.
        train_domains: their domain ids (DG) or None.
        train_class_names: the classes trained on (base classes, or all classes for DG).
        eval_sets: "base" and "new" (base-to-new), "target" (DG) or "all" (transfer) → `EvalSet`.
        source_domains: domain ids trained on (DG), else None.
        fewshot: the chosen row indices, by split and class (and domain), for the run folder.
        skipped_corrupt: candidate training images that could not be decoded.
    """

    train_rows: Any
    train_labels: list[int]
    train_domains: list[int] | None
    train_class_names: list[str]
    eval_sets: dict[str, EvalSet]
    source_domains: list[int] | None = None
    fewshot: dict[str, Any] = field(default_factory=dict)
    skipped_corrupt: list[str] = field(default_factory=list)


class Protocol(ABC):
    """One evaluation protocol of the paper (docs/method.md §6).

    Class attributes:
        name: the `--protocol` value.
        report: how its result entries are reported (`results.Report`: the metrics in percent, with their table
            labels and model-index type, config and name; the model card section), written into each entry.
        metric_keys: the metrics (percent) its result entries carry: the keys of `report` (a protocol that gives
            only `metric_keys` gets a plain report of accuracies, its section named after the protocol).
        default_tokens: text and vision prompt tokens when `--n_ctx` / `--n_pro` are not given (docs/method.md §4).
        meta_prompts: which prompts the meta step updates, "text" (θ_t over class splits) or "vision" (θ_v over
            domain splits) (docs/method.md §3.1).
        needs_target_domain: whether `--target_domain` is required.
        target_templates: evaluate with the templates of the evaluated dataset rather than the adapter's own
            (transfer protocols, where an adapter trained on one dataset is scored on another).
        embedded_learning_rate: the learning rate for the embedded base model when `--learning_rate` is not given
            (tuned on the mini world's validation split, departure D16 of docs/method.md §3.3); None: the paper's.
    """

    name: ClassVar[str]
    report: ClassVar[Report]
    metric_keys: ClassVar[tuple[str, ...]]
    default_tokens: ClassVar[int] = 2
    meta_prompts: ClassVar[str] = "text"
    needs_target_domain: ClassVar[bool] = False
    target_templates: ClassVar[bool] = False
    embedded_learning_rate: ClassVar[float | None] = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "report" in cls.__dict__:
            if "metric_keys" in cls.__dict__ and tuple(cls.metric_keys) != cls.report.metric_keys:
                raise TypeError(f"{cls.__name__}: metric_keys {cls.metric_keys} differ from its report's")
            cls.metric_keys = cls.report.metric_keys
        elif "metric_keys" in cls.__dict__:
            cls.report = Report(
                metrics=tuple(Metric(k, k, "accuracy", "{protocol}", f"{k} ({{protocol}})") for k in cls.metric_keys),
                section=f"Protocol {cls.__dict__.get('name', cls.__name__)}",
            )

    @property
    def mixes_domains(self) -> bool:
        """Whether training batches interleave source domains (the vision meta step needs two per batch)."""
        return self.meta_prompts == "vision"

    def check_args(self, args: Any) -> None:
        """Refuse training flags that do nothing under this protocol (a `ValueError` naming the flag), so a run
        never silently ignores what it was asked."""
        if not self.needs_target_domain and args.target_domain is not None:
            raise ValueError(
                f"target_domain: --protocol {self.name} has no held-out domain, so --target_domain "
                f"{args.target_domain!r} would be ignored; it applies to domain-generalisation protocols (dg)"
            )
        if not self.needs_target_domain and getattr(args, "eval_domains", "target") != "target":
            raise ValueError(
                f"eval_domains: --protocol {self.name} has no held-out domain, so --eval_domains "
                f"{args.eval_domains!r} would be ignored; it applies to domain-generalisation protocols (dg)"
            )
        if not self.mixes_domains and args.mix_domains is False:
            raise ValueError(
                f"mix_domains: --protocol {self.name} does not interleave source domains, so --mix_domains False "
                "would be ignored"
            )
        if self.meta_prompts != "text" and args.meta_num_class_groups != 2:
            raise ValueError(
                f"meta_num_class_groups: --protocol {self.name} meta-learns over domains, not class groups, so "
                f"--meta_num_class_groups {args.meta_num_class_groups} would be ignored"
            )

    @abstractmethod
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
        """The few-shot training rows and the evaluation sets (raises `DataError` naming the bad input)."""

    def meta_episodes(
        self,
        labels: torch.Tensor,
        domains: torch.Tensor | None,
        proto: ProtocolData,
        *,
        seed: int,
        step: int,
        num_class_groups: int = 2,
    ) -> list[Episode]:
        """The meta step's episodes for one accumulated batch: `labels` (B,) and `domains` (B,) or None, CPU;
        `draw_meta_episodes` for this protocol's `meta_prompts` (docs/method.md §3.1)."""
        return draw_meta_episodes(
            self.meta_prompts,
            labels,
            domains,
            num_classes=len(proto.train_class_names),
            source_domains=proto.source_domains,
            seed=seed,
            step=step,
            num_class_groups=num_class_groups,
        )

    @abstractmethod
    def evaluate(
        self, model: Any, proto: ProtocolData, data: ImageClassificationData, image_processor: Any, **kw: Any
    ) -> dict[str, Any]:
        """The protocol's metrics (percent) and counts; `kw` goes to `evaluation.evaluate_set`."""

    @abstractmethod
    def describe(self, entry: Mapping[str, Any]) -> str:
        """One line of a result entry, e.g. `Base 81.20 | New 70.10 | HM 75.24`."""

    # ------------------------------------------------------------------ results over runs
    def aggregate(self, rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        """The runs (seeds) of one setting as one row: their identity, the target domain, each metric combined as
        the report says (`results.combine_runs`: the mean, a single run exactly) and its sample std under "std"."""
        values = combine_runs(rows, self.report)
        return run_identity(rows) | {
            "target_domain": rows[0].get("target_domain"),
            **values,
            "std": {k: sample_std([float(r[k]) for r in rows]) for k in self.metric_keys if k in values},
        }

    def table_header(self) -> list[str]:
        """The Markdown header of this protocol's aggregated rows (protocols with the same header share a table)."""
        labels = [m.label for m in self.report.metrics]
        return [
            "| method | dataset | target domain | seeds | " + " | ".join(labels) + " |",
            "|---|---|---|---|" + "---|" * len(labels),
        ]

    def table_row(self, row: Mapping[str, Any]) -> str:
        """One aggregated row (from `aggregate`) as a line of `table_header`'s table: mean ± std."""
        cells = [f"{row[k]:.2f} ± {row['std'][k]:.2f}" for k in self.metric_keys]
        return f"| {row['method']} | {row['dataset']} | {row['target_domain'] or '—'} | {row['n_runs']} | " + (
            " | ".join(cells) + " |"
        )


def run_identity(rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """What the runs of one setting share: method, protocol, dataset, their seeds (sorted) and how many runs."""
    first = rows[0]
    return {
        "method": first.get("method", "metaprompt"),
        "protocol": first["protocol"],
        "dataset": first.get("dataset", ""),
        "seeds": sorted(r.get("seed") for r in rows if r.get("seed") is not None),
        "n_runs": len(rows),
    }


# ---------------------------------------------------------------------------------------------------- shared steps
def check_common(data: ImageClassificationData, shots: int, train_split: str) -> None:
    if shots < 1:
        raise DataError(f"shots: expected >= 1, got {shots}")
    if train_split not in data.splits:
        raise DataError(f"train_split: {data.name} has no split {train_split!r}; it has {sorted(data.splits)}")


def check_eval_sets(proto: ProtocolData, source: str) -> None:
    """Refuse, before training, evaluation sets whose accuracy would mean nothing: no images (NaN) or a single
    class to choose from (always 100%). Raises `DataError` naming the set, its split and its classes."""
    split = proto.fewshot.get("eval_split", "the evaluation split")
    for part, eval_set in proto.eval_sets.items():
        if len(eval_set.rows) == 0:
            raise DataError(
                f"eval_split: the {part!r} evaluation set of {source} has no images (from {split!r}); give the "
                "dataset a test split, or leave images beside the few-shot sample (fewer --shots)"
            )
        if len(eval_set.class_names) < 2:
            raise DataError(
                f"eval_split: the {part!r} evaluation set of {source} has a single class {eval_set.class_names}, so "
                "its accuracy would be 100% whatever the model does; the protocol needs at least two classes there"
            )


def sample_shots(
    split: Any,
    groups: dict[tuple, list[int]],
    shots: int,
    seed: int,
    allow_fewer: bool,
    describe_group: Callable[[tuple], str],
) -> tuple[list[int], list[str]]:
    """Pick `shots` decodable rows per group, seeded; corrupt candidates are skipped and reported."""
    rng = np.random.default_rng(seed)
    chosen: list[int] = []
    corrupt: list[str] = []
    images = with_decoded_images(split)
    for key in sorted(groups):
        candidates = list(groups[key])
        rng.shuffle(candidates)
        picked: list[int] = []
        for row in candidates:
            if len(picked) == shots:
                break
            decoded = images[int(row)]
            if decoded["image"] is None:
                corrupt.append(decoded["image_source"])
                continue
            picked.append(int(row))
        if len(picked) < shots:
            msg = f"shots: {describe_group(key)} has {len(picked)} readable images, fewer than the {shots} asked"
            if not allow_fewer:
                raise DataError(msg + " (pass --allow_fewer_shots to train on what there is)")
            logger.warning("%s; using %d", msg, len(picked))
        chosen.extend(sorted(picked))
    return chosen, corrupt


def eval_rows(data: ImageClassificationData, eval_split: str, train_split: str, chosen: list[int]) -> tuple[Any, str]:
    """The rows to evaluate: `eval_split`, or when it is missing the `train_split` rows not sampled for training."""
    if eval_split in data.splits and eval_split != train_split:
        return data.splits[eval_split], eval_split
    if eval_split != train_split:
        logger.warning(
            "split %r not found in %s; evaluating on the %r rows not used for training",
            eval_split,
            data.name,
            train_split,
        )
    taken = set(chosen)
    train = data.splits[train_split]
    rest = [i for i in range(len(train)) if i not in taken]
    return train.select(rest), f"{train_split} minus training rows"


def cap(indices: list[int], limit: int | None, seed: int) -> list[int]:
    """At most `limit` of `indices`, a seeded subsample kept in order."""
    if limit is None or len(indices) <= limit:
        return indices
    rng = np.random.default_rng(seed + 7919)
    return sorted(rng.choice(indices, size=limit, replace=False).tolist())


def class_groups(labels: Sequence[int], classes: Sequence[int]) -> dict[tuple, list[int]]:
    """{(class,): rows} for the rows whose label is in `classes`."""
    wanted = {int(c) for c in classes}
    groups: dict[tuple, list[int]] = {}
    for row, lab in enumerate(labels):
        if int(lab) in wanted:
            groups.setdefault((int(lab),), []).append(row)
    return groups


def split_generator(seed: int, step: int) -> torch.Generator:
    """(Departure D10 of docs/method.md §3.3.) The generator of the class split of optimizer step `step`: drawn
    from (seed, step) alone, so it is identical on every process and after a resume."""
    return torch.Generator().manual_seed(seed * 1_000_003 + step)


def draw_meta_episodes(
    meta_prompts: str,
    labels: torch.Tensor,
    domains: torch.Tensor | None,
    *,
    num_classes: int,
    source_domains: Sequence[int] | None,
    seed: int,
    step: int,
    num_class_groups: int = 2,
) -> list[Episode]:
    """The meta step's episodes of optimizer step `step` (docs/method.md §3.1), the one rule training uses
    (`Protocol.meta_episodes`, and `training.step.TrainingStep` when it is given no protocol): for "text" prompts
    a class split of the `num_classes` training classes into `num_class_groups` groups drawn from (seed, step);
    for "vision" prompts one leave-one-source-domain-out episode per source domain, over all classes.

    Args:
        labels: (B,) labels of the accumulated batch, CPU.
        domains: (B,) domain ids, or None (refused for "vision").
    """
    if meta_prompts == "text":
        return class_split_episodes(labels, num_classes, split_generator(seed, step), num_class_groups)
    if domains is None:
        raise ValueError("domains: the DG meta step needs the batch's domain ids")
    return domain_split_episodes(labels, domains, source_domains, num_classes)
