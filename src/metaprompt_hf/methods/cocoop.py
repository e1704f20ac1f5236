"""CoCoOp (Zhou et al., CVPR 2022): CoOp's layer-0 text context conditioned on each image by a meta-network
(docs/methods/cocoop.md).

Official code: https://github.com/KaiyangZhou/CoOp (`trainers/cocoop.py`). With x_b the L2-normalised image feature,
θ_t the n_ctx context vectors and π a two-layer meta-network (`modeling/heads.py`, `CoCoOpHead`):

    t_c(x_b) = E_T([SOS, θ_t + π(x_b), class c, EOS]),   z_bc = s<x_b, t_c(x_b)>,   L = CE(z, y)

The context and the meta-network are the adapter's (its head holds π, saved as `head.meta_net.*`), so a saved
CoCoOp adapter predicts with these logits through `MetaPromptModel.from_pretrained` alone.
"""

from __future__ import annotations

from dataclasses import dataclass

from .base import Method, MethodConfig

__all__ = ["CoCoOp", "CoCoOpConfig"]


@dataclass
class CoCoOpConfig(MethodConfig):
    """CoCoOp has no knob beyond the run's: the official TRAINER.COCOOP.N_CTX and CTX_INIT are `--n_ctx` and
    `--ctx_init` (4 and "a photo of a" in its base-to-new config), PREC is the run's precision (the package keeps
    fp32 master weights; `--mixed_precision` for fp16/bf16 autocast), and the meta-network's width P // 16 is fixed
    in the official code as it is here."""


class CoCoOp(Method):
    """CoOp's context at layer 0 plus the meta-network bias π(x) per image; CE on s<x, t(x)>."""

    summary = "CoOp's context shifted per image by a meta-network π(x) (CE on s<x, t(x)>)"
    config_class = CoCoOpConfig
    vision_prompts = False
    text_depth = 1
    coupled_branches = False
