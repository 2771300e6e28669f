"""Exact tests of the DMD losses: autograd against the closed form, known answers, a 2-D Gaussian."""

import math

import pytest
import torch

from gdmd.losses import dmd_gradient, dmd_loss, flow_matching_loss, implicit_target, regression_loss


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
    # dyadic values: x - g and x - (x - g) are exact in float32, so equality is exact
    gen = torch.Generator().manual_seed(0)
    x = (torch.randint(-512, 512, (4, 3, 2, 2), generator=gen) / 64.0).requires_grad_(True)
    g = torch.randint(-512, 512, (4, 3, 2, 2), generator=gen) / 256.0
    loss, _ = dmd_loss(x, implicit_target(x, g))
    (grad,) = torch.autograd.grad(loss, x)
    assert torch.equal(grad, g / 4)


@pytest.mark.parametrize("eta", [1.0, 0.5])
def test_autograd_of_weighted_dmd_loss(eta):
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(5, 3, 4, 4, generator=gen, dtype=torch.float64, requires_grad=True)
    g = torch.randn(5, 3, 4, 4, generator=gen, dtype=torch.float64)
    w = torch.rand(5, generator=gen, dtype=torch.float64)
    loss, _ = dmd_loss(x, implicit_target(x, g, eta), w)
    (grad,) = torch.autograd.grad(loss, x)
    torch.testing.assert_close(grad, w.view(-1, 1, 1, 1) * eta * g / 5, rtol=1e-12, atol=1e-14)
    # the loss value is the definition: mean_i w_i 0.5 ||eta g_i||^2
    assert loss.item() == pytest.approx((w * 0.5 * (eta * g).pow(2).sum((1, 2, 3))).mean().item(), rel=1e-12)


def test_regression_loss_known_answer_and_gradient():
    """0.5 ||x_i - y_i||^2 summed over C, H, W, mean over the batch; dL/dx = (x - y) / B."""
    gen = torch.Generator().manual_seed(2)
    x = torch.randn(3, 3, 4, 4, generator=gen, dtype=torch.float64, requires_grad=True)
    y = torch.randn(3, 3, 4, 4, generator=gen, dtype=torch.float64)
    loss, m = regression_loss(x, y)
    (grad,) = torch.autograd.grad(loss, x)
    torch.testing.assert_close(grad, (x - y).detach() / 3, rtol=1e-12, atol=1e-14)
    assert m["reg_loss"] == pytest.approx(0.5 * (x - y).pow(2).sum().item() / 3, rel=1e-12)
    # a constant offset of 0.25 on 48 values per sample: 0.5 * 48 * 0.0625 = 1.5
    assert regression_loss(y + 0.25, y)[0].item() == pytest.approx(1.5, rel=1e-12)


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
    opt = torch.optim.SGD([mu, log_s], lr=0.05)
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
