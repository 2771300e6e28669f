"""Losses as pure functions of tensors: noise and timesteps come in as arguments.

Each returns `(loss, metrics)`; metrics are plain floats for the training log.
Notation (DESIGN.md): flow matching with x_t = (1 - t) x0 + t eps, v = eps - x0.
"""

from __future__ import annotations

import torch


def _wide(t: torch.Tensor) -> torch.Tensor:
    """Half precision is upcast to float32 for the loss arithmetic; float32/64 are kept."""
    return t if t.dtype in (torch.float32, torch.float64) else t.float()


def flow_matching_loss(v_pred: torch.Tensor, x0: torch.Tensor, noise: torch.Tensor, weights: torch.Tensor | None = None):
    """Rectified-flow / conditional flow-matching loss (Lipman et al. 2023, Liu et al. 2023).

    L = mean_i w_i * mean_{CHW} || v_pred_i - (noise_i - x0_i) ||^2, where v_pred is the
    network's velocity at x_t = (1 - t) x0 + t noise. Shapes: (B, C, H, W); weights (B,).
    Used for the teacher's pretraining and for DMD's fake score.
    """
    per_sample = (_wide(v_pred) - (_wide(noise) - _wide(x0))).pow(2).flatten(1).mean(1)  # (B,)
    loss = per_sample.mean() if weights is None else (weights * per_sample).mean()
    return loss, {"fm_loss": loss.item()}


def dmd_gradient(x: torch.Tensor, x0_real: torch.Tensor, x0_fake: torch.Tensor):
    """DMD's distribution-matching gradient with DMD2's per-sample normalisation.

    g_i = (x0_fake_i - x0_real_i) / mean_{CHW} |x_i - x0_real_i|
    (DMD, Yin et al. CVPR 2024, Eq. 7-8: the gradient of KL(p_fake || p_real) is the score
    difference; DMD2, Yin et al. NeurIPS 2024, normalises it per sample; cf.
    tianweiy/DMD2 main/sd_guidance.py, compute_distribution_matching_loss.)

    x, x0_real, x0_fake: (B, C, H, W); x0_* are the real (teacher, guided) and fake score
    x0-predictions at a re-noised x. Returns (g, nonfinite) where `nonfinite` is the number
    of NaN/inf entries of g. They are left in g: the caller decides (the training loop
    counts, logs and stops); nothing is silently zeroed.
    """
    x, x0_real, x0_fake = _wide(x), _wide(x0_real), _wide(x0_fake)
    norm = (x - x0_real).abs().mean(dim=(1, 2, 3), keepdim=True)  # (B, 1, 1, 1)
    g = (x0_fake - x0_real) / norm
    nonfinite = int((~torch.isfinite(g)).sum().item())
    return g, nonfinite


def implicit_target(x: torch.Tensor, grad: torch.Tensor, eta: float = 1.0) -> torch.Tensor:
    """The DMD update's implicit target sg(x - eta * g): where one unit step of the
    distribution-matching gradient moves each sample (eta = 1: the DMD target)."""
    return (_wide(x.detach()) - eta * _wide(grad)).detach()


def dmd_loss(x: torch.Tensor, target: torch.Tensor, weights: torch.Tensor | None = None):
    """L = mean_i w_i * 0.5 * || x_i - target_i ||^2 (squared norm summed over C, H, W).

    With target = sg(x - g): dL/dx_i = w_i * g_i / B, the DMD gradient, weighted per sample
    (w = 1: DMD; GDMD's reward-derived weights otherwise). x: (B, C, H, W); weights (B,).
    """
    per_sample = _half_squared_error(x, target)
    if weights is not None:
        per_sample = weights.to(per_sample.dtype) * per_sample
    loss = per_sample.mean()
    return loss, {"dmd_loss": loss.item()}


def regression_loss(x: torch.Tensor, target: torch.Tensor):
    """DMD's regression loss (Yin et al. CVPR 2024, Sec. 3.3), here in model space:
    L = mean_i 0.5 * || x_i - target_i ||^2 (summed over C, H, W, as `dmd_loss`), where
    x_i is the generator's output from noise z_i and target_i the teacher's ODE solution
    from the same z_i. dL/dx_i = (x_i - target_i) / B. DMD uses LPIPS in pixel space."""
    loss = _half_squared_error(x, target).mean()
    return loss, {"reg_loss": loss.item()}


def _half_squared_error(x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """0.5 * || x_i - target_i ||^2 per sample (B,), summed over C, H, W."""
    return 0.5 * (_wide(x) - _wide(target)).pow(2).flatten(1).sum(1)
