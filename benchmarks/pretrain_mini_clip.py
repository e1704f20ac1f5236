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

The script is split by concept into sibling modules: `mini_clip_processor` (tokenizer and preprocessing),
`mini_clip_pretraining` (model and contrastive training), `mini_clip_evaluation` (zero-shot and few-shot checks) and
`mini_clip_datasheet` (the DATASHEET.md written beside the weights).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shlex
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO / "src"))
if str(HERE) not in sys.path:  # the sibling modules, also when this file is loaded by path
    sys.path.insert(0, str(HERE))

from mini_clip_datasheet import datasheet  # noqa: E402
from mini_clip_evaluation import evaluate  # noqa: E402
from mini_clip_pretraining import build_model, log, pretrain, tune_malloc  # noqa: E402
from mini_clip_processor import build_processor, build_tokenizer, save_tokenizer_files  # noqa: E402

from metaprompt_hf import miniworld as mw  # noqa: E402
from metaprompt_hf.utils import atomic_replace_dir, temporary_sibling  # noqa: E402

DEFAULT_OUT = REPO / "src" / "metaprompt_hf" / "assets" / "mini-clip"


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


def replace_dir_atomically(out: Path, populate: Callable[[Path], None]) -> None:
    """Build the new folder in a temporary sibling with ``populate(tmp)``, then swap it in atomically."""
    tmp = Path(temporary_sibling(out))
    try:
        populate(tmp)
        for f in tmp.iterdir():
            os.chmod(f, 0o644)
        atomic_replace_dir(tmp, out)
    finally:
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)


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
