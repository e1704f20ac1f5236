"""Training output: evaluation metrics reach the trackers at the final step, at most
`--checkpoints_total_limit` checkpoints are kept, and `--train_dir` is an argument of the run."""

from __future__ import annotations

import pytest

from metaprompt_hf.training import MetaPromptTrainingArguments, train
from metaprompt_hf.training.checkpointing import prune_checkpoints
from metaprompt_hf.training.run import log_eval_metrics

# Each in-process run builds its own Accelerator (the fixture is in conftest.py).
pytestmark = pytest.mark.usefixtures("fresh_accelerate_state")


def test_run_logs_eval_metrics_and_keeps_the_newest_checkpoints(run_args, tmp_path):
    out = tmp_path / "run"
    args = run_args(out, checkpointing_steps="1", checkpoints_total_limit=2, report_to="tensorboard")
    result = train(args)
    assert sorted(p.name for p in out.glob("checkpoint-*")) == ["checkpoint-2", "checkpoint-3"]
    # the adapter's model card, rewritten once the results are in (ModelHubMixin writes README.md beside weights)
    card = (out / "README.md").read_text()
    assert f"{result.results[0]['hm']:.2f}" in card and "model-index" in card and "name: run" in card

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    scalars = {}
    for folder in {p.parent for p in out.rglob("events.out.tfevents.*")}:  # hparams get a folder of their own
        acc = EventAccumulator(str(folder))
        acc.Reload()
        scalars |= {tag: acc.Scalars(tag) for tag in acc.Tags()["scalars"]}
    assert {"eval/base", "eval/new", "eval/hm", "loss"} <= set(scalars) and "eval/seed" not in scalars
    (hm,) = scalars["eval/hm"]
    assert hm.step == 3 and hm.value == pytest.approx(result.results[0]["hm"], rel=1e-5)


def test_prune_keeps_the_newest_by_step(tmp_path):
    for step in (1, 2, 10, 9):
        (tmp_path / f"checkpoint-{step}").mkdir()
    (tmp_path / "checkpoint-notes").mkdir()  # not a checkpoint: left alone
    removed = prune_checkpoints(tmp_path, 2)
    assert sorted(p.name for p in removed) == ["checkpoint-1", "checkpoint-2"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint-10", "checkpoint-9", "checkpoint-notes"]


def test_checkpoints_total_limit_must_be_positive():
    with pytest.raises(ValueError, match="checkpoints_total_limit"):
        MetaPromptTrainingArguments(base_model="embedded", checkpoints_total_limit=0)


def test_log_eval_metrics_without_trackers_logs_nothing():
    class NoTrackers:
        trackers: list = []

        def log(self, *args, **kwargs):  # pragma: no cover - must not be called
            raise AssertionError("logged without trackers")

    assert log_eval_metrics(NoTrackers(), {"base": 80.0, "seed": 1}, step=3) == {}


def test_train_dir_is_an_argument(tmp_path):
    args = MetaPromptTrainingArguments(
        base_model="embedded", dataset_name="pets", train_dir=str(tmp_path), validation_dir=str(tmp_path)
    )
    assert args.train_dir == args.validation_dir == str(tmp_path)


@pytest.mark.parametrize(
    ("flag", "field_name"),
    [
        ("--image_column_name", "image_column"),
        ("--label_column_name", "label_column"),
        ("--domain_column_name", "domain_column"),
        ("--image_column", "image_column"),
    ],
)
def test_column_flags_take_the_names_of_transformers_examples(flag, field_name, tmp_path):
    from metaprompt_hf.training.arguments import parse_args

    args = parse_args(["--dataset_name", "pets", "--output_dir", str(tmp_path / "run"), flag, "my_col"])
    assert getattr(args, field_name) == "my_col"
