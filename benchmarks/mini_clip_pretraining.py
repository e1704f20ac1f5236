"""Contrastive pretraining of the mini CLIP from scratch: the `CLIPModel` configuration, AdamW with open_clip's
weight-decay groups, warm-up + cosine learning rate fitted to a time budget, symmetric InfoNCE."""

from __future__ import annotations

import argparse
import ctypes
import datetime
import math
import platform
import time
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from mini_clip_processor import BOS_ID, EOS_ID, VOCAB_SIZE, pixel_tensor


def log(msg: str) -> None:
    print(f"[{datetime.datetime.now().strftime('%H:%M:%S')}] {msg}", flush=True)


def tune_malloc() -> None:
    """Keep freed memory in the process: glibc's default trimming makes CPU training steps jitter by seconds."""
    if platform.system() != "Linux":
        return
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-1, 1 << 40)  # M_TRIM_THRESHOLD
        libc.mallopt(-2, 1 << 30)  # M_TOP_PAD
        libc.mallopt(-3, 1 << 25)  # M_MMAP_THRESHOLD (32 MiB, the maximum)
    except OSError:
        pass


def build_model(args: argparse.Namespace) -> Any:
    from transformers import CLIPConfig, CLIPModel

    cfg = CLIPConfig(
        text_config={
            "vocab_size": VOCAB_SIZE,
            "hidden_size": args.text_hidden,
            "intermediate_size": 4 * args.text_hidden,
            "num_hidden_layers": args.text_layers,
            "num_attention_heads": args.text_heads,
            "max_position_embeddings": 77,
            "projection_dim": args.projection_dim,
            "hidden_act": "quick_gelu",
            "bos_token_id": BOS_ID,
            "eos_token_id": EOS_ID,
            "pad_token_id": EOS_ID,
        },
        vision_config={
            "hidden_size": args.vision_hidden,
            "intermediate_size": 4 * args.vision_hidden,
            "num_hidden_layers": args.vision_layers,
            "num_attention_heads": args.vision_heads,
            "image_size": args.image_size,
            "patch_size": args.patch_size,
            "projection_dim": args.projection_dim,
            "hidden_act": "quick_gelu",
        },
        projection_dim=args.projection_dim,
        logit_scale_init_value=math.log(1 / 0.07),
    )
    torch.manual_seed(args.seed)
    return CLIPModel(cfg)


def param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """open_clip's rule: no weight decay on gains, biases, embeddings and the logit scale."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if p.ndim < 2 or "embedding" in name or "logit_scale" in name or "norm" in name:
            no_decay.append(p)
        else:
            decay.append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def pretrain(
    model: Any,
    images: np.ndarray,
    ids: torch.Tensor,
    cap_idx: torch.Tensor,
    args: argparse.Namespace,
    train_seconds: float | None = None,
) -> dict[str, Any]:
    """Symmetric InfoNCE; samples of a batch that share the exact same caption count as positives of each other.

    The learning rate warms up linearly, then follows a cosine over the *progress*, the larger of ``step / steps``
    and ``elapsed / train_seconds``: on a busy shared machine training ends in time with an annealed model (fewer
    steps, recorded in the datasheet) instead of being cut off mid-schedule.
    """
    opt = torch.optim.AdamW(param_groups(model, args.weight_decay), lr=args.lr, betas=(0.9, 0.98), eps=1e-6)
    total, warm = args.steps, args.warmup

    def lr_at(step: int, progress: float) -> float:
        if step < warm:
            return args.lr * (step + 1) / warm
        t = min(1.0, max(progress, (step - warm) / max(1, total - warm)))
        return args.lr * (0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * t)))

    g = torch.Generator().manual_seed(args.seed)
    perm, pos = torch.randperm(len(images), generator=g), 0
    model.train()
    t0, hist, step, lr = time.time(), [], 0, 0.0
    t_warm = None  # time-based progress counts from the end of warmup
    for step in range(total):
        if step == warm:
            t_warm = time.time()
        progress = 0.0
        if train_seconds and t_warm is not None:
            progress = (time.time() - t_warm) / max(1.0, train_seconds - (t_warm - t0))
        if progress >= 1.0:
            log(f"time budget reached: stopping after {step} steps")
            step -= 1
            break
        if pos + args.batch_size > len(perm):
            perm, pos = torch.randperm(len(images), generator=g), 0
        idx = perm[pos : pos + args.batch_size]
        pos += args.batch_size
        lr = lr_at(step, progress)
        for group in opt.param_groups:
            group["lr"] = lr
        batch_ids = ids[idx]
        length = int((batch_ids == EOS_ID).int().argmax(-1).max()) + 1
        out = model(input_ids=batch_ids[:, :length], pixel_values=pixel_tensor(images[idx.numpy()]))
        same = (cap_idx[idx][:, None] == cap_idx[idx][None, :]).float()
        target = same / same.sum(1, keepdim=True)
        logits = out.logits_per_image
        loss = 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        with torch.no_grad():
            model.logit_scale.clamp_(0, math.log(100))
        hist.append(float(loss.detach()))
        if (step + 1) % args.log_every == 0 or step == total - 1:
            el = time.time() - t0
            log(
                f"step {step + 1}/{total} loss {np.mean(hist[-args.log_every :]):.3f} "
                f"scale {model.logit_scale.exp().item():.1f} lr {lr:.2e} {el / (step + 1):.2f}s/step"
            )
    model.eval()
    return {"steps_done": step + 1, "train_seconds": time.time() - t0, "final_loss": float(np.mean(hist[-100:]))}
