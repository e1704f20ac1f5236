"""The mini CLIP's text and image preprocessing: OpenAI's CLIP BPE tokenizer (built from open_clip's BPE file or
reused from an assets folder), the 32-pixel `CLIPProcessor`, and the same pixel normalisation on uint8 arrays for
pretraining batches."""

from __future__ import annotations

import gzip
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from metaprompt_hf.testing import CLIP_MEAN, CLIP_STD, bytes_to_unicode, image_processor

BOS_ID, EOS_ID, VOCAB_SIZE = 49406, 49407, 49408


def bpe_vocab_and_merges(bpe_path: str | os.PathLike[str]) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """Build CLIP's vocabulary and merges from ``bpe_simple_vocab_16e6.txt.gz`` (open_clip's rule: 256 byte tokens, their ``</w>`` forms, 48,894 merges, SOS, EOS)."""
    with gzip.open(bpe_path) as fh:
        lines = fh.read().decode("utf-8").split("\n")
    merges = [tuple(line.split()) for line in lines[1 : 49152 - 256 - 2 + 1]]
    chars = list(bytes_to_unicode().values())
    vocab = chars + [c + "</w>" for c in chars] + ["".join(m) for m in merges] + ["<|startoftext|>", "<|endoftext|>"]
    if len(merges) != 48894 or len(vocab) != VOCAB_SIZE:
        raise ValueError(f"unexpected BPE file: {len(merges)} merges, {len(vocab)} tokens")
    return {tok: i for i, tok in enumerate(vocab)}, merges  # type: ignore[return-value]


def build_tokenizer(bpe_path: str | None, tokenizer_dir: str | None) -> tuple[Any, str]:
    from transformers import CLIPTokenizer

    if bpe_path:
        vocab, merges = bpe_vocab_and_merges(bpe_path)
        tok = CLIPTokenizer(vocab=vocab, merges=merges)
        source = f"built from {Path(bpe_path).name}"
    elif tokenizer_dir and (Path(tokenizer_dir) / "vocab.json").exists():
        tok = CLIPTokenizer.from_pretrained(tokenizer_dir)
        source = f"reused from {tokenizer_dir}"
    else:
        raise SystemExit(
            "need --bpe_path (open_clip's bpe_simple_vocab_16e6.txt.gz) or --tokenizer_dir with vocab.json"
        )
    tok.model_max_length = 77
    checks = {
        "a photo of a cat.": [BOS_ID, 320, 1125, 539, 320, 2368, 269, EOS_ID],
        "A red square": [BOS_ID, 320, 736, 3999, EOS_ID],
    }
    for text, ids in checks.items():
        got = tok(text).input_ids
        if got != ids:
            raise RuntimeError(f"tokenizer check failed for {text!r}: {got} != {ids}")
    if len(tok) != VOCAB_SIZE or tok.pad_token_id != EOS_ID:
        raise RuntimeError(f"unexpected tokenizer: {len(tok)} tokens, pad id {tok.pad_token_id}")
    return tok, source


def build_processor(tok: Any, image_size: int) -> Any:
    from transformers import CLIPProcessor

    return CLIPProcessor(image_processor=image_processor(image_size), tokenizer=tok)


def save_tokenizer_files(tok: Any, out: Path) -> None:
    """Vendor ``vocab.json`` / ``merges.txt`` (OpenAI's BPE, MIT) next to transformers' own tokenizer files."""
    model = json.loads((out / "tokenizer.json").read_text())["model"]
    (out / "vocab.json").write_text(json.dumps(model["vocab"], ensure_ascii=False), encoding="utf-8")
    with open(out / "merges.txt", "w", encoding="utf-8") as fh:
        fh.write("#version: 0.2\n")
        fh.writelines(" ".join(m) + "\n" for m in model["merges"])
    cfg_path = out / "tokenizer_config.json"
    cfg = json.loads(cfg_path.read_text())
    for key in ("is_local", "local_files_only", "max_length", "name_or_path"):
        cfg.pop(key, None)
    cfg_path.write_text(json.dumps(cfg, indent=2) + "\n")


def pixel_tensor(images: np.ndarray) -> torch.Tensor:
    """uint8 (N, H, W, 3) -> normalised float (N, 3, H, W), exactly what the saved CLIPProcessor produces."""
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float().div_(255.0)
    mean = torch.tensor(CLIP_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(CLIP_STD).view(1, 3, 1, 1)
    return (x - mean) / std
