"""The shipped `evaluate` metrics follow `evaluate`'s conventions: a fraction for accuracy, empty input handled,
a metric card with a citation beside each module."""

from __future__ import annotations

import math

import pytest
import yaml

from metaprompt_hf.evaluation import METRICS_DIR, evaluate_set, load_metric

METRICS = sorted(p.name for p in METRICS_DIR.iterdir() if (p / f"{p.name}.py").is_file())


def test_both_metrics_are_found():
    assert METRICS == ["accuracy", "harmonic_mean"]


def test_accuracy_is_a_fraction_like_evaluates():
    accuracy = load_metric("accuracy")
    assert accuracy.compute(predictions=[0, 1, 1, 2], references=[0, 1, 0, 2]) == {"accuracy": 0.75}
    assert accuracy.compute(predictions=[3, 3], references=[3, 3]) == {"accuracy": 1.0}
    assert accuracy.compute(predictions=[1], references=[0]) == {"accuracy": 0.0}


def test_empty_input_gives_nan_not_an_error():
    assert math.isnan(load_metric("accuracy").compute(predictions=[], references=[])["accuracy"])
    out = load_metric("harmonic_mean").compute(base=[], new=[])
    assert math.isnan(out["harmonic_mean"]) and out["per_run"] == []


def test_harmonic_mean_of_means_and_per_run():
    out = load_metric("harmonic_mean").compute(base=[80.0, 90.0], new=[60.0, 50.0])
    assert out["harmonic_mean"] == pytest.approx(2 * 85 * 55 / 140)
    assert out["per_run"] == pytest.approx([2 * 80 * 60 / 140, 2 * 90 * 50 / 140])
    assert load_metric("harmonic_mean").compute(base=[0.0], new=[0.0])["harmonic_mean"] == 0.0


def test_mismatched_lengths_are_refused():
    with pytest.raises(ValueError):
        load_metric("harmonic_mean").compute(base=[0.5, 0.6], new=[0.5])
    with pytest.raises(ValueError):
        load_metric("accuracy").compute(predictions=[0, 1], references=[0])


@pytest.mark.parametrize("name", METRICS)
def test_metric_card_with_citation(name):
    card = (METRICS_DIR / name / "README.md").read_text(encoding="utf-8")
    front, body = card.split("---\n", 2)[1:]
    meta = yaml.safe_load(front)
    assert {"evaluate", "metric"} <= set(meta["tags"]) and meta["description"].strip()
    for section in ("## Metric Description", "## How to Use", "### Output Values", "## Limitations and Bias"):
        assert section in body, section
    citation = body.split("## Citation", 1)[1]
    assert "@article{zhao2024metaprompt" in citation
    # The module's own citation (what `metric.citation` returns) is the card's.
    assert load_metric(name).citation.strip().splitlines()[0] in citation


def test_evaluate_set_still_reports_percent(model, clip_and_processor, tmp_path):
    import datasets
    from PIL import Image

    from metaprompt_hf.protocols import EvalSet

    paths = []
    for i, colour in enumerate(("red", "blue", "red", "blue")):
        paths.append(str(tmp_path / f"{i}.png"))
        Image.new("RGB", (32, 32), colour).save(paths[-1])
    rows = datasets.Dataset.from_dict({"image": paths})
    classes = ["red", "blue"]
    preds = model.predict([Image.open(p) for p in paths], classes).argmax(-1).tolist()
    # Labels equal to the model's own predictions on 3 images of 4: 75 % (a fraction would read 0.75).
    labels = preds[:3] + [1 - preds[3]]
    out = evaluate_set(
        model, EvalSet(rows=rows, class_names=classes, labels=labels), clip_and_processor[1].image_processor
    )
    assert out["n"] == 4 and out["accuracy"] == pytest.approx(75.0)
