"""Readers for the standard benchmark layouts: `--dataset_name <name> --data_dir <DATA>` reads `<DATA>/<folder>`
laid out as CoOp (base-to-new, cross-dataset, ImageNet shift) or Dassl / the MetaPrompt code (domain
generalisation) expect it, with their class names, label order and fixed splits (docs/method.md §6).

Each reader is protocol-independent: it returns every split the layout defines (`train`, `val`, `test`; only
`test` for the ImageNet variants) and the protocols pick from them. Few-shot samples are always drawn by this
package's seeded sampler, never read from the `split_fewshot/*.pkl` caches those codebases write.
Adding a layout: one reader function and one line in `READERS`.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

from ..loading import DataError, ImageClassificationData
from . import coop, dassl

READERS: dict[str, Callable[[str], ImageClassificationData]] = {
    "imagenet": coop.read_imagenet,
    **{name: partial(coop.read_split_file, name) for name in coop.SPLIT_FILE_DATASETS},
    "fgvc_aircraft": coop.read_fgvc_aircraft,
    "imagenet_v2": coop.read_imagenet_v2,
    "imagenet_sketch": coop.read_imagenet_sketch,
    "imagenet_a": coop.read_imagenet_a,
    "imagenet_r": coop.read_imagenet_r,
    "pacs": dassl.read_pacs,
    "vlcs": dassl.read_vlcs,
    "office_home": dassl.read_office_home,
    "domainnet": dassl.read_domainnet,
}

# The folder each dataset lives in under DATA/ (the first one the reader accepts).
FOLDERS: dict[str, str] = {
    "imagenet": "imagenet",
    **{name: spec[0] for name, spec in coop.SPLIT_FILE_DATASETS.items()},
    "fgvc_aircraft": "fgvc_aircraft",
    "imagenet_v2": "imagenetv2",
    "imagenet_sketch": "imagenet-sketch",
    "imagenet_a": "imagenet-adversarial",
    "imagenet_r": "imagenet-rendition",
    "pacs": "pacs",
    "vlcs": "vlcs",
    "office_home": "office_home",
    "domainnet": "domainnet",
}

DG_DOMAINS = dassl.DOMAINS


def load_standard(name: str, data_dir: str) -> ImageClassificationData:
    """Dataset `name` (a key of `READERS`) from its standard layout under `data_dir` (raises `DataError`)."""
    if name not in READERS:
        raise DataError(f"dataset_name: with --data_dir, expected one of {sorted(READERS)}, got {name!r}")
    return READERS[name](data_dir)


__all__ = ["DG_DOMAINS", "FOLDERS", "READERS", "load_standard"]
