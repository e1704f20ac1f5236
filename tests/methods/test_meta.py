from __future__ import annotations

import math

import pytest
import torch

from metaprompt_hf import MetaPromptConfig, MetaPromptModel
from metaprompt_hf.meta import (
    Episode,
    Side,
    apply_outer_update,
    class_split_episodes,
    domain_split_episodes,
    faithful_meta_step,
    meta_gradient,
    text_episode_loss,
    vision_episode_loss,
)
from metaprompt_hf.testing import tiny_clip


# ------------------------------------------------------------------------------------------ episodes
def test_class_split_partitions_the_classes_and_remaps_labels():
    labels = torch.tensor([0, 1, 2, 3, 4, 5, 6, 0, 3])
    episodes = class_split_episodes(labels, 7, torch.Generator().manual_seed(0))
    assert len(episodes) == 2
    a, b = episodes
    assert a.test.classes.numel() == math.ceil(7 / 2) and b.test.classes.numel() == 3
    assert torch.equal(a.test.classes, b.train.classes) and torch.equal(a.train.classes, b.test.classes)
    assert sorted(torch.cat([a.test.classes, b.test.classes]).tolist()) == list(range(7))
    for ep in episodes:
        for side in (ep.train, ep.test):
            # local labels index the side's class list and point back at the true label
            assert torch.equal(side.classes[side.labels], labels[side.index])
            assert set(labels[side.index].tolist()) <= set(side.classes.tolist())
    other = class_split_episodes(labels, 7, torch.Generator().manual_seed(1))
    assert not torch.equal(other[0].test.classes, a.test.classes)  # fresh split per draw
    again = class_split_episodes(labels, 7, torch.Generator().manual_seed(0))
    assert torch.equal(again[0].test.classes, a.test.classes)  # ... and reproducible


def test_class_split_skips_held_out_groups_with_fewer_than_two_classes():
    assert class_split_episodes(torch.tensor([0, 1]), 2, torch.Generator().manual_seed(0)) == []
    eps = class_split_episodes(torch.tensor([0, 1, 2]), 3, torch.Generator().manual_seed(0))
    assert len(eps) == 1 and eps[0].test.classes.numel() == 2


def test_domain_split_leaves_each_source_domain_out():
    labels = torch.tensor([0, 1, 2, 0, 1, 2])
    domains = torch.tensor([3, 3, 5, 5, 7, 7])  # ids need not be 0..N-1 (quirk 4 of the reference)
    episodes = domain_split_episodes(labels, domains, [3, 5, 7, 9], num_classes=4)
    assert len(episodes) == 4
    for d, ep in zip([3, 5, 7, 9], episodes):
        assert torch.equal(ep.test.index, (domains == d).nonzero().flatten())
        assert torch.equal(ep.train.index, (domains != d).nonzero().flatten())
        assert ep.train.classes.tolist() == [0, 1, 2, 3]
        assert torch.equal(ep.test.labels, labels[ep.test.index])
    assert episodes[3].test.index.numel() == 0  # domain 9 absent from this batch: the step skips it


# ------------------------------------------------------------------------------------------ a hand-derived toy
def _quadratic(a: torch.Tensor, b: torch.Tensor):
    """loss(θ, side) = mean over the side's samples of ½(a_i·θ − b_i)²; its gradient is mean a_i(a_i·θ − b_i)."""

    def loss_fn(theta, side):
        r = a[side.index] @ theta.flatten() - b[side.index]
        return 0.5 * (r**2).mean()

    def grad(theta, index):
        r = a[index] @ theta.flatten() - b[index]
        return (a[index] * r[:, None]).mean(0).view_as(theta)

    return loss_fn, grad


def _episodes(n: int) -> list[Episode]:
    idx = torch.arange(n)
    none = torch.zeros(0, dtype=torch.long)
    mk = lambda i: Side(i, none, i)  # noqa: E731 (classes and labels are unused by the toy loss)
    return [Episode(mk(idx[: n // 2]), mk(idx[n // 2 :])), Episode(mk(idx[n // 2 :]), mk(idx[: n // 2]))]


def test_first_and_second_order_meta_gradients_match_the_closed_form():
    torch.manual_seed(0)
    a, b = torch.randn(8, 6, dtype=torch.float64), torch.randn(8, dtype=torch.float64)
    theta0 = torch.randn(2, 3, dtype=torch.float64)
    loss_fn, grad = _quadratic(a, b)
    lr, episodes = 0.3, _episodes(8)
    expected_first, expected_second = torch.zeros_like(theta0), torch.zeros_like(theta0)
    for ep in episodes:
        adapted = theta0 - lr * grad(theta0, ep.train.index)  # one inner SGD step from θ0 (a true reset)
        g = grad(adapted, ep.test.index)
        expected_first += g
        a_tr = a[ep.train.index]
        hessian = a_tr.T @ a_tr / len(ep.train.index)
        expected_second += ((torch.eye(6, dtype=torch.float64) - lr * hessian) @ g.flatten()).view_as(theta0)
    before = theta0.clone()
    first = meta_gradient(loss_fn, theta0, episodes, lr)
    second = meta_gradient(loss_fn, theta0, episodes, lr, second_order=True)
    assert torch.equal(theta0, before)  # θ0 itself is never modified
    torch.testing.assert_close(first.grad, expected_first)
    torch.testing.assert_close(second.grad, expected_second)
    assert first.episodes == second.episodes == 2
    param = theta0.clone()
    apply_outer_update(param, first, lr, 0.2, "sum")
    torch.testing.assert_close(param, theta0 - 0.2 * lr * expected_first)  # θ ← θ0 − β·η·Σg
    param = theta0.clone()
    apply_outer_update(param, first, lr, 0.2, "mean")
    torch.testing.assert_close(param, theta0 - 0.2 * lr * expected_first / 2)


def test_chunking_and_process_reduction_give_the_global_mean_gradient():
    torch.manual_seed(1)
    a, b = torch.randn(10, 4, dtype=torch.float64), torch.randn(10, dtype=torch.float64)
    loss_fn, _ = _quadratic(a, b)
    theta0 = torch.randn(4, dtype=torch.float64)
    episodes = _episodes(10)
    whole = meta_gradient(loss_fn, theta0, episodes, 0.1)
    chunked = meta_gradient(loss_fn, theta0, episodes, 0.1, chunk_size=2)
    torch.testing.assert_close(chunked.grad, whole.grad)

    # Two "processes" holding 3 and 7 of the samples: `reduce` sums their (gradient·count, count) packets, so
    # each gets the gradient of the mean over all 10 samples. Simulated with precomputed partner packets.
    def run(rank_rows: list[torch.Tensor]) -> list[torch.Tensor]:
        import threading

        barrier, slots, lock = threading.Barrier(2), [None, None], threading.Lock()
        results = [None, None]

        def worker(r):
            calls = {"n": 0}

            def reduce(t):
                with lock:
                    slots[r] = t.clone()
                barrier.wait()
                total = slots[0] + slots[1]
                barrier.wait()
                calls["n"] += 1
                return total

            eps = [
                Episode(
                    Side(
                        e.train.index[torch.isin(e.train.index, rank_rows[r])],
                        e.train.classes,
                        e.train.index[torch.isin(e.train.index, rank_rows[r])],
                    ),
                    Side(
                        e.test.index[torch.isin(e.test.index, rank_rows[r])],
                        e.test.classes,
                        e.test.index[torch.isin(e.test.index, rank_rows[r])],
                    ),
                )
                for e in episodes
            ]
            results[r] = meta_gradient(loss_fn, theta0, eps, 0.1, reduce=reduce).grad

        threads = [threading.Thread(target=worker, args=(r,)) for r in (0, 1)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return results

    g0, g1 = run([torch.tensor([0, 5, 9]), torch.tensor([1, 2, 3, 4, 6, 7, 8])])
    torch.testing.assert_close(g0, whole.grad)
    torch.testing.assert_close(g1, whole.grad)


def test_faithful_mode_reproduces_the_reference_quirks_by_hand():
    """Quirk 1 (only the first reset takes effect), quirk 2 (inner step through SGD with momentum and weight
    decay, mutating its buffer) and quirk 3 (zero-grad drift of the frozen prompt), derived by hand."""
    torch.manual_seed(2)
    a, b = torch.randn(8, 4, dtype=torch.float64), torch.randn(8, dtype=torch.float64)
    loss_fn, grad = _quadratic(a, b)
    lr, beta, mom, wd = 0.1, 0.2, 0.9, 5e-4
    theta0 = torch.randn(4, dtype=torch.float64)
    other0 = torch.randn(3, dtype=torch.float64)
    episodes = _episodes(8)

    param = torch.nn.Parameter(theta0.clone())
    other = torch.nn.Parameter(other0.clone())
    opt = torch.optim.SGD([param, other], lr=lr, momentum=mom, weight_decay=wd)
    faithful_meta_step(param, loss_fn, episodes, opt, lr, beta, frozen_params=[other], zero_grad_drift=True)

    # episode 1: fresh momentum buffer = gradient + wd·θ; step; held-out grad; real reset to θ0
    buf = grad(theta0, episodes[0].train.index) + wd * theta0
    g1 = grad(theta0 - lr * buf, episodes[0].test.index)
    obuf = wd * other0
    other_t = other0 - lr * obuf
    # episode 2: momentum carries over, and the reset does nothing (aliasing)
    buf = mom * buf + grad(theta0, episodes[1].train.index) + wd * theta0
    theta2 = theta0 - lr * buf
    g2 = grad(theta2, episodes[1].test.index)
    obuf = mom * obuf + wd * other_t
    other_t = other_t - lr * obuf
    torch.testing.assert_close(param.detach(), theta2 - beta * lr * (g1 + g2))
    torch.testing.assert_close(other.detach(), other_t)
    torch.testing.assert_close(opt.state[param]["momentum_buffer"], buf)

    # without the drift switch (torch >= 2 behaviour) the frozen prompt does not move
    param2 = torch.nn.Parameter(theta0.clone())
    other2 = torch.nn.Parameter(other0.clone())
    opt2 = torch.optim.SGD([param2, other2], lr=lr, momentum=mom, weight_decay=wd)
    faithful_meta_step(param2, loss_fn, episodes, opt2, lr, beta, frozen_params=[other2])
    torch.testing.assert_close(param2.detach(), param.detach())
    assert torch.equal(other2.detach(), other0)


def test_empty_sides_are_skipped():
    a, b = torch.randn(4, 2), torch.randn(4)
    loss_fn, _ = _quadratic(a, b)
    none = torch.zeros(0, dtype=torch.long)
    ep = Episode(Side(torch.arange(4), none, torch.arange(4)), Side(none, none, none))
    result = meta_gradient(loss_fn, torch.zeros(2), [ep], 0.1)
    assert result.episodes == 0 and torch.equal(result.grad, torch.zeros(2))
    param = torch.ones(2)
    apply_outer_update(param, result, 0.1, 0.2, "sum")
    assert torch.equal(param, torch.ones(2))


# ------------------------------------------------------------------------------------------ on a tiny CLIP
@pytest.fixture
def model64():
    # SDPA: transformers' eager attention takes its softmax in fp32, which would drown finite differences.
    clip, processor = tiny_clip(seed=0, attn_implementation="sdpa")
    torch.manual_seed(0)
    model = MetaPromptModel(clip.double(), MetaPromptConfig(), processor)
    with torch.no_grad():
        for p in model.prompt_parameters():
            p.data = p.data.double()
    return model


def _directional_fd(f, theta, v, eps=1e-5):
    return (f(theta + eps * v) - f(theta - eps * v)) / (2 * eps)


def test_text_meta_gradient_on_a_tiny_clip_matches_finite_differences(model64):
    model = model64
    names = ["cat", "dog", "bus", "tree", "sun"]
    pixels = torch.randn(10, 3, 32, 32, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    x = model.encode_frozen_image(pixels)
    labels = torch.tensor([0, 1, 2, 3, 4, 0, 1, 2, 3, 4])
    ep = class_split_episodes(labels, 5, torch.Generator().manual_seed(0))[0]
    loss_fn = text_episode_loss(model, x, names)
    theta0 = model.text_prompts.detach().clone()
    lr = 0.5

    def inner_grad(theta):
        t = theta.clone().requires_grad_(True)
        return torch.autograd.grad(loss_fn(t, ep.train), t)[0]

    def adapted_test_loss(theta):  # F(θ) = ℓ_te(θ − η∇ℓ_tr(θ))
        adapted = theta - lr * inner_grad(theta)
        with torch.no_grad():
            return loss_fn(adapted, ep.test).item()

    first = meta_gradient(loss_fn, theta0, [ep], lr).grad
    second = meta_gradient(loss_fn, theta0, [ep], lr, second_order=True).grad
    adapted = theta0 - lr * inner_grad(theta0)
    gen = torch.Generator().manual_seed(9)
    for _ in range(3):
        v = torch.randn(theta0.shape, dtype=torch.float64, generator=gen)
        fd_first = _directional_fd(lambda t: loss_fn(t, ep.test).item(), adapted, v)
        fd_second = _directional_fd(adapted_test_loss, theta0, v)
        assert math.isclose((first * v).sum().item(), fd_first, rel_tol=1e-4, abs_tol=1e-8)
        assert math.isclose((second * v).sum().item(), fd_second, rel_tol=1e-4, abs_tol=1e-8)
    assert not torch.allclose(first, second)  # the two options really differ


def test_vision_meta_gradient_on_a_tiny_clip_matches_finite_differences(model64):
    model = model64
    names = ["cat", "dog", "bus"]
    pixels = torch.randn(6, 3, 32, 32, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    labels = torch.tensor([0, 1, 2, 0, 1, 2])
    domains = torch.tensor([0, 0, 1, 1, 2, 2])
    ep = domain_split_episodes(labels, domains, [0, 1, 2], 3)[1]
    loss_fn = vision_episode_loss(model, pixels, model.encode_templates(names))
    theta0 = model.vision_prompts.detach().clone()
    lr = 0.5
    t = theta0.clone().requires_grad_(True)
    adapted = theta0 - lr * torch.autograd.grad(loss_fn(t, ep.train), t)[0]
    first = meta_gradient(loss_fn, theta0, [ep], lr, chunk_size=1).grad
    v = torch.randn(theta0.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(5))
    fd = _directional_fd(lambda th: loss_fn(th, ep.test).item(), adapted, v)
    assert math.isclose((first * v).sum().item(), fd, rel_tol=1e-4, abs_tol=1e-8)
