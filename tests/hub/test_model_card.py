"""The Hub model card (`model_card.md` rendered by `hub.build_model_card` / `hub.push_to_hub`) from a finished
run's `results.json`: YAML metadata with a model-index carrying exactly the run's numbers, and a readable body."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest
import yaml
from conftest import RecordingApi
from huggingface_hub import ModelCard

from metaprompt_hf import MetaPromptConfig, MetaPromptModel
from metaprompt_hf.hub.card import build_model_card, load_results, push_to_hub
from metaprompt_hf.testing import tiny_clip

ROOT = Path(__file__).resolve().parents[2]
REPO_ID = "org/metaprompt-test"
BASE = "testorg/tiny-clip"
# What the training loop writes to output_dir/results.json (percent); one run per dataset / target domain here:
# two Hub datasets (one with a config) and one of the offline mini world, which is not a Hub id.
RUN_RESULTS = [
    {"protocol": "base2new", "method": "metaprompt", "dataset": "testorg/shapes", "base": 91.2, "new": 70.1,
     "hm": 79.27, "seed": 1, "shots": 16, "eval_split": "test"},
    {"protocol": "base2new", "method": "metaprompt", "dataset": "miniworld:digits", "base": 88.45, "new": 61.0,
     "hm": 72.2, "seed": 1, "shots": 16, "eval_split": "test"},
    {"protocol": "dg", "method": "metaprompt", "dataset": "testorg/styles", "dataset_config": "small",
     "target_domain": "sketch", "accuracy": 55.0, "seed": 1, "eval_split": "validation"},
]  # fmt: skip
TRAINING = {"method": "metaprompt", "shots": 16, "epochs": 5, "learning rate": 0.0025, "meta step": "β=0.1"}


def _expected_model_index(results: list[dict]) -> set[tuple]:
    """(dataset type, config, split, metric type, metric config, value) for each number of a single-seed run on a
    Hub dataset; mini-world results are left out of the model-index."""
    out = set()
    for r in results:
        if r["dataset"].startswith("miniworld:"):
            continue
        d = (r["dataset"], r.get("dataset_config"), r.get("eval_split", "test"))
        if r["protocol"] == "base2new":
            out |= {
                (*d, "accuracy", "base-classes", r["base"]),
                (*d, "accuracy", "new-classes", r["new"]),
                (*d, "harmonic_mean", "base-new", r["hm"]),
            }
        else:
            out.add((*d, "accuracy", f"target-domain-{r['target_domain']}", r["accuracy"]))
    return out


def _split_card(card: str) -> tuple[dict, str]:
    assert card.startswith("---\n")
    _, header, body = card.split("---\n", 2)
    return yaml.safe_load(header), body


def _model_index(meta: dict) -> set[tuple]:
    (entry,) = meta["model-index"]
    rows = set()
    for result in entry["results"]:
        assert result["task"]["type"] == "zero-shot-image-classification"
        assert result["source"] == {"name": REPO_ID, "url": f"https://huggingface.co/{REPO_ID}"}
        d = result["dataset"]
        assert d["type"].count("/") == 1 and ":" not in d["type"]  # a Hub dataset id
        assert d["split"] in ("train", "validation", "test")  # conventional split names
        for metric in result["metrics"]:
            rows.add((d["type"], d.get("config"), d["split"], metric["type"], metric.get("config"), metric["value"]))
    return rows


def _parsed(card: str) -> set[tuple]:
    """The card's model-index as huggingface_hub's parsers read it: `ModelCard` (card data) and
    `model_index_to_eval_results` on the raw YAML, which must agree."""
    from huggingface_hub.repocard_data import model_index_to_eval_results

    data = ModelCard(card).data
    name, results = model_index_to_eval_results(data.to_dict()["model-index"])
    assert name == data.model_name
    rows = {
        (e.dataset_type, e.dataset_config, e.dataset_split, e.metric_type, e.metric_config, e.metric_value)
        for e in results
    }
    assert rows == {
        (e.dataset_type, e.dataset_config, e.dataset_split, e.metric_type, e.metric_config, e.metric_value)
        for e in data.eval_results
    }
    return rows


def _assert_rendered(card: str) -> None:
    for marker in ("{{", "}}", "{%", "%}", "{#", "#}"):
        assert marker not in card, f"unrendered Jinja {marker!r} in the card"
    assert "Undefined" not in card and "None |" not in card


@pytest.fixture
def results_file(tmp_path) -> Path:
    path = tmp_path / "output" / "results.json"
    path.parent.mkdir()
    path.write_text(json.dumps(RUN_RESULTS, indent=2))
    return path


@pytest.fixture
def config() -> MetaPromptConfig:
    clip, _ = tiny_clip()
    clip.name_or_path = BASE
    return MetaPromptModel(clip, MetaPromptConfig(n_ctx=4, n_pro=4)).config  # dimensions filled from the base


def test_card_from_a_results_file(results_file, config):
    card = str(
        build_model_card(
            config,
            model_name="metaprompt-test",
            results=load_results(results_file),
            training=TRAINING,
            datasets=["testorg/extra-data", "miniworld:objects", "./local/folder"],
            repo_id=REPO_ID,
        )
    )
    _assert_rendered(card)
    meta, body = _split_card(card)

    assert meta["library_name"] == "metaprompt_hf"
    assert meta["license"] == "mit"
    assert meta["base_model"] == BASE and meta["base_model_relation"] == "adapter"
    assert meta["pipeline_tag"] == "zero-shot-image-classification"
    assert {"metaprompt", "prompt-learning", "clip", f"base_model:adapter:{BASE}"} <= set(meta["tags"])
    # Only Hub ids: the ones given, then those of the results; never a mini-world name or a local path.
    assert meta["datasets"] == ["testorg/extra-data", "testorg/shapes", "testorg/styles"]
    assert meta["metrics"] == ["accuracy"]
    assert meta["model-index"][0]["name"] == "metaprompt-test"
    # Exactly the run's numbers: nothing missing, nothing extra, nothing rounded away.
    assert _model_index(meta) == _expected_model_index(RUN_RESULTS)

    # huggingface_hub reads the same metadata back into EvalResults (what the Hub's parser sees).
    assert _parsed(card) == _expected_model_index(RUN_RESULTS)
    assert ModelCard(card).data.base_model == BASE
    names = {m["name"] for r in meta["model-index"][0]["results"] for m in r["metrics"]}
    assert {"Base accuracy (%)", "New accuracy (%)", "Accuracy on unseen domain sketch (%)"} <= names

    # Body: usage with the repo id, configuration, training settings, both result tables, limitations, citation.
    assert f'MetaPromptModel.from_pretrained("{REPO_ID}")' in body
    assert "return_zero_shot=True" in body and "pip install metaprompt-hf" not in body and "pip install ." in body
    assert f"[`{BASE}`](https://huggingface.co/{BASE})" in body
    assert "`testorg/shapes`, `testorg/styles`" in body and "local and mini-world datasets appear only" in body
    assert "| text prompt tokens (n_ctx) × depth | 4 × 3 |" in body  # tiny CLIP: 3 text layers
    assert "| vision prompt tokens (n_pro) × depth | 4 × 2 |" in body
    assert f"**Trainable parameters:** {4 * 3 * 32 + 4 * 2 * 48:,}" in body
    for key, value in TRAINING.items():
        assert f"| {key} | {value} |" in body
    assert "| testorg/shapes | metaprompt | 1 | 91.20 | 70.10 | 79.27 |" in body
    assert "| miniworld:digits | metaprompt | 1 | 88.45 | 61.00 | 72.20 |" in body
    assert "| testorg/styles | sketch | metaprompt | 1 | 55.00 |" in body
    assert "mean of" not in body  # one run per dataset: no mean rows
    assert "## Intended uses & limitations" in body and "closed-set" in body
    assert "@article{zhao2024metaprompt" in body and "arXiv:2212.04196" in body
    assert re.search(r"^- transformers \d", body, re.MULTILINE)


def test_push_to_hub_fills_the_card_from_the_results_file(results_file):
    clip, processor = tiny_clip()
    clip.name_or_path = BASE
    model = MetaPromptModel(clip, MetaPromptConfig(), processor)
    api = RecordingApi()
    card_kwargs = {"results": str(results_file), "training": TRAINING}
    assert push_to_hub(model, REPO_ID, model_card_kwargs=card_kwargs, api=api) == "commit-info"
    (_, repo_id, files, _) = api.calls[-1]
    assert repo_id == REPO_ID
    card = files["README.md"].decode("utf-8")
    _assert_rendered(card)
    meta, body = _split_card(card)
    assert meta["model-index"][0]["name"] == "metaprompt-test"  # the repo name
    assert _model_index(meta) == _expected_model_index(RUN_RESULTS)
    assert f'MetaPromptModel.from_pretrained("{REPO_ID}")' in body
    assert "| testorg/shapes | metaprompt | 1 | 91.20 | 70.10 | 79.27 |" in body


def test_several_seeds_are_listed_and_averaged(tmp_path, config):
    runs = [
        {"protocol": "base2new", "dataset": "testorg/shapes", "base": 90.0, "new": 70.0, "hm": 78.75, "seed": 1},
        {"protocol": "base2new", "dataset": "testorg/shapes", "base": 92.0, "new": 72.0, "hm": 80.78, "seed": 2},
        {"protocol": "dg", "dataset": "styles", "target_domain": "sketch", "accuracy": 50.0, "seed": 1},
        {"protocol": "dg", "dataset": "styles", "target_domain": "sketch", "accuracy": 54.0, "seed": 2},
        {"protocol": "dg", "dataset": "styles", "target_domain": "photo", "accuracy": 80.0, "seed": 1},
    ]
    path = tmp_path / "results.json"
    path.write_text(json.dumps(runs))
    card = str(build_model_card(config, results=load_results(path), repo_id=REPO_ID))
    _assert_rendered(card)
    meta, body = _split_card(card)
    hm_of_means = round(2 * 91.0 * 71.0 / (91.0 + 71.0), 2)  # the paper's convention: HM of the mean B and N
    expected = {
        ("testorg/shapes", None, "test", "accuracy", "base-classes", 91.0),
        ("testorg/shapes", None, "test", "accuracy", "new-classes", 71.0),
        ("testorg/shapes", None, "test", "harmonic_mean", "base-new", hm_of_means),
        ("styles", None, "test", "accuracy", "target-domain-sketch", 52.0),
        ("styles", None, "test", "accuracy", "target-domain-photo", 80.0),
    }
    assert _parsed(card) == expected
    names = [m["name"] for r in meta["model-index"][0]["results"] for m in r["metrics"]]
    assert "Base accuracy (%, mean of 2 runs)" in names and "Accuracy on unseen domain photo (%)" in names
    # Every run is listed in the body, then the mean of each group that has several.
    assert "| testorg/shapes | 1 | 90.00 | 70.00 | 78.75 |" in body
    assert f"| **testorg/shapes** | **mean of 2** | **91.00** | **71.00** | **{hm_of_means:.2f}** |" in body
    assert "| **styles** | **sketch** | **mean of 2** | **52.00** |" in body
    assert "| styles | photo | 1 | 80.00 |" in body and "**photo**" not in body


def test_local_and_miniworld_datasets_stay_out_of_the_metadata(tmp_path, config):
    runs = [
        {"protocol": "base2new", "dataset": "miniworld:objects", "base": 85.0, "new": 80.0, "hm": 82.42},
        {"protocol": "dg", "dataset": str(tmp_path), "target_domain": "sketch", "accuracy": 50.0},
    ]
    card = str(build_model_card(config, results=runs, datasets=["miniworld:objects"], repo_id=REPO_ID))
    meta, body = _split_card(card)
    assert "model-index" not in meta and "datasets" not in meta and "metrics" not in meta
    assert "| miniworld:objects | 1 |" not in body and "| miniworld:objects | – | 85.00 | 80.00 | 82.42 |" in body
    assert "not in the card's `model-index` metadata" in body
    assert ModelCard(card).data.eval_results is None


def test_hub_ids_are_told_from_local_names(tmp_path):
    from metaprompt_hf.hub.card import is_hub_id

    for name in ("openai/clip-vit-base-patch16", "cifar10", "flwrlabs/pacs"):
        assert is_hub_id(name), name
    for name in ("miniworld:objects", "embedded", str(tmp_path), "./data/pacs", "~/pacs", "a/b/c", "org/--x", ""):
        assert not is_hub_id(name), name


def test_the_shipped_adapter_card_validates():
    from metaprompt_hf.constants import EMBEDDED_ADAPTER

    card = (EMBEDDED_ADAPTER / "README.md").read_text(encoding="utf-8")
    meta, body = _split_card(card)
    data = ModelCard(card).data
    assert data.library_name == "metaprompt_hf" and data.pipeline_tag == "zero-shot-image-classification"
    # Its base is the small CLIP shipped in the package, not a Hub model; its results are on the mini world.
    assert "base_model" not in meta and "datasets" not in meta and "model-index" not in meta
    assert "pip install metaprompt-hf" not in body and "| miniworld:objects |" in body


def test_card_without_results_or_training(config):
    card = str(build_model_card(config, repo_id=REPO_ID))
    _assert_rendered(card)
    meta, body = _split_card(card)
    assert "model-index" not in meta and "metrics" not in meta
    assert "No evaluation results were attached" in body
    assert "Training settings were not recorded" in body
    assert f'MetaPromptModel.from_pretrained("{REPO_ID}")' in body


def test_local_base_model_is_not_claimed_as_a_hub_id(tmp_path):
    config = MetaPromptConfig(base_model_name_or_path=str(tmp_path))  # a folder, not a Hub id
    meta, body = _split_card(str(build_model_card(config)))
    assert "base_model" not in meta and not any(t.startswith("base_model:") for t in meta["tags"])
    assert 'from_pretrained("path/to/adapter")' in body


@pytest.mark.parametrize(
    "content, message",
    [
        ("{not json", "not valid JSON"),
        (json.dumps([{"dataset": "shapes", "base": 1.0}]), "needs a 'protocol'"),
        (json.dumps([{"protocol": "dg", "dataset": "styles", "target_domain": "sketch"}]), "none of the metrics"),
        (json.dumps([{"protocol": "base2new", "dataset": "shapes", "base": "91%"}]), "'base' must be a finite number"),
    ],
)
def test_bad_results_files_are_clear_errors(tmp_path, content, message):
    path = tmp_path / "results.json"
    path.write_text(content)
    with pytest.raises(ValueError, match=message):
        load_results(path)


def test_single_result_object_is_accepted(tmp_path, config):
    path = tmp_path / "results.json"
    path.write_text(json.dumps(RUN_RESULTS[2]))  # the loop may write one object instead of a list
    meta, _ = _split_card(str(build_model_card(config, results=load_results(path), repo_id=REPO_ID)))
    assert _model_index(meta) == _expected_model_index([RUN_RESULTS[2]])


def test_card_states_the_meta_steps_measured_effect_and_this_runs_ratio(config):
    """The card gives the meta step's measured effect as `ablation.json` gives it, and the run's update ratio."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from ablation_docs import ABLATION, card_block

    ablation = json.loads((ROOT / ABLATION).read_text(encoding="utf-8"))
    runs = [{"protocol": "base2new", "dataset": "miniworld:objects", "base": 80.0, "new": 70.0, "hm": 74.67}]
    card = str(build_model_card(config, results=[runs[0] | {"meta_update_ratio": 0.5}], training=TRAINING))
    section = card[card.index("### The meta step") : card.index("## Intended uses")]
    assert "median 0.50× the in-domain update" in section
    assert card_block(ablation).strip() in section and "generated:" not in section  # the delimiters are Jinja comments
    default = ablation["variants"][ablation["settings"]["default_variant"]]
    lo, hi = default["base2new"]["average"]["delta_hm"]["ci95"]
    assert f"95 % CI {lo:+.2f} to {hi:+.2f}".replace("-", "−") in section
    without = str(build_model_card(config, results=runs, training=TRAINING | {"meta step": "none"}))
    section = without[without.index("### The meta step") : without.index("## Intended uses")]
    assert "trained without MetaPrompt's meta-learning step" in section and "median" not in section
