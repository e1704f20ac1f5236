"""Guards that generalise: each input class is a table, each row one input and its exact verdict — `Works` (a
correct result) or `Refused` (an error whose message matches the pattern, naming the field, file or flag).

Input classes: numbers (config, meta settings, training arguments); numbers that blow up during training; texts
that do not fit the text encoder; broken Hugging Face cache entries; flags that another flag overrides; hand-edited
and torn adapter folders; symbolic-link loops in dataset folders. Adding a case is one line in its table.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from metaprompt_hf import MetaPromptConfig, MetaPromptModel
from metaprompt_hf.constants import CONFIG_NAME, EMBEDDED_ADAPTER, SAVE_ID_KEY, WEIGHTS_NAME

ROOT = Path(__file__).resolve().parents[1]
CLASSES = ["cat", "dog", "bird"]


@dataclass(frozen=True)
class Works:
    """Accepted; `detail` is what the row checks on the result (a value, or a pattern of a printed line)."""

    detail: object = None


@dataclass(frozen=True)
class Refused:
    """A clear error whose message matches `pattern`."""

    pattern: str


def _script(path: Path, name: str):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(path.parent))
    try:
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(path.parent))
    return module


def _verdict(expected: Works | Refused, call, errors=(ValueError,)):
    if isinstance(expected, Refused):
        with pytest.raises(errors, match=expected.pattern):
            call()
        return None
    return call()


# ====================================================================== 1. numbers: finite and in range
# (case, where the number is read, field, value, expected)
NUMBERS: list[tuple[str, str, str, object, Works | Refused]] = [
    ("init_std default", "config", "init_std", 0.02, Works()),
    ("init_std 1e30", "config", "init_std", 1e30, Refused(r"^init_std: expected a finite number in \(0, 10\], got 1e\+30$")),
    ("init_std 1e300 (float32 overflow)", "config", "init_std", 1e300, Refused(r"^init_std: expected a finite number in \(0, 10\], got 1e\+300$")),
    ("init_std NaN", "config", "init_std", float("nan"), Refused(r"^init_std: .* got nan$")),
    ("init_std negative", "config", "init_std", -0.02, Refused(r"^init_std: .* got -0.02$")),
    ("init_std True", "config", "init_std", True, Refused(r"^init_std: .* got True$")),
    ("n_ctx -1", "config", "n_ctx", -1, Refused(r"^n_ctx: expected an integer >= 0, got -1$")),
    ("beta default", "meta", "beta", 0.2, Works()),
    ("beta inf", "meta", "beta", float("inf"), Refused(r"^beta: expected a finite number in \[0, 100\], got inf$")),
    ("beta NaN", "meta", "beta", float("nan"), Refused(r"^beta: .* got nan$")),
    ("inner_lr_scale 1e9", "meta", "inner_lr_scale", 1e9, Refused(r"^inner_lr_scale: expected a finite number in \(0, 100\], got 1000000000.0$")),
    ("num_class_groups 1", "meta", "num_class_groups", 1, Refused(r"^num_class_groups: expected an integer >= 2, got 1$")),
    ("--learning_rate 0.01", "cli", "learning_rate", "0.01", Works()),
    ("--learning_rate inf", "cli", "learning_rate", "inf", Refused(r"^learning_rate: expected a finite number in \(0, 10\], got inf$")),
    ("--learning_rate 1e6", "cli", "learning_rate", "1e6", Refused(r"^learning_rate: .* got 1000000.0$")),
    ("--learning_rate nan", "cli", "learning_rate", "nan", Refused(r"^learning_rate: .* got nan$")),
    ("--learning_rate 0", "cli", "learning_rate", "0", Refused(r"^learning_rate: .* got 0.0$")),
    ("--warmup_lr -1e-5", "cli", "warmup_lr", "-1e-5", Refused(r"^warmup_lr: expected a finite number in \[0, 10\], got -1e-05$")),
    ("--warmup_lr 0", "cli", "warmup_lr", "0", Works()),
    ("--init_std 1e30", "cli", "init_std", "1e30", Refused(r"^init_std: expected a finite number in \(0, 10\], got 1e\+30$")),
    ("--weight_decay inf", "cli", "weight_decay", "inf", Refused(r"^weight_decay: expected a finite number in \[0, 1\), got inf$")),
    ("--momentum 1.5", "cli", "momentum", "1.5", Refused(r"^momentum: expected a finite number in \[0, 1\), got 1.5$")),
    ("--momentum 0", "cli", "momentum", "0", Works()),
    ("--meta_step nan", "cli", "meta_step", "nan", Refused(r"^meta_step: expected a finite number in \[0, 100\], got nan$")),
    ("--meta_step 5", "cli", "meta_step", "5", Works()),
    ("--meta_inner_lr_scale 1e9", "cli", "meta_inner_lr_scale", "1e9", Refused(r"^meta_inner_lr_scale: .* got 1000000000.0$")),
    ("--crop_scale_min nan", "cli", "crop_scale_min", "nan", Refused(r"^crop_scale_min: expected a finite number in \(0, 1\], got nan$")),
    ("--seed -1", "cli", "seed", "-1", Refused(r"^seed: expected an integer >= 0, got -1$")),
]  # fmt: skip


@pytest.mark.parametrize("where, name, value, expected", [r[1:] for r in NUMBERS], ids=[r[0] for r in NUMBERS])
def test_numbers_are_finite_and_in_range(where, name, value, expected):
    from metaprompt_hf.meta import MetaSettings
    from metaprompt_hf.training import parse_args

    if where == "config":
        call = lambda: MetaPromptConfig(**{name: value})  # noqa: E731
    elif where == "meta":
        call = lambda: MetaSettings(**{name: value})  # noqa: E731
    else:
        call = lambda: parse_args([f"--{name}", value, "--output_dir", "unused"])  # noqa: E731
    result = _verdict(expected, call)
    if isinstance(expected, Works):
        assert float(getattr(result, name)) == float(value)


# ====================================================================== 2. numbers that blow up while training
def _nan_prompts(model):
    model.prompt_parameters()[0].data.fill_(float("nan"))


def _huge_prompts(model):
    model.prompt_parameters()[0].data.mul_(0).add_(1e4)  # finite, but far past any token embedding


# (case, damage done to the prompts right after optimizer step 2, expected exit status and output)
TRAINING: list[tuple[str, object, Works | Refused]] = [
    ("a healthy run", None, Works(0)),
    ("NaN prompts at step 2", _nan_prompts, Refused(r"error: training stopped: non-finite values at step 2 \(lr [0-9.e-]+, loss [0-9.]+\): after the update, text_prompts: 192 of 192 values are not finite \(nan\) \(learning_rate=0.01, warmup_lr=1e-05, init_std=0.02, .*\); the last good checkpoint is .*checkpoint-2, and no adapter was saved")),
    ("prompts blown up to 1e4 at step 2 (finite)", _huge_prompts, Works(1)),
]  # fmt: skip


@pytest.mark.parametrize("damage, expected", [r[1:] for r in TRAINING], ids=[r[0] for r in TRAINING])
def test_training_stops_at_a_non_finite_step_and_reports_divergence(
    tiny_clip_dir, domain_folder, tmp_path, capsys, monkeypatch, fresh_accelerate_state, damage, expected
):
    from metaprompt_hf.training import main
    from metaprompt_hf.training.step import TrainingStep

    if damage is not None:
        update = TrainingStep.update

        def damaged_update(self, *, step=0, **kw):
            result = update(self, step=step, **kw)
            if step == 2:
                damage(self.model)
            return result

        monkeypatch.setattr(TrainingStep, "update", damaged_update)
    out = tmp_path / "run"
    code = main([
        "--base_model", tiny_clip_dir, "--dataset_name", domain_folder, "--output_dir", str(out), "--shots", "1",
        "--per_device_train_batch_size", "2", "--warmup_epochs", "0", "--max_steps", "4", "--learning_rate", "0.01",
        "--checkpointing_steps", "1", "--max_eval_samples", "8",
    ])  # fmt: skip
    captured = capsys.readouterr()
    err = captured.err
    if isinstance(expected, Refused):
        assert code == 2 and re.search(expected.pattern, err, re.M), err
        assert not (out / WEIGHTS_NAME).exists() and not (out / "results.json").exists()  # no adapter written
        assert sorted(p.name for p in out.glob("checkpoint-*")) == ["checkpoint-1", "checkpoint-2"]
        return
    assert code == expected.detail, err
    results = json.loads((out / "results.json").read_text())
    if expected.detail == 0:
        assert results[0]["diverged"] is None
    else:  # finite prompts, saved, but the run is reported as diverged and not as a result
        assert re.fullmatch(r"text_prompts reached \|value\| 1e\+04 \(> 1000\)", results[0]["diverged"])
        assert "warning: the run diverged (text_prompts reached |value| 1e+04" in captured.out, captured.out
        assert "**That run diverged (text_prompts reached |value| 1e+04" in (out / "README.md").read_text()
        MetaPromptModel.from_pretrained(out, base_model=tiny_clip_dir)  # finite: loads


# (case, loss, gradient values, expected) — the checks `TrainingStep.update` runs before the optimizer step
STEP_INPUTS: list[tuple[str, float, float, Works | Refused]] = [
    ("finite loss and gradients", 1.5, 0.1, Works()),
    ("NaN loss", float("nan"), 0.1, Refused(r"^step 7 \(lr 0.5\): the training loss is nan$")),
    ("inf gradient", 1.5, float("inf"), Refused(r"^step 7 \(lr 0.5, loss 1.5\): gradient of text_prompts: 192 of 192 values are not finite \(inf\)")),
]  # fmt: skip


@pytest.mark.parametrize("loss, grad, expected", [r[1:] for r in STEP_INPUTS], ids=[r[0] for r in STEP_INPUTS])
def test_step_inputs_are_checked_before_the_update(model, loss, grad, expected):
    from metaprompt_hf.training.health import NonFiniteError, check_step_inputs

    for p in model.prompt_parameters():
        p.grad = torch.full_like(p, grad)
    _verdict(expected, lambda: check_step_inputs(model, loss, 7, 0.5, check_grads=True), NonFiniteError)


# (case, per-step losses, prompt magnitude, expected verdict of `health.divergence`)
DIVERGENCE: list[tuple[str, list[float], float, Works | Refused]] = [
    ("flat loss", [1.0] * 10, 0.1, Works(None)),
    ("falling loss", [3.0, 2.5, 2.0, 1.5, 1.2, 1.0, 0.9, 0.8, 0.7, 0.6], 0.1, Works(None)),
    ("loss up 100x", [1.0, 1.1, 2.0, 10.0, 50.0, 80.0, 100.0, 100.0, 110.0, 100.0], 0.1, Works(r"the training loss rose from 1.05 to 105")),
    ("too few steps to tell", [1.0, 100.0, 100.0], 0.1, Works(None)),
    ("prompts at 1e9", [1.0] * 10, 1e9, Works(r"text_prompts reached \|value\| 1e\+09 \(> 1000\)")),
]  # fmt: skip


@pytest.mark.parametrize("losses, magnitude, expected", [r[1:] for r in DIVERGENCE], ids=[r[0] for r in DIVERGENCE])
def test_divergence_is_named(losses, magnitude, expected):
    from metaprompt_hf.training.health import divergence

    reason = divergence(losses, {"text_prompts": torch.full((2, 2, 4), magnitude)})
    if expected.detail is None:
        assert reason is None
    else:
        assert re.fullmatch(expected.detail, reason), reason


# (case, value written into the prompts, expected for save_pretrained and for loading such weights)
NONFINITE_ADAPTERS: list[tuple[str, float, Works | Refused]] = [
    ("finite prompts", 0.5, Works()),
    ("NaN prompts", float("nan"), Refused(r"non-finite prompt tensors \(text_prompts: 192 of 192 values are not finite \(nan\)")),
    ("inf prompts", float("inf"), Refused(r"non-finite prompt tensors \(text_prompts: 192 of 192 values are not finite \(inf\)")),
]  # fmt: skip


@pytest.mark.parametrize(
    "value, expected", [r[1:] for r in NONFINITE_ADAPTERS], ids=[r[0] for r in NONFINITE_ADAPTERS]
)
def test_non_finite_adapters_are_never_written_nor_loaded(model, clip_and_processor, tmp_path, value, expected):
    from safetensors.torch import save_file

    model.prompt_parameters()[0].data.fill_(value)
    _verdict(Refused("^save_pretrained: " + expected.pattern) if isinstance(expected, Refused) else expected,
             lambda: model.save_pretrained(tmp_path / "saved"))  # fmt: skip
    assert (tmp_path / "saved" / WEIGHTS_NAME).exists() == isinstance(expected, Works)
    # weights written by another tool, without our save id, are still checked when loaded
    good = MetaPromptModel(clip_and_processor[0], MetaPromptConfig(), clip_and_processor[1])
    good.save_pretrained(tmp_path / "other")
    state = good.prompt_state_dict() | {"text_prompts": good.prompt_state_dict()["text_prompts"].clone().fill_(value)}
    save_file(state, tmp_path / "other" / WEIGHTS_NAME)
    clip, processor = clip_and_processor
    pattern = None if isinstance(expected, Works) else f"{WEIGHTS_NAME}: {expected.pattern}"
    _verdict(Refused(pattern) if pattern else expected,
             lambda: MetaPromptModel.from_pretrained(tmp_path / "other", base_model=clip, processor=processor))  # fmt: skip


# ====================================================================== 3. texts that fit the text encoder
LONG = "a very " * 16  # the tiny byte-level tokenizer reads a word as one token per letter: 80 tokens
WIDE = "ǅ" * 40  # a script whose characters take two byte-level tokens each: 80 tokens from 40 characters

# (case, template, class names, n_ctx, truncation asked, expected: the names of the 77-token check)
TEXTS: list[tuple[str, str, list[str], int, bool, Works | Refused]] = [
    ("short template", "a photo of a {}", CLASSES, 2, False, Works()),
    ("long prefix cuts the class name", LONG + "{}", CLASSES, 2, False, Refused(r"^template 'a very a very .*\.\.\.' with class 'cat': 85 tokens, the text encoder reads at most 77, and the text up to the end of the class name takes 85 \(and 2 more\): the class name would be cut off")),
    ("multi-token script prefix", WIDE + " {}", CLASSES, 2, False, Refused(r"^template 'ǅǅǅ.*' with class 'cat': 85 tokens, the text encoder reads at most 77")),
    ("long tail after the class name only", "a photo of a {}" + ", seen" * 12, CLASSES, 2, False, Works()),
    ("long prefix, truncation asked", LONG + "{}", CLASSES, 2, True, Works()),
    ("prompt tokens push the class name out", "a photo of a {}", ["an extraordinarily long class name"], 46, False, Refused(r"^prompted text 'X X X .*\.\.\.' with class 'an extraordinarily long class name': 79 tokens, the text encoder reads at most 77, and the text up to the end of the class name takes 78: the class name would be cut off")),
]  # fmt: skip


@pytest.mark.parametrize(
    "template, names, n_ctx, truncate, expected", [r[1:] for r in TEXTS], ids=[r[0] for r in TEXTS]
)
def test_texts_are_checked_against_the_encoder_length(clip_and_processor, template, names, n_ctx, truncate, expected):
    from metaprompt_hf.inputs.text_fit import TextTooLongError

    clip, processor = clip_and_processor
    model = MetaPromptModel(clip, MetaPromptConfig(n_ctx=n_ctx, templates=[template]), processor)
    model.truncate_long_texts = truncate
    probs = _verdict(expected, lambda: model.predict(torch.zeros(2, 3, 32, 32), names), TextTooLongError)
    if probs is not None:
        assert probs.shape == (2, len(names)) and torch.isfinite(probs).all()


def test_texts_that_do_not_fit_are_refused_by_the_pipeline_the_space_and_training(
    clip_and_processor, tiny_clip_dir, domain_folder, tmp_path, capsys, fresh_accelerate_state
):
    """One row per entry point: the same too-long template, refused with the class and token counts."""
    from PIL import Image

    from metaprompt_hf import pipeline
    from metaprompt_hf.training import main

    clip, processor = clip_and_processor
    model = MetaPromptModel(clip, MetaPromptConfig(), processor)
    image = Image.new("RGB", (32, 32))
    with pytest.raises(ValueError, match=r"template .* with class 'cat': 85 tokens, .* at most 77"):
        pipeline(model=model)(image, candidate_labels=["cat", "dog"], hypothesis_template=LONG + "{}")
    app = _script(ROOT / "spaces" / "app.py", "space_app_guards")
    with pytest.raises(app.gr.Error, match=r"The template with the class name 'cat' takes 85 tokens, but the text encoder reads at most 77"):  # fmt: skip
        app.classify(image, "cat, dog", LONG + "{}", model=model)
    code = main([
        "--base_model", tiny_clip_dir, "--dataset_name", domain_folder, "--output_dir", str(tmp_path / "run"),
        "--shots", "1", "--max_steps", "1", "--template", LONG + "{}",
    ])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2 and re.search(
        r"^error: template '.*' with class '[a-z ]+': \d+ tokens, .* at most 77", err, re.M
    ), err
    assert not (tmp_path / "run" / WEIGHTS_NAME).exists()


# ====================================================================== 4. caches that tell the truth
COMMIT = "a" * 40


def _cache_entry(cache: Path, source: str | Path, repo: str = "org/adapter") -> Path:
    repo_dir = cache / f"models--{repo.replace('/', '--')}"
    shutil.copytree(source, repo_dir / "snapshots" / COMMIT)
    (repo_dir / "refs").mkdir()
    (repo_dir / "refs" / "main").write_text(COMMIT)
    return repo_dir


def _write_ref(text):
    return lambda repo: (repo / "refs" / "main").write_text(text)


def _incomplete(repo):
    (repo / "snapshots" / COMMIT / CONFIG_NAME).unlink()
    (repo / "blobs").mkdir()
    (repo / "blobs" / "0123abcd.incomplete").write_bytes(b"partial")


def _dangling_link(repo):
    (repo / "snapshots" / COMMIT / CONFIG_NAME).unlink()
    (repo / "snapshots" / COMMIT / CONFIG_NAME).symlink_to("../../blobs/feedbeef")


# (case, damage to the cache entry of the repo, expected)
CACHES: list[tuple[str, object, Works | Refused]] = [
    ("sound entry", None, Works()),
    ("refs/main empty", _write_ref(""), Refused(r"refs/main is empty instead of holding a commit hash \(snapshots there: \['a{40}'\]\); write the snapshot's commit hash into .*refs/main, or remove .*models--org--adapter and download org/adapter again")),
    ("refs/main garbage", _write_ref("<html>rate limited</html>"), Refused(r"refs/main holds '<html>rate limited</html>', not a 40-character commit hash")),
    ("refs/main names a missing snapshot", _write_ref("b" * 40), Refused(r"names commit b{40} for revision 'main', but .*snapshots/b{40} is missing \(snapshots there: \['a{40}'\]\)")),
    ("refs/main missing", lambda repo: (repo / "refs" / "main").unlink(), Refused(r"has no refs/main \(snapshots there: \['a{40}'\]\); write the commit hash of revision 'main' into")),
    ("interrupted download", _incomplete, Refused(r"metaprompt_config.json is missing from .*snapshots/a{40} and .*blobs holds an interrupted download \(0123abcd.incomplete\)")),
    ("dangling link to a blob", _dangling_link, Refused(r"snapshots/a{40}/metaprompt_config.json links to ../../blobs/feedbeef, which is missing")),
]  # fmt: skip


@pytest.mark.parametrize("damage, expected", [r[1:] for r in CACHES], ids=[r[0] for r in CACHES])
def test_broken_cache_entries_are_named_with_the_repair(tmp_path, clip_and_processor, damage, expected):
    cache = tmp_path / "hub"
    repo = _cache_entry(cache, EMBEDDED_ADAPTER)
    if damage is not None:
        damage(repo)
    from metaprompt_hf.utils import resolve_file

    path = _verdict(expected, lambda: resolve_file("org/adapter", CONFIG_NAME, cache_dir=cache), FileNotFoundError)
    if path is not None:
        assert json.loads(Path(path).read_text())["method"] == "METAPROMPT"


@pytest.mark.parametrize("damage, expected", [(None, Works()), (_write_ref("garbage"), Refused(r"could not load the base model 'org/clip' \(revision main\): .*refs/main holds 'garbage', not a 40-character commit hash"))], ids=["sound", "garbage ref"])  # fmt: skip
def test_broken_cache_entry_of_a_base_model_is_named(tmp_path, tiny_clip_dir, damage, expected):
    from metaprompt_hf.backbones import load_base_model

    cache = tmp_path / "hub"
    repo = _cache_entry(cache, tiny_clip_dir, "org/clip")
    if damage is not None:
        damage(repo)
    _verdict(expected, lambda: load_base_model("org/clip", cache_dir=str(cache)), OSError)


# ====================================================================== 5. flags honoured or refused
class _Stop(Exception):
    pass


# (case, argv of benchmarks/mini_suite.py after --output_dir, expected: the one line printed before work, or refusal)
MINI_SUITE: list[tuple[str, list[str], Works | Refused]] = [
    ("--quick alone", ["--quick"], Works(r"^--quick: seeds \[1\], max_steps 2, max_eval_samples 32, cells \['digits', 'sketch'\]$")),
    ("--quick keeps --seeds", ["--quick", "--seeds", "2", "3"], Works(r"^--quick: seeds \[2, 3\], max_steps 2, max_eval_samples 32, cells .* \(--seeds as given\)$")),
    ("--quick keeps --max_steps", ["--quick", "--max_steps", "5"], Works(r"^--quick: seeds \[1\], max_steps 5, .* \(--max_steps as given\)$")),
    ("repeated seeds", ["--seeds", "1", "1", "1", "1"], Refused(r"--seeds: seeds must be distinct, got \[1, 1, 1, 1\] \(repeated: \[1\]\)")),
    ("repeated seeds under --quick", ["--quick", "--seeds", "3", "3"], Refused(r"--seeds: seeds must be distinct")),
    ("--tune with --seeds", ["--tune", "--seeds", "2"], Refused(r"--tune selects on seed 1 with the full schedule; it takes neither --seeds nor --quick")),
]  # fmt: skip


@pytest.mark.parametrize("argv, expected", [r[1:] for r in MINI_SUITE], ids=[r[0] for r in MINI_SUITE])
def test_mini_suite_flags_are_honoured_or_refused(tmp_path, capsys, monkeypatch, argv, expected):
    suite = _script(ROOT / "benchmarks" / "mini_suite.py", "mini_suite_guards")
    seen = {}

    def run_specs(specs, opts):
        seen.update(seeds=sorted({s["seed"] for s in specs}), max_steps=opts.max_steps)
        raise _Stop  # the settings are decided; no run is needed to check them

    monkeypatch.setattr(suite, "run_specs", run_specs)
    if isinstance(expected, Refused):
        with pytest.raises(SystemExit) as exit_info:
            suite.main(["--output_dir", str(tmp_path), *argv])
        assert exit_info.value.code == 2
        assert re.search(expected.pattern, capsys.readouterr().err)
        return
    with pytest.raises(_Stop):
        suite.main(["--output_dir", str(tmp_path), *argv])
    out = capsys.readouterr().out
    assert re.search(expected.detail, out, re.M), out
    given = argv[argv.index("--seeds") + 1 :] if "--seeds" in argv else ["1"]
    assert seen["seeds"] == [int(s) for s in given]


# (case, argv of benchmarks/multi_adapter_throughput.py, expected refusal before any model is loaded)
THROUGHPUT: list[tuple[str, list[str], Refused]] = [
    ("--seconds nan", ["--seconds", "nan"], Refused(r"--seconds: expected a finite number in \(0, 3600\], got nan")),
    ("--seconds inf", ["--seconds", "inf"], Refused(r"--seconds: expected a finite number in \(0, 3600\], got inf")),
    ("--batch_size 0", ["--batch_size", "0"], Refused(r"--batch_size: expected an integer >= 1, got 0")),
    ("--torch_threads 0", ["--torch_threads", "0"], Refused(r"--torch_threads: expected an integer >= 1, got 0")),
]  # fmt: skip


@pytest.mark.parametrize("argv, expected", [r[1:] for r in THROUGHPUT], ids=[r[0] for r in THROUGHPUT])
def test_throughput_benchmark_numbers_are_checked(capsys, monkeypatch, argv, expected):
    bench = _script(ROOT / "benchmarks" / "multi_adapter_throughput.py", "throughput_guards")
    monkeypatch.setattr(sys, "argv", ["multi_adapter_throughput.py", *argv])
    with pytest.raises(SystemExit):
        bench.main()
    assert re.search(expected.pattern, capsys.readouterr().err)


# (case, extra argv of benchmarks/paper_suite.py, expected)
PAPER_SUITE: list[tuple[str, list[str], Works | Refused]] = [
    ("plain", [], Works()),
    ("--train_args with a schedule flag", ["--train_args", "--max_steps 3"], Works()),
    ("--train_args overriding the per-run seed", ["--train_args", "--seed 5"], Refused(r"--train_args: \['--seed'\] are set by the suite for each run")),
    ("--train_args overriding the output folder", ["--train_args=--output_dir=/tmp/x"], Refused(r"--train_args: \['--output_dir'\] are set by the suite")),
    ("--eval_args overriding the report folder", ["--eval_args", "--report_dir r"], Refused(r"--eval_args: \['--report_dir'\] are set by the suite")),
    ("repeated seeds", ["--seeds", "1", "2", "1"], Refused(r"--seeds: seeds must be distinct, got \[1, 2, 1\] \(repeated: \[1\]\)")),
]  # fmt: skip


@pytest.mark.parametrize("argv, expected", [r[1:] for r in PAPER_SUITE], ids=[r[0] for r in PAPER_SUITE])
def test_paper_suite_flags_are_honoured_or_refused(tmp_path, capsys, argv, expected):
    suite = _script(ROOT / "benchmarks" / "paper_suite.py", "paper_suite_guards")
    base = [
        "--data_dir",
        str(tmp_path),
        "--base_model",
        "m",
        "--table",
        "base2new",
        "--output_dir",
        str(tmp_path / "o"),
    ]
    if isinstance(expected, Refused):
        with pytest.raises(SystemExit):
            suite.parse([*base, *argv])
        assert re.search(expected.pattern, capsys.readouterr().err)
        return
    opts = suite.parse([*base, *argv])
    assert opts.train_args == (argv[1].split() if argv and argv[0] == "--train_args" else [])


# (case, argv of examples/evaluate_runs.py, expected)
EVALUATE_RUNS: list[tuple[str, list[str], Refused]] = [
    ("training arguments without --adapters", ["--runs", "r", "--learning_rate", "0.1"], Refused(r"--learning_rate: evaluation arguments apply to --adapters only")),
    ("--output_dir beside --report_dir", ["--adapters", "a", "--output_dir", "o"], Refused(r"--output_dir: the report goes to --report_dir")),
]  # fmt: skip


@pytest.mark.parametrize("argv, expected", [r[1:] for r in EVALUATE_RUNS], ids=[r[0] for r in EVALUATE_RUNS])
def test_evaluate_runs_refuses_arguments_it_would_ignore(tmp_path, capsys, argv, expected):
    script = _script(ROOT / "examples" / "evaluate_runs.py", "evaluate_runs_guards")
    with pytest.raises(SystemExit):
        script.main([*argv, "--report_dir", str(tmp_path / "report")])
    assert re.search(expected.pattern, capsys.readouterr().err)
    assert not (tmp_path / "report").exists()


def test_space_says_which_of_flag_and_environment_variable_is_used(tmp_path, capsys, monkeypatch):
    app = _script(ROOT / "spaces" / "app.py", "space_app_flags")
    monkeypatch.setenv(app.MODEL_ENV_VAR, "embedded")
    assert app.main(["--model", str(tmp_path / "missing")]) == 2  # refused, after the one line
    err = capsys.readouterr().err
    assert re.search(rf"^--model '{re.escape(str(tmp_path / 'missing'))}' is used; \$METAPROMPT_MODEL='embedded' is ignored$", err, re.M), err  # fmt: skip


# ====================================================================== 6. config and weights of one save
def _edit_config(change):
    def edit(folder: Path):
        data = json.loads((folder / CONFIG_NAME).read_text())
        change(data)
        (folder / CONFIG_NAME).write_text(json.dumps(data, indent=4))  # re-indented too

    return edit


def _config_of_another_save(folder: Path):
    # a second save of an adapter of the same shapes (other values): its config beside the first save's weights
    from metaprompt_hf.adapters.files import read_adapter, save_adapter

    files = read_adapter(str(folder))
    save_adapter(folder.parent / "other", files.config, {k: v + 1 for k, v in files.tensors().items()})
    (folder / CONFIG_NAME).write_bytes((folder.parent / "other" / CONFIG_NAME).read_bytes())


# (case, edit of a saved adapter folder, expected)
PAIRS: list[tuple[str, object, Works | Refused]] = [
    ("untouched", None, Works()),
    ("base_model_name_or_path pointed at a Hub id", _edit_config(lambda d: d.update(base_model_name_or_path="org/clip-base")), Works()),
    ("revision set", _edit_config(lambda d: d.update(revision="v1.0")), Works()),
    ("templates edited", _edit_config(lambda d: d.update(templates=["a sketch of a {}"])), Works()),
    ("re-indented only", _edit_config(lambda d: None), Works()),
    ("config of another save, same shapes", _config_of_another_save, Refused(rf"{WEIGHTS_NAME}: these weights were saved with a different {CONFIG_NAME} than .*\(save id [0-9a-f]{{64}} in the weights, [0-9a-f]{{64}} in the config\): the folder holds files of two saves")),
    ("save id removed from the config", _edit_config(lambda d: d.pop(SAVE_ID_KEY)), Refused(r"\(save id [0-9a-f]{64} in the weights, missing in the config\)")),
]  # fmt: skip


@pytest.mark.parametrize("edit, expected", [r[1:] for r in PAIRS], ids=[r[0] for r in PAIRS])
def test_config_and_weights_of_one_save_load_and_torn_pairs_do_not(
    clip_and_processor, pixel_values, tmp_path, edit, expected
):
    clip, processor = clip_and_processor
    torch.manual_seed(0)
    model = MetaPromptModel(clip, MetaPromptConfig(), processor)
    with torch.no_grad():
        for p in model.prompt_parameters():
            p.normal_()
    folder = tmp_path / "adapter"
    model.save_pretrained(folder)
    if edit is not None:
        edit(folder)
    loaded = _verdict(expected, lambda: MetaPromptModel.from_pretrained(folder, base_model=clip, processor=processor))
    if loaded is not None:  # the edited adapter predicts exactly as saved (templates aside, which the edit changed)
        with torch.no_grad():
            torch.testing.assert_close(
                loaded(pixel_values, CLASSES, templates=["a photo of a {}"]).logits,
                model(pixel_values, CLASSES).logits,
            )


# (case, edit of the shipped adapter, saved by an earlier version with the sha256 of its config, expected)
LEGACY: list[tuple[str, object, Works | Refused]] = [
    ("as shipped", None, Works()),
    ("base model id edited", _edit_config(lambda d: d.update(base_model_name_or_path="org/mini-clip")), Works()),
    ("config of a new save beside legacy weights", _edit_config(lambda d: d.update({SAVE_ID_KEY: "0" * 32})), Refused(r"weights of an older save without a save id, config of save 0{32}")),
]  # fmt: skip


@pytest.mark.parametrize("edit, expected", [r[1:] for r in LEGACY], ids=[r[0] for r in LEGACY])
def test_adapters_saved_before_the_save_id_keep_loading(tmp_path, edit, expected):
    from metaprompt_hf.adapters.files import read_adapter

    folder = tmp_path / "metaprompt-mini"
    shutil.copytree(EMBEDDED_ADAPTER, folder)
    if edit is not None:
        edit(folder)
    files = _verdict(expected, lambda: read_adapter(str(folder)))
    if files is not None:
        reference = read_adapter(str(EMBEDDED_ADAPTER))
        assert all(torch.equal(files.tensors()[k], v) for k, v in reference.tensors().items())


# ====================================================================== 7. symbolic-link loops in dataset folders
def _link(name: str, target: str):
    return lambda root: os.symlink(target, os.path.join(root, name))


# (case, link added to a <class>/<image> folder, expected)
LINKS: list[tuple[str, object, Works | Refused]] = [
    ("no link", None, Works(8)),
    ("loop -> . at the top", _link("loop", "."), Refused(r"dataset_name: .*/loop is a symbolic link to .*, a folder that contains it \(a loop\)")),
    ("up -> ../.. inside a class folder", _link("red apple/up", "../.."), Refused(r"dataset_name: .*/red apple/up is a symbolic link to .*, a folder that contains it \(a loop\)")),
    ("a class folder linked from elsewhere", lambda root: os.symlink(os.path.join(root, "..", "store"), os.path.join(root, "linked")), Works(9)),
]  # fmt: skip


@pytest.mark.parametrize("add, expected", [r[1:] for r in LINKS], ids=[r[0] for r in LINKS])
def test_symlink_loops_in_dataset_folders_are_named(tmp_path, add, expected):
    from conftest import make_image_folder

    from metaprompt_hf.data.loading import DataError, load_image_classification

    root = make_image_folder(tmp_path / "data", domains=None, per_class=2, size=8)
    store = tmp_path / "store"
    store.mkdir()
    from PIL import Image

    for i in range(2):
        Image.new("RGB", (8, 8)).save(store / f"{i}.png")
    if add is not None:
        add(root)
    data = _verdict(expected, lambda: load_image_classification(root), DataError)
    if data is not None:
        assert len(data.class_names) == expected.detail


def test_symlink_loops_are_named_by_the_standard_layout_readers(tmp_path):
    from metaprompt_hf.data.loading import DataError
    from metaprompt_hf.data.readers.common import visible

    (tmp_path / "a").mkdir()
    os.symlink(".", tmp_path / "loop")
    with pytest.raises(DataError, match=r"data_dir: .*/loop is a symbolic link to .*, a folder that contains it"):
        visible(str(tmp_path))
