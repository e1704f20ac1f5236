"""The benchmark datasets: one rendered image (`render_image`), the base/new class rule and `load_miniworld`."""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import tempfile
from collections.abc import Mapping
from typing import Any

import datasets
import numpy as np
from PIL import Image

from .catalog import (
    _BENCH_STREAM,
    _GLYPHS,
    _P_CLUTTER,
    _SHIFT_KEY,
    _SPLITS,
    BENCH_SHIFT,
    CLASS_NAMES,
    DATASETS,
    DG_DATASET,
    DG_DOMAINS,
    MINIWORLD_VERSION,
    SPLIT_SIZES,
    _rng,
)
from .digits import _digit_image, _real_partition, _shift_digit
from .glyphs import _render_glyph
from .rendering import _render_parts, _Shift


def render_image(
    name: str,
    label: int,
    *,
    rng: np.random.Generator,
    image_size: int = 32,
    domain: str | None = None,
    clutter: bool = False,
    shift_rng: np.random.Generator | None = None,
) -> np.ndarray:
    """Render one procedural image of class ``label`` of dataset ``name`` as an ``(H, W, 3)`` uint8 array.

    ``domain`` selects the style for ``styles`` (one of :data:`DG_DOMAINS`); ``shapes`` are drawn ``flat`` and
    ``objects`` as ``clipart``. With ``shift_rng``, the dataset's benchmark-only shift (:data:`BENCH_SHIFT`) is
    applied, drawn from that generator. ``digits`` are real images and cannot be rendered (see
    :func:`load_miniworld`).
    """
    cls = CLASS_NAMES[name][label]
    shift = _Shift(shift_rng, **BENCH_SHIFT.get(name, {})) if shift_rng is not None else None
    if name == "glyphs":
        return _render_glyph(_GLYPHS[label][1], rng, image_size, clutter, shift)[0]
    if name == "shapes":
        return _render_parts(cls, "flat", rng, image_size, clutter, shift)[0]
    if name == "objects":
        return _render_parts(cls, "clipart", rng, image_size, clutter, shift)[0]
    if name == DG_DATASET:
        if domain not in DG_DOMAINS:
            raise ValueError(f"domain must be one of {DG_DOMAINS}, got {domain!r}")
        return _render_parts(cls, domain, rng, image_size, clutter, shift)[0]
    raise ValueError(f"cannot render dataset {name!r}")


def base_new_classes(name: str) -> tuple[list[str], list[str]]:
    """Split a dataset's class names by docs/method.md §6.1: the first ceil(C/2) label ids are base, the rest new."""
    names = list(CLASS_NAMES[name])
    k = math.ceil(len(names) / 2)
    return names[:k], names[k:]


def _check(name: str) -> None:
    if name not in DATASETS:
        raise ValueError(f"unknown mini-world dataset {name!r}; choose from {DATASETS}")


def _build_split(name: str, split: str, per_class: int, seed: int, image_size: int) -> datasets.Dataset:
    ds_id, sp_id = DATASETS.index(name), _SPLITS.index(split)
    names = CLASS_NAMES[name]
    images: list[Image.Image] = []
    labels: list[int] = []
    domains: list[int] = []
    if name == "digits":
        bench, _ = _real_partition()
        sizes = SPLIT_SIZES["digits"]
        start = sum(sizes[s] for s in _SPLITS[:sp_id])
        orders = {c: _rng(_BENCH_STREAM, seed, ds_id, c).permutation(len(bench[c])) for c in range(len(names))}
        for k in range(per_class):
            for c in range(len(names)):
                src, idx = bench[c][int(orders[c][start + k])]
                shift = _Shift(
                    _rng(_BENCH_STREAM, seed, ds_id, sp_id, c, 0, k, _SHIFT_KEY), **BENCH_SHIFT.get(name, {})
                )
                images.append(Image.fromarray(_shift_digit(_digit_image(src, idx, image_size), shift)))
                labels.append(c)
    else:
        doms = DG_DOMAINS if name == DG_DATASET else (None,)
        for k in range(per_class):
            for d_id, dom in enumerate(doms):
                for c in range(len(names)):
                    rng = _rng(_BENCH_STREAM, seed, ds_id, sp_id, c, d_id, k)
                    shift_rng = _rng(_BENCH_STREAM, seed, ds_id, sp_id, c, d_id, k, _SHIFT_KEY)
                    clutter = bool(rng.random() < _P_CLUTTER[_BENCH_STREAM])
                    arr = render_image(
                        name, c, rng=rng, image_size=image_size, domain=dom, clutter=clutter, shift_rng=shift_rng
                    )
                    images.append(Image.fromarray(arr))
                    labels.append(c)
                    domains.append(d_id)
    cols: dict[str, Any] = {"image": images, "label": labels}
    feats: dict[str, Any] = {"image": datasets.Image(), "label": datasets.ClassLabel(names=list(names))}
    if name == DG_DATASET:
        cols["domain"] = domains
        feats["domain"] = datasets.ClassLabel(names=list(DG_DOMAINS))
    return datasets.Dataset.from_dict(cols, features=datasets.Features(feats), split=datasets.NamedSplit(split))


def load_miniworld(
    name: str,
    *,
    seed: int = 0,
    image_size: int = 32,
    cache_dir: str | os.PathLike[str] | None = None,
    split_sizes: Mapping[str, int] | None = None,
) -> datasets.DatasetDict:
    """Generate (or load from ``cache_dir``) one mini-world dataset.

    Args:
        name: one of :data:`B2N_DATASETS` or :data:`DG_DATASET`.
        seed: data seed. ``0`` is the benchmark data; other values give other draws of the same distribution (for
            ``digits``: another assignment of the fixed benchmark pool of real images to the three splits).
        image_size: side of the square RGB images in pixels (the mini CLIP uses 32).
        cache_dir: if given, the generated :class:`~datasets.DatasetDict` is saved there with ``save_to_disk`` under
            a key made of name, seed, size, split sizes and :data:`MINIWORLD_VERSION`, and reloaded next time.
        split_sizes: images per class (per domain and class for ``styles``) for ``train``/``validation``/``test``;
            defaults to :data:`SPLIT_SIZES`. Smaller sizes give a per-class prefix of the default data.

    Returns:
        ``DatasetDict`` with splits ``train`` (the pool few-shot samples are drawn from), ``validation`` and ``test``;
        columns ``image`` (``datasets.Image``), ``label`` (``ClassLabel`` with :data:`CLASS_NAMES` as names) and,
        for ``styles``, ``domain`` (``ClassLabel`` with :data:`DG_DOMAINS` as names). Rows cycle through the
        classes (and, for ``styles``, domains) so that any prefix is balanced.
    """
    _check(name)
    if seed < 0:
        raise ValueError("seed must be non-negative")
    sizes = dict(SPLIT_SIZES[name])
    if split_sizes is not None:
        unknown = set(split_sizes) - set(_SPLITS)
        if unknown:
            raise ValueError(f"unknown splits {sorted(unknown)}")
        for split, n in split_sizes.items():
            if int(n) < 1:
                raise ValueError(f"split_sizes[{split!r}] must be positive, got {n}")
            if name == "digits" and int(n) > SPLIT_SIZES[name][split]:  # the real-image pool is fixed
                raise ValueError(f"digits: split {split!r} holds at most {SPLIT_SIZES[name][split]} images per class")
            sizes[split] = int(n)
    target = None
    if cache_dir is not None:
        tag = hashlib.sha1(json.dumps(sizes, sort_keys=True).encode()).hexdigest()[:8]
        target = os.path.join(os.fspath(cache_dir), f"{name}-seed{seed}-px{image_size}-{tag}-v{MINIWORLD_VERSION}")
        if os.path.isfile(os.path.join(target, "dataset_dict.json")):
            return datasets.load_from_disk(target)
    dd = datasets.DatasetDict({s: _build_split(name, s, sizes[s], seed, image_size) for s in _SPLITS})
    return save_to_cache(dd, target)


def save_to_cache(dd: datasets.DatasetDict, target: str | None) -> datasets.DatasetDict:
    """Store `dd` at `target` (when given) through a temporary folder renamed into place, so concurrent builders
    never see half a dataset; returns the stored copy (memory-mapped) or `dd` itself without a cache."""
    if target is None:
        return dd
    os.makedirs(os.path.dirname(target), exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=".tmp-", dir=os.path.dirname(target))
    try:
        dd.save_to_disk(tmp)
        os.replace(tmp, target)
    except OSError:  # another process won the race
        shutil.rmtree(tmp, ignore_errors=True)
    return datasets.load_from_disk(target) if os.path.isdir(target) else dd
