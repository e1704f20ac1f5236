"""`python -m metaprompt_hf.compare` on a tiny CLIP: structure, pairing, resume, tuning and the refusals (never
accuracy: the tiny model is random)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from conftest import RecordingApi, make_image_folder

import metaprompt_hf.compare.runs as compare_runs
from metaprompt_hf import CONFIG_NAME, WEIGHTS_NAME, MetaPromptModel
from metaprompt_hf.compare import compare, main
from metaprompt_hf.compare.publish import median_seed, push_best
from metaprompt_hf.compare.report import summary_lines
from metaprompt_hf.data.loading import DataError
from metaprompt_hf.protocols import load_protocol_data
from metaprompt_hf.stats import interval_includes_zero
from metaprompt_hf.training import parse_args

SCHEMA = {"dataset", "protocol", "metric", "seeds", "shots", "tuned", "methods", "ranking"}
SCHEMA |= {"indistinguishable_from_best"}
METHOD_KEYS = {"config_digest", "per_seed", "mean", "se", "ci95", "n", "delta_vs_best", "step_time_s"}
METHOD_KEYS |= {"peak_memory_mb", "adapter_bytes"}
REAL_TRAIN = compare_runs.train
ROOT = Path(__file__).resolve().parents[2]
RUN_FILES = {"results.json", "fewshot_indices.json", "training_args.json", "compare_run.json"}


def _argv(tiny_clip_dir, data, out, *extra):
    return [
        "--base_model", tiny_clip_dir, "--dataset_name", data, "--output_dir", str(out), "--shots", "2",
        "--per_device_train_batch_size", "4", "--max_steps", "2", "--learning_rate", "0.05", "--warmup_epochs", "0",
        "--max_eval_samples", "16", *extra,
    ]  # fmt: skip


class CountingTrain:
    """Wraps `training.train` inside the comparison: counts the runs it starts (or refuses any)."""

    def __init__(self, monkeypatch, refuse=False):
        self.calls, self.refuse = [], refuse
        monkeypatch.setattr(compare_runs, "train", self)

    def __call__(self, args, **kw):
        if self.refuse:
            raise AssertionError(f"trained {args.method} seed {args.seed}")
        self.calls.append((args.method, args.seed, "metaprompt-compare-probe" in args.output_dir))
        return REAL_TRAIN(args, **kw)


@pytest.fixture(scope="module")
def comparison(tiny_clip_dir, domain_folder, tmp_path_factory):
    """Three methods × two seeds, run once for the module."""
    out = tmp_path_factory.mktemp("compare") / "cmp"
    summary = compare(
        _argv(tiny_clip_dir, domain_folder, out, "--methods", "zeroshot,coop,metaprompt", "--seeds", "2")
    )
    return out, summary


def test_structure_and_pairing(comparison, tiny_clip_dir):
    out, summary = comparison
    on_disk = json.loads((out / "comparison.json").read_text())
    assert on_disk == json.loads(json.dumps(summary))
    assert set(on_disk) >= SCHEMA and on_disk["metric"] == "hm" and on_disk["protocol"] == "base2new"
    assert on_disk["seeds"] == [1, 2] and on_disk["shots"] == 2 and on_disk["tuned"] is False
    methods = on_disk["methods"]
    assert set(methods) == {"zeroshot", "coop", "metaprompt"}
    means = [methods[m]["mean"] for m in on_disk["ranking"]]
    assert means == sorted(means, reverse=True) and set(on_disk["ranking"]) == set(methods)
    best = on_disk["ranking"][0]
    for name, m in methods.items():
        assert METHOD_KEYS | {"delta_vs_zeroshot"} <= set(m), name
        assert set(m["per_seed"]) == {"1", "2"} and m["n"] == 2
        assert m["ci95"][0] <= m["mean"] <= m["ci95"][1]
        diffs = [m["per_seed"][s] - methods[best]["per_seed"][s] for s in ("1", "2")]
        assert m["delta_vs_best"]["mean"] == pytest.approx(sum(diffs) / 2)
        tied = name != best and interval_includes_zero(m["delta_vs_best"])
        assert (name in on_disk["indistinguishable_from_best"]) == tied
        assert (m["adapter_bytes"] > 0) == (name != "zeroshot")
    # pairing: every method of a seed trained on the same few-shot rows
    for seed in (1, 2):
        rows = [
            json.loads((out / "runs" / m / f"seed-{seed}" / "fewshot_indices.json").read_text())["rows"]
            for m in methods
        ]
        assert rows[0] == rows[1] == rows[2]
    # every run folder is an ordinary training output folder
    run = out / "runs" / "coop" / "seed-1"
    assert RUN_FILES | {CONFIG_NAME, WEIGHTS_NAME} <= {p.name for p in run.iterdir()}
    assert MetaPromptModel.from_pretrained(run, base_model=tiny_clip_dir).config.n_ctx > 0
    md = (out / "comparison.md").read_text()
    assert "| rank | method | HM mean ± se |" in md and all(f"| {m} |" in md for m in methods)
    assert "each method's defaults (not tuned" in md
    assert (out / "comparison.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "examples/train.py" in on_disk["settings"]["train_command"]
    assert f"--method {best}" in on_disk["settings"]["train_command"]


def test_resume_trains_nothing_and_a_changed_run_is_rerun(
    comparison, tiny_clip_dir, domain_folder, monkeypatch, capsys
):
    out, summary = comparison
    CountingTrain(monkeypatch, refuse=True)
    again = compare(_argv(tiny_clip_dir, domain_folder, out, "--methods", "zeroshot,coop,metaprompt", "--seeds", "2"))
    assert {k: v for k, v in again.items() if k != "settings"} == {k: v for k, v in summary.items() if k != "settings"}
    printed = capsys.readouterr().out
    assert "6 runs finished already (kept), 0 to run" in printed
    assert printed.rstrip("\n").splitlines()[-3:] == summary_lines(again)  # the three-line answer
    # a crashed run (no marker) and a changed configuration (coop's lr) are re-run; the others are kept
    (out / "runs" / "zeroshot" / "seed-2" / "compare_run.json").unlink()
    counter = CountingTrain(monkeypatch)
    config_dir = _config_dir(out.parent, coop={"learning_rate": 0.01})
    changed = compare(
        _argv(tiny_clip_dir, domain_folder, out, "--methods", "zeroshot,coop", "--seeds", "2")
        + ["--config_dir", str(config_dir)]
    )
    runs = sorted((m, s) for m, s, probe in counter.calls if not probe)
    assert runs == [("coop", 1), ("coop", 2), ("zeroshot", 2)]
    assert changed["methods"]["coop"]["config_digest"] != summary["methods"]["coop"]["config_digest"]
    assert changed["methods"]["zeroshot"]["config_digest"] == summary["methods"]["zeroshot"]["config_digest"]
    assert "delta_vs_zeroshot" in changed["methods"]["coop"]


def _config_dir(root, **files):
    folder = root / "configs"
    folder.mkdir(exist_ok=True)
    for method, values in files.items():
        (folder / f"{method}.yaml").write_text("".join(f"{k}: {v}\n" for k, v in values.items()))
    return folder


def test_push_best_uploads_the_median_seed_with_the_table(comparison):
    out, summary = comparison
    summary = json.loads(json.dumps(summary))
    summary["ranking"] = ["coop"] + [m for m in summary["ranking"] if m != "coop"]
    api = RecordingApi()
    push_best(summary, out, "me/best", api=api)
    assert [c[0] for c in api.calls] == ["create_repo", "upload_folder"]
    _, repo, files, _ = api.calls[1]
    seed = median_seed(summary, "coop")
    assert repo == "me/best" and sorted(files) == sorted([CONFIG_NAME, WEIGHTS_NAME, "README.md"])
    assert files[WEIGHTS_NAME] == (out / "runs" / "coop" / f"seed-{seed}" / WEIGHTS_NAME).read_bytes()
    card = files["README.md"].decode()
    assert "library_name: metaprompt_hf" in card and "## How this method compared on" in card
    assert "| rank | method | HM mean ± se |" in card
    summary["ranking"] = ["zeroshot"]
    with pytest.raises(DataError, match="no adapter"):
        push_best(summary, out, "me/best", api=RecordingApi())


def test_median_seed():
    summary = {"methods": {"m": {"per_seed": {"1": 50.0, "2": 70.0, "3": 60.0}}}}
    assert median_seed(summary, "m") == 3
    summary["methods"]["m"]["per_seed"]["4"] = 80.0  # even count: the lower of the middle two
    assert median_seed(summary, "m") == 3


def test_dry_run_prints_the_plan_and_writes_nothing(tiny_clip_dir, domain_folder, tmp_path, capsys):
    out = tmp_path / "dry"
    assert (
        compare(_argv(tiny_clip_dir, domain_folder, out, "--methods", "coop,ivlp", "--seeds", "2", "--dry_run"))
        is None
    )
    printed = capsys.readouterr().out
    assert "Plan: 2 methods × 2 seeds = 4 runs" in printed and "0 runs finished already (kept), 4 to run" in printed
    assert "measured steps per method: coop" in printed
    assert not out.exists()


def test_tune_on_validation_same_grid_for_every_method(tiny_clip_dir, tmp_path):
    train = make_image_folder(tmp_path / "train", domains=None, per_class=4)
    val = make_image_folder(tmp_path / "val", domains=None, per_class=2, seed=1)
    out = tmp_path / "tuned"
    argv = _argv(tiny_clip_dir, train, out, "--methods", "coop,metaprompt", "--seeds", "2", "--tune")
    argv += ["--train_dir", train, "--validation_dir", val, "--tune_lr_factors", "0.5,2", "--tune_meta_steps", "1"]
    argv[argv.index("--max_steps") + 1] = "1"
    summary = compare(argv)
    tuning = json.loads((out / "tuning.json").read_text())
    assert summary["tuned"] is True and tuning["split"] == "validation" and tuning["eval_domains"] == "target"
    assert sorted(tuning["methods"]["coop"]["learning_rate"]) == sorted(
        tuning["methods"]["metaprompt"]["learning_rate"]
    )
    assert set(tuning["methods"]["coop"]["chosen"]) == {"learning_rate"}
    assert set(tuning["methods"]["metaprompt"]["chosen"]) == {"learning_rate", "meta_step"}
    assert set(tuning["methods"]["metaprompt"]["meta_step"]) == {"1", "5"}  # the grid and the default β
    for name, chosen in ((m, r["chosen"]) for m, r in tuning["methods"].items()):
        marker = json.loads((out / "runs" / name / "seed-1" / "compare_run.json").read_text())
        assert marker["learning_rate"] == chosen["learning_rate"] and marker["eval_split"] == "test"
        assert summary["settings"]["hyperparameters"][name]["source"] == "tuned on validation"
    trial = json.loads(next((out / "tune" / "coop").glob("*/compare_run.json")).read_text())
    assert trial["eval_split"] == "validation"
    assert "tuned on the validation split" in (out / "comparison.md").read_text()


def test_dg_tuning_scores_the_source_domains_never_the_held_out_one():
    from types import SimpleNamespace

    from metaprompt_hf.compare.tune import tune_domains

    assert tune_domains(SimpleNamespace(values={"protocol": "dg"})) == "sources"
    assert tune_domains(SimpleNamespace(values={"protocol": "base2new"})) == "target"


# ---------------------------------------------------------------------------------------------------- refusals
@pytest.mark.parametrize(
    ("extra", "error", "match"),
    [
        (["--methods", "coop,nope"], ValueError, r"unknown method 'nope'; the known methods are \[.*'coop'"),
        (["--seeds", "1"], ValueError, "at least two seeds"),
        (["--method", "coop"], ValueError, "use --methods"),
        (["--seed", "3"], ValueError, "use --seeds"),
        (["--methods", "coop,coop"], ValueError, "listed twice"),
        (["--methods", "coop"], ValueError, "at least two methods"),
        (["--do_eval", "False"], ValueError, "nothing to rank"),
        (["--push_to_hub"], ValueError, "use --push_best_to_hub"),
        (["--tune"], DataError, "no 'validation' split"),
    ],
)
def test_refusals_before_any_training(tiny_clip_dir, domain_folder, tmp_path, monkeypatch, extra, error, match):
    CountingTrain(monkeypatch, refuse=True)
    with pytest.raises(error, match=match):
        compare(_argv(tiny_clip_dir, domain_folder, tmp_path / "out", *extra))
    assert not (tmp_path / "out").exists()


def test_too_few_images_for_shots_reported_as_train_py_does(tiny_clip_dir, domain_folder, tmp_path, monkeypatch):
    CountingTrain(monkeypatch, refuse=True)
    argv = _argv(tiny_clip_dir, domain_folder, tmp_path / "out", "--methods", "coop,ivlp")
    argv[argv.index("--shots") + 1] = "50"
    with pytest.raises(DataError) as from_compare:
        compare(argv)
    single = [a for a in argv if a not in ("--methods", "coop,ivlp")]
    with pytest.raises(DataError) as from_train:
        load_protocol_data(parse_args(single))
    assert str(from_compare.value) == str(from_train.value) and "shots" in str(from_train.value)


def test_refuses_a_folder_of_another_comparison(
    comparison, tiny_clip_dir, domain_folder, tmp_path, monkeypatch, capsys
):
    out, _ = comparison
    CountingTrain(monkeypatch, refuse=True)
    argv = _argv(tiny_clip_dir, domain_folder, out, "--methods", "coop,ivlp")
    argv[argv.index("--shots") + 1] = "3"
    with pytest.raises(DataError, match=r"holds another comparison's runs \(differs in shots.*--overwrite_output_dir"):
        compare(argv)
    monkeypatch.undo()  # a dry run measures steps, but replaces nothing
    assert compare([*argv, "--overwrite_output_dir", "--dry_run"]) is None
    assert (out / "comparison.json").is_file() and (out / "runs" / "coop").is_dir()
    CountingTrain(monkeypatch, refuse=True)
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    assert main(_argv(tiny_clip_dir, domain_folder, other, "--methods", "coop,ivlp")) == 2
    assert "holds no comparison" in capsys.readouterr().err
    assert (other / "notes.txt").read_text() == "mine"


def test_config_dir_errors(tiny_clip_dir, domain_folder, tmp_path):
    folder = _config_dir(tmp_path, coop={"learning_rat": 0.1})
    with pytest.raises(ValueError, match=r"unknown key\(s\) \['learning_rat'\]"):
        compare(
            _argv(tiny_clip_dir, domain_folder, tmp_path / "o", "--methods", "coop,ivlp", "--config_dir", str(folder))
        )
    shutil.rmtree(folder)
    folder = _config_dir(tmp_path, coop={"shots": 8})
    with pytest.raises(ValueError, match="every method alike"):
        compare(
            _argv(tiny_clip_dir, domain_folder, tmp_path / "o", "--methods", "coop,ivlp", "--config_dir", str(folder))
        )


@pytest.mark.slow
def test_under_accelerate_launch_two_processes(tiny_clip_dir, domain_folder, tmp_path):
    from conftest import launch_two_cpu_processes as _launch

    out = tmp_path / "ddp"
    argv = _argv(tiny_clip_dir, domain_folder, out, "--methods", "zeroshot,coop", "--seeds", "2")
    proc = _launch(["-m", "metaprompt_hf.compare", *argv], tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((out / "comparison.json").read_text())
    assert summary["settings"]["processes"] == 2 and set(summary["methods"]) == {"zeroshot", "coop"}
    assert (
        proc.stdout.count("Plan: 2 methods × 2 seeds") == 1
        and proc.stdout.count("accelerate launch examples/train.py") == 1
    )


def test_readme_example_is_generated_from_its_result_file():
    import sys

    sys.path.insert(0, str(ROOT / "benchmarks"))
    import compare_readme

    summary = json.loads((ROOT / compare_readme.RESULT).read_text())
    assert set(summary) >= SCHEMA and len(summary["seeds"]) >= 2 and (ROOT / compare_readme.PLOT).is_file()
    assert summary["settings"]["command"].startswith("python -m metaprompt_hf.compare --dataset_name miniworld:")
    assert summary["settings"]["wall_seconds"] > 0  # recorded by the command, not typed
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert compare_readme.current_block(readme) == compare_readme.expected_block()


def test_ctrl_c_loses_at_most_the_run_in_progress(tiny_clip_dir, domain_folder, tmp_path, monkeypatch, capsys):
    out = tmp_path / "interrupted"
    argv = _argv(tiny_clip_dir, domain_folder, out, "--methods", "zeroshot,coop", "--seeds", "2")
    calls = []

    def interrupt_third_run(args, **kw):
        if "metaprompt-compare-probe" not in args.output_dir:
            calls.append((args.method, args.seed))
            if len(calls) == 3:
                raise KeyboardInterrupt
        return REAL_TRAIN(args, **kw)

    monkeypatch.setattr(compare_runs, "train", interrupt_third_run)
    assert main(argv) == 130
    assert "re-run the same command to resume" in capsys.readouterr().err
    finished = sorted(p.parent.relative_to(out / "runs").as_posix() for p in out.glob("runs/*/*/compare_run.json"))
    assert finished == ["coop/seed-1", "zeroshot/seed-1"]  # seed-major order: complete pairs first
    counter = CountingTrain(monkeypatch)
    assert main(argv) == 0
    assert sorted((m, s) for m, s, probe in counter.calls if not probe) == [("coop", 2), ("zeroshot", 2)]
