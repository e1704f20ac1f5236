"""The baselines: frozen CLIP (zero-shot), CoOp and IVLP as methods of the same model (docs/method.md §4)."""

from __future__ import annotations

from .base import Method


class ZeroShot(Method):
    """Frozen CLIP with the hand-crafted template(s): nothing to train, scored on the zero-shot logits."""

    summary = "frozen CLIP with the hand-crafted template(s)"
    text_prompts = False
    vision_prompts = False
    eval_logits = "logits_zero_shot"


class CoOp(Method):
    """CoOp (Zhou et al., IJCV 2022): learned text context at layer 0 only, CE on s<x, t>."""

    summary = "text context at layer 0, CE"
    vision_prompts = False
    text_depth = 1
    coupled_branches = False


class IVLP(Method):
    """Independent deep vision-language prompts, CE on the prompted logits s<x̃, t>."""

    summary = "deep independent text and vision prompts, CE on prompted logits"
    coupled_branches = False
