"""The asymmetric contrastive loss L_AC (docs/method.md §2).

    z^i_c = s·<x̃, h_c>     prompted image  vs frozen hand-crafted text   (https://github.com/Vill-Lab/2024-TIP-MetaPrompt/blob/main/trainers/meta.py#L272)
    z^t_c = s·<x,  t_c>     frozen image    vs prompted text              (https://github.com/Vill-Lab/2024-TIP-MetaPrompt/blob/main/trainers/meta.py#L273)
    z^o_c = ½(z^i_c + z^t_c)                                              (https://github.com/Vill-Lab/2024-TIP-MetaPrompt/blob/main/trainers/meta.py#L274)
    L_AC  = CE(z^o, y) + CE(z^i, y) + CE(z^t, y)                          (https://github.com/Vill-Lab/2024-TIP-MetaPrompt/blob/main/trainers/meta.py#L332-L335, https://github.com/Vill-Lab/2024-TIP-MetaPrompt/blob/main/trainers/meta.py#L478-L481)

s = exp(logit_scale) is CLIP's frozen temperature. Each prompted encoder is trained against frozen features of the
other modality ("asymmetric"), so CE(z^i) reaches only θ_v, CE(z^t) only θ_t and CE(z^o) both. Image→class
cross-entropy only: no text→image direction and no in-batch negatives.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import torch
import torch.nn.functional as F


class ACLoss(NamedTuple):
    """L_AC and its three terms (scalars)."""

    loss: torch.Tensor
    loss_o: torch.Tensor
    loss_i: torch.Tensor
    loss_t: torch.Tensor


def coupled_logits(
    prompted_image: torch.Tensor,
    frozen_image: torch.Tensor,
    prompted_text: torch.Tensor,
    template_text: torch.Tensor,
    logit_scale: torch.Tensor | float,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The three logits of MetaPrompt's coupled encoder pairs (docs/method.md §1.1, §2).

    Args:
        prompted_image: x̃, (B, P) L2-normalised.
        frozen_image: x, (B, P) L2-normalised.
        prompted_text: t, (C, P) L2-normalised.
        template_text: h, (C, P) L2-normalised.
        logit_scale: s = exp(CLIP's logit_scale), a scalar.

    Returns:
        (z^o, z^i, z^t), each (B, C).
    """
    z_i = logit_scale * prompted_image @ template_text.t()
    z_t = logit_scale * frozen_image @ prompted_text.t()
    return 0.5 * (z_i + z_t), z_i, z_t


def asymmetric_contrastive_loss(
    logits_o: torch.Tensor, logits_i: torch.Tensor, logits_t: torch.Tensor, labels: torch.Tensor
) -> ACLoss:
    """L_AC = CE(z^o) + CE(z^i) + CE(z^t), weights 1:1:1, batch-mean cross-entropies (docs/method.md §2).

    Args:
        logits_o, logits_i, logits_t: (B, C) logits.
        labels: (B,) class indices into C.
    """
    loss_o = F.cross_entropy(logits_o.float(), labels)
    loss_i = F.cross_entropy(logits_i.float(), labels)
    loss_t = F.cross_entropy(logits_t.float(), labels)
    return ACLoss(loss_o + loss_i + loss_t, loss_o, loss_i, loss_t)


def adapter_loss(output: Any, labels: torch.Tensor, coupled_branches: bool) -> torch.Tensor:
    """The adapter's own training loss on a forward output (docs/method.md §2): L_AC over the coupled pairs, or CE on
    the prompted logits s<x̃, t> (IVLP, CoOp). `forward(labels=...)` and every method's default `loss` use it.

    Args:
        output: a `MetaPromptOutput` with `logits` (B, C) and, for coupled branches, `logits_image` / `logits_text`.
        labels: (B,) class indices into C.
    """
    labels = labels.to(output.logits.device)
    if coupled_branches:
        return asymmetric_contrastive_loss(output.logits, output.logits_image, output.logits_text, labels).loss
    return F.cross_entropy(output.logits, labels)
