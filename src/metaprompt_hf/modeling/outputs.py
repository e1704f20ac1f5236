"""The output of `MetaPromptModel.forward`, a transformers `ModelOutput` (docs/method.md §1.1)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from transformers.utils import ModelOutput


@dataclass
class MetaPromptOutput(ModelOutput):
    """Output of `MetaPromptModel.forward`.

    Attributes:
        loss: L_AC (coupled) or CE (IVLP/CoOp) when `labels` were given.
        logits: (B, C) evaluation logits: z^o for MetaPrompt, s<x̃, t> for IVLP/CoOp.
        logits_image: (B, C) z^i = s<x̃, h> (coupled only).
        logits_text: (B, C) z^t = s<x, t> (coupled only).
        logits_zero_shot: (B, C) s<x, h>, the frozen base model with the template, when asked for.
        image_embeds: (B, P) x̃, prompted image features, L2-normalised.
        frozen_image_embeds: (B, P) x, frozen image features, L2-normalised.
        text_embeds: (C, P) t, prompted class features, L2-normalised.
        template_embeds: (C, P) h, frozen template class features, L2-normalised.
        logit_scale: s = exp(the base model's frozen logit_scale).
        logits_class, logits_rep: (B, C) MMRL's class-token logits s<x̃, t> and representation logits
            s<x̃_rep, t> (docs/methods/mmrl.md); `logits` is their fusion on seen classes, `logits_class` otherwise.
        image_features, frozen_image_features, text_features: x̃ (B, P), x (B, P) and t (C, P) projected but NOT
            L2-normalised, with `output_features=True` (the form the reference records, for fidelity checks).
    """

    loss: torch.Tensor | None = None
    logits: torch.Tensor | None = None
    logits_image: torch.Tensor | None = None
    logits_text: torch.Tensor | None = None
    logits_zero_shot: torch.Tensor | None = None
    image_embeds: torch.Tensor | None = None
    frozen_image_embeds: torch.Tensor | None = None
    text_embeds: torch.Tensor | None = None
    template_embeds: torch.Tensor | None = None
    logit_scale: torch.Tensor | None = None
    image_features: torch.Tensor | None = None
    frozen_image_features: torch.Tensor | None = None
    text_features: torch.Tensor | None = None
    logits_class: torch.Tensor | None = None
    logits_rep: torch.Tensor | None = None
