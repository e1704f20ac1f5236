"""Evaluation of the mini CLIP on the mini-world benchmark: zero-shot accuracy with each dataset's template
(base / new / all classes, per DG domain) and a 16-shot nearest-centroid / linear-probe sanity check."""

from __future__ import annotations

import argparse
import json
import math
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from mini_clip_pretraining import log

from metaprompt_hf import miniworld as mw
from metaprompt_hf.evaluation import harmonic_mean


@torch.no_grad()
def text_features(model: Any, tok: Any, prompts: list[str]) -> torch.Tensor:
    enc = tok(prompts, padding=True, return_tensors="pt")
    f = model.get_text_features(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"])
    f = getattr(f, "pooler_output", f)
    return torch.nn.functional.normalize(f, dim=-1)


@torch.no_grad()
def image_features(model: Any, processor: Any, images: list, batch: int = 256) -> torch.Tensor:
    feats = []
    for k in range(0, len(images), batch):
        px = processor(images=images[k : k + batch], return_tensors="pt")["pixel_values"]
        f = model.get_image_features(pixel_values=px)
        feats.append(getattr(f, "pooler_output", f))
    return torch.nn.functional.normalize(torch.cat(feats), dim=-1)


def subset_accuracy(img: torch.Tensor, txt: torch.Tensor, labels: np.ndarray, classes: list[int]) -> float:
    """Accuracy on images of ``classes``, classified among ``classes`` only."""
    keep = np.isin(labels, classes)
    if not keep.any():
        return float("nan")
    logits = img[torch.from_numpy(keep)] @ txt[classes].T
    pred = np.asarray(classes)[logits.argmax(-1).numpy()]
    return float((pred == labels[keep]).mean())


def zs_init_probe(
    x_tr: np.ndarray,
    y_tr: np.ndarray,
    x: np.ndarray,
    y: np.ndarray,
    txt: torch.Tensor,
    classes: list[int],
    scale: float,
) -> float:
    """A linear head initialised with the zero-shot classifier (scale * text features) and tuned on the shots.

    Full-batch Adam (lr 0.01, 100 steps, fixed a priori): a crude stand-in for what prompt learning can reach.
    """
    torch.manual_seed(0)
    w = (scale * txt).clone().requires_grad_(True)
    opt = torch.optim.Adam([w], lr=0.01)
    xt = torch.from_numpy(x_tr)
    yt = torch.from_numpy(np.searchsorted(classes, y_tr))
    for _ in range(100):
        loss = F.cross_entropy(xt @ w.T, yt)
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        pred = np.asarray(classes)[(torch.from_numpy(x) @ w.T).argmax(-1).numpy()]
    return float((pred == y).mean())


def evaluate(model: Any, processor: Any, tok: Any, args: argparse.Namespace) -> dict[str, Any]:
    """Zero-shot accuracy with each dataset's template; 16-shot nearest-centroid and linear-probe checks."""
    from sklearn.linear_model import LogisticRegression

    res: dict[str, Any] = {"zero_shot": {}, "few_shot": {}}
    scale = float(model.logit_scale.detach().exp())
    for name in mw.DATASETS:
        dd = mw.load_miniworld(name, seed=0, image_size=args.image_size, cache_dir=args.data_cache)
        names = list(mw.CLASS_NAMES[name])
        txt = text_features(model, tok, [mw.TEMPLATES[name].format(c) for c in names])
        n_base = math.ceil(len(names) / 2)
        base, new = list(range(n_base)), list(range(n_base, len(names)))
        feats = {}
        for split in ("validation", "test", "train"):
            ds = dd[split]
            img = image_features(model, processor, list(ds["image"]))
            labels = np.asarray(ds["label"])
            feats[split] = (img, labels, np.asarray(ds["domain"]) if "domain" in ds.column_names else None)
            if split == "train":
                continue
            r: dict[str, Any] = {"n": len(labels), "chance_all": 1 / len(names)}
            r["all"] = subset_accuracy(img, txt, labels, list(range(len(names))))
            if name == mw.DG_DATASET:
                doms = feats[split][2]
                for d_id, dom in enumerate(mw.DG_DOMAINS):
                    m = doms == d_id
                    r[dom] = subset_accuracy(img[torch.from_numpy(m)], txt, labels[m], list(range(len(names))))
            else:
                r["base"] = subset_accuracy(img, txt, labels, base)
                r["new"] = subset_accuracy(img, txt, labels, new)
                r["hm"] = harmonic_mean(r["base"], r["new"])
            res["zero_shot"].setdefault(name, {})[split] = r
            log(f"zero-shot {name:8s} {split:10s} " + " ".join(f"{k}={v:.3f}" for k, v in r.items() if k != "n"))
        # few-shot sanity check: 16 shots per base class (per class over all domains for styles)
        img_tr, lab_tr, _ = feats["train"]
        rng = np.random.default_rng(1)
        shots = np.concatenate([rng.choice(np.flatnonzero(lab_tr == c), 16, replace=False) for c in base])
        x_tr, y_tr = img_tr[shots].numpy(), lab_tr[shots]
        fs = {}
        for split in ("validation", "test"):
            img, labels, _ = feats[split]
            keep = np.isin(labels, base)
            x, y = img[torch.from_numpy(keep)].numpy(), labels[keep]
            cent = np.stack([x_tr[y_tr == c].mean(0) for c in base])
            ncm = float((np.asarray(base)[(x @ cent.T).argmax(-1)] == y).mean())
            lp = LogisticRegression(C=10.0, max_iter=2000).fit(x_tr, y_tr)
            fs[split] = {
                "zero_shot_base": res["zero_shot"][name][split].get("base", float("nan")),
                "ncm_16shot": ncm,
                "linear_probe_16shot": float(lp.score(x, y)),
                "zs_init_probe_16shot": zs_init_probe(x_tr, y_tr, x, y, txt[base], base, scale),
            }
            if name == mw.DG_DATASET:
                fs[split]["zero_shot_base"] = subset_accuracy(img, txt, labels, base)
        res["few_shot"][name] = fs
        log(f"few-shot  {name:8s} " + json.dumps({s: {k: round(v, 3) for k, v in d.items()} for s, d in fs.items()}))
    return res
