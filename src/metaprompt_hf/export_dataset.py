"""A standard benchmark as a `datasets` dataset people can share: `python -m metaprompt_hf.export_dataset NAME
--data_dir DATA --output_dir OUT [--push_to_hub REPO_ID]` (docs/paper_protocols.md, "Getting the data in one command").

OUT holds parquet shards (`data/<split>-*.parquet`: the image bytes with their path relative to `DATA/`, the label
as a `ClassLabel` of the class names, the domain as a `ClassLabel` where the dataset has domains; the official
splits, `val` written as `validation`), a `fewshot` config (`fewshot/fewshot.parquet`: the row indices this
package's seeded sampler draws per protocol, target domain, seed and shot count), a dataset card citing the source,
and `metaprompt_dataset.json` (`readers/exported.py`). It loads with `datasets.load_dataset(OUT)` (the card's
configs) or `load_dataset("parquet", data_dir=OUT)`, and `--dataset_name OUT` trains on it with the same few-shot
sample, templates and recorded file names as `--dataset_name NAME --data_dir DATA`.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .data.loading import DataError, ImageClassificationData
from .data.readers import READERS, load_standard
from .data.readers.exported import EXPORT_INFO_FILE
from .data.sources import SOURCES
from .protocols import prepare_protocol
from .utils import atomic_write_json, temporary_sibling

logger = logging.getLogger(__name__)

SPLIT_NAMES = {"train": "train", "val": "validation", "test": "test"}  # the Hub's split names
_ROWS_PER_BATCH = 500
_HUB_LICENCES = {"MIT": "mit", "CC BY 4.0": "cc-by-4.0", "CC BY-SA 4.0": "cc-by-sa-4.0"}


@dataclass
class ExportArguments:
    """Arguments of `python -m metaprompt_hf.export_dataset`."""

    name: str = field(metadata={"help": f"The standard dataset: one of {', '.join(READERS)}."})
    data_dir: str = field(metadata={"help": "The DATA/ folder it is read from (the readers' layout)."})
    output_dir: str = field(metadata={"help": "Where the dataset is written (must not exist)."})
    push_to_hub: str | None = field(default=None, metadata={"help": "Also upload it as this Hub dataset repo."})
    seeds: list[int] = field(default_factory=lambda: [1, 2, 3], metadata={"help": "Seeds of the few-shot config."})
    shots: list[int] = field(default_factory=lambda: [16], metadata={"help": "Shot counts of the few-shot config."})
    max_shard_mb: int = field(default=500, metadata={"help": "Start a new parquet file after this many MB."})

    def __post_init__(self) -> None:
        if self.name not in READERS:
            raise DataError(f"name: expected one of {list(READERS)}, got {self.name!r}")
        if os.path.lexists(self.output_dir):
            raise DataError(f"output_dir: {self.output_dir} exists; choose a new folder")
        if not self.seeds or not self.shots or min(self.shots) < 1:
            raise DataError(
                f"seeds / shots: need at least one seed and shot counts >= 1, got {self.seeds} {self.shots}"
            )
        if self.max_shard_mb < 1:
            raise DataError(f"max_shard_mb: expected >= 1, got {self.max_shard_mb}")


def _features(data: ImageClassificationData) -> Any:
    import datasets

    features = {"image": datasets.Image(), "label": datasets.ClassLabel(names=data.class_names)}
    if data.domain_names is not None:
        features["domain"] = datasets.ClassLabel(names=data.domain_names)
    return datasets.Features(features)


def _write_split(split: Any, features: Any, root: str, out: Path, name: str, max_bytes: int) -> list[str]:
    """`split` as parquet shards `out/data/<name>-XXXXX-of-YYYYY.parquet`, streamed in batches; returns the files."""
    import datasets
    import pyarrow.parquet as pq

    paths = [p["path"] for p in split.cast_column("image", datasets.Image(decode=False))["image"]]
    labels, domains = split["label"], split["domain"] if "domain" in split.column_names else None
    shards: list[Path] = []
    writer, written = None, 0
    for start in range(0, len(paths), _ROWS_PER_BATCH):
        batch: dict[str, list] = {"image": [], "label": labels[start : start + _ROWS_PER_BATCH]}
        for p in paths[start : start + _ROWS_PER_BATCH]:
            with open(p, "rb") as f:
                batch["image"].append({"bytes": f.read(), "path": os.path.relpath(p, root)})
        if domains is not None:
            batch["domain"] = domains[start : start + _ROWS_PER_BATCH]
        table = datasets.Dataset.from_dict(batch, features=features).data.table
        if writer is None or written >= max_bytes:
            if writer is not None:
                writer.close()
            shards.append(out / "data" / f"{name}-{len(shards):05d}.parquet")
            writer, written = pq.ParquetWriter(shards[-1], table.schema), 0
        writer.write_table(table)
        written += table.nbytes
    if writer is not None:
        writer.close()
    final = []
    for i, shard in enumerate(shards):
        target = shard.with_name(f"{name}-{i:05d}-of-{len(shards):05d}.parquet")
        shard.rename(target)
        final.append(str(target.relative_to(out)))
    return final


def _fewshot_rows(data: ImageClassificationData, seeds: Sequence[int], shots: Sequence[int], root: str) -> list[dict]:
    """The few-shot sample of every (protocol, target domain, seed, shots): what training on this data draws."""
    import datasets

    targets = [("base2new", None)] if data.domain_names is None else [("dg", d) for d in data.domain_names]
    rows = []
    for protocol, target in targets:
        for k in shots:
            for seed in seeds:
                proto = prepare_protocol(
                    data, protocol=protocol, shots=k, seed=seed, target_domain=target, allow_fewer_shots=True
                )
                images = proto.train_rows.cast_column("image", datasets.Image(decode=False))["image"]
                rows.append(
                    {"protocol": protocol, "target_domain": target, "seed": seed, "shots": k,
                     "split": SPLIT_NAMES[proto.fewshot["split"]], "rows": proto.fewshot["rows"],
                     "files": [os.path.relpath(v["path"], root) for v in images]}
                )  # fmt: skip
    return rows


def _card(name: str, data: ImageClassificationData, splits: dict[str, list[str]], counts: dict[str, int]) -> str:
    source = SOURCES.get(name)
    licence = _HUB_LICENCES.get(source.licence, "other") if source else "other"
    configs = ["configs:", "- config_name: default", "  default: true", "  data_files:"]
    for split in splits:
        configs += [f"  - split: {split}", f"    path: data/{split}-*"]
    configs += ["- config_name: fewshot", "  data_files:", "  - split: train", "    path: fewshot/*.parquet"]
    origin = f"[{source.source}]({source.source}); licence: {source.licence}" if source else "see its source"
    layout = "Dassl's domain-generalisation layout" if data.domain_names else "CoOp's layout and fixed split file"
    lines = [
        "---",
        f"license: {licence}",
        "task_categories:",
        "- image-classification",
        f"pretty_name: {name} (prompt-learning benchmark split)",
        *configs,
        "---",
        "",
        f"# {name}",
        "",
        f"The `{name}` benchmark as prompt-learning papers use it ({layout}), exported with "
        f"`python -m metaprompt_hf.export_dataset {name}`.",
        "",
        f"- Source: {origin}. The images keep their source's terms.",
        f"- Splits: {', '.join(f'{k} ({v} images)' for k, v in counts.items())}; {len(data.class_names)} classes"
        + (f"; domains: {', '.join(data.domain_names)}" if data.domain_names else "")
        + ".",
        "- Columns: `image` (bytes and the path relative to the `DATA/` folder it came from), `label` (`ClassLabel`"
        " of the class names, in the layout's label order)"
        + (", `domain` (`ClassLabel`)" if data.domain_names else "")
        + ".",
        "- Config `fewshot`: the rows (indices into `train`) and files that `metaprompt_hf`'s seeded sampler draws per"
        " protocol, target domain, seed and shot count.",
        "",
        'Load it with `datasets.load_dataset("<this repo or folder>")`; train on it with '
        "`python examples/train.py --dataset_name <this folder or repo>`.",
        "",
        "Split files: CoOp (Zhou et al., *Learning to Prompt for Vision-Language Models*, IJCV 2022, "
        "https://github.com/KaiyangZhou/CoOp) and Dassl (https://github.com/KaiyangZhou/Dassl.pytorch).",
        "",
    ]
    return "\n".join(lines)


def export_dataset(
    name: str,
    data_dir: str,
    output_dir: str,
    *,
    seeds: Sequence[int] = (1, 2, 3),
    shots: Sequence[int] = (16,),
    max_shard_mb: int = 500,
) -> Path:
    """Write standard dataset `name` from `data_dir` into `output_dir` (see the module doc); returns it. The folder
    is written in a temporary sibling and moved into place at the end: it is complete or absent."""
    import datasets
    import pyarrow.parquet as pq

    out_final = Path(os.path.abspath(output_dir))
    if os.path.lexists(out_final):
        raise DataError(f"output_dir: {out_final} exists; choose a new folder")
    data = load_standard(name, data_dir)
    root = os.path.abspath(data_dir)
    features = _features(data)
    tmp = Path(temporary_sibling(out_final))
    try:
        (tmp / "data").mkdir()
        (tmp / "fewshot").mkdir()
        splits, counts = {}, {}
        for split, rows in data.splits.items():
            hub_name = SPLIT_NAMES.get(split, split)
            splits[hub_name] = _write_split(rows, features, root, tmp, hub_name, max_shard_mb * 2**20)
            counts[hub_name] = len(rows)
        fewshot = _fewshot_rows(data, seeds, shots, root)
        pq.write_table(datasets.Dataset.from_list(fewshot).data.table, tmp / "fewshot" / "fewshot.parquet")
        (tmp / "README.md").write_text(_card(name, data, splits, counts), encoding="utf-8")
        source = SOURCES.get(name)
        atomic_write_json(
            tmp / EXPORT_INFO_FILE,
            {"dataset_name": name, "splits": splits, "rows": counts, "class_names": data.class_names,
             "domain_names": data.domain_names, "source": source.source if source else None,
             "licence": source.licence if source else None, "image_paths": "relative to the DATA/ folder"},
        )  # fmt: skip
        os.rename(tmp, out_final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    logger.info("%s: wrote %s (%s)", name, out_final, counts)
    return out_final


def push_dataset(folder: str | os.PathLike, repo_id: str, *, api: Any = None) -> Any:
    """Upload an exported folder as the Hub dataset repository `repo_id` (created if needed), in one commit."""
    from huggingface_hub import HfApi

    api = api if api is not None else HfApi()
    api.create_repo(repo_id, repo_type="dataset", exist_ok=True)
    return api.upload_folder(repo_id=repo_id, repo_type="dataset", folder_path=os.fspath(folder))


def parse_args(argv: Sequence[str] | None = None) -> ExportArguments:
    parser = argparse.ArgumentParser(prog="python -m metaprompt_hf.export_dataset", description=__doc__.split("\n")[0])
    parser.add_argument("name", help=ExportArguments.__dataclass_fields__["name"].metadata["help"])
    parser.add_argument("--data_dir", required=True)
    parser.add_argument("--output_dir", required=True)
    parser.add_argument("--push_to_hub", default=None, metavar="REPO_ID")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--shots", type=int, nargs="+", default=[16])
    parser.add_argument("--max_shard_mb", type=int, default=500)
    return ExportArguments(**vars(parser.parse_args(argv)))


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        args = parse_args(argv)
        out = export_dataset(
            args.name,
            args.data_dir,
            args.output_dir,
            seeds=args.seeds,
            shots=args.shots,
            max_shard_mb=args.max_shard_mb,
        )
        if args.push_to_hub:
            push_dataset(out, args.push_to_hub)
        print(out)
    except (DataError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
