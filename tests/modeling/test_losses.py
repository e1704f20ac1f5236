from __future__ import annotations

import math

import torch

from metaprompt_hf import asymmetric_contrastive_loss, coupled_logits


def _ce(row: list[float], y: int) -> float:
    """Cross-entropy written out: -z_y + log Σ exp z."""
    return -row[y] + math.log(sum(math.exp(v) for v in row))


def test_l_ac_matches_a_hand_computation():
    s = 10.0
    x_tilde = torch.tensor([[1.0, 0.0], [0.6, 0.8]])  # prompted image features
    x = torch.tensor([[0.8, 0.6], [0.0, 1.0]])  # frozen image features
    t = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.6, -0.8]])  # prompted text
    h = torch.tensor([[0.8, 0.6], [0.6, 0.8], [1.0, 0.0]])  # template text
    labels = torch.tensor([0, 1])
    z_o, z_i, z_t = coupled_logits(x_tilde, x, t, h, s)
    # z^i = s<x̃, h>, z^t = s<x, t>, by hand
    zi = [[8.0, 6.0, 10.0], [9.6, 10.0, 6.0]]
    zt = [[8.0, 6.0, 0.0], [0.0, 10.0, -8.0]]
    torch.testing.assert_close(z_i, torch.tensor(zi))
    torch.testing.assert_close(z_t, torch.tensor(zt))
    zo = [[(a + b) / 2 for a, b in zip(r1, r2)] for r1, r2 in zip(zi, zt)]
    torch.testing.assert_close(z_o, torch.tensor(zo))
    expected_i = (_ce(zi[0], 0) + _ce(zi[1], 1)) / 2
    expected_t = (_ce(zt[0], 0) + _ce(zt[1], 1)) / 2
    expected_o = (_ce(zo[0], 0) + _ce(zo[1], 1)) / 2
    out = asymmetric_contrastive_loss(z_o, z_i, z_t, labels)
    assert math.isclose(out.loss_i.item(), expected_i, rel_tol=1e-5)
    assert math.isclose(out.loss_t.item(), expected_t, rel_tol=1e-5)
    assert math.isclose(out.loss_o.item(), expected_o, rel_tol=1e-5)
    assert math.isclose(out.loss.item(), expected_i + expected_t + expected_o, rel_tol=1e-5)  # weights 1:1:1


def test_gradient_routing_through_the_loss_terms():
    torch.manual_seed(0)
    x_tilde = torch.nn.functional.normalize(torch.randn(3, 4), dim=-1).requires_grad_()
    t = torch.nn.functional.normalize(torch.randn(5, 4), dim=-1).requires_grad_()
    x = torch.nn.functional.normalize(torch.randn(3, 4), dim=-1)
    h = torch.nn.functional.normalize(torch.randn(5, 4), dim=-1)
    labels = torch.tensor([0, 2, 4])
    z_o, z_i, z_t = coupled_logits(x_tilde, x, t, h, 50.0)
    out = asymmetric_contrastive_loss(z_o, z_i, z_t, labels)
    gi = torch.autograd.grad(out.loss_i, (x_tilde, t), allow_unused=True)
    gt = torch.autograd.grad(out.loss_t, (x_tilde, t), allow_unused=True, retain_graph=True)
    assert gi[1] is None and gi[0].abs().sum() > 0  # CE(z^i) reaches the vision side only
    assert gt[0] is None and gt[1].abs().sum() > 0  # CE(z^t) reaches the text side only
