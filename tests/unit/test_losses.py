"""Exact tests of the losses: autograd against the closed forms, known answers, a 2-D Gaussian."""

import math

import pytest
import torch

from gdmd.losses import (
    dmd_gradient,
    dmd_loss,
    flow_matching_loss,
    group_advantages,
    implicit_target,
    nft_loss,
    optimality,
    refl_hinge,
    regression_loss,
)


def test_dmd_gradient_known_answer():
    x = torch.tensor([[[[1.0]], [[3.0]]], [[[0.0]], [[0.0]]]])  # (2, 2, 1, 1)
    x0_real = torch.tensor([[[[0.0]], [[1.0]]], [[[2.0]], [[-2.0]]]])
    x0_fake = torch.tensor([[[[2.0]], [[2.0]]], [[[1.0]], [[0.0]]]])
    g, nonfinite = dmd_gradient(x, x0_real, x0_fake)
    # sample 0: (fake - real) = (2, 1), mean|x - real| = (1 + 2) / 2 = 1.5
    # sample 1: (fake - real) = (-1, 2), mean|x - real| = (2 + 2) / 2 = 2
    want = torch.tensor([[[[2 / 1.5]], [[1 / 1.5]]], [[[-0.5]], [[1.0]]]])
    torch.testing.assert_close(g, want, rtol=0, atol=1e-7)
    assert nonfinite == 0


def test_dmd_gradient_counts_nonfinite_and_keeps_them():
    x = torch.zeros(2, 1, 2, 2)
    x0_real = torch.zeros(2, 1, 2, 2)
    x0_real[1] = 1.0
    x0_fake = torch.ones(2, 1, 2, 2)
    x0_fake[1, 0, 0, 0] = float("nan")
    g, nonfinite = dmd_gradient(x, x0_real, x0_fake)  # sample 0: 1 / 0 -> inf, sample 1: one NaN
    assert nonfinite == 5
    assert torch.isinf(g[0]).all() and torch.isnan(g[1, 0, 0, 0])


def test_autograd_of_dmd_loss_is_the_dmd_gradient_over_batch_exactly():
    # dyadic values and 8 = 2 x 2 x 2 pixels: x - g, x - (x - g) and the division by
    # B x CHW = 32 are exact in float32, so equality is exact
    gen = torch.Generator().manual_seed(0)
    x = (torch.randint(-512, 512, (4, 2, 2, 2), generator=gen) / 64.0).requires_grad_(True)
    g = torch.randint(-512, 512, (4, 2, 2, 2), generator=gen) / 256.0
    loss, _ = dmd_loss(x, implicit_target(x, g))
    (grad,) = torch.autograd.grad(loss, x)
    assert torch.equal(grad, g / 32)


@pytest.mark.parametrize("eta", [1.0, 0.5])
def test_autograd_of_weighted_dmd_loss(eta):
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(5, 3, 4, 4, generator=gen, dtype=torch.float64, requires_grad=True)
    g = torch.randn(5, 3, 4, 4, generator=gen, dtype=torch.float64)
    w = torch.rand(5, generator=gen, dtype=torch.float64)
    loss, _ = dmd_loss(x, implicit_target(x, g, eta), w)
    (grad,) = torch.autograd.grad(loss, x)
    torch.testing.assert_close(grad, w.view(-1, 1, 1, 1) * eta * g / (5 * 48), rtol=1e-12, atol=1e-14)
    # the loss value is the definition: mean_i w_i 0.5 mean_CHW (eta g_i)^2
    assert loss.item() == pytest.approx((w * 0.5 * (eta * g).pow(2).mean((1, 2, 3))).mean().item(), rel=1e-12)


def test_regression_loss_known_answer_and_gradient():
    """0.5 (x_i - y_i)^2, mean over C, H, W and the batch; dL/dx = (x - y) / (B CHW)."""
    gen = torch.Generator().manual_seed(2)
    x = torch.randn(3, 3, 4, 4, generator=gen, dtype=torch.float64, requires_grad=True)
    y = torch.randn(3, 3, 4, 4, generator=gen, dtype=torch.float64)
    loss, m = regression_loss(x, y)
    (grad,) = torch.autograd.grad(loss, x)
    torch.testing.assert_close(grad, (x - y).detach() / (3 * 48), rtol=1e-12, atol=1e-14)
    assert m["reg_loss"] == pytest.approx(0.5 * (x - y).pow(2).mean().item(), rel=1e-12)
    # a constant offset of 0.25: 0.5 * 0.0625
    assert regression_loss(y + 0.25, y)[0].item() == pytest.approx(0.03125, rel=1e-12)


def test_implicit_target_is_detached():
    x = torch.randn(2, 3, 4, 4, requires_grad=True)
    assert not implicit_target(x, torch.randn(2, 3, 4, 4)).requires_grad


def test_flow_matching_loss_known_answer_and_gradient():
    x0 = torch.zeros(2, 1, 1, 2, dtype=torch.float64)
    noise = torch.ones(2, 1, 1, 2, dtype=torch.float64)
    v = torch.tensor([[[[1.0, 3.0]]], [[[0.0, 1.0]]]], dtype=torch.float64, requires_grad=True)
    loss, m = flow_matching_loss(v, x0, noise)
    # target v = noise - x0 = 1: errors (0, 2) and (-1, 0): per sample means 2 and 0.5
    assert loss.item() == pytest.approx(1.25) and m["fm_loss"] == pytest.approx(1.25)
    (grad,) = torch.autograd.grad(loss, v)
    torch.testing.assert_close(grad, (v - 1).detach() / 2)  # 2 (v - 1) / (2 elements * 2 samples)


def gaussian_x0(x_tau, tau, mean, std):
    """E[x0 | x_tau] for x0 ~ N(mean, std^2 I) and x_tau = (1 - tau) x0 + tau eps (closed form)."""
    a = 1 - tau
    gain = a * std**2 / (a**2 * std**2 + tau**2)
    return mean + gain * (x_tau - a * mean)


def test_dmd_moves_a_gaussian_generator_to_the_target():
    """A generator x = mu + s z trained only by dmd_gradient/implicit_target/dmd_loss, with the
    real and fake x0 predictions in closed form, converges to the target's mean and std."""
    torch.manual_seed(0)
    target_mean, target_std = torch.tensor([2.0, -1.0]).view(1, 2, 1, 1), 0.5
    mu = torch.zeros(1, 2, 1, 1, requires_grad=True)
    log_s = torch.zeros((), requires_grad=True)  # s = 1
    opt = torch.optim.SGD([mu, log_s], lr=0.1)  # L_DMD averages over the 2 pixels: dL/dmu = mean g / 2
    for _ in range(600):
        z = torch.randn(256, 2, 1, 1)
        x = mu + log_s.exp() * z
        tau = 0.02 + 0.96 * torch.rand(256, 1, 1, 1)
        x_tau = (1 - tau) * x.detach() + tau * torch.randn_like(x)
        with torch.no_grad():
            x0_real = gaussian_x0(x_tau, tau, target_mean, target_std)
            x0_fake = gaussian_x0(x_tau, tau, mu.detach(), log_s.exp().detach())
        g, nonfinite = dmd_gradient(x, x0_real, x0_fake)
        assert nonfinite == 0
        loss, _ = dmd_loss(x, implicit_target(x, g))
        opt.zero_grad()
        loss.backward()  # d loss / d mu = mean_i g_i
        opt.step()
    torch.testing.assert_close(mu.detach(), target_mean, atol=0.05, rtol=0)
    assert math.isclose(log_s.exp().item(), target_std, abs_tol=0.05)


def test_dmd_with_the_wrong_sign_moves_away():
    torch.manual_seed(0)
    mu = torch.zeros(1, 2, 1, 1, requires_grad=True)
    opt = torch.optim.SGD([mu], lr=0.05)
    target = torch.tensor([2.0, -1.0]).view(1, 2, 1, 1)
    for _ in range(100):
        x = mu + torch.randn(256, 2, 1, 1)
        tau = 0.02 + 0.96 * torch.rand(256, 1, 1, 1)
        x_tau = (1 - tau) * x.detach() + tau * torch.randn_like(x)
        g, _ = dmd_gradient(x, gaussian_x0(x_tau, tau, target, 1.0), gaussian_x0(x_tau, tau, mu.detach(), 1.0))
        loss, _ = dmd_loss(x, implicit_target(x, -g))  # flipped sign
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert (mu.detach() - target).norm() > (torch.zeros(1, 2, 1, 1) - target).norm()


# -- the RL losses ------------------------------------------------------------------------


def test_group_advantages_known_answer():
    r = torch.tensor([1.0, 3.0, 5.0, 5.0, 2.0])
    groups = torch.tensor([0, 0, 1, 1, 2])
    adv, m = group_advantages(r, groups, eps=1e-4)
    # group 0: mean 2, std 1 -> -1, +1 over (1 + eps); group 1: std 0 -> 0; group 2: one row -> 0
    want = torch.tensor([-1 / 1.0001, 1 / 1.0001, 0.0, 0.0, 0.0], dtype=torch.float64)
    torch.testing.assert_close(adv, want, rtol=1e-12, atol=0)
    assert m["zero_std_groups"] == pytest.approx(2 / 3)
    # global std: one std over the batch, each group's own mean
    adv_g, _ = group_advantages(r, groups, eps=1e-4, global_std=True)
    torch.testing.assert_close(
        adv_g[:2], torch.tensor([-1.0, 1.0], dtype=torch.float64) / (r.double().std(unbiased=False) + 1e-4)
    )


def test_group_advantages_are_invariant_to_a_constant_within_a_group():
    gen = torch.Generator().manual_seed(3)
    r = torch.randn(12, generator=gen, dtype=torch.float64)
    groups = torch.arange(4).repeat_interleave(3)
    shift = torch.tensor([10.0, -3.0, 0.5, 100.0], dtype=torch.float64)[groups]
    a, _ = group_advantages(r, groups)
    b, _ = group_advantages(r + shift, groups)
    torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-9)
    # and the groups are what the ids say: permuting rows permutes advantages
    perm = torch.randperm(12, generator=gen)
    c, _ = group_advantages(r[perm], groups[perm])
    torch.testing.assert_close(c, a[perm], rtol=0, atol=1e-12)


def test_optimality():
    a = torch.tensor([0.0, 2.5, -2.5, 7.0, -7.0])
    assert optimality(a, 5.0).tolist() == [0.5, 0.75, 0.25, 1.0, 0.0]


def _nft_reference(f, f_old, y, r, beta):
    """DESIGN.md's formula, written out: p+ = beta f + (1 - beta) f_old, p- = (1 + beta) f_old - beta f."""
    p_pos = beta * f + (1 - beta) * f_old
    p_neg = (1 + beta) * f_old - beta * f
    w_pos = (p_pos - y).abs().mean((1, 2, 3), keepdim=True).clamp_min(1e-5)
    w_neg = (p_neg - y).abs().mean((1, 2, 3), keepdim=True).clamp_min(1e-5)
    per = r * ((p_pos - y) ** 2 / w_pos).mean((1, 2, 3)) + (1 - r) * ((p_neg - y) ** 2 / w_neg).mean((1, 2, 3))
    return (per / beta).mean()


def test_nft_loss_value_off_policy_matches_the_formula():
    gen = torch.Generator().manual_seed(4)
    f, f_old, y = (torch.randn(3, 2, 4, 4, generator=gen, dtype=torch.float64) for _ in range(3))
    r = torch.rand(3, generator=gen, dtype=torch.float64)
    loss, m = nft_loss(f, f_old, y, r, 0.3)
    assert loss.item() == pytest.approx(_nft_reference(f, f_old, y, r, 0.3).item(), rel=1e-12)
    assert m["nft_r_mean"] == pytest.approx(r.mean().item())


@pytest.mark.parametrize("beta", [1.0, 0.1])
def test_nft_on_policy_gradient_is_the_closed_form(beta):
    """dL/df_i = 2 (2 r_i - 1) (f_i - y_i) / (w_i CHW B), w_i = mean |f_i - y_i| (f_old = sg(f))."""
    gen = torch.Generator().manual_seed(5)
    f = torch.randn(4, 3, 4, 4, generator=gen, dtype=torch.float64, requires_grad=True)
    y = torch.randn(4, 3, 4, 4, generator=gen, dtype=torch.float64)
    r = torch.tensor([0.0, 0.25, 0.9, 1.0], dtype=torch.float64)
    loss, _ = nft_loss(f, f.detach(), y, r, beta)
    (grad,) = torch.autograd.grad(loss, f)
    d = (f - y).detach()
    w = d.abs().mean((1, 2, 3), keepdim=True)
    torch.testing.assert_close(grad, 2 * (2 * r.view(-1, 1, 1, 1) - 1) * d / (w * 48 * 4), rtol=1e-12, atol=1e-15)


def test_nft_gradient_is_exactly_zero_at_one_half():
    """r = 1/2 on policy: the positive and negative terms cancel exactly (float32)."""
    f = torch.randn(3, 3, 8, 8, requires_grad=True)
    loss, _ = nft_loss(f, f.detach(), torch.randn(3, 3, 8, 8), torch.full((3,), 0.5), 1.0)
    (grad,) = torch.autograd.grad(loss, f)
    assert torch.equal(grad, torch.zeros_like(grad))


def test_refl_hinge_value_and_gradient():
    rewards = torch.tensor([0.2, 0.9, 0.69], requires_grad=True)
    loss, m = refl_hinge(rewards, 0.7)
    assert loss.item() == pytest.approx((0.5 + 0.0 + 0.01) / 3, rel=1e-5) and m["hinge_active"] == pytest.approx(2 / 3)
    (grad,) = torch.autograd.grad(loss, rewards)
    assert torch.equal(grad, torch.tensor([-1 / 3, 0.0, -1 / 3]))
