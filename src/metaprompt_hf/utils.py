"""Small shared helpers: atomic file and folder writes, consistent folder reads, standard JSON, and file resolution
(local folder or Hub repo)."""

from __future__ import annotations

import ctypes
import errno
import json
import math
import os
import shutil
import sys
import tempfile
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .constants import LIBRARY_NAME, TMP_FOLDER_INFIX
from .hub.cache import diagnose_cache


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write `data` to `path` through a temporary file in the same folder and `os.replace`.

    A crash mid-write leaves either the old file or none, never a truncated one.
    """
    atomic_write_with(path, lambda tmp: Path(tmp).write_bytes(data))


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_with(path: str | os.PathLike, writer: Callable[[str], object]) -> None:
    """Call `writer(tmp_path)` and move the result onto `path` atomically."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=folder)
    os.close(fd)
    try:
        writer(tmp)
        # mkstemp creates the file 0600; give it the mode a plain `open(path, "w")` would (0666 minus the umask) so
        # saved adapters stay readable by the group, a Space's server user or a shared cache.
        os.chmod(tmp, 0o666 & ~_umask())
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def to_json(obj: Any, *, what: str, indent: int | None = 2, sort_keys: bool = False) -> str:
    """`obj` as standard JSON text (RFC 8259: no NaN or Infinity, which `json.dumps` writes by default and strict
    readers refuse).

    Raises:
        ValueError: `obj` holds a non-finite float; the message names `what` (e.g. the file) and the key path,
            such as `results.json: [0].base is nan`.
    """
    bad = _non_finite(obj, "")
    if bad is not None:
        path, value = bad
        raise ValueError(f"{what}: {path or 'the value'} is {value}, which standard JSON cannot hold")
    return json.dumps(obj, indent=indent, sort_keys=sort_keys, allow_nan=False)


def _non_finite(obj: Any, path: str) -> tuple[str, float] | None:
    if isinstance(obj, float):
        return None if math.isfinite(obj) else (path, obj)
    if isinstance(obj, dict):
        items = ((f"{path}.{k}" if path else str(k), v) for k, v in obj.items())
    elif isinstance(obj, (list, tuple)):
        items = ((f"{path}[{i}]", v) for i, v in enumerate(obj))
    else:
        return None
    for sub_path, value in items:
        found = _non_finite(value, sub_path)
        if found is not None:
            return found
    return None


def atomic_write_json(path: str | os.PathLike, obj: Any, *, indent: int | None = 2, sort_keys: bool = False) -> None:
    """`to_json(obj)` written atomically to `path` (errors name the file's base name)."""
    atomic_write_text(path, to_json(obj, what=os.path.basename(os.fspath(path)), indent=indent, sort_keys=sort_keys))


class UnreadableFileError(ValueError):
    """A file that is there but cannot be read as what it should be (truncated, garbage, wrong fields); the message
    names the file and what is wrong."""


def read_json_file(path: str | os.PathLike, *, required: tuple[str, ...] = ()) -> dict[str, Any]:
    """A JSON object from `path` that holds every key of `required`.

    Raises:
        FileNotFoundError: no such file.
        UnreadableFileError: not UTF-8 JSON, not an object, or lacking a required key.
    """
    path = os.fspath(path)
    try:
        with open(path, encoding="utf-8") as f:
            value = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise UnreadableFileError(f"{path}: not valid JSON ({err}); the file is damaged") from err
    if not isinstance(value, dict):
        raise UnreadableFileError(f"{path}: expected a JSON object, got {type(value).__name__}")
    missing = [k for k in required if k not in value]
    if missing:
        raise UnreadableFileError(f"{path}: lacks {missing}; it was not written by this version, or is damaged")
    return value


def read_safetensors_file(path: str | os.PathLike) -> dict[str, Any]:
    """The tensors of a safetensors file (never pickle).

    Raises:
        FileNotFoundError: no such file.
        UnreadableFileError: truncated, or not a safetensors file.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: no such file")
    try:
        return load_file(path)
    except (SafetensorError, ValueError) as err:  # a short or garbled header, offsets past the end of the file
        raise UnreadableFileError(f"{path}: cannot be read as safetensors ({err}); the file is damaged") from err


def _umask() -> int:
    mask = os.umask(0o022)  # reading the umask means setting it; restored at once
    os.umask(mask)
    return mask


def atomic_replace_dir(tmp_dir: str | os.PathLike, final_dir: str | os.PathLike) -> None:
    """Move a fully written `tmp_dir` to `final_dir` as one unit; an older `final_dir` is swapped out atomically
    (Linux `renameat2(RENAME_EXCHANGE)`; elsewhere two renames) and then removed."""
    tmp_dir, final_dir = os.fspath(tmp_dir), os.fspath(final_dir)
    try:
        os.rename(tmp_dir, final_dir)  # no folder there yet, or an empty one
        return
    except OSError:
        if not os.path.isdir(final_dir):
            raise
    if _rename_exchange(tmp_dir, final_dir):
        shutil.rmtree(tmp_dir, ignore_errors=True)  # it now holds the old contents
        return
    old = f"{final_dir}{TMP_FOLDER_INFIX}old-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    os.replace(final_dir, old)
    os.replace(tmp_dir, final_dir)
    shutil.rmtree(old, ignore_errors=True)


def _rename_exchange(a: str, b: str) -> bool:
    """Atomically swap two paths (Linux >= 3.15); False where the call is unavailable."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    if renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP):
        return False
    raise OSError(err, f"could not swap {a} and {b}: {os.strerror(err)}")


def temporary_sibling(final_dir: str | os.PathLike) -> str:
    """A new empty folder next to `final_dir`, named so that loaders never take it for an adapter and
    `remove_orphan_siblings` can tell whether its writer is still alive."""
    final_dir = os.path.abspath(os.fspath(final_dir))
    parent, base = os.path.split(final_dir)
    os.makedirs(parent, exist_ok=True)
    remove_orphan_siblings(final_dir)
    path = os.path.join(parent, f".{base}{TMP_FOLDER_INFIX}{os.getpid()}-{uuid.uuid4().hex[:12]}")
    os.mkdir(path)
    os.chmod(path, 0o777 & ~_umask())
    return path


def remove_orphan_siblings(final_dir: str | os.PathLike) -> list[str]:
    """Remove temporary siblings of `final_dir` left by interrupted saves whose process is gone; returns them."""
    final_dir = os.path.abspath(os.fspath(final_dir))
    parent, base = os.path.split(final_dir)
    prefix = f".{base}{TMP_FOLDER_INFIX}"
    removed = []
    for name in os.listdir(parent) if os.path.isdir(parent) else []:
        if not name.startswith(prefix):
            continue
        pid = name[len(prefix) :].split("-", 1)[0]
        if pid.isdigit() and not _process_alive(int(pid)):
            shutil.rmtree(os.path.join(parent, name), ignore_errors=True)
            removed.append(name)
    return removed


def _process_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def write_folder(final_dir: str | os.PathLike, files: dict[str, bytes]) -> None:
    """Write `files` (name → bytes) into `final_dir` so that no reader ever sees a mix of old and new files.

    A folder holding nothing but these files (or no folder) is replaced as one unit: the files are written into a
    temporary sibling which is then swapped into place. A folder that also holds other things (a training output
    folder) keeps them: the files are then replaced one by one, in the given order, each atomically; callers
    link the files (e.g. a digest of one recorded in the other) so that a reader can detect a mix and read again.
    """
    final_dir = os.fspath(final_dir)
    if os.path.exists(final_dir) and not os.path.isdir(final_dir):
        raise NotADirectoryError(f"{final_dir} exists and is not a folder")
    if os.path.isdir(final_dir) and set(os.listdir(final_dir)) - set(files):
        for name, data in files.items():
            atomic_write_bytes(os.path.join(final_dir, name), data)
        return
    tmp = temporary_sibling(final_dir)
    try:
        for name, data in files.items():
            path = os.path.join(tmp, name)
            with open(path, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
        atomic_replace_dir(tmp, final_dir)
    finally:
        if os.path.isdir(tmp):
            shutil.rmtree(tmp, ignore_errors=True)


def read_folder_files(folder: str | os.PathLike, names: tuple[str, ...]) -> dict[str, bytes]:
    """Read several files of one folder through one handle on the folder, so a concurrent swap of the whole folder
    (`write_folder`) cannot give files from two versions. Raises `FileNotFoundError` naming a missing file."""
    folder = os.fspath(folder)
    dir_fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        out = {}
        for name in names:
            try:
                fd = os.open(name, os.O_RDONLY, dir_fd=dir_fd)
            except FileNotFoundError:
                raise FileNotFoundError(f"{os.path.join(folder, name)}: no such file") from None
            with os.fdopen(fd, "rb") as f:
                out[name] = f.read()
        return out
    finally:
        os.close(dir_fd)


def resolve_file(
    path_or_repo_id: str,
    filename: str,
    *,
    subfolder: str | None = None,
    revision: str | None = None,
    cache_dir: str | os.PathLike | None = None,
    token: str | bool | None = None,
    local_files_only: bool = False,
    force_download: bool = False,
) -> str:
    """Return a local path to `filename` from a local folder or a Hub repo.

    Hub repos go through `hf_hub_download`, so `HF_HUB_OFFLINE=1` resolves them from the cache alone.
    Raises `FileNotFoundError` naming the folder or repo and the file.
    """
    folder = os.path.join(path_or_repo_id, subfolder) if subfolder else path_or_repo_id
    if os.path.isdir(folder):
        candidate = os.path.join(folder, filename)
        if not os.path.isfile(candidate):
            present = sorted(os.listdir(folder))
            hint = ""
            if any(p.endswith((".bin", ".pt", ".pth", ".ckpt", ".pkl")) for p in present):
                hint = " (pickle checkpoints such as .bin/.pt are never loaded; only safetensors and JSON)"
            raise FileNotFoundError(f"{folder} has no {filename}; it holds {present}{hint}")
        return candidate
    if os.path.sep in path_or_repo_id and not _looks_like_repo_id(path_or_repo_id):
        raise FileNotFoundError(f"{path_or_repo_id}: no such local folder, and it is not a Hub repo id")

    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError, HFValidationError, LocalEntryNotFoundError

    from .constants import __version__

    try:
        return hf_hub_download(
            path_or_repo_id,
            filename,
            subfolder=subfolder,
            revision=revision,
            cache_dir=cache_dir,
            token=token,
            local_files_only=local_files_only,
            force_download=force_download,
            library_name=LIBRARY_NAME,
            library_version=__version__,
        )
    except HFValidationError as err:
        raise FileNotFoundError(f"{path_or_repo_id}: no such local folder, and not a valid Hub repo id") from err
    except (EntryNotFoundError, LocalEntryNotFoundError) as err:
        broken = diagnose_cache(path_or_repo_id, filename, revision=revision, subfolder=subfolder, cache_dir=cache_dir)
        if broken is not None:
            raise FileNotFoundError(f"{filename} of Hub repo {path_or_repo_id!r}: {broken}") from err
        raise FileNotFoundError(
            f"{filename} not found in Hub repo {path_or_repo_id!r} (revision {revision or 'main'}); offline runs "
            f"(HF_HUB_OFFLINE=1) resolve only what is already in the Hugging Face cache"
        ) from err


def _looks_like_repo_id(value: str) -> bool:
    parts = value.split("/")
    return len(parts) == 2 and all(parts) and not value.startswith((".", "/", "~"))
