"""The paper kit's datasets in one command: fetch each archive from the Hub, check it, unpack it safely into the
layout `readers/` read (docs/paper_protocols.md, "Getting the data in one command").

    python -m metaprompt_hf.download eurosat dtd imagenet_a --data_dir DATA
    python -m metaprompt_hf.download pacs --data_dir DATA --repo_id <mirror> --repo_type dataset

Archives come through `huggingface_hub.hf_hub_download` (the Hugging Face cache: resumable, shared, and usable
offline once fetched), from the repository, revision and file named in `dataset_sources.SOURCES`; each is checked
against its recorded sha256 (or, where none could be recorded, the sha256 the Hub reports for the LFS file)
before `extraction.safe_extract` unpacks it next to `DATA/<folder>`, the reader checks the result, and the folder
is moved into place with a completion marker. A dataset whose folder is already complete is skipped.
"""

from __future__ import annotations

import logging
import os
import re
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .data.extraction import ExtractionError, ExtractionLimits, is_complete, read_marker, safe_extract
from .data.loading import DataError
from .data.readers import FOLDERS, load_standard
from .data.sources import DEFAULT_REPO_ID, DEFAULT_REPO_TYPE, NOT_DOWNLOADABLE, SOURCES, DatasetSource

logger = logging.getLogger(__name__)

_SHA256 = re.compile(r"^[0-9a-f]{64}$")


class DownloadError(DataError):
    """A dataset that could not be fetched or installed; the message names the dataset, repository and revision."""


@dataclass
class DownloadArguments:
    """Arguments of `python -m metaprompt_hf.download`."""

    names: list[str] = field(metadata={"help": f"Datasets to fetch: {', '.join(SOURCES)}."})
    data_dir: str = field(metadata={"help": "The DATA/ folder the readers read (--data_dir of training)."})
    repo_id: str | None = field(
        default=None, metadata={"help": f"A Hub repository with the same file names (default {DEFAULT_REPO_ID})."}
    )
    revision: str | None = field(
        default=None, metadata={"help": "Commit, branch or tag (default: the one recorded per dataset, else main)."}
    )
    repo_type: str | None = field(
        default=None, metadata={"help": f"'model', 'dataset' or 'space' (default {DEFAULT_REPO_TYPE})."}
    )
    cache_dir: str | None = field(default=None, metadata={"help": "Hugging Face cache (default: HF_HUB_CACHE)."})
    max_unpacked_gb: float = field(
        default=ExtractionLimits.max_total_bytes / 2**30, metadata={"help": "Refuse an archive unpacking to more."}
    )
    max_files: int = field(
        default=ExtractionLimits.max_members, metadata={"help": "Refuse an archive with more members."}
    )

    def __post_init__(self) -> None:
        unknown = [n for n in self.names if n not in SOURCES]
        if unknown:
            hint = "; ".join(f"{n}: {NOT_DOWNLOADABLE[n]}" for n in unknown if n in NOT_DOWNLOADABLE)
            raise DownloadError(
                f"names: {unknown} cannot be downloaded; choose from {list(SOURCES)}" + (f" ({hint})" if hint else "")
            )
        if self.repo_type not in (None, "model", "dataset", "space"):
            raise DownloadError(f"repo_type: expected 'model', 'dataset' or 'space', got {self.repo_type!r}")
        if self.revision is not None and not self.revision.strip():
            raise DownloadError("revision: empty")
        self.limits = ExtractionLimits(max_total_bytes=int(self.max_unpacked_gb * 2**30), max_members=self.max_files)


def _fetch(
    name: str, source: DatasetSource, repo_id: str, repo_type: str, revision: str, cache_dir: str | None
) -> str:
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import (
        EntryNotFoundError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    where = f"{source.archive} of {repo_type} repository {repo_id} at revision {revision}"
    try:
        return hf_hub_download(repo_id, source.archive, repo_type=repo_type, revision=revision, cache_dir=cache_dir)
    except LocalEntryNotFoundError as err:
        raise DownloadError(
            f"{name}: {where} is not in the Hugging Face cache and the Hub cannot be reached (HF_HUB_OFFLINE="
            f"{os.environ.get('HF_HUB_OFFLINE', '0')}); run once with network access, or copy the cache "
            f"({cache_dir or 'HF_HUB_CACHE'}) from a machine that has it ({err})"
        ) from err
    except (EntryNotFoundError, RepositoryNotFoundError, RevisionNotFoundError) as err:
        raise DownloadError(
            f"{name}: {where} does not exist ({type(err).__name__}); check --repo_id / --revision"
        ) from err
    except OSError as err:  # network and HTTP errors of huggingface_hub are OSErrors
        raise DownloadError(f"{name}: could not download {where} ({type(err).__name__}: {err})") from err


def _expected_sha256(name: str, source: DatasetSource, path: str, default_repo: bool) -> tuple[str, str]:
    """(digest, what it is) the downloaded archive must match."""
    if default_repo and source.sha256:
        return source.sha256, "recorded in metaprompt_hf.data.sources"
    blob = os.path.basename(os.path.realpath(path))  # the cache names an LFS blob by the sha256 the Hub reported
    if _SHA256.match(blob):
        return blob, "reported by the Hub for the LFS file"
    raise DownloadError(
        f"{name}: {path} has no recorded sha256 and is not an LFS file with a Hub-reported one; refusing to extract an "
        "unverifiable archive"
    )


def _select(inner: str, check: str) -> Callable[[Path], Path]:
    """Pick the folder that holds the layout: `inner`, the one folder the archive wraps its files in, or the root."""

    def select(unpacked: Path) -> Path:
        if (unpacked / inner).is_dir():
            return unpacked / inner
        entries = [p for p in unpacked.iterdir() if not p.name.startswith((".", "__MACOSX"))]
        if len(entries) == 1 and entries[0].is_dir():
            return entries[0]
        if (unpacked / check).exists():
            return unpacked
        raise ExtractionError(
            f"the archive holds neither a folder {inner!r} nor one folder nor {check!r} at its root: "
            f"{sorted(p.name for p in entries)[:10]}"
        )

    return select


def download_dataset(
    name: str,
    data_dir: str | os.PathLike,
    *,
    repo_id: str | None = None,
    revision: str | None = None,
    repo_type: str | None = None,
    cache_dir: str | None = None,
    limits: ExtractionLimits | None = None,
) -> Path:
    """Fetch, check and unpack dataset `name` into `data_dir/<folder>` (skipped when already complete); returns the
    folder. Raises `DownloadError` / `ExtractionError` (both `DataError`) naming the dataset, file and repository."""
    if name not in SOURCES:
        raise DownloadError(f"dataset_name: {name!r} cannot be downloaded; choose from {list(SOURCES)}")
    source = SOURCES[name]
    target = Path(os.path.abspath(data_dir)) / FOLDERS[name]
    if is_complete(target):
        logger.info("%s: %s is complete (%s); skipped", name, target, read_marker(target).get("archive"))
        return target
    if os.path.lexists(target):
        raise DownloadError(
            f"{name}: {target} exists but was not installed by a complete download (no marker); move it away, or "
            "train on it as it is without --download"
        )
    repo = repo_id or source.repo_id
    if repo is None:
        raise DownloadError(
            f"{name}: no Hub repository holds {name} in a layout that could be checked; pass --repo_id naming a "
            f"mirror with {source.archive} (its source: {source.source})"
        )
    kind = repo_type or DEFAULT_REPO_TYPE
    rev = revision or source.revision or "main"
    if revision is None and source.revision is None:
        logger.warning("%s: no verified commit is recorded for %s; downloading from 'main'", name, source.archive)
    path = _fetch(name, source, repo, kind, rev, cache_dir)
    expected, what = _expected_sha256(name, source, path, repo == DEFAULT_REPO_ID)
    if source.size is not None and repo == DEFAULT_REPO_ID and os.path.getsize(path) != source.size:
        raise DownloadError(
            f"{name}: {path} has {os.path.getsize(path)} bytes, the recorded archive {source.size}; not extracted"
        )
    check = os.path.basename(_layout_probe(name))
    commit = os.path.basename(os.path.dirname(path)) if "snapshots" in path else rev
    safe_extract(
        path,
        target,
        limits=limits,
        sha256=expected,  # checked before anything is unpacked
        what=f"{name} ({source.archive}, sha256 {what})",
        select=_select(source.inner, check),
        validate=lambda staged: _validate(name, staged),
        marker={"dataset": name, "repo_id": repo, "repo_type": kind, "revision": rev, "commit": commit},
    )
    logger.info("%s: installed %s from %s@%s (sha256 %s)", name, target, repo, commit, expected)
    return target


def _validate(name: str, staged: Path) -> None:
    """The reader reads the staged folder (its parent stands in for DATA/), or the install is refused."""
    load_standard(name, str(staged.parent))


def _layout_probe(name: str) -> str:
    """A file or folder at the top of the dataset's layout, to recognise an archive without a wrapping folder."""
    from .data.readers.coop import SPLIT_FILE_DATASETS

    if name in SPLIT_FILE_DATASETS:
        return SPLIT_FILE_DATASETS[name][2]
    return _PROBES.get(name, "classnames.txt")


_PROBES = {
    "fgvc_aircraft": "variants.txt",
    "pacs": "splits",
    "domainnet": "splits",
    "vlcs": "CALTECH",
    "office_home": "art",
}


def download_datasets(names: Sequence[str], data_dir: str | os.PathLike, **kwargs) -> list[Path]:
    """`download_dataset` for each name, in order."""
    return [download_dataset(n, data_dir, **kwargs) for n in names]


def fetch_data(args: Any) -> None:
    """Training's `--download`: fetch `--dataset_name` into `--data_dir` (a no-op when already complete)."""
    if getattr(args, "download", False):
        download_dataset(args.dataset_name, args.data_dir, cache_dir=args.cache_dir)


def parse_args(argv: Sequence[str] | None = None) -> DownloadArguments:
    """`DownloadArguments` from the command line: the dataset names are positional, the rest `--<field>`."""
    import argparse
    import dataclasses

    parser = argparse.ArgumentParser(prog="python -m metaprompt_hf.download", description=__doc__.splitlines()[0])
    for f in dataclasses.fields(DownloadArguments):
        if f.name == "names":
            parser.add_argument("names", nargs="+", help=f.metadata["help"])
        else:
            required = f.default is dataclasses.MISSING
            kind = str if required or f.default is None else type(f.default)
            default = None if required else f.default
            parser.add_argument(f"--{f.name}", type=kind, default=default, required=required, help=f.metadata["help"])
    return DownloadArguments(**vars(parser.parse_args(argv)))


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        args = parse_args(argv)
        for path in download_datasets(
            args.names,
            args.data_dir,
            repo_id=args.repo_id,
            revision=args.revision,
            repo_type=args.repo_type,
            cache_dir=args.cache_dir,
            limits=args.limits,
        ):
            print(path)
    except DataError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
