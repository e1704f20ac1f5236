"""Recognising a dataset written by `python -m metaprompt_hf.export_dataset`: its folder holds `EXPORT_INFO_FILE`
(JSON) naming the standard dataset it came from, so that training on the export picks that dataset's templates and
records the few-shot sample by the same relative file names as training on the `DATA/` layout."""

from __future__ import annotations

import json
import os
from typing import Any

EXPORT_INFO_FILE = "metaprompt_dataset.json"


def export_info(name_or_path: str) -> dict[str, Any] | None:
    """The export's info (`dataset_name`, `data_dir_relative_paths`, ...) when `name_or_path` is an exported
    folder; None otherwise (any other folder, a Hub id, a miniworld name)."""
    path = os.path.join(name_or_path, EXPORT_INFO_FILE)
    if not os.path.isfile(path):
        return None
    with open(path, encoding="utf-8") as f:
        info = json.load(f)
    return info if isinstance(info, dict) and isinstance(info.get("dataset_name"), str) else None
