"""The zero-shot image-classification pipeline for MetaPrompt adapters (docs/method.md §5).

transformers' `pipeline("zero-shot-image-classification", model=...)` builds its own CLIP pipeline, which cannot
drive a `MetaPromptModel` (it feeds tokenised prompts to a `PreTrainedModel`). `import metaprompt_hf` therefore
registers `MetaPromptZeroShotImageClassificationPipeline` for that task in transformers' `PIPELINE_REGISTRY`: given a
`MetaPromptModel` it runs the adapter; given anything else (a CLIP id, a `CLIPModel`, ...) it hands over to
transformers' own pipeline, unchanged. An adapter folder or Hub id goes through `metaprompt_hf.pipeline(...)`, since
transformers reads a `config.json` that an adapter does not have:

    from transformers import pipeline
    classifier = pipeline("zero-shot-image-classification", model=metaprompt_model)
    classifier("cat.png", candidate_labels=["cat", "dog"])  # [{"label": "cat", "score": 0.97}, {...}]

    import metaprompt_hf
    classifier = metaprompt_hf.pipeline("zero-shot-image-classification", model="you/metaprompt-vitb16")

`candidate_labels` are the class names (any names: the learned prompts are class-agnostic) and
`hypothesis_template` is the frozen text branch's template (`{}` marks the class name; default: the adapter's own
template(s)). Scores are MetaPrompt's probabilities, softmax of z° (the same numbers as `MetaPromptModel.predict`),
sorted from the most likely label down.
"""

from __future__ import annotations

import os
from typing import Any

import torch
from transformers.pipelines import PIPELINE_REGISTRY, Pipeline

from .modeling.modeling_metaprompt import MetaPromptModel

TASK = "zero-shot-image-classification"


class MetaPromptZeroShotImageClassificationPipeline(Pipeline):
    """`Pipeline` over a `MetaPromptModel`: image(s) + `candidate_labels` → `[{"label", "score"}]`, best first."""

    # What transformers' `pipeline()` loads: None means "when the model is given by name", which covers the models
    # handed over to transformers' own pipeline; a MetaPromptModel object carries its own processor.
    _load_tokenizer = None
    _load_image_processor = None
    _load_processor = False
    _load_feature_extractor = False

    def __new__(cls, model: Any = None, *args: Any, **kwargs: Any) -> Any:
        if isinstance(model, MetaPromptModel):
            return super().__new__(cls)
        from transformers.pipelines.zero_shot_image_classification import ZeroShotImageClassificationPipeline

        return ZeroShotImageClassificationPipeline(*args, model=model, **kwargs)

    def __init__(self, model: MetaPromptModel, **kwargs: Any) -> None:
        # The adapter's own processor preprocesses (`MetaPromptModel.preprocess`); pipeline() may pass none.
        for key in ("tokenizer", "image_processor", "feature_extractor", "processor"):
            kwargs.pop(key, None)
        super().__init__(model=model, **kwargs)
        self.model.eval()

    def __call__(self, image: Any, candidate_labels: list[str] | None = None, **kwargs: Any) -> Any:
        """Classify `image` (a PIL image, a local path or URL, or a list of them) among `candidate_labels`.

        Returns a list of `{"label", "score"}` sorted by score (one such list per image for a list of images).
        """
        if "images" in kwargs:
            image = kwargs.pop("images")
        if image is None:
            raise ValueError("image: the zero-shot-image-classification pipeline needs an image")
        return super().__call__(image, candidate_labels=candidate_labels, **kwargs)

    def _sanitize_parameters(
        self,
        candidate_labels: list[str] | None = None,
        hypothesis_template: str | None = None,
        timeout: float | None = None,
        **kwargs: Any,
    ) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
        if kwargs:
            raise TypeError(f"unexpected argument(s) for the MetaPrompt pipeline: {sorted(kwargs)}")
        preprocess: dict[str, Any] = {}
        forward: dict[str, Any] = {}
        if timeout is not None:
            preprocess["timeout"] = timeout
        if candidate_labels is not None:
            if isinstance(candidate_labels, str):
                raise ValueError("candidate_labels: expected a list of class names, got a string")
            forward["candidate_labels"] = list(candidate_labels)
        if hypothesis_template is not None:
            if not isinstance(hypothesis_template, str) or hypothesis_template.count("{}") != 1:
                raise ValueError(
                    f"hypothesis_template: expected a template with exactly one '{{}}', got {hypothesis_template!r}"
                )
            forward["templates"] = [hypothesis_template]
        return preprocess, forward, {}

    def preprocess(self, image: Any, timeout: float | None = None) -> dict[str, torch.Tensor]:
        from transformers.image_utils import load_image

        return {"pixel_values": self.model.preprocess(load_image(image, timeout=timeout))}

    def _forward(
        self,
        model_inputs: dict[str, torch.Tensor],
        candidate_labels: list[str] | None = None,
        templates: list[str] | None = None,
    ) -> dict[str, Any]:
        if not candidate_labels:
            raise ValueError("candidate_labels: give the class names to choose from, e.g. ['cat', 'dog']")
        # (1, 3, H, W) -> logits z° (1, C), softmax over the candidate labels as in `MetaPromptModel.predict`.
        out = self.model(model_inputs["pixel_values"], candidate_labels, templates=templates)
        return {"probs": out.logits.softmax(-1)[0], "candidate_labels": candidate_labels}

    def postprocess(self, model_outputs: dict[str, Any]) -> list[dict[str, Any]]:
        scores = model_outputs["probs"].float().cpu().tolist()
        ranked = sorted(zip(scores, model_outputs["candidate_labels"]), key=lambda pair: -pair[0])
        return [{"score": score, "label": label} for score, label in ranked]


def register_pipeline() -> None:
    """Make `MetaPromptZeroShotImageClassificationPipeline` transformers' implementation of the zero-shot
    image-classification task (idempotent). Everything else about the task (its model classes, default model)
    stays as transformers has it, and models other than `MetaPromptModel` still get transformers' own pipeline."""
    entry = PIPELINE_REGISTRY.supported_tasks.get(TASK)
    if entry is None:
        raise RuntimeError(f"this transformers version has no {TASK!r} pipeline to extend")
    if entry["impl"] is not MetaPromptZeroShotImageClassificationPipeline:
        # Set directly rather than through `register_pipeline`, which would log an "overwriting" warning on every
        # import and drop the task's default model.
        PIPELINE_REGISTRY.supported_tasks[TASK] = {**entry, "impl": MetaPromptZeroShotImageClassificationPipeline}


def pipeline(
    task: str = TASK,
    model: MetaPromptModel | str | os.PathLike | None = None,
    *,
    device: int | str | torch.device | None = None,
    **from_pretrained_kwargs: Any,
) -> MetaPromptZeroShotImageClassificationPipeline:
    """The zero-shot pipeline of a MetaPrompt adapter: `model` is a `MetaPromptModel`, an adapter folder, a Hub
    id, or `"embedded"` (the adapter shipped in the package). `from_pretrained_kwargs` go to
    `MetaPromptModel.from_pretrained` (e.g. `base_model=`, `revision=`)."""
    if task != TASK:
        raise ValueError(f"task: metaprompt_hf provides the {TASK!r} pipeline only, got {task!r}")
    if model is None:
        raise ValueError("model: give a MetaPromptModel, an adapter folder, a Hub id or 'embedded'")
    if not isinstance(model, MetaPromptModel):
        name = os.fspath(model)
        if name == "embedded":
            from .embedded import load_default_model

            model = load_default_model(**from_pretrained_kwargs)
        else:
            model = MetaPromptModel.from_pretrained(name, **from_pretrained_kwargs)
    elif from_pretrained_kwargs:
        raise TypeError(f"{sorted(from_pretrained_kwargs)}: loading options need an adapter folder or id as model")
    from transformers import pipeline as transformers_pipeline

    return transformers_pipeline(
        TASK, model=model, pipeline_class=MetaPromptZeroShotImageClassificationPipeline, device=device
    )
