"""Smoke test of `benchmarks/perf.py` on the tiny CLIP: structure and encoder-call counts, never timings.

The counts pin the cost model of a training step: no frozen image pass is repeated (the meta step reuses the frozen
features of the in-domain forward), template features are cached, inference runs the frozen and prompted image
passes as one batched call, DG meta-train sides reuse per-domain gradients, and chunk checkpointing recomputes all
text chunks but the last.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from metaprompt_hf import MetaPromptConfig, MetaPromptModel
from metaprompt_hf.meta import Episode, Side, domain_split_episodes, meta_gradient, vision_episode_loss
from metaprompt_hf.testing import tiny_clip

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
PERF_PATH = BENCHMARKS / "perf.py"
sys.path.insert(0, str(BENCHMARKS))  # perf.py's sibling modules, as the script itself imports them
import perf_memory  # noqa: E402
import perf_workload  # noqa: E402


@pytest.fixture(scope="module")
def perf():
    spec = importlib.util.spec_from_file_location("metaprompt_perf_benchmark", PERF_PATH)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def quick_result(perf, tmp_path_factory):
    out = tmp_path_factory.mktemp("perf")
    opts = perf.parse_args(
        ["--quick", "--sections", "b2n,dg,inference,adapter", "--output", str(out / "perf.json")]
        + ["--markdown", str(out / "perf.md")]
    )
    result = perf.run(opts)
    return result, perf.markdown(result)


def test_quick_run_writes_the_headline_keys(quick_result):
    result, table = quick_result
    for key in (
        "b2n_step_ratio_vs_ivlp_6",
        "b2n_step_ratio_vs_ivlp_12",
        "dg_step_ratio_vs_ivlp",
        "inference_ratio_vs_zeroshot",
        "adapter_bytes",
    ):
        assert isinstance(result[key], (int, float)) and result[key] > 0, key
    assert result["dg_source_domains"] == 3
    for key in ("date", "command", "device", "versions", "settings", "load_average_start", "load_average_end"):
        assert key in result
    assert {"torch", "transformers", "accelerate", "metaprompt_hf"} <= set(result["versions"])
    for entry in (*result["b2n"].values(), result["dg"]):
        for method in ("metaprompt", "ivlp", "coop"):
            times = entry["methods"][method]["times_s"]
            assert len(times) == result["settings"]["repeats"] and all(t > 0 for t in times)
    assert set(result["targets"]) >= {"b2n_step_ratio_vs_ivlp_6", "dg_step_ratio_vs_ivlp", "adapter_bytes"}
    assert all(isinstance(t["met"], bool) for t in result["targets"].values() if "met" in t)
    json.dumps(result)  # serialisable as written by --output
    assert "| base-to-new step, 6 classes" in table and "metaprompt / ivlp" in table


def test_adapter_file_holds_only_the_prompts(quick_result):
    result, _ = quick_result
    adapter = result["adapter"]
    # tiny CLIP: θ_t (3 layers × 2 × 32) and θ_v (2 layers × 2 × 48) in fp32, plus the safetensors header
    n = 3 * 2 * 32 + 2 * 2 * 48
    assert adapter["trainable_parameters"] == n
    assert 4 * n < result["adapter_bytes"] < 4 * n + 1024


def test_encoder_calls_per_training_step(quick_result):
    result, _ = quick_result
    b = result["settings"]["batch_size"]
    for n, entry in result["b2n"].items():
        k = int(n)
        mp, ivlp, coop = (entry["encoder_calls_per_step"][m] for m in ("metaprompt", "ivlp", "coop"))
        # one frozen pass (no grad) + one prompted pass; the meta step reuses the frozen features
        assert (mp["vision_calls"], mp["vision_rows"]) == (2, 2 * b)
        # prompted text over the K classes, then two episodes × (meta-train + meta-test) over K/2 classes each
        assert (mp["text_calls"], mp["text_rows"]) == (5, 3 * k)
        assert (ivlp["vision_calls"], ivlp["vision_rows"], ivlp["text_rows"]) == (1, b, k)
        assert (coop["vision_calls"], coop["vision_rows"], coop["text_rows"]) == (1, b, k)
        for counts in (mp, ivlp, coop):  # K <= class_chunk_size: nothing to recompute; templates are cached
            assert counts["text_recompute_calls"] == counts["vision_recompute_calls"] == 0
    dg = result["dg"]
    b, n_dom = dg["batch_size"], dg["source_domains"]
    mp = dg["encoder_calls_per_step"]["metaprompt"]
    # frozen + prompted in-domain passes, one pass per source domain at θ0 (shared by every meta-train side) and
    # one per held-out domain at the adapted prompts: 4 batches of images, whatever the number of domains
    assert (mp["vision_calls"], mp["vision_rows"]) == (2 + 2 * n_dom, 4 * b)
    assert mp["text_rows"] == dg["classes"]
    assert dg["encoder_calls_per_step"]["ivlp"]["vision_rows"] == b


def test_encoder_calls_per_inference_batch(quick_result):
    result, _ = quick_result
    calls = result["inference"]["encoder_calls_per_batch"]
    b = result["inference"]["batch_size"]
    assert (calls["metaprompt"]["vision_calls"], calls["metaprompt"]["vision_rows"]) == (1, 2 * b)  # one batched call
    assert (calls["zeroshot"]["vision_calls"], calls["zeroshot"]["vision_rows"]) == (1, b)
    assert calls["metaprompt"]["text_calls"] == calls["zeroshot"]["text_calls"] == 0  # class features cached


def test_chunk_checkpointing_recomputes_all_chunks_but_the_last(perf):
    tokenizer = perf.load_tokenizer(None)
    clip = perf.build_clip("tiny", tokenizer, "sdpa", "cpu")
    processor = perf.make_processor(clip, tokenizer)
    names = perf_workload.synthetic_class_names(10, tokenizer)
    pixel_values, labels = perf_workload.b2n_batch(4, 10, clip.config.vision_config.image_size, "cpu")
    step = perf_workload.TrainStep(
        clip, processor, "metaprompt", "base2new", names, pixel_values, labels, None, class_chunk_size=4
    )
    step()
    with perf.EncoderCounter(clip)() as counts:
        step()
    # in-domain: 10 classes in chunks 4+4+2 → 8 rows recomputed; meta: 4 sides of 5 classes in chunks 4+1 → 4 each
    assert counts["text_rows"] == 30 and counts["text_recompute_rows"] == 8 + 4 * 4
    assert counts["vision_rows"] == 8 and counts["vision_recompute_calls"] == 0


def test_dg_parts_ablation_times_one_pass_per_meta_train_side(perf):
    """The "before" side of the DG ablation really runs the old episodes: each meta-train side (the images of the
    other N − 1 domains) is encoded on its own, where the shared per-domain parts encode every image once."""
    result = perf.run(
        perf.parse_args(["--quick", "--sections", "ablations", "--ablations", "dg_parts", "--warmup", "0"])
    )
    calls = result["ablations"]["dg_parts"]["encoder_calls_per_step"]
    b, n = result["settings"]["dg_batch_size"], result["settings"]["dg_domains"]
    assert calls["shared_parts"]["vision_rows"] == 4 * b
    # frozen + prompted in-domain (2B), N sides of (N − 1)·B/N images at θ0, N held-out domains of B/N each
    assert calls["one_pass_per_side"]["vision_rows"] == 2 * b + (n - 1) * b + b


def test_memory_section_structure(perf, monkeypatch):
    """The memory sweep with its subprocesses run in-process (the peak is then meaningless; the keys are not)."""

    def fake_run(cmd, **kw):
        spec = json.loads(cmd[cmd.index("--_memory_child") + 1])
        return subprocess.CompletedProcess(cmd, 0, json.dumps(perf.memory_child(spec)) + "\n", "")

    monkeypatch.setattr(perf_memory.subprocess, "run", fake_run)
    ctx = perf.SimpleNamespace(
        memory_batch_size=2,
        memory_classes=(3, 5),
        model="tiny",
        attn="sdpa",
        device="cpu",
        tokenizer_path=None,
        memory_before=False,
    )
    result = {"memory": perf.bench_memory(ctx), "settings": {}}
    perf.derive(result)
    for key in ("peak_mem_bytes_by_classes", "peak_mem_bytes_by_classes_checkpointing"):
        assert set(result[key]) == {"3", "5"} and all(v > 0 for v in result[key].values())
    entry = result["memory"]["settings"]["gradient_checkpointing"]["5"]
    assert entry["kind"] == "peak_rss" and entry["peak_bytes"] >= entry["before_step_bytes"] > 0


def test_synthetic_class_names_have_three_to_five_tokens(perf):
    tokenizer = perf.load_tokenizer(None)
    names = perf_workload.synthetic_class_names(300, tokenizer)
    assert len(set(names)) == 300
    lengths = [len(tokenizer(n, add_special_tokens=False)["input_ids"]) for n in names]
    assert set(lengths) == {3, 4, 5}


def test_dg_meta_gradient_from_shared_domain_parts_equals_one_pass_per_side():
    """The DG meta-train side of each episode is the union of the other domains' meta-test sides: computing each
    domain's gradient once and combining gives the gradient of one pass over the side (up to rounding)."""
    clip, processor = tiny_clip(seed=0)
    torch.manual_seed(0)
    model = MetaPromptModel(clip.double(), MetaPromptConfig(n_ctx=2, n_pro=2), processor)
    with torch.no_grad():
        for p in model.prompt_parameters():
            p.data = p.data.double()
    g = torch.Generator().manual_seed(3)
    pixel_values = torch.randn(9, 3, 32, 32, generator=g, dtype=torch.float64)
    labels = torch.randint(0, 4, (9,), generator=g)
    domains = torch.tensor([0, 1, 2, 0, 1, 2, 0, 1, 5])  # domain 5 is no listed source: in every meta-train side
    names = ["red apple", "blue sky", "black cat", "white snow"]
    loss_fn = vision_episode_loss(model, pixel_values, model.encode_templates(names))
    episodes = domain_split_episodes(labels, domains, [0, 1, 2], num_classes=4)
    assert all(ep.train.parts is not None for ep in episodes)
    plain = [Episode(Side(ep.train.index, ep.train.classes, ep.train.labels), ep.test) for ep in episodes]
    theta0 = model.vision_prompts.detach()
    shared = meta_gradient(loss_fn, theta0, episodes, 0.5, chunk_size=4)
    one_pass = meta_gradient(loss_fn, theta0, plain, 0.5, chunk_size=4)
    torch.testing.assert_close(shared.grad, one_pass.grad)
    assert shared.episodes == one_pass.episodes == 3
    assert shared.meta_train_loss == pytest.approx(one_pass.meta_train_loss)
    assert shared.meta_test_loss == pytest.approx(one_pass.meta_test_loss)


def test_methods_section_has_every_trainable_method_against_ivlp(perf, monkeypatch):
    """The methods section, its memory children run in-process (their peaks are then meaningless; the keys are not):
    every registered method that trains (prompts or a head) has a step time, a peak and both ratios to IVLP's."""
    from metaprompt_hf.methods import METHODS

    real_run = subprocess.run

    def fake_run(cmd, **kw):
        if "--_memory_child" not in cmd:  # the machine's description: run as it is
            return real_run(cmd, **kw)
        spec = json.loads(cmd[cmd.index("--_memory_child") + 1])
        return subprocess.CompletedProcess(cmd, 0, json.dumps(perf.memory_child(spec)) + "\n", "")

    monkeypatch.setattr(perf_memory.subprocess, "run", fake_run)
    result = perf.run(perf.parse_args(["--quick", "--sections", "methods", "--classes", "6", "--warmup", "0"]))
    section = result["methods"]
    trainable = {m for m, cls in METHODS.items() if cls(m).trains}
    assert "zeroshot" not in trainable and {"ivlp", "coop", "kgcoop", "promptsrc", "metaprompt", "mmrl"} <= trainable
    entry = section["classes"]["6"]
    assert section["batch_size"] == 4 and section["reference"] == "ivlp"
    assert set(entry["step"]) == set(entry["memory"]) == trainable
    for key in ("step_ratio_vs_ivlp", "memory_ratio_vs_ivlp", "memory_growth_ratio_vs_ivlp"):
        assert set(entry[key]) == trainable and entry[key]["ivlp"] == 1.0, key
        assert all(isinstance(v, float) and v > 0 for v in entry[key].values()), key
    assert all(len(entry["step"][m]["times_s"]) == result["settings"]["repeats"] for m in trainable)
    table = perf.markdown(result)
    rows = [line for line in table.splitlines() if line.startswith("| ") and "classes (s)" not in line]
    assert {row.split(" | ")[0].removeprefix("| ") for row in rows} >= trainable
    # CoCoOp's text pass runs once per image: timed against IVLP's at each batch of the preset.
    scaling = section["cocoop_scaling"]
    assert scaling["classes"] == 6 and list(scaling["batches"]) == ["1", "2"]
    for e in scaling["batches"].values():
        assert set(e["step"]) == {"ivlp", "cocoop"} and e["ratio_vs_ivlp"] > 0
        assert all(len(t["times_s"]) == result["settings"]["repeats"] for t in e["step"].values())
    assert "| batch | ivlp step (s) | cocoop step (s) | cocoop s / image | / ivlp |" in table
    json.dumps(result)


def test_methods_flag_is_checked_before_any_work(perf, capsys):
    opts = perf.parse_args(["--quick", "--methods", "coop,kgcoop"])
    assert perf.parse_methods(opts.methods) == ["ivlp", "coop", "kgcoop"]  # the reference is always timed
    for bad in ("coop,maple_typo", "zeroshot"):  # unknown, and a method with nothing to train
        with pytest.raises(SystemExit):
            perf.parse_args(["--quick", "--methods", bad])
        assert "--methods: " in capsys.readouterr().err
