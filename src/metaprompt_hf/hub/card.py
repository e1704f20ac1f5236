"""Hub I/O: the generated model card and `push_to_hub`.

An adapter repo holds exactly `metaprompt_config.json`, `metaprompt_model.safetensors` and a `README.md` model card
rendered from the repo's `model_card.md` template, uploaded in one commit. Namespaced file names keep
transformers and PEFT from mistaking the repo for theirs (`constants.py`): transformers probes every model repo
for `adapter_config.json` and hands it to PEFT, and reads `config.json` as its own.
"""

from __future__ import annotations

import os
import platform
import re
import tempfile
from collections.abc import Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..constants import CODE_URL, EMBEDDED_NAME, LIBRARY_NAME, PAPER_URL, TASK
from ..modeling.configuration_metaprompt import MetaPromptConfig
from .results import LEGACY_REPORTS, check_results, combine_runs, fill, group_runs, report_of
from .results import load_results as load_results

if TYPE_CHECKING:
    from ..modeling.modeling_metaprompt import MetaPromptModel


def model_card_template() -> str:
    """The `model_card.md` template: packaged with the wheel, or read from the repo root in a source checkout."""
    packaged = resources.files("metaprompt_hf").joinpath("model_card.md")
    if packaged.is_file():
        return packaged.read_text(encoding="utf-8")
    source = Path(__file__).resolve().parents[3] / "model_card.md"
    if source.is_file():
        return source.read_text(encoding="utf-8")
    raise FileNotFoundError("model_card.md template not found in the package nor at the repository root")


# Reading and checking results files is `results.py`'s; the names stay here for the card's callers.
_check_results = check_results


_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*(/[A-Za-z0-9][\w.-]*)?")


def is_hub_id(name: str | None) -> bool:
    """Whether `name` reads as a Hub repo id (`name` or `owner/name`) rather than a local folder, the embedded
    model or a `miniworld:*` dataset: only Hub ids may go into a card's `base_model`, `datasets` and
    `dataset.type`, which the Hub links to repos."""
    if not name or name == EMBEDDED_NAME or ":" in name or name.startswith((".", "/", "~")):
        return False
    if "--" in name or ".." in name or name.endswith((".", "-")) or len(name) > 96:
        return False
    return _HUB_ID.fullmatch(name) is not None and not os.path.exists(name)


def _dataset_config(r: Mapping[str, Any]) -> str | None:
    value = r.get("dataset_config") or r.get("dataset_config_name")
    return str(value) if value else None


def _summarize_results(results: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One row per (method, protocol, dataset, dataset config, split, target domain), in first-seen order, with
    the entries' report (`results.Report`) under "report".

    A single run keeps its numbers exactly; several runs (seeds) are combined as their report says
    (`results.combine_runs`: means, and base-to-new HM as the HM of the mean base and new accuracies, as the
    paper's tables report it).
    """
    groups = group_runs(
        results,
        lambda r: (
            r.get("method"),
            r["protocol"],
            str(r.get("dataset", "unknown")),
            _dataset_config(r),
            str(r.get("eval_split") or "test"),
            r.get("target_domain"),
        ),
    )
    out = []
    for (method, protocol, dataset, config, split, _), rows in groups.items():
        report = report_of(rows[0])
        entry: dict[str, Any] = {
            "method": method,
            "protocol": protocol,
            "dataset": dataset,
            "dataset_config": config,
            "split": split,
            "on_hub": is_hub_id(dataset),
            "n_runs": len(rows),
            "seeds": [r["seed"] for r in rows if r.get("seed") is not None],
        }
        for column in report.columns:
            value = rows[0].get(column.key)
            entry[column.key] = str(value if value is not None else column.default)
        entry |= combine_runs(rows, report)
        entry["report"] = report
        out.append(entry)
    return out


def _card_sections(results: Sequence[Mapping[str, Any]], summary: Sequence[Mapping[str, Any]]) -> list[dict]:
    """The card's result tables: one per report section, with its entries and the mean rows of its settings
    that have several runs. Sections of legacy entries come in the order the card always gave them."""
    sections: dict[str, dict[str, Any]] = {}
    for r in results:
        report = report_of(r)
        if report.section is None:
            continue
        section = sections.setdefault(report.section, {"report": report, "rows": [], "means": []})
        section["rows"].append(r)
    for s in summary:
        if s["n_runs"] > 1 and s["report"].section in sections:
            sections[s["report"].section]["means"].append(s)
    legacy = [r.section for r in LEGACY_REPORTS.values()]
    order = sorted(sections, key=lambda t: legacy.index(t) if t in legacy else len(legacy))
    return [
        {**vars(sections[t]["report"]), **sections[t], "method_column": bool(sections[t]["rows"][0].get("method"))}
        for t in order
    ]


def _eval_results(results: Sequence[Mapping[str, Any]], repo_id: str | None) -> list[Any]:
    """model-index entries for the results on Hub datasets (`dataset.type` must be a Hub dataset id; results on
    local folders and the mini world stay in the card's tables): each metric of the entries' report (Base / New /
    HM, the accuracy on a DG target domain or on a transfer dataset), in percent (averaged over runs when the
    results hold several seeds). Base/new live in the metric's config and name, so the dataset keeps its
    conventional split name (what `load_dataset` calls it)."""
    from huggingface_hub import EvalResult

    source = {"source_name": repo_id, "source_url": f"https://huggingface.co/{repo_id}"} if repo_id else {}
    summary = [s for s in _summarize_results(results) if s["on_hub"]]
    several_methods = len({s["method"] for s in summary if s["method"]}) > 1
    out = []
    for s in summary:
        common = dict(
            task_type=TASK,
            dataset_type=s["dataset"],
            dataset_name=s["dataset"] + (f" ({s['dataset_config']})" if s["dataset_config"] else ""),
            dataset_config=s["dataset_config"],
            dataset_split=s["split"],
            **source,
        )
        prefix = f"{s['method']}: " if several_methods and s["method"] else ""
        suffix = f" (%, mean of {s['n_runs']} runs)" if s["n_runs"] > 1 else " (%)"
        for metric in s["report"].metrics:
            if metric.key not in s:
                continue
            out.append(
                EvalResult(
                    **common,
                    metric_type=metric.type,
                    metric_config=fill(metric.config, s),
                    metric_name=prefix + fill(metric.name or metric.label, s) + suffix,
                    metric_value=round(float(s[metric.key]), 2),
                )
            )
    return out


def build_model_card(
    config: MetaPromptConfig,
    *,
    model_name: str = "MetaPrompt adapter",
    results: Sequence[Mapping[str, Any]] | None = None,
    training: Mapping[str, Any] | None = None,
    datasets: Sequence[str] | None = None,
    repo_id: str | None = None,
) -> Any:
    """Render `model_card.md` into a `huggingface_hub.ModelCard` with YAML metadata (library_name, base_model,
    pipeline_tag, tags, datasets, metrics, model-index from `results`).

    `results` are the run's entries (as in `results.json`); the card body lists every entry, and the model-index
    carries one value per metric and Hub dataset / target domain: the entry's own number, or the mean over the
    runs (seeds) of that dataset when there are several. Only Hub ids go into `base_model`, `datasets` and
    `dataset.type` (`is_hub_id`); `datasets` adds the Hub datasets of `results` to the ones given.
    """
    import huggingface_hub
    import torch
    import transformers
    from huggingface_hub import ModelCard, ModelCardData

    from ..constants import __version__

    base = config.base_model_name_or_path
    base_on_hub = is_hub_id(base)
    results = list(results or [])
    check_results(results, "results")
    summary = _summarize_results(results)
    hub_datasets = list(
        dict.fromkeys([d for d in datasets or () if is_hub_id(d)] + [s["dataset"] for s in summary if s["on_hub"]])
    )
    tags = ["metaprompt", "prompt-learning", "clip", "vision-language", "few-shot", "domain-generalization"]
    if base_on_hub:
        tags.append(f"base_model:adapter:{base}")
    eval_results = _eval_results([r for r in results if not r.get("diverged")], repo_id)  # a diverged run is no result
    card_data = ModelCardData(
        library_name=LIBRARY_NAME,
        license="mit",
        base_model=base if base_on_hub else None,
        base_model_relation="adapter" if base_on_hub else None,
        pipeline_tag=TASK,
        tags=tags,
        datasets=hub_datasets or None,
        # Hub metric ids only (`harmonic_mean` is this package's own metric, named in the model-index entries).
        metrics=["accuracy"] if eval_results else None,
        model_name=model_name,
        eval_results=eval_results or None,
    )
    return ModelCard.from_template(
        card_data,
        template_str=model_card_template(),
        model_name=model_name,
        repo_id=repo_id or "path/to/adapter",
        base_model=base or "the base CLIP",
        base_on_hub=base_on_hub,
        config=config.to_dict(),
        results=results,
        summary=summary,
        sections=_card_sections(results, summary),
        indexed=[s for s in summary if s["on_hub"]] if eval_results else [],
        training=dict(training or {}),
        paper_url=PAPER_URL,
        code_url=CODE_URL,
        versions={
            "metaprompt_hf": __version__,
            "transformers": transformers.__version__,
            "torch": torch.__version__,
            "huggingface_hub": huggingface_hub.__version__,
            "python": platform.python_version(),
        },
    )


def push_to_hub(
    model: MetaPromptModel,
    repo_id: str,
    *,
    commit_message: str = "Upload MetaPrompt adapter",
    private: bool | None = None,
    token: str | bool | None = None,
    branch: str | None = None,
    create_pr: bool | None = None,
    allow_patterns: list[str] | str | None = None,
    ignore_patterns: list[str] | str | None = None,
    delete_patterns: list[str] | str | None = None,
    model_card_kwargs: Mapping[str, Any] | None = None,
    api: Any | None = None,
    adapter_name: str | None = None,
) -> Any:
    """Create the repo if needed and upload one adapter folder, as `save_pretrained` writes it
    (`metaprompt_config.json`, `metaprompt_model.safetensors` and a `README.md` card generated from `model_card.md`),
    in ONE commit (`HfApi.upload_folder`). `ModelHubMixin.push_to_hub`'s arguments; returns the `CommitInfo`.

    Args:
        model_card_kwargs: what the card shows (`MetaPromptModel.generate_model_card`): `results` (entries or the
            path of a `results.json`, for the model-index), `training`, `datasets`, `model_name` (default: the
            repo's name).
        branch, create_pr, allow_patterns, ignore_patterns, delete_patterns: as in `HfApi.upload_folder`.
        api: an `HfApi` (or a stand-in with `create_repo` / `upload_folder`); default `HfApi(token=token)`.
        adapter_name: which of the model's adapters to upload (default: the active one).
    """
    from huggingface_hub import HfApi

    api = api if api is not None else HfApi(token=token)
    created = api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
    repo_id = getattr(created, "repo_id", None) or repo_id  # "name" becomes "user/name"
    card_kwargs = {"model_name": repo_id.split("/")[-1], "repo_id": repo_id} | dict(model_card_kwargs or {})
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp, "adapter")
        model.save_pretrained(folder, adapter_name=adapter_name, model_card_kwargs=card_kwargs)
        return api.upload_folder(
            repo_id=repo_id,
            repo_type="model",
            folder_path=str(folder),
            commit_message=commit_message,
            revision=branch,
            create_pr=create_pr,
            allow_patterns=allow_patterns,
            ignore_patterns=ignore_patterns,
            delete_patterns=delete_patterns,
        )
