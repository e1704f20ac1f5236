"""Safe extraction of zip and tar archives into a folder that appears complete or not at all.

Every member is checked before anything is written: no absolute path, no `..`, no name that escapes through a
link, no symlink or hard link pointing outside the folder, no device file or FIFO, no name twice, and limits on
the number of members, the total unpacked size and (zip) the compression ratio of a member, against archive bombs.
While writing, the bytes actually written are counted (a header may lie about sizes). The archive is unpacked into
a temporary sibling of the target (`utils.temporary_sibling`), checked by the caller's `validate`, given a
completion marker (`EXTRACTED_MARKER`, JSON) and moved into place with one `rename`; a folder without the marker
is never taken for a complete one. With `sha256=`, a checksum mismatch is refused before extraction.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
import tarfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, BinaryIO

from ..utils import atomic_write_json, temporary_sibling
from .loading import DataError

EXTRACTED_MARKER = ".metaprompt_extracted.json"
_CHUNK = 1 << 20


class ExtractionError(DataError):
    """An archive that is refused (unsafe member, over a limit, wrong checksum) or a target that is not usable."""


@dataclass(frozen=True)
class ExtractionLimits:
    """Limits against archive bombs. The defaults fit the largest archive of the paper kit (Food-101, about 5 GB
    packed and 101,000 images) with room to spare."""

    max_total_bytes: int = 100 * 2**30
    max_members: int = 2_000_000
    max_ratio: float = 1000.0  # unpacked / packed size of one zip member (JPEGs are ~1; zip bombs are > 1000)

    def __post_init__(self) -> None:
        for name in ("max_total_bytes", "max_members", "max_ratio"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and value > 0 and value == value and value != float("inf")):
                raise ValueError(f"{name}: must be a finite number > 0, got {value!r}")


@dataclass(frozen=True)
class _Member:
    name: str  # normalised relative POSIX path
    kind: str  # "dir", "file", "symlink", "hardlink"
    size: int  # declared unpacked size (files)
    link: str = ""  # symlink / hard link target, as stored
    raw: Any = None  # the ZipInfo / TarInfo


def sha256_file(path: str | os.PathLike) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def is_complete(folder: str | os.PathLike) -> bool:
    """Whether `folder` was fully extracted (holds the completion marker)."""
    return os.path.isfile(os.path.join(folder, EXTRACTED_MARKER))


def read_marker(folder: str | os.PathLike) -> dict[str, Any]:
    with open(os.path.join(folder, EXTRACTED_MARKER), encoding="utf-8") as f:
        return json.load(f)


def _normalise(name: str, archive: str) -> str:
    """The member name as a safe relative POSIX path, or `ExtractionError`."""
    raw = name.replace("\\", "/")
    if not raw or raw.startswith("/") or (len(raw) > 1 and raw[1] == ":"):
        raise ExtractionError(f"{archive}: member {name!r} has an absolute path")
    parts = [p for p in PurePosixPath(raw).parts if p not in ("", ".")]
    if ".." in parts:
        raise ExtractionError(f"{archive}: member {name!r} points outside the target folder ('..')")
    if not parts:
        return "."
    if any("\x00" in p for p in parts):
        raise ExtractionError(f"{archive}: member {name!r} has a NUL byte in its name")
    return "/".join(parts)


def _link_inside(member: str, link: str, *, relative_to_member: bool) -> bool:
    """Whether a link stored in member `member` resolves inside the target folder (lexically)."""
    if link.startswith("/") or (len(link) > 1 and link[1] == ":"):
        return False
    base = list(PurePosixPath(member).parent.parts) if relative_to_member else []
    for part in PurePosixPath(link.replace("\\", "/")).parts:
        if part in ("", "."):
            continue
        if part == "..":
            if not base:
                return False
            base.pop()
        else:
            base.append(part)
    return True


def _zip_members(zf: zipfile.ZipFile, archive: str, limits: ExtractionLimits) -> list[_Member]:
    out = []
    for info in zf.infolist():
        name = _normalise(info.filename, archive)
        mode = info.external_attr >> 16
        kind = "dir" if info.is_dir() else "file"
        if info.create_system == 3 and mode:  # unix attributes recorded
            if stat.S_ISLNK(mode):
                kind = "symlink"
            elif stat.S_ISCHR(mode) or stat.S_ISBLK(mode) or stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode):
                raise ExtractionError(f"{archive}: member {info.filename!r} is a device file, FIFO or socket")
        if (
            kind == "file"
            and info.file_size > _CHUNK
            and info.file_size > limits.max_ratio * max(info.compress_size, 1)
        ):
            raise ExtractionError(
                f"{archive}: member {info.filename!r} unpacks {info.file_size} bytes from {info.compress_size} "
                f"(ratio over the limit {limits.max_ratio:g}; an archive bomb?)"
            )
        link = zf.read(info).decode("utf-8", "replace") if kind == "symlink" and info.file_size < 4096 else ""
        if kind == "symlink" and not link:
            raise ExtractionError(f"{archive}: member {info.filename!r} is a symlink without a readable target")
        out.append(_Member(name, kind, info.file_size, link, info))
    return out


def _tar_members(tf: tarfile.TarFile, archive: str) -> list[_Member]:
    out = []
    for info in tf.getmembers():
        name = _normalise(info.name, archive)
        if info.isdir():
            kind = "dir"
        elif info.isreg():
            kind = "file"
        elif info.issym():
            kind = "symlink"
        elif info.islnk():
            kind = "hardlink"
        else:
            raise ExtractionError(f"{archive}: member {info.name!r} is a device file, FIFO or other special file")
        out.append(_Member(name, kind, info.size if kind == "file" else 0, info.linkname, info))
    return out


def _check(members: list[_Member], archive: str, limits: ExtractionLimits) -> None:
    if len(members) > limits.max_members:
        raise ExtractionError(f"{archive}: {len(members)} members, over the limit of {limits.max_members}")
    total = sum(m.size for m in members)
    if total > limits.max_total_bytes:
        raise ExtractionError(f"{archive}: unpacks to {total} bytes, over the limit of {limits.max_total_bytes}")
    seen: dict[str, str] = {}
    for m in members:
        if m.name in seen and not (m.kind == "dir" and seen[m.name] == "dir"):
            raise ExtractionError(f"{archive}: member {m.name!r} appears twice")
        seen[m.name] = m.kind
        if m.kind == "symlink" and not _link_inside(m.name, m.link, relative_to_member=True):
            raise ExtractionError(f"{archive}: symlink {m.name!r} -> {m.link!r} points outside the target folder")
        if m.kind == "hardlink":
            target = _normalise(m.link, archive) if _link_inside(m.name, m.link, relative_to_member=False) else None
            if target is None or seen.get(target) != "file":
                raise ExtractionError(
                    f"{archive}: hard link {m.name!r} -> {m.link!r} does not point to an earlier file inside the "
                    "target folder"
                )
    links = {m.name for m in members if m.kind == "symlink"}
    for m in members:
        parents = PurePosixPath(m.name).parents
        through = next((str(p) for p in parents if str(p) in links), None)
        if through is not None:
            raise ExtractionError(f"{archive}: member {m.name!r} would be written through the symlink {through!r}")


def _copy_limited(src: BinaryIO, dest: Path, budget: list[int], archive: str, name: str) -> None:
    with open(dest, "xb") as out:
        while chunk := src.read(_CHUNK):
            budget[0] -= len(chunk)
            if budget[0] < 0:
                raise ExtractionError(
                    f"{archive}: {name!r} unpacks to more bytes than its header or the size limit says"
                )
            out.write(chunk)


def _inside(root: Path, path: Path) -> None:
    """Refuse a write whose real parent folder is not inside `root` (links on the way)."""
    real_root, real_parent = os.path.realpath(root), os.path.realpath(path.parent)
    if os.path.commonpath([real_root, real_parent]) != real_root:
        raise ExtractionError(f"refusing to write {path}: its folder resolves outside {root}")


def _open_member(opened: Any, m: _Member) -> BinaryIO:
    if isinstance(opened, zipfile.ZipFile):
        return opened.open(m.raw)
    stream = opened.extractfile(m.raw)
    if stream is None:
        raise ExtractionError(f"cannot read member {m.name!r}")
    return stream


def _unpack(opened: Any, members: list[_Member], root: Path, archive: str, limits: ExtractionLimits) -> None:
    budget = [limits.max_total_bytes]
    for m in members:
        dest = root / m.name
        _inside(root, dest)
        if m.kind == "dir":
            dest.mkdir(parents=True, exist_ok=True)
            continue
        dest.parent.mkdir(parents=True, exist_ok=True)
        _inside(root, dest)
        if m.kind == "symlink":
            os.symlink(m.link, dest)
        elif m.kind == "hardlink":
            shutil.copyfile(root / _normalise(m.link, archive), dest)  # a copy: no link to reason about later
        else:
            with _open_member(opened, m) as src:
                _copy_limited(src, dest, budget, archive, m.name)


def _open_archive(path: str) -> zipfile.ZipFile | tarfile.TarFile:
    if zipfile.is_zipfile(path):
        return zipfile.ZipFile(path)
    if tarfile.is_tarfile(path):
        return tarfile.open(path)
    raise ExtractionError(f"{path} is neither a zip nor a tar archive")


def verify_sha256(path: str | os.PathLike, expected: str, what: str) -> str:
    """The file's sha256 if it equals `expected`; otherwise `ExtractionError` naming `what` and both digests."""
    actual = sha256_file(path)
    if actual != expected.lower():
        raise ExtractionError(
            f"{what}: checksum mismatch for {path}: sha256 {actual}, expected {expected.lower()}; the file is "
            "corrupt or not the recorded one (nothing was extracted)"
        )
    return actual


def safe_extract(
    archive: str | os.PathLike,
    target: str | os.PathLike,
    *,
    limits: ExtractionLimits | None = None,
    sha256: str | None = None,
    select: Callable[[Path], Path] | None = None,
    validate: Callable[[Path], None] | None = None,
    marker: dict[str, Any] | None = None,
    what: str | None = None,
) -> Path:
    """Extract `archive` (zip or tar, any compression tarfile reads) so that `target` holds its contents.

    Args:
        sha256: expected hex digest; checked before anything is unpacked.
        select: picks the folder to install from the unpacked tree (default: the whole tree), e.g. the one folder
            an archive wraps its files in.
        validate: called on the staged folder (already named like `target`, inside the temporary sibling) before it
            is moved into place; raise to refuse it.
        marker: extra fields for the completion marker.
        what: how messages name the archive (default: its file name).

    Returns:
        `target`. A `target` that exists already is refused (complete or not: the caller decides to skip or remove).
    """
    archive, target = os.fspath(archive), Path(os.path.abspath(target))
    limits = limits or ExtractionLimits()
    if os.path.lexists(target):
        state = "is already complete" if is_complete(target) else "exists without a completion marker (partial?)"
        raise ExtractionError(f"{target} {state}; remove it to extract again")
    digest = verify_sha256(archive, sha256, what or os.path.basename(archive)) if sha256 else sha256_file(archive)
    with _open_archive(archive) as opened:
        if isinstance(opened, zipfile.ZipFile):
            members = _zip_members(opened, archive, limits)
        else:
            members = _tar_members(opened, archive)
        _check(members, archive, limits)
        tmp = Path(temporary_sibling(target))
        try:
            unpacked = tmp / "unpacked"
            unpacked.mkdir()
            _unpack(opened, members, unpacked, archive, limits)
            chosen = select(unpacked) if select else unpacked
            staged = tmp / target.name
            os.rename(chosen, staged)
            if validate is not None:
                validate(staged)
            info = {"archive": os.path.basename(archive), "sha256": digest, "members": len(members)}
            atomic_write_json(staged / EXTRACTED_MARKER, info | (marker or {}))
            os.rename(staged, target)  # one step: the target appears complete or not at all
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return target


__all__ = [
    "EXTRACTED_MARKER",
    "ExtractionError",
    "ExtractionLimits",
    "is_complete",
    "read_marker",
    "safe_extract",
    "sha256_file",
    "verify_sha256",
]
