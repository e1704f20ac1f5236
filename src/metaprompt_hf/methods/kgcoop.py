"""KgCoOp (Yao et al., CVPR 2023): CoOp's layer-0 text context plus the knowledge-guided term that keeps the
learned class embeddings near the hand-crafted ones (docs/methods/kgcoop.md).

Official code: https://github.com/htyao89/KgCoOp (`KgCoOp/trainers/kgcoop.py`). Its loss, with t_c the prompted
and h_c the frozen template class features, both L2-normalised, and C classes:

    L = CE(s<x, t>, y) + λ · (1 − (1/C) Σ_c cos(t_c, h_c))   =   CE + (λ/2) · (1/C) Σ_c ‖t_c − h_c‖²

(the paper writes the term as λ · mean ‖t_c − h_c‖²; the code's cosine form halves it, and λ = 8.0 is tuned for
the code's form, which this module implements). Evaluation uses s<x, t>, as CoOp.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F

from .base import Method, MethodConfig

__all__ = ["KgCoOp", "KgCoOpConfig", "knowledge_guided_term"]


@dataclass
class KgCoOpConfig(MethodConfig):
    """KgCoOp's own knob (the context length and its init words are the run's `--n_ctx` / `--ctx_init`)."""

    weight: float = field(
        default=8.0,
        metadata={
            "help": "λ of the knowledge-guided term λ·(1 − mean_c cos(t_c, h_c)) (official TRAINER.COOP.W; 8.0 in "
            "its base-to-new and few-shot scripts)."
        },
    )

    def __post_init__(self) -> None:
        if (
            isinstance(self.weight, bool)
            or not isinstance(self.weight, (int, float))
            or not math.isfinite(self.weight)
        ):
            raise ValueError(f"weight: expected a finite number, got {self.weight!r}")
        if self.weight < 0:
            raise ValueError(f"weight: expected >= 0, got {self.weight!r}")
        self.weight = float(self.weight)


def knowledge_guided_term(text_embeds: torch.Tensor, template_embeds: torch.Tensor) -> torch.Tensor:
    """1 − (1/C) Σ_c cos(t_c, h_c), the official `score`.

    Args:
        text_embeds: (C, P) prompted class features t.
        template_embeds: (C, P) frozen hand-crafted class features h (no gradient flows into them).
    """
    if text_embeds.shape != template_embeds.shape:
        raise ValueError(
            f"text_embeds {tuple(text_embeds.shape)} and template_embeds {tuple(template_embeds.shape)} differ"
        )
    cos = F.cosine_similarity(text_embeds, template_embeds.detach().to(text_embeds.dtype), dim=-1, eps=1e-7)
    return 1.0 - cos.mean()


class KgCoOp(Method):
    """CoOp's context at layer 0 (CE on s<x, t>) plus λ·(1 − mean_c cos(t_c, h_c))."""

    summary = "CoOp + the knowledge-guided term λ·(1 − mean cos(t_c, h_c)) toward the hand-crafted class features"
    config_class = KgCoOpConfig
    vision_prompts = False
    text_depth = 1
    coupled_branches = False

    def forward_kwargs(self) -> dict[str, Any]:
        # h_c (template_embeds) is computed, cached per class list, only when the zero-shot path is asked for.
        return {"return_zero_shot": True}

    def loss(self, output: Any, labels: torch.Tensor, model: Any) -> torch.Tensor:
        """CE(s<x, t>, y) + λ · (1 − mean_c cos(t_c, h_c)); `output` needs `text_embeds` and `template_embeds`."""
        if output.template_embeds is None:
            raise ValueError("kgcoop: the forward returned no template_embeds; call it with return_zero_shot=True")
        ce = F.cross_entropy(output.logits, labels)
        return ce + self.config.weight * knowledge_guided_term(output.text_embeds, output.template_embeds)
