"""Small shared helpers: atomic file writes, standard JSON and file resolution (local folder or Hub repo)."""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any


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


def _umask() -> int:
    mask = os.umask(0o022)  # reading the umask means setting it; restored at once
    os.umask(mask)
    return mask


def atomic_replace_dir(tmp_dir: str | os.PathLike, final_dir: str | os.PathLike) -> None:
    """Move a fully written `tmp_dir` to `final_dir`, replacing an older `final_dir` only once the new one is whole."""
    tmp_dir, final_dir = os.fspath(tmp_dir), os.fspath(final_dir)
    if os.path.exists(final_dir):
        old = f"{final_dir}.old-{os.getpid()}"
        os.replace(final_dir, old)
        os.replace(tmp_dir, final_dir)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp_dir, final_dir)


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

    from . import __version__

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
            library_name="metaprompt_hf",
            library_version=__version__,
        )
    except HFValidationError as err:
        raise FileNotFoundError(f"{path_or_repo_id}: no such local folder, and not a valid Hub repo id") from err
    except (EntryNotFoundError, LocalEntryNotFoundError) as err:
        raise FileNotFoundError(
            f"{filename} not found in Hub repo {path_or_repo_id!r} (revision {revision or 'main'}); offline runs "
            f"(HF_HUB_OFFLINE=1) resolve only what is already in the Hugging Face cache"
        ) from err


def _looks_like_repo_id(value: str) -> bool:
    parts = value.split("/")
    return len(parts) == 2 and all(parts) and not value.startswith((".", "/", "~"))
