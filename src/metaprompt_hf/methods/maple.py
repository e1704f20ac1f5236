"""MaPLe (Khattak et al., CVPR 2023): multi-modal prompt learning (docs/methods/maple.md).

Official code: https://github.com/muzairkhattak/multimodal-prompt-learning (`trainers/maple.py`, `clip/model.py`).
Deep text prompts θ_t (depth, n_ctx, d_text) — row 0 the context at the input, rows 1 … depth-1 the "compound"
prompts replacing the context tokens' hidden states at those layers — and vision prompts that are NOT learned on
their own: layer i's are F_i(θ_t[i]), a separate Linear(d_text, d_vision) per prompted layer, owned by the adapter's
head (`modeling/heads.py`, `MaPLeHead`, saved as `head.proj.*` and `head.compound_prompt_projections.<i>.*`):

    θ_v[i] = F_i(θ_t[i]),   x̃ = E_Iᴾ(image; θ_v),   t_c = E_Tᴾ(class c; θ_t),   L = CE(s<x̃, t>, y)
"""

from __future__ import annotations

from dataclasses import dataclass

from .base import Method, MethodConfig

__all__ = ["MaPLe", "MaPLeConfig"]


@dataclass
class MaPLeConfig(MethodConfig):
    """MaPLe has no knob beyond the run's: the official TRAINER.MAPLE.N_CTX, CTX_INIT and PROMPT_DEPTH are `--n_ctx`,
    `--ctx_init` and `--prompt_depth` (2, "a photo of a" and 9 in its configs), PREC is the run's precision (the
    package keeps fp32 master weights; `--mixed_precision` for fp16/bf16 autocast), and the coupling functions are
    one Linear per prompted layer, as in the official code."""


class MaPLe(Method):
    """Deep text prompts with vision prompts projected from them by per-layer coupling functions; CE on s<x̃, t>."""

    summary = "deep text prompts, vision prompts projected from them per layer (CE on s<x~, t>)"
    config_class = MaPLeConfig
    vision_prompts = False  # derived by the head from θ_t (head.vision_prompts), not held as θ_v
    coupled_branches = False
