"""The zero-shot image-classification pipeline: transformers' `pipeline(...)` on a MetaPromptModel and
`metaprompt_hf.pipeline(...)` on an adapter folder give MetaPrompt's probabilities in the standard
`[{"label", "score"}]` format, best first; other models keep transformers' own pipeline. Offline."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from PIL import Image
from transformers import pipeline as transformers_pipeline
from transformers.pipelines.zero_shot_image_classification import ZeroShotImageClassificationPipeline

import metaprompt_hf
from metaprompt_hf import MetaPromptModel
from metaprompt_hf.pipelines import MetaPromptZeroShotImageClassificationPipeline

TASK = "zero-shot-image-classification"
CLASSES = ["red apple", "blue sky", "green leaf", "black cat"]


@pytest.fixture
def images(tmp_path):
    paths = []
    for i, colour in enumerate(((200, 30, 30), (40, 60, 200))):
        paths.append(str(tmp_path / f"{i}.png"))
        Image.new("RGB", (40, 40), colour).save(paths[-1])
    return paths


def _as_probs(result: list[dict], classes: list[str]) -> torch.Tensor:
    by_label = {r["label"]: r["score"] for r in result}
    return torch.tensor([by_label[c] for c in classes])


def _assert_standard_format(result, classes):
    assert isinstance(result, list) and len(result) == len(classes)
    assert all(set(r) == {"label", "score"} and isinstance(r["score"], float) for r in result)
    assert sorted(r["label"] for r in result) == sorted(classes)
    scores = [r["score"] for r in result]
    assert scores == sorted(scores, reverse=True) and sum(scores) == pytest.approx(1.0, abs=1e-5)


def test_transformers_pipeline_on_a_metaprompt_model(model, images):
    classifier = transformers_pipeline(TASK, model=model)
    assert isinstance(classifier, MetaPromptZeroShotImageClassificationPipeline)
    result = classifier(images[0], candidate_labels=CLASSES)
    _assert_standard_format(result, CLASSES)
    expected = model.predict(Image.open(images[0]), CLASSES)[0]
    torch.testing.assert_close(_as_probs(result, CLASSES), expected, rtol=1e-5, atol=1e-6)


def test_hypothesis_template_is_the_frozen_branch_template(model, images):
    classifier = transformers_pipeline(TASK, model=model)
    template = "a sketch of a {}."
    result = classifier(Image.open(images[1]), candidate_labels=CLASSES, hypothesis_template=template)
    expected = model.predict(Image.open(images[1]), CLASSES, templates=[template])[0]
    torch.testing.assert_close(_as_probs(result, CLASSES), expected, rtol=1e-5, atol=1e-6)
    default = model.predict(Image.open(images[1]), CLASSES)[0]
    assert not torch.allclose(expected, default)  # the template does reach the model
    with pytest.raises(ValueError, match="hypothesis_template"):
        classifier(images[1], candidate_labels=CLASSES, hypothesis_template="no placeholder")


def test_a_list_of_images_gives_one_ranking_each(model, images):
    results = transformers_pipeline(TASK, model=model)(images, candidate_labels=CLASSES)
    assert len(results) == 2
    expected = model.predict([Image.open(p) for p in images], CLASSES)
    for result, probs in zip(results, expected):
        _assert_standard_format(result, CLASSES)
        torch.testing.assert_close(_as_probs(result, CLASSES), probs, rtol=1e-5, atol=1e-6)


def test_missing_candidate_labels_is_a_clear_error(model, images):
    classifier = transformers_pipeline(TASK, model=model)
    with pytest.raises(ValueError, match="candidate_labels"):
        classifier(images[0])
    with pytest.raises(ValueError, match="candidate_labels"):
        classifier(images[0], candidate_labels="red apple, blue sky")


def test_factory_on_an_adapter_folder(model, tiny_clip_dir, images, tmp_path):
    model.save_pretrained(tmp_path / "adapter")
    classifier = metaprompt_hf.pipeline(TASK, model=tmp_path / "adapter", base_model=tiny_clip_dir)
    assert isinstance(classifier, MetaPromptZeroShotImageClassificationPipeline)
    result = classifier(images[0], candidate_labels=CLASSES)
    _assert_standard_format(result, CLASSES)
    expected = model.predict(Image.open(images[0]), CLASSES)[0]
    torch.testing.assert_close(_as_probs(result, CLASSES), expected, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="task"):
        metaprompt_hf.pipeline("image-classification", model=model)


def test_factory_on_the_embedded_adapter_matches_predict():
    from metaprompt_hf.embedded import load_default_model

    image = Image.open(Path(__file__).resolve().parents[1] / "spaces" / "examples" / "sketch_fish.png")
    classes = ["house", "tree", "car", "fish", "flower"]
    result = metaprompt_hf.pipeline(TASK, model="embedded")(image, candidate_labels=classes)
    expected = load_default_model().predict(image, classes)[0]
    torch.testing.assert_close(_as_probs(result, classes), expected, rtol=1e-5, atol=1e-6)
    assert result[0]["label"] == classes[int(expected.argmax())]
    print("pipeline:", [(r["label"], round(r["score"], 4)) for r in result])
    print("predict: ", dict(zip(classes, [round(p, 4) for p in expected.tolist()])))


def test_other_models_keep_transformers_pipeline(clip_and_processor, tiny_clip_dir, images):
    clip, processor = clip_and_processor
    from_object = transformers_pipeline(
        TASK, model=clip, tokenizer=processor.tokenizer, image_processor=processor.image_processor
    )
    from_folder = transformers_pipeline(TASK, model=tiny_clip_dir)
    for classifier in (from_object, from_folder):
        assert type(classifier) is ZeroShotImageClassificationPipeline
        _assert_standard_format(classifier(images[0], candidate_labels=CLASSES), CLASSES)
    assert not isinstance(from_object.model, MetaPromptModel)
