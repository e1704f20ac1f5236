"""Bytes that autograd keeps for the prompted text encoding of C classes (ViT-B/16 text tower, random weights).

Peak RSS mixes live tensors with what the allocator keeps; this counts only the tensors saved for backward outside
the checkpointed chunks (distinct storages, through `torch.autograd.graph.saved_tensors_hooks`), which is what
chunked encoding is meant to bound. Used in benchmarks/README.md ("Peak memory vs classes").

    python benchmarks/text_memory_probe.py            # classes 100 and 1000
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import perf  # noqa: E402

from metaprompt_hf import MetaPromptConfig, MetaPromptModel  # noqa: E402


def saved_bytes(model: MetaPromptModel, names: list[str]) -> int:
    storages: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        storages[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        model.encode_text(names)
    return sum(storages.values())


def main(classes: tuple[int, ...] = (100, 1000)) -> None:
    tokenizer = perf.load_tokenizer(None)
    clip = perf.build_clip("vit-b16", tokenizer, "sdpa", "cpu")
    model = MetaPromptModel(clip, MetaPromptConfig(n_ctx=2, n_pro=2), perf.make_processor(clip, tokenizer))
    for n in classes:
        total = saved_bytes(model, perf.synthetic_class_names(n, tokenizer))
        print(f"{n} classes (chunks of {model.class_chunk_size}): {total / 2**20:.1f} MiB saved for backward")


if __name__ == "__main__":
    main(tuple(int(a) for a in sys.argv[1:]) or (100, 1000))
