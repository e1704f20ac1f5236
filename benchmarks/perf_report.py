"""The results of `benchmarks/perf.py`: the headline keys and targets derived from the sections, and the
Markdown tables."""

from __future__ import annotations

from typing import Any

from perf_methods import methods_markdown


def derive(result: dict[str, Any]) -> None:
    """The headline keys and their targets."""
    b2n = result.get("b2n", {})
    targets = {}
    for n, entry in b2n.items():
        result[f"b2n_step_ratio_vs_ivlp_{n}"] = entry["ratio_vs_ivlp"]["metaprompt"]["median_ratio"]
        result[f"b2n_coop_step_ratio_vs_ivlp_{n}"] = entry["ratio_vs_ivlp"]["coop"]["median_ratio"]
        # Measured floor: frozen image pass + prompted image f+b + text f+b over the K classes + the two episodes'
        # text f+b over K classes in all = coop + ivlp + text_fb (coop = frozen pass + text f+b).
        m = {k: v["median_s"] for k, v in entry["methods"].items()}
        entry["floor_ratio_vs_ivlp"] = (m["coop"] + m["ivlp"] + m["text_fb"]) / m["ivlp"]
        result[f"b2n_floor_ratio_vs_ivlp_{n}"] = entry["floor_ratio_vs_ivlp"]
    if "dg" in result:
        dg = result["dg"]
        result["dg_step_ratio_vs_ivlp"] = dg["ratio_vs_ivlp"]["metaprompt"]["median_ratio"]
        result["dg_source_domains"] = dg["source_domains"]
        # Measured floor with shared per-domain gradients: frozen pass + text f+b (= coop) + the prompted image
        # f+b three times (in-domain, meta-train parts at θ0, meta-test sides) = coop + 3·(ivlp − text_fb).
        m = {k: v["median_s"] for k, v in dg["methods"].items()}
        dg["floor_ratio_vs_ivlp"] = (m["coop"] + 3 * (m["ivlp"] - m["text_fb"])) / m["ivlp"]
        dg["issue_floor_ratio_vs_ivlp"] = (4 + 3 * dg["source_domains"]) / 3
        result["dg_floor_ratio_vs_ivlp"] = dg["floor_ratio_vs_ivlp"]
    if "inference" in result:
        result["inference_ratio_vs_zeroshot"] = result["inference"]["ratio_vs_zeroshot"]["median_ratio"]
        result["inference_two_calls_vs_batched"] = result["inference"]["two_calls_vs_batched"]["median_ratio"]
    if "adapter" in result:
        result["adapter_bytes"] = result["adapter"]["files"]["metaprompt_model.safetensors"]
    if "memory" in result:
        for key, suffix in (("no_gradient_checkpointing", ""), ("gradient_checkpointing", "_checkpointing")):
            result[f"peak_mem_bytes_by_classes{suffix}"] = {
                n: v["peak_bytes"] for n, v in result["memory"]["settings"][key].items()
            }

    def target(name: str, value: float | None, limit: float) -> None:
        if value is not None:
            targets[name] = {"value": round(value, 3), "target": round(limit, 3), "met": value <= limit}

    classes = sorted(int(n) for n in b2n)
    if len(classes) >= 1:
        target(f"b2n_step_ratio_vs_ivlp_{classes[0]}", result.get(f"b2n_step_ratio_vs_ivlp_{classes[0]}"), 1.6)
    if len(classes) >= 2:
        target(f"b2n_step_ratio_vs_ivlp_{classes[-1]}", result.get(f"b2n_step_ratio_vs_ivlp_{classes[-1]}"), 2.2)
    if "dg_step_ratio_vs_ivlp" in result:
        n = result["dg_source_domains"]
        target("dg_step_ratio_vs_ivlp", result["dg_step_ratio_vs_ivlp"], 1.1 * (4 + 3 * n) / 3)
    target("inference_ratio_vs_zeroshot", result.get("inference_ratio_vs_zeroshot"), 2.1)
    target("adapter_bytes", result.get("adapter_bytes"), 130 * 1024)
    mem = result.get("peak_mem_bytes_by_classes")
    if mem and len(mem) >= 2:
        # Growth per class from the largest chunk (class_chunk_size = 128) to the largest class count, against the
        # bytes per class of what necessarily grows: features, logits and their gradients (a few (C, 512) tensors).
        ns = sorted(int(n) for n in mem)
        hi = ns[-1]
        lo = max([n for n in ns if n <= 128] or [ns[0]])
        if hi > lo:
            per_class = (mem[str(hi)] - mem[str(lo)]) / (hi - lo)
            result["peak_mem_growth_bytes_per_class"] = per_class
            targets["peak_mem_growth_bytes_per_class"] = {
                "value": round(per_class),
                "from_classes": lo,
                "to_classes": hi,
                "note": "a (C, 512) fp32 feature tensor is 2048 bytes per class",
            }
    result["targets"] = targets


def markdown(result: dict[str, Any]) -> str:
    s = result["settings"]
    note = (
        ["(--quick: tiny CLIP, whose times are Python overhead, not cost; the targets apply to ViT-B/16.)", ""]
        if s["model"] == "tiny"
        else []
    )
    lines = note + [
        f"Device: {result['device']} ({s['threads']} threads); model: {s['model']} random weights, "
        f"{s['attn']} attention, {s['precision']}; tokenizer: {s['tokenizer']}; repeats: {s['repeats']} "
        f"(+{s['warmup']} warm-up) ; load average at start/end: {result['load_average_start']} / "
        f"{result['load_average_end']}; {result['date']}.",
        "",
        "| Measurement | metaprompt | ivlp | coop | text f+b alone | metaprompt / ivlp | measured floor | target "
        "| met |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    targets = result.get("targets", {})

    def met(key: str) -> tuple[str, str]:
        t = targets.get(key)
        if not t or "met" not in t:
            return "", ""
        return f"≤ {t['target']:.2f}", "yes" if t["met"] else "**no**"

    for n, entry in result.get("b2n", {}).items():
        m = entry["methods"]
        tgt, ok = met(f"b2n_step_ratio_vs_ivlp_{n}")
        lines.append(
            f"| base-to-new step, {n} classes, batch {entry['batch_size']} (s) | {m['metaprompt']['median_s']:.2f} "
            f"| {m['ivlp']['median_s']:.2f} | {m['coop']['median_s']:.2f} | {m['text_fb']['median_s']:.2f} "
            f"| **{entry['ratio_vs_ivlp']['metaprompt']['median_ratio']:.2f}** | {entry['floor_ratio_vs_ivlp']:.2f} "
            f"| {tgt} | {ok} |"
        )
    if "dg" in result:
        e = result["dg"]
        m = e["methods"]
        tgt, ok = met("dg_step_ratio_vs_ivlp")
        lines.append(
            f"| DG step, {e['source_domains']} source domains, {e['classes']} classes, batch {e['batch_size']} (s) "
            f"| {m['metaprompt']['median_s']:.2f} | {m['ivlp']['median_s']:.2f} | {m['coop']['median_s']:.2f} "
            f"| {m['text_fb']['median_s']:.2f} | **{e['ratio_vs_ivlp']['metaprompt']['median_ratio']:.2f}** "
            f"| {e['floor_ratio_vs_ivlp']:.2f} | {tgt} | {ok} |"
        )
    lines += ["", "| Measurement | value | target | met |", "|---|---|---|---|"]
    if "inference" in result:
        e = result["inference"]
        p = e["per_image"]
        tgt, ok = met("inference_ratio_vs_zeroshot")
        lines.append(
            f"| inference per image, batch {e['batch_size']}, {e['classes']} classes cached: metaprompt "
            f"{1000 * p['metaprompt']['median_s']:.1f} ms, zero-shot {1000 * p['zeroshot']['median_s']:.1f} ms "
            f"| ratio **{e['ratio_vs_zeroshot']['median_ratio']:.2f}** | {tgt} | {ok} |"
        )
        lines.append(
            f"| frozen+prompted image passes: two calls / one batched call "
            f"| {e['two_calls_vs_batched']['median_ratio']:.2f} | > 1 | "
            f"{'yes' if e['two_calls_vs_batched']['median_ratio'] > 1 else '**no**'} |"
        )
    if "adapter_bytes" in result:
        tgt, ok = met("adapter_bytes")
        lines.append(
            f"| adapter file (2+2 tokens, safetensors) | {result['adapter_bytes']:,} bytes "
            f"| ≤ {targets['adapter_bytes']['target']:,} | {ok} |"
        )
    if "ablations" in result:
        lines += ablation_lines(result["ablations"])
    lines += encoder_call_lines(result)
    if "memory" in result:
        # numeric order of the class counts, also when read back from a JSON file written with sorted keys
        mem = {k: dict(sorted(v.items(), key=lambda kv: int(kv[0]))) for k, v in result["memory"]["settings"].items()}
        kind = next(iter(mem["no_gradient_checkpointing"].values()))["kind"]
        lines += [
            "",
            f"Peak memory ({kind}) of one metaprompt base-to-new training step, batch "
            f"{result['memory']['batch_size']}, each setting in a fresh process (MiB; in brackets: growth during "
            "the step):",
            "",
            "| classes | " + " | ".join(mem["no_gradient_checkpointing"]) + " |",
            "|---|" + "---|" * len(mem["no_gradient_checkpointing"]),
        ]
        for key, label in (("no_gradient_checkpointing", "without"), ("gradient_checkpointing", "with")):
            cells = [
                f"{v['peak_bytes'] / 2**20:,.0f} (+{(v['peak_bytes'] - v['before_step_bytes']) / 2**20:,.0f})"
                for v in mem[key].values()
            ]
            lines.append(f"| {label} gradient checkpointing | " + " | ".join(cells) + " |")
        for n, v in result["memory"].get("every_chunk_recomputed", {}).items():
            lines += [
                "",
                f"Every text chunk recomputed (the former checkpointing), {n} classes without gradient checkpointing: "
                f"{v['peak_bytes'] / 2**20:,.0f} MiB (+{(v['peak_bytes'] - v['before_step_bytes']) / 2**20:,.0f}).",
            ]
        if "peak_mem_growth_bytes_per_class" in result:
            t = targets["peak_mem_growth_bytes_per_class"]
            lines += [
                "",
                f"Growth from {t['from_classes']} to {t['to_classes']} classes (no gradient checkpointing): "
                f"{result['peak_mem_growth_bytes_per_class'] / 1024:,.1f} KiB per class.",
            ]
    if "methods" in result:
        lines += methods_markdown(result["methods"])
    return "\n".join(lines) + "\n"


def _before_after_row(label: str, ratio: float) -> str:
    """A table row for an optimisation: time before / time after, which should exceed 1."""
    return f"| {label} | {ratio:.2f} | > 1 | {'yes' if ratio > 1 else '**no**'} |"


def ablation_lines(a: dict[str, Any]) -> list[str]:
    lines = []
    if "attention" in a:
        lines.append(
            f"| eager / SDPA attention, metaprompt base-to-new step ({a['classes']} classes) "
            f"| {a['attention']['median_ratio']:.2f} | | |"
        )
    if "text_chunks" in a:
        e = a["text_chunks"]
        m = e["methods"]
        lines.append(
            _before_after_row(
                f"text forward+backward over {e['classes']} classes (chunks of {e['class_chunk_size']}): every chunk "
                f"recomputed {m['all_chunks']['median_s']:.2f} s / all but the last {m['all_but_last']['median_s']:.2f} s",
                e["before_vs_after"]["median_ratio"],
            )
        )
    if "templates" in a:
        e = a["templates"]
        lines.append(
            f"| template features of {e['classes']} classes, uncached (paid once per class list, then cached) "
            f"| {e['uncached']['median_s']:.2f} s | | |"
        )
    if "dg_parts" in a:
        e = a["dg_parts"]
        m = e["methods"]
        lines.append(
            _before_after_row(
                f"DG metaprompt step, {e['source_domains']} domains: one pass per meta-train side "
                f"{m['one_pass_per_side']['median_s']:.2f} s / shared per-domain gradients "
                f"{m['shared_parts']['median_s']:.2f} s",
                e["before_vs_after"]["median_ratio"],
            )
        )
    if "bf16_autocast" in a:
        bf = a["bf16_autocast"]
        lines.append(
            f"| bf16 autocast / fp32 step time, base-to-new ({a['classes']} classes); in brackets metaprompt / ivlp "
            f"in bf16 and fp32 | metaprompt {bf['metaprompt_bf16_vs_fp32']['median_ratio']:.2f}, ivlp "
            f"{bf['ivlp_bf16_vs_fp32']['median_ratio']:.2f} ({bf['b2n_step_ratio_vs_ivlp_bf16']['median_ratio']:.2f}"
            f" vs {bf['b2n_step_ratio_vs_ivlp_fp32']['median_ratio']:.2f}) | | |"
        )
    return lines


def encoder_call_lines(result: dict[str, Any]) -> list[str]:
    """Encoder calls and rows per step (hooks on the two towers): images / class sequences encoded."""
    rows = []
    for n, entry in result.get("b2n", {}).items():
        for m, c in entry["encoder_calls_per_step"].items():
            rows.append((f"base-to-new step, {n} classes, batch {entry['batch_size']}", m, c))
    if "dg" in result:
        e = result["dg"]
        for m, c in e["encoder_calls_per_step"].items():
            rows.append((f"DG step, {e['source_domains']} domains, batch {e['batch_size']}", m, c))
    if "inference" in result:
        e = result["inference"]
        for m, c in e["encoder_calls_per_batch"].items():
            rows.append((f"inference batch of {e['batch_size']}, class features cached", m, c))
    if not rows:
        return []
    lines = [
        "",
        "Encoder calls per step (images / class sequences encoded; recomputed in backward by checkpointing):",
        "",
        "| setting | method | image calls | images | text calls | class sequences | recomputed sequences |",
        "|---|---|---|---|---|---|---|",
    ]
    for setting, m, c in rows:
        lines.append(
            f"| {setting} | {m} | {c['vision_calls']} | {c['vision_rows']} | {c['text_calls']} | {c['text_rows']} "
            f"| {c['text_recompute_rows']} |"
        )
    return lines
