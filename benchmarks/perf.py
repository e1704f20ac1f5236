"""Cost benchmark of MetaPrompt vs IVLP vs CoOp vs zero-shot CLIP at ViT-B/16 dimensions.

Cost does not depend on the weights, so a randomly initialised `CLIPModel` with ViT-B/16 dimensions
(`metaprompt_hf.testing.VIT_B16`) measures it honestly, offline. Every timed step is the library's own code path:

    MetaPromptTrainingArguments(method=...) → args.adapter_config(templates) → MetaPromptModel
    per step, as the training loop does it, through the step API (`metaprompt_hf.training.step.TrainingStep`):
        with accelerator.accumulate(model): step.forward_backward(batch)    # model(..., labels=) → its own loss
        step.update(step=global_step)     # optimizer.step(), then the meta step for `metaprompt`

Measured, each comparison inside one run and reported as a ratio (absolute times on a shared machine are noise):

* training-step time of `metaprompt`, `ivlp`, `coop`: base-to-new with 50 and 500 classes, DG with 3 source domains
  (methods interleaved within every repeat, warm-up steps excluded, medians);
* inference time per image of `metaprompt` vs `zeroshot` on the same batch, class features cached, and the batched
  frozen+prompted image call vs two separate calls;
* peak memory of one `metaprompt` training step vs the number of classes (10 → 1000), with and without gradient
  checkpointing, each setting in a fresh subprocess (peak RSS on CPU, `torch.cuda.max_memory_allocated` on GPU);
* every trainable registered method (`--methods`, default all) against IVLP: base-to-new step time and peak
  memory at 50 and 500 classes, batch 8, each as a ratio of IVLP's, and CoCoOp's step against IVLP's at batches
  2, 4 and 8 (it encodes the class texts once per image) (section `methods`, `perf_methods`);
* the adapter's file size (`save_pretrained`, 2+2 tokens);
* encoder calls and rows per step (forward hooks on the two CLIP towers), to show that no frozen pass is repeated;
* optional ablations: eager vs SDPA attention, bf16 autocast, chunk checkpointing of the text encoder.

The script is split by concept into sibling modules: `perf_workload` (the CLIP, batches and training step that are
timed), `perf_measure` (counting, timing, the machine), `perf_sections`, `perf_ablations`, `perf_memory` (the
measurements) and `perf_report` (derived keys, targets, Markdown).

Usage (from the repository root)::

    python benchmarks/perf.py --output perf.json --markdown perf.md     # the default run (<= 20 min on 2 cores)
    python benchmarks/perf.py --quick --output /tmp/perf.json            # tiny CLIP, a few seconds (CI smoke)
    python benchmarks/perf.py --device cuda --output perf_cuda.json      # the same code path on a GPU

See benchmarks/README.md, section "Performance", for the numbers and how to read them.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shlex
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
for folder in (REPO / "src", HERE):  # the package from a checkout, and the sibling modules when loaded by path
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))

import torch  # noqa: E402
from perf_ablations import ABLATIONS, bench_ablations  # noqa: E402
from perf_measure import EncoderCounter, device_name, load_average, log, versions  # noqa: E402
from perf_memory import bench_memory, memory_child  # noqa: E402
from perf_methods import bench_methods, parse_methods  # noqa: E402
from perf_report import derive, markdown  # noqa: E402
from perf_sections import bench_adapter, bench_b2n, bench_dg, bench_inference  # noqa: E402
from perf_workload import build_clip, load_tokenizer, make_processor  # noqa: E402

DEFAULTS = dict(
    b2n_classes=(50, 500),
    batch_size=16,
    dg_batch_size=32,
    dg_domains=3,
    dg_classes=65,
    infer_batch_size=16,
    infer_classes=100,
    memory_classes=(10, 50, 100, 200, 500, 1000),
    memory_batch_size=16,
    repeats=3,
    warmup=1,
    infer_repeats=5,  # an inference batch is cheap next to a training step: more repeats (3 were too noisy)
    methods_batch_size=8,
    methods_scaling_batches=(2, 4, 8),
)
QUICK = dict(
    b2n_classes=(6, 12),
    batch_size=8,
    dg_batch_size=6,
    dg_domains=3,
    dg_classes=5,
    infer_batch_size=4,
    infer_classes=6,
    memory_classes=(4, 16),
    memory_batch_size=4,
    repeats=1,
    warmup=1,
    infer_repeats=1,
    methods_batch_size=4,
    methods_scaling_batches=(1, 2),
)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (cuda when available).")
    p.add_argument("--quick", action="store_true", help="Tiny CLIP and tiny settings (a few seconds; CI smoke).")
    p.add_argument("--batch_size", type=int, help="Base-to-new training batch (default 16, the paper's).")
    p.add_argument("--dg_batch_size", type=int, help="DG training batch (default 32, the paper's).")
    p.add_argument("--dg_classes", type=int, help="Classes of the DG benchmark (default 65, OfficeHome).")
    p.add_argument("--classes", help="Comma-separated base-to-new class counts (default 50,500).")
    p.add_argument("--memory_classes", help="Comma-separated class counts of the memory sweep (default 10..1000).")
    p.add_argument("--memory_batch_size", type=int, help="Batch of the memory sweep (default 16).")
    p.add_argument(
        "--memory_before",
        action="store_true",
        help="Also measure the largest class count with every text chunk recomputed (the former checkpointing).",
    )
    p.add_argument("--infer_batch_size", type=int, help="Inference batch (default 16).")
    p.add_argument("--repeats", type=int, help="Timed rounds per comparison (default 3), after --warmup rounds.")
    p.add_argument("--warmup", type=int, help="Untimed warm-up steps per method (default 1).")
    p.add_argument("--attn", default="sdpa", choices=("sdpa", "eager"), help="CLIP attention backend.")
    p.add_argument("--mixed_precision", default="no", choices=("no", "bf16", "fp16"), help="Autocast of the steps.")
    p.add_argument("--threads", type=int, help="torch threads (default: torch's choice).")
    p.add_argument("--tokenizer", help="A CLIP tokenizer folder (default: the byte-level test tokenizer).")
    p.add_argument(
        "--sections",
        default="b2n,dg,inference,adapter,memory,methods",
        help="Comma-separated subset of b2n,dg,inference,adapter,memory,methods,ablations (ablations: bf16 autocast\n"
        "and eager vs SDPA attention on the 50-class base-to-new step; not in the default run).",
    )
    p.add_argument(
        "--methods",
        help="Methods section: comma-separated registered methods timed against IVLP (default: every trainable one).",
    )
    p.add_argument("--methods_batch_size", type=int, help="Batch of the methods section (default 8).")
    p.add_argument(
        "--methods_memory",
        default="yes",
        choices=("yes", "no"),
        help="Methods section: also each method's peak memory (one fresh process per method and class count).",
    )
    p.add_argument(
        "--ablations",
        default=",".join(ABLATIONS),
        help=f"With the ablations section: which of {','.join(ABLATIONS)}.",
    )
    p.add_argument("--output", help="Write the results as JSON here.")
    p.add_argument("--markdown", help="Write the Markdown table here (it is printed in any case).")
    p.add_argument("--_memory_child", help=argparse.SUPPRESS)
    opts = p.parse_args(argv)
    try:
        parse_methods(opts.methods)
    except ValueError as err:
        p.error(str(err))
    return opts


def run(opts: argparse.Namespace) -> dict[str, Any]:
    preset = dict(QUICK if opts.quick else DEFAULTS)
    for key in (
        "batch_size",
        "dg_batch_size",
        "dg_classes",
        "memory_batch_size",
        "infer_batch_size",
        "repeats",
        "methods_batch_size",
    ):
        if getattr(opts, key) is not None:
            preset[key] = getattr(opts, key)
    if opts.warmup is not None:
        preset["warmup"] = opts.warmup
    if opts.classes:
        preset["b2n_classes"] = tuple(int(x) for x in opts.classes.split(","))
    if opts.memory_classes:
        preset["memory_classes"] = tuple(int(x) for x in opts.memory_classes.split(","))
    if opts.repeats is not None:
        preset["infer_repeats"] = max(opts.repeats, preset["infer_repeats"])
        if preset["infer_repeats"] != opts.repeats:  # said before any work: the flag is not taken as given there
            print(
                f"--repeats {opts.repeats}: inference comparisons keep {preset['infer_repeats']} rounds (too noisy below)"
            )
    device = opts.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if opts.threads:
        torch.set_num_threads(opts.threads)
    sections = [s.strip() for s in opts.sections.split(",") if s.strip()]
    methods = parse_methods(opts.methods)  # checked before any work
    model = "tiny" if opts.quick else "vit-b16"
    tokenizer = load_tokenizer(opts.tokenizer)
    ctx = SimpleNamespace(**preset)
    ctx.device, ctx.model, ctx.attn, ctx.tokenizer, ctx.tokenizer_path = (
        device,
        model,
        opts.attn,
        tokenizer,
        opts.tokenizer,
    )
    ctx.step_kw = {"mixed_precision": opts.mixed_precision}
    ctx.ablations = [a.strip() for a in opts.ablations.split(",") if a.strip()]
    ctx.memory_before = opts.memory_before
    ctx.methods, ctx.methods_classes, ctx.methods_memory = methods, preset["b2n_classes"], opts.methods_memory == "yes"
    started = time.perf_counter()
    result: dict[str, Any] = {
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "command": "python " + shlex.join([os.path.relpath(__file__, REPO), *sys.argv[1:]]),
        "device": device_name(device),
        "versions": versions(),
        "load_average_start": load_average(),
    }
    log(f"building the {model} CLIP on {device}")
    ctx.clip = build_clip(model, tokenizer, opts.attn, device)
    ctx.processor = make_processor(ctx.clip, tokenizer)
    ctx.image_size = ctx.clip.config.vision_config.image_size
    ctx.counter = EncoderCounter(ctx.clip)
    result["settings"] = {
        "model": model,
        "attn": opts.attn,
        "precision": "fp32" if opts.mixed_precision == "no" else f"{opts.mixed_precision} autocast",
        "threads": torch.get_num_threads(),
        "tokenizer": opts.tokenizer or "byte-level test tokenizer (one token per character)",
        "image_size": ctx.image_size,
        "sections": sections,
        **{k: list(v) if isinstance(v, tuple) else v for k, v in preset.items()},
    }
    if "b2n" in sections:
        result["b2n"] = {}
        for n in ctx.b2n_classes:
            log(f"base-to-new step, {n} classes")
            result["b2n"][str(n)] = bench_b2n(ctx, n)
    if "dg" in sections:
        log(f"DG step, {ctx.dg_domains} source domains")
        result["dg"] = bench_dg(ctx)
    if "inference" in sections:
        log("inference")
        result["inference"] = bench_inference(ctx)
    if "adapter" in sections:
        result["adapter"] = bench_adapter(ctx)
    if "ablations" in sections:
        log("ablations")
        result["ablations"] = bench_ablations(ctx)
    if "memory" in sections:
        result["memory"] = bench_memory(ctx)
    if "methods" in sections:
        result["methods"] = bench_methods(ctx)
    result["load_average_end"] = load_average()
    result["wall_s"] = time.perf_counter() - started
    derive(result)
    return result


def main(argv: Sequence[str] | None = None) -> int:
    opts = parse_args(argv)
    if opts._memory_child:
        print(json.dumps(memory_child(json.loads(opts._memory_child))))
        return 0
    result = run(opts)
    table = markdown(result)
    print(table)
    if opts.output:
        Path(opts.output).write_text(json.dumps(result, indent=2, sort_keys=True, default=str) + "\n")
    if opts.markdown:
        Path(opts.markdown).write_text(f"Command: `{result['command']}`\n\n" + table)
    for name, t in result["targets"].items():
        if "met" in t and not t["met"]:
            log(f"target missed: {name} = {t['value']} > {t['target']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
