"""Prediction throughput of ONE base model serving several MetaPrompt adapters from several threads.

One `MetaPromptModel` holds 1 or 4 adapters on the embedded small CLIP (the shipped adapter and perturbed copies
of it, loaded with `load_adapter`); 1, 2 and 4 threads call `predict(images, class_names, adapter_name=...)`, each
cycling over the adapters per call, for a fixed time. Reported: images per second and the ratio to 1 thread with
1 adapter. Class features are cached per adapter and class list, as in serving, so the image encoder dominates.

    python benchmarks/multi_adapter_throughput.py                      # CPU, the table in benchmarks/README.md
    python benchmarks/multi_adapter_throughput.py --device cuda --batch_size 64
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import threading
import time
from pathlib import Path

import torch

from metaprompt_hf.constants import EMBEDDED_ADAPTER
from metaprompt_hf.embedded import load_default_model
from metaprompt_hf.validation import check_number

NAMES = [f"class {i}" for i in range(10)]


def build(device: str, n_adapters: int, folder: Path) -> torch.nn.Module:
    model = load_default_model(device=device)
    for k in range(1, n_adapters):
        torch.manual_seed(k)
        copy = load_default_model(device=device)
        with torch.no_grad():
            for p in copy.prompt_parameters():
                p.add_(0.02 * torch.randn_like(p))
        copy.save_pretrained(folder / f"a{k}")
        model.load_adapter(folder / f"a{k}", adapter_name=f"a{k}")
    return model.eval()


def run_cell(model, pixels: torch.Tensor, n_threads: int, seconds: float) -> float:
    names = model.adapter_names
    for name in names:  # warm the class-feature caches and the kernels
        model.predict(pixels, NAMES, adapter_name=name)
    counts = [0] * n_threads
    barrier = threading.Barrier(n_threads + 1)
    stop = threading.Event()

    def work(k: int) -> None:
        barrier.wait()
        i = k
        while not stop.is_set():
            model.predict(pixels, NAMES, adapter_name=names[i % len(names)])
            counts[k] += pixels.shape[0]
            i += 1

    threads = [threading.Thread(target=work, args=(k,)) for k in range(n_threads)]
    for t in threads:
        t.start()
    barrier.wait()
    start = time.perf_counter()
    time.sleep(seconds)
    stop.set()
    for t in threads:
        t.join()
    return sum(counts) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch_size", type=int, default=16, help="images per predict call")
    parser.add_argument("--seconds", type=float, default=4.0, help="measuring time per cell")
    parser.add_argument("--torch_threads", type=int, default=1, help="intra-op threads (torch.set_num_threads)")
    parser.add_argument("--output", default=None, help="write the table as JSON here")
    args = parser.parse_args()
    for name, limits in (("batch_size", {"low": 1, "integer": True}), ("seconds", {"low": 0, "high": 3600, "low_open": True}), ("torch_threads", {"low": 1, "integer": True})):  # fmt: skip
        try:
            check_number(getattr(args, name), f"--{name}", **limits)
        except ValueError as err:
            parser.error(str(err))
    torch.set_num_threads(args.torch_threads)
    size = 32
    pixels = torch.randn(args.batch_size, 3, size, size, generator=torch.Generator().manual_seed(0)).clamp(-2, 2)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for n_adapters in (1, 4):
            model = build(args.device, n_adapters, Path(tmp) / str(n_adapters))
            for n_threads in (1, 2, 4):
                ips = run_cell(model, pixels.to(args.device), n_threads, args.seconds)
                rows.append({"threads": n_threads, "adapters": n_adapters, "images_per_s": round(ips, 1)})
                print(rows[-1], flush=True)
    base = rows[0]["images_per_s"]
    for r in rows:
        r["ratio"] = round(r["images_per_s"] / base, 2)
    print("\n| threads | adapters | images/s | ratio to 1 thread, 1 adapter |\n|---|---|---|---|")
    for r in rows:
        print(f"| {r['threads']} | {r['adapters']} | {r['images_per_s']} | {r['ratio']} |")
    if args.output:
        meta = {
            "device": args.device,
            "cpu_count": os.cpu_count(),
            "torch_threads": args.torch_threads,
            "batch_size": args.batch_size,
            "seconds": args.seconds,
            "platform": platform.platform(),
            "torch": torch.__version__,
            "adapter": str(EMBEDDED_ADAPTER.name),
        }
        Path(args.output).write_text(json.dumps({"meta": meta, "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
