"""What is wrong with a repo in the Hugging Face cache, when a file cannot be resolved from it.

`huggingface_hub` reports a broken cache entry as a file "not found in the cache", while the files are there and
it is the ref (`refs/main`: empty, garbage, or naming a missing snapshot), a dangling link to a blob, or an
interrupted download that is broken. `diagnose_cache` reads the cache layout
(https://huggingface.co/docs/huggingface_hub/guides/manage-cache) and says which, with the path and the repair.
"""

from __future__ import annotations

import os
import re

__all__ = ["diagnose_cache"]

_COMMIT = re.compile(r"^[0-9a-f]{40}$")


def diagnose_cache(
    repo_id: str,
    filename: str,
    *,
    revision: str | None = None,
    subfolder: str | None = None,
    cache_dir: str | os.PathLike | None = None,
    repo_type: str = "model",
) -> str | None:
    """A sentence naming what is broken in the cache entry of `repo_id` for `filename` and how to repair it, or
    None when the cache holds no entry for the repo (nothing there to blame) or the entry looks sound."""
    if cache_dir is None:
        from huggingface_hub import constants

        cache_dir = constants.HF_HUB_CACHE
    repo_dir = os.path.join(os.fspath(cache_dir), f"{repo_type}s--{repo_id.replace('/', '--')}")
    if not os.path.isdir(repo_dir):
        return None
    revision = revision or "main"
    repair = (
        f"remove {repo_dir} and download {repo_id} again while online (e.g. `hf download {repo_id}`), or copy a "
        "complete cache entry there"
    )
    snapshots = os.path.join(repo_dir, "snapshots")
    present = sorted(os.listdir(snapshots)) if os.path.isdir(snapshots) else []
    if _COMMIT.match(revision):
        commit = revision
    else:
        ref = os.path.join(repo_dir, "refs", revision)
        if not os.path.isfile(ref):
            if not present:
                return f"the Hugging Face cache entry {repo_dir} holds no snapshot and no refs/{revision}: {repair}"
            return (
                f"the Hugging Face cache entry {repo_dir} has no refs/{revision} (snapshots there: {present}); write "
                f"the commit hash of revision {revision!r} into {ref}, or {repair}"
            )
        with open(ref, "rb") as f:
            raw = f.read()
        commit = raw.decode("utf-8", "replace").strip()
        if not commit:
            return f"{ref} is empty instead of holding a commit hash (snapshots there: {present}); {_fix_ref(ref)}, or {repair}"
        if not _COMMIT.match(commit):
            return (
                f"{ref} holds {commit[:60]!r}, not a 40-character commit hash (snapshots there: {present}); "
                f"{_fix_ref(ref)}, or {repair}"
            )
    snapshot = os.path.join(snapshots, commit)
    if not os.path.isdir(snapshot):
        return (
            f"the Hugging Face cache entry {repo_dir} names commit {commit} for revision {revision!r}, but "
            f"{snapshot} is missing (snapshots there: {present}); {repair}"
        )
    path = os.path.join(snapshot, subfolder, filename) if subfolder else os.path.join(snapshot, filename)
    blobs = os.path.join(repo_dir, "blobs")
    incomplete = sorted(n for n in os.listdir(blobs) if n.endswith(".incomplete")) if os.path.isdir(blobs) else []
    if os.path.islink(path) and not os.path.exists(path):
        return f"{path} links to {os.readlink(path)}, which is missing (an incomplete or pruned download); {repair}"
    if not os.path.exists(path):
        if incomplete:
            return (
                f"{filename} is missing from {snapshot} and {blobs} holds an interrupted download "
                f"({incomplete[0]}); {repair}"
            )
        return f"the snapshot {snapshot} has no {filename} (it holds {sorted(os.listdir(snapshot))})"
    if os.path.isfile(path) and os.path.getsize(path) == 0:
        return f"{path} is empty (an interrupted download); {repair}"
    return None


def _fix_ref(ref: str) -> str:
    return f"write the snapshot's commit hash into {ref}"
