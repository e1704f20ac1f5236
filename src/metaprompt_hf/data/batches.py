"""Training and evaluation batches: seeded augmentation, the image dataset, collation and the few-shot batch
sampler (docs/method.md §4).

Every random choice is a function of (seed, epoch, sample) rather than of a global RNG stream, so a run resumed
from a checkpoint sees exactly the batches and augmentations of an uninterrupted one, with any number of workers.
"""

from __future__ import annotations

import logging
import math
from collections import Counter, defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from PIL import Image

from .images import with_decoded_images

logger = logging.getLogger(__name__)


# ---------------------------------------------------------------------------------------------------- transforms
def _sample_seed(*keys: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([int(k) & 0xFFFFFFFF for k in keys]))


@dataclass
class TrainTransform:
    """RandomResizedCrop (scale, ratio 3/4-4/3, bicubic) + horizontal flip + CLIP normalisation, in PIL/numpy
    (docs/method.md §4; no torchvision). Randomness comes from the per-sample seed passed in."""

    size: int
    mean: Sequence[float]
    std: Sequence[float]
    scale: tuple[float, float] = (0.08, 1.0)
    flip: bool = True

    def __call__(self, image: Image.Image, rng: np.random.Generator) -> torch.Tensor:
        w, h = image.size
        area = w * h
        box = (0, 0, w, h)
        for _ in range(10):
            target = area * rng.uniform(*self.scale)
            ratio = math.exp(rng.uniform(math.log(3 / 4), math.log(4 / 3)))
            cw, ch = round(math.sqrt(target * ratio)), round(math.sqrt(target / ratio))
            if 0 < cw <= w and 0 < ch <= h:
                x0, y0 = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
                box = (x0, y0, x0 + cw, y0 + ch)
                break
        else:  # fall back to a centre crop, as torchvision does
            side = min(w, h)
            box = ((w - side) // 2, (h - side) // 2, (w - side) // 2 + side, (h - side) // 2 + side)
        image = image.resize((self.size, self.size), Image.Resampling.BICUBIC, box=box)
        if self.flip and rng.random() < 0.5:
            image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        return _to_tensor(image, self.mean, self.std)


def _to_tensor(image: Image.Image, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    array = np.asarray(image, dtype=np.float32) / 255.0
    array = (array - np.asarray(mean, dtype=np.float32)) / np.asarray(std, dtype=np.float32)
    return torch.from_numpy(array.transpose(2, 0, 1).copy())


def processor_size(image_processor: Any) -> int:
    crop = getattr(image_processor, "crop_size", None) or {}
    if isinstance(crop, dict) and "height" in crop:
        return int(crop["height"])
    size = getattr(image_processor, "size", None) or {}
    return int(size.get("shortest_edge") or size.get("height"))


#: Bytes of decoded RGB images a training `ImageDataset` keeps (per process): a few-shot training set is read once per
#: epoch, and reading a row back from Arrow and decoding it again cost a quarter of a small model's training step.
#: Images past the budget are decoded on every access; the items are the same either way. An evaluation set is read
#: once and keeps nothing.
DECODED_CACHE_BYTES = 256 * 2**20


class ImageDataset(torch.utils.data.Dataset):
    """Rows of a `datasets.Dataset` as model inputs. Images are decoded by the rows' `with_transform`
    (`dataset_images.with_decoded_images`) and, with a `train_transform`, kept up to `DECODED_CACHE_BYTES` for the
    next epoch; items are addressed by `(row, seed)` pairs from the samplers so that augmentation is reproducible;
    an unreadable image is logged by name and yields an item the collator drops and counts."""

    def __init__(
        self,
        rows: Any,
        labels: Sequence[int],
        domains: Sequence[int] | None,
        image_processor: Any,
        train_transform: TrainTransform | None = None,
    ) -> None:
        self.rows = with_decoded_images(rows)
        self.labels = list(labels)
        self.domains = list(domains) if domains is not None else None
        self.image_processor = image_processor
        self.train_transform = train_transform
        self._decoded: dict[int, dict[str, Any]] = {}
        self._decoded_bytes = 0
        self._decoded_budget = DECODED_CACHE_BYTES if train_transform is not None else 0

    def __len__(self) -> int:
        return len(self.labels)

    def _row(self, row: int) -> dict[str, Any]:
        """The decoded row (the transforms never modify the image in place, so a kept one can be reused)."""
        decoded = self._decoded.get(row)
        if decoded is None:
            decoded = self.rows[row]
            image = decoded["image"]
            size = 0 if image is None else image.width * image.height * len(image.getbands())
            if self._decoded_budget and self._decoded_bytes + size <= self._decoded_budget:
                self._decoded[row] = decoded
                self._decoded_bytes += size
        return decoded

    def __getitem__(self, key: int | tuple[int, int]) -> dict[str, Any] | None:
        row, seed = key if isinstance(key, tuple) else (key, 0)
        decoded = self._row(int(row))
        image = decoded["image"]
        if image is None:
            logger.warning("skipping unreadable image %s", decoded["image_source"])
            return {"corrupt": decoded["image_source"]}
        if self.train_transform is not None:
            pixels = self.train_transform(image, _sample_seed(seed, row))
        else:
            pixels = self.image_processor(images=[image], return_tensors="pt")["pixel_values"][0]
        item = {"pixel_values": pixels, "labels": self.labels[row], "index": int(row)}
        if self.domains is not None:
            item["domains"] = self.domains[row]
        return item


def collate(items: list[dict[str, Any]]) -> dict[str, Any]:
    """Stack a batch; unreadable images are dropped and their names passed on in `corrupt`."""
    good = [it for it in items if "pixel_values" in it]
    batch: dict[str, Any] = {"corrupt": [it["corrupt"] for it in items if "corrupt" in it]}
    if not good:
        batch["pixel_values"] = torch.empty(0)
        batch["labels"] = torch.empty(0, dtype=torch.long)
        return batch
    batch["pixel_values"] = torch.stack([it["pixel_values"] for it in good])
    batch["labels"] = torch.tensor([it["labels"] for it in good], dtype=torch.long)
    batch["index"] = torch.tensor([it["index"] for it in good], dtype=torch.long)
    if "domains" in good[0]:
        batch["domains"] = torch.tensor([it["domains"] for it in good], dtype=torch.long)
    return batch


# ---------------------------------------------------------------------------------------------------- samplers
class FewShotBatchSampler(torch.utils.data.Sampler):
    """Seeded batches of `(row, augmentation seed)` pairs, reshuffled per epoch (`set_epoch`).

    Random order (the reference's sampler) or, with `domains` and `mix_domains`, domain-interleaved order: each
    source domain is shuffled and the domains are taken in turn, so every batch holds at least two source
    domains (the DG meta step needs them; docs/method.md §3.1). A final batch with a single domain is merged into the
    previous one. `drop_last` follows Dassl: dropped only when the set holds at least one full batch.
    """

    def __init__(
        self,
        num_samples: int,
        batch_size: int,
        seed: int,
        domains: Sequence[int] | None = None,
        mix_domains: bool = False,
        drop_last: bool = True,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size: expected >= 1, got {batch_size}")
        self.num_samples = num_samples
        self.batch_size = batch_size
        self.seed = seed
        self.domains = list(domains) if domains is not None else None
        self.mix_domains = mix_domains and self.domains is not None and len(set(self.domains)) > 1
        self.drop_last = drop_last and num_samples >= batch_size
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _order(self) -> list[int]:
        rng = _sample_seed(self.seed, self.epoch, 1)
        if not self.mix_domains:
            return rng.permutation(self.num_samples).tolist()
        by_domain: dict[int, list[int]] = defaultdict(list)
        for i, d in enumerate(self.domains):
            by_domain[d].append(i)
        queues = [rng.permutation(v).tolist() for _, v in sorted(by_domain.items())]
        queues = [queues[i] for i in rng.permutation(len(queues))]
        order = []
        while any(queues):
            for q in queues:
                if q:
                    order.append(q.pop())
        return order

    def _batches(self) -> list[list[int]]:
        order = self._order()
        batches = [order[i : i + self.batch_size] for i in range(0, len(order), self.batch_size)]
        if self.drop_last and len(batches[-1]) < self.batch_size:
            batches.pop()
        if self.mix_domains and len(batches) > 1 and len({self.domains[i] for i in batches[-1]}) < 2:
            batches[-2].extend(batches.pop())
        return batches

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        for b, batch in enumerate(self._batches()):
            yield [(row, int(_sample_seed(self.seed, self.epoch, b, row).integers(2**31))) for row in batch]

    def __len__(self) -> int:
        return len(self._batches())


def domain_counts(domains: Sequence[int] | None, names: Sequence[str] | None) -> dict[str, int]:
    """{domain name: count}, for logs."""
    if domains is None or names is None:
        return {}
    return {names[d]: c for d, c in sorted(Counter(domains).items())}
