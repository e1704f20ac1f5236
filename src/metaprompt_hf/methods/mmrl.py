"""MMRL (Guo and Gu, CVPR 2025): multi-modal representation learning — a shared representation space projected into
both towers as inserted tokens, a representation head on the image side, decoupled inference
(docs/methods/mmrl.md).

Official code: https://github.com/yunncheng/MMRL (`trainers/mmrl.py`, `clip/model_mmrl.py`). The adapter has no
prompts of its own: its head (`modeling/mmrl_head.py`, `MMRLHead`, saved as `head.compound_rep_tokens`,
`head.compound_rep_tokens_r2{v,t}proj.<k>.*` and `head.proj_rep`) holds the representation tokens R, their per-layer
projections and proj_rep, and runs the forward. With z the class-token logits, z_rep the representation logits
(s = 100), x, h the frozen image and template features:

    L = α CE(z, y) + (1 − α) CE(z_rep, y) + λ (1 − mean cos(x̃, x)) + λ (1 − mean cos(t, h))

Evaluation: α z + (1 − α) z_rep on the classes trained on (base classes; the source dataset), z elsewhere.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from ..modeling.configuration_metaprompt import MetaPromptConfig
from ..modeling.mmrl_head import mmrl_loss
from .base import Method, MethodConfig

__all__ = ["MMRL", "MMRLConfig"]


@dataclass
class MMRLConfig(MethodConfig):
    """MMRL's knobs (official TRAINER.MMRL.*); defaults: its base-to-new config `configs/trainers/MMRL/vit_b16.yaml`
    (REG_WEIGHT per dataset in `trainers/config.py`: pass it with `--method_args reg_weight=...`)."""

    alpha: float = field(
        default=0.7,
        metadata={"help": "α: weight of the class-token CE (1 − α: the representation CE) and of the fused logits."},
    )
    reg_weight: float = field(
        default=1.0, metadata={"help": "λ of each consistency term 1 − mean cos(·, frozen) (official REG_WEIGHT)."}
    )
    n_rep_tokens: int = field(default=5, metadata={"help": "Representation tokens n (official N_REP_TOKENS)."})
    rep_dim: int = field(default=512, metadata={"help": "Width of the representation space (official REP_DIM)."})
    rep_layers: list[int] | None = field(
        default=None,
        metadata={
            "help": "1-based layers that receive the projected tokens (official REP_LAYERS); default: the upper half "
            "⌊L/2⌋ … L of the shallower tower (6 … 12 for ViT-B/16, the official value)."
        },
    )

    def __post_init__(self) -> None:
        for name, low, high in (("alpha", 0.0, 1.0), ("reg_weight", 0.0, math.inf)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ValueError(f"{name}: expected a finite number, got {value!r}")
            if not low <= value <= high:
                raise ValueError(f"{name}: expected {low} <= {name} <= {high}, got {value!r}")
            setattr(self, name, float(value))
        for name in ("n_rep_tokens", "rep_dim"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name}: expected an integer >= 1, got {value!r}")
        if self.rep_layers is not None:
            layers = self.rep_layers
            if (
                not isinstance(layers, (list, tuple))
                or not layers
                or any(isinstance(v, bool) or not isinstance(v, int) for v in layers)
                or list(layers) != sorted(set(layers))
                or layers[0] < 1
            ):
                raise ValueError(f"rep_layers: expected increasing layer numbers >= 1, got {layers!r}")
            self.rep_layers = [int(v) for v in layers]


class MMRL(Method):
    """Representation tokens inserted into both towers from a shared space; α-weighted CE on the class and the
    representation logits plus consistency with the frozen features; fused logits on the trained classes."""

    summary = "shared representation tokens inserted into both towers (CE on s<x~, t> and s<x~_rep, t>, consistency)"
    config_class = MMRLConfig
    text_prompts = False
    vision_prompts = False
    coupled_branches = False
    optimizer = "adamw"

    @property
    def trains(self) -> bool:
        return True  # the head's tensors (the adapter has no prompts)

    def adapter_config(
        self,
        templates: Sequence[str],
        *,
        n_ctx: int,
        n_pro: int,
        prompt_depth: int | None = None,
        init_std: float = 0.02,
        ctx_init: str | None = None,
    ) -> MetaPromptConfig:
        """No prompts (`n_ctx`, `n_pro`, `prompt_depth` do not apply): the head and the hand-crafted template(s)."""
        if ctx_init is not None:
            raise ValueError("ctx_init: mmrl has no learned text context; its text is the hand-crafted template")
        return MetaPromptConfig(
            n_ctx=0,
            n_pro=0,
            templates=list(templates),
            coupled_branches=False,
            method_config=self.config.to_dict(self.name),
        )

    def forward_kwargs(self) -> dict[str, Any]:
        return {"return_zero_shot": True}  # the frozen x and h of the consistency terms

    def loss(self, output: Any, labels: torch.Tensor, model: Any) -> torch.Tensor:
        return mmrl_loss(output, labels, self.config.alpha, self.config.reg_weight)
