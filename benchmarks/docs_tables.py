"""Every benchmark figure in README.md, model_card.md (and the shipped adapter's card), docs/method.md,
benchmarks/README.md and benchmarks/results/ablation.md, rendered from the result file a run wrote (delimited
blocks; see `docs_blocks.py`):

    python benchmarks/docs_tables.py            # rewrite every generated block in place
    python benchmarks/docs_tables.py --check    # exit 1 naming each stale block (file, block, first differing line)

A block whose result file does not exist yet is skipped when no document holds it, and an error when one does;
a block whose result file exists is an error when its document lacks it.
To place a block (the `leaderboard` one, once `mini_suite.py` has written `benchmarks/results/leaderboard.json`),
write its two comment lines where it goes, `<!-- generated: leaderboard (...) -->` and `<!-- /generated:
leaderboard -->`, and run the command: it fills the block and rewrites the opening comment.
`tests/benchmarks/test_docs_tables.py` runs `--check` on the committed tree, so a committed table that differs from
its result file fails CI.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the sibling benchmark modules, run as a script

import compare_readme  # noqa: E402
from ablation_docs import ABLATION, HPARAMS, card_block, method_block, readme_block, selection_block  # noqa: E402
from ablation_report import markdown as ablation_markdown  # noqa: E402
from docs_blocks import Block, sync  # noqa: E402
from leaderboard_tables import LEADERBOARD, leaderboard_markdown, tuning_cost, tuning_markdown  # noqa: E402
from perf_methods import methods_markdown  # noqa: E402
from perf_report import markdown as perf_markdown  # noqa: E402

from metaprompt_hf.hub.card import load_results  # noqa: E402
from metaprompt_hf.utils import read_json_file  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
PERF = "benchmarks/results/perf.json"
PERF_METHODS = "benchmarks/results/perf_methods.json"
THROUGHPUT = "benchmarks/results/multi_adapter_throughput.json"
MINI_CLIP = "src/metaprompt_hf/assets/mini-clip/pretraining_results.json"
MAIN_RUN = "src/metaprompt_hf/assets/metaprompt-mini/results.json"
ADAPTER_WEIGHTS = "src/metaprompt_hf/assets/metaprompt-mini/metaprompt_model.safetensors"
MINI_HPARAMS = "benchmarks/mini_hparams.json"
TUNING_RUNS = "benchmarks/results/tuning_runs.json"
# multi_adapter_throughput.json records no command of its own; this is the one its module documents.
THROUGHPUT_COMMAND = "python benchmarks/multi_adapter_throughput.py --output " + THROUGHPUT


def _read(root: Path, name: str) -> dict[str, Any]:
    return read_json_file(root / name)


def _mib(n: float) -> str:
    return f"{n / 2**20:,.0f}"


def perf_headline(root: Path) -> str:
    """The README's cost table: each headline ratio of `perf.json` with its measured floor and target."""
    r = _read(root, PERF)
    t = r["targets"]

    def row(label: str, key: str, floor: float | None = None) -> str:
        met = "yes" if t[key]["met"] else "**missed**"
        floor_text = "–" if floor is None else f"{floor:.2f}"
        return f"| {label} | **{t[key]['value']:.2f}** | {floor_text} | ≤ {t[key]['target']:.2f} | {met} |"

    lines = [
        f"`{r['command']}` on {r['device']}, {r['date']}, {r['wall_s']:,.0f} s; from [`{PERF}`]({PERF}) "
        "(ratios of medians over the run's repeats):",
        "",
        "| | measured | measured floor | target | met |",
        "|---|---|---|---|---|",
    ]
    for n in r["settings"]["b2n_classes"]:
        key = f"b2n_step_ratio_vs_ivlp_{n}"
        if key in t:
            lines.append(row(f"base-to-new step vs IVLP, {n} classes", key, r.get(f"b2n_floor_ratio_vs_ivlp_{n}")))
    if "dg_step_ratio_vs_ivlp" in t:
        label = f"DG step vs IVLP, {r['dg_source_domains']} source domains"
        lines.append(row(label, "dg_step_ratio_vs_ivlp", r.get("dg_floor_ratio_vs_ivlp")))
    if "inference_ratio_vs_zeroshot" in t:
        lines.append(row("inference vs zero-shot CLIP, per image", "inference_ratio_vs_zeroshot"))
    if "adapter_bytes" in t:
        a, ta = r["adapter"], t["adapter_bytes"]
        met = "yes" if ta["met"] else "**missed**"
        lines.append(
            f"| adapter file, {a['n_ctx']}+{a['n_pro']} tokens | {ta['value']:,} bytes | – | ≤ {ta['target']:,} bytes "
            f"| {met} |"
        )
    growth = t.get("peak_mem_growth_bytes_per_class")
    if growth:
        lo, hi = str(growth["from_classes"]), str(growth["to_classes"])
        plain, ckpt = r["peak_mem_bytes_by_classes"], r["peak_mem_bytes_by_classes_checkpointing"]
        lines.append(
            f"| peak memory of a step, {int(lo):,} → {int(hi):,} classes (MiB) | {_mib(plain[lo])} → {_mib(plain[hi])}; "
            f"with checkpointing {_mib(ckpt[lo])} → {_mib(ckpt[hi])} | – | bounded | "
            f"{growth['value'] / 1024:,.0f} KiB per class |"
        )
    return "\n".join(lines) + "\n"


def perf_full(root: Path) -> str:
    """benchmarks/README.md's full tables: what `perf.py --markdown` printed, from `perf.json`."""
    r = _read(root, PERF)
    return (
        f"`{r['command']}`, {r['wall_s']:,.0f} s; every number below is read from [`results/perf.json`]"
        f"(results/perf.json).\n\n" + perf_markdown(r)
    )


def perf_methods(root: Path) -> str:
    """benchmarks/README.md's per-method cost at ViT-B/16 dimensions, from `perf_methods.json` (the `methods`
    section of `perf.py`, run on its own)."""
    r = _read(root, PERF_METHODS)
    s = r["settings"]
    return (
        f"`{r['command']}`, {r['wall_s']:,.0f} s on {r['device']} ({s['threads']} threads; {s['model']} random "
        f"weights, {s['attn']} attention, {s['precision']}; {s['repeats']} timed round{'s' if s['repeats'] != 1 else ''} after {s['warmup']} warm-up; "
        f"load average at start/end {r['load_average_start']} / {r['load_average_end']}); every number below is read "
        "from [`results/perf_methods.json`](results/perf_methods.json).\n"
        + "\n".join(methods_markdown(r["methods"]))
        + "\n"
    )


def throughput(root: Path) -> str:
    """The README's sentence on serving several adapters, from `multi_adapter_throughput.json`."""
    r = _read(root, THROUGHPUT)
    m = r["meta"]
    rows = [row for row in r["rows"] if row["adapters"] > 1]
    return (
        f"Throughput of one base with several adapters (`{THROUGHPUT_COMMAND}`; {m['adapter']}, {m['device']}, "
        f"{m['cpu_count']} cores, batch {m['batch_size']}; ratios to 1 thread with 1 adapter, from "
        f"[`{THROUGHPUT}`]({THROUGHPUT})): "
        + ", ".join(f"{x['threads']} thread(s) × {x['adapters']} adapters {x['ratio']:.2f}" for x in rows)
        + ".\n"
    )


def embedded_default(root: Path) -> str:
    """The README's table of the embedded default: the mini CLIP's pretraining record, the shipped adapter's run,
    the learning rates selected on the mini world, and the mini CLIP's zero-shot accuracy."""
    clip = _read(root, MINI_CLIP)
    run = load_results(root / MAIN_RUN)[0]
    hparams = _read(root, MINI_HPARAMS)
    rates = hparams["methods"][run["method"]]["learning_rate"]
    adapter_bytes = (root / ADAPTER_WEIGHTS).stat().st_size
    zero = clip["eval"]["zero_shot"]
    b2n = [d for d in zero if "hm" in zero[d]["test"]]
    styles = {d: v["test"] for d, v in zero.items() if "hm" not in v["test"]}
    dg_text = "; ".join(
        f"{100 * t['all']:.1f}% on {d} over all domains ("
        + ", ".join(f"{k} {100 * v:.1f}%" for k, v in t.items() if k not in ("n", "chance_all", "all"))
        + ")"
        for d, t in styles.items()
    )
    chance = sorted(100 * v["test"]["chance_all"] for v in zero.values())
    return (
        "| what | where | figures |\n|---|---|---|\n"
        f"| a small `CLIPModel` ({clip['n_params'] / 1e6:.1f} M parameters, {clip['args']['image_size']}-px ViT, "
        "OpenAI's CLIP BPE tokenizer) pretrained here, on CPU, from scratch | `src/metaprompt_hf/assets/mini-clip/` "
        "([datasheet](src/metaprompt_hf/assets/mini-clip/DATASHEET.md)), `benchmarks/pretrain_mini_clip.py` "
        f"| {clip['wall_minutes']:.1f} min on {clip['machine']} (`{clip['command']}`); {clip['weights_mb']:.1f} MB "
        "safetensors |\n"
        f"| the mini world: {clip['args']['n_images']:,} generated image–caption pairs for pretraining; 4 "
        "base-to-new datasets (`digits` real MNIST/UCI handwriting, `glyphs` typed letters and symbols, `shapes`, "
        "`objects`) and a PACS-like DG dataset `styles` (photo, cartoon, painting, sketch — sketch is rare in "
        "pretraining) | `metaprompt_hf.miniworld` (`load_miniworld(name)` → `DatasetDict`; "
        "`--dataset_name miniworld:<name>`) | "
        f"{min(len(c) for c in clip['class_counts'].values())}–{max(len(c) for c in clip['class_counts'].values())} "
        "classes each |\n"
        "| a MetaPrompt adapter trained by the main command | `src/metaprompt_hf/assets/metaprompt-mini/`, "
        f"`metaprompt_hf.embedded.load_default_model()` | {adapter_bytes:,} bytes |\n\n"
        "The main command, `accelerate launch examples/train.py` with no arguments, trains MetaPrompt base-to-new on "
        f"`{run['dataset']}` with the embedded CLIP; its adapter is the shipped one, and its run recorded "
        f"([`{MAIN_RUN}`]({MAIN_RUN})):\n\n"
        f"```\n{run['method']} on {run['dataset']}: Base {run['base']:.2f} | New {run['new']:.2f} | "
        f"HM {run['hm']:.2f}\n```\n\n"
        "With the embedded base model the learning rate defaults to MetaPrompt's rate selected on the mini world's "
        f"**validation** split ({rates['base2new']:g} base-to-new, {rates['dg']:g} DG; `{hparams['command']}` → "
        f"[`{MINI_HPARAMS}`]({MINI_HPARAMS})).\n\n"
        "Zero-shot accuracy of the embedded CLIP on the test splits (hand-crafted template per dataset; "
        f"`{clip['eval_command']}` → [`{MINI_CLIP}`]({MINI_CLIP})): "
        + ", ".join(f"HM {100 * zero[d]['test']['hm']:.1f} on {d}" for d in b2n)
        + f"; {dg_text}; against chance at {chance[0]:.0f}–{chance[-1]:.0f}%.\n"
    )


def throughput_table(root: Path) -> str:
    """benchmarks/README.md's throughput table, from `multi_adapter_throughput.json`."""
    r = _read(root, THROUGHPUT)
    m = r["meta"]
    lines = [
        f"{m['adapter']} on {m['device']} ({m['cpu_count']} cores, {m['torch_threads']} torch thread(s), torch "
        f"{m['torch']}), batch {m['batch_size']}, {m['seconds']:g} s per cell; `{THROUGHPUT_COMMAND}` → "
        "[`results/multi_adapter_throughput.json`](results/multi_adapter_throughput.json):",
        "",
        "| threads | adapters | images/s | ratio to 1 thread, 1 adapter |",
        "|---|---|---|---|",
    ]
    lines += [f"| {x['threads']} | {x['adapters']} | {x['images_per_s']:.1f} | {x['ratio']:.2f} |" for x in r["rows"]]
    return "\n".join(lines) + "\n"


def _json_block(source: str, render: Any) -> Any:
    return lambda root: render(_read(root, source))


def _leaderboard(root: Path) -> str:
    """The leaderboard with the suite's cost, which also reads the tuning's record and runs."""
    tuning = (_read(root, MINI_HPARAMS), json.loads((root / TUNING_RUNS).read_text()))
    return leaderboard_markdown(_read(root, LEADERBOARD), tuning=tuning)


BLOCKS: tuple[Block, ...] = (
    Block("leaderboard", "README.md", (LEADERBOARD, MINI_HPARAMS, TUNING_RUNS), _leaderboard),
    Block(
        "meta-step-ablation",
        "README.md",
        (ABLATION, HPARAMS),
        lambda root: readme_block(_read(root, ABLATION), _read(root, HPARAMS)),
    ),
    Block("embedded-default", "README.md", (MINI_CLIP, MAIN_RUN, ADAPTER_WEIGHTS, MINI_HPARAMS), embedded_default),
    Block("performance", "README.md", (PERF,), perf_headline),
    Block(compare_readme.NAME, "README.md", (compare_readme.RESULT,), compare_readme.expected_block),
    Block("multi-adapter-throughput", "README.md", (THROUGHPUT,), throughput),
    Block("meta-step-effect", "model_card.md", (ABLATION,), _json_block(ABLATION, card_block)),
    Block("meta-step-measured", "docs/method.md", (ABLATION,), _json_block(ABLATION, method_block)),
    Block(
        "meta-step-effect",
        "src/metaprompt_hf/assets/metaprompt-mini/README.md",
        (ABLATION,),
        _json_block(ABLATION, card_block),
    ),
    Block("ablation-selection", "benchmarks/results/ablation.md", (HPARAMS,), _json_block(HPARAMS, selection_block)),
    Block("ablation-table", "benchmarks/results/ablation.md", (ABLATION,), _json_block(ABLATION, ablation_markdown)),
    Block("performance-full", "benchmarks/README.md", (PERF,), perf_full),
    Block("leaderboard", "benchmarks/README.md", (LEADERBOARD, MINI_HPARAMS, TUNING_RUNS), _leaderboard),
    Block(
        "tuning",
        "benchmarks/README.md",
        (MINI_HPARAMS, TUNING_RUNS),
        lambda root: (
            tuning_markdown(_read(root, MINI_HPARAMS)) + tuning_cost(json.loads((root / TUNING_RUNS).read_text()))
        ),
    ),
    Block("multi-adapter-throughput", "benchmarks/README.md", (THROUGHPUT,), throughput_table),
    Block("performance-methods", "benchmarks/README.md", (PERF_METHODS,), perf_methods),
)


def main(argv: list[str] | None = None, root: Path = ROOT) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only compare; exit 1 naming each stale block")
    opts = parser.parse_args(argv)
    problems = sync(BLOCKS, root, check=opts.check)
    stale = [p for p in problems if " is stale: " in p]
    broken = [p for p in problems if p not in stale]
    for problem in broken + (stale if opts.check else []):
        print(problem, file=sys.stderr)
    if not opts.check:
        for problem in stale:
            print("rewrote " + problem.split(" is stale: ")[0])
    if broken or (opts.check and stale):
        print(
            f"{len(broken) + len(stale) * opts.check} generated block(s) are broken or stale; see above",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
