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
    """L = mean_i w_i * 0.5 * mean_{CHW} (x_i - target_i)^2 (DMD2's reduction, `F.mse_loss`
    with reduction="mean" in tianweiy/DMD2 main/sd_guidance.py; DMDR's too).

    With target = sg(x - g): dL/dx_i = w_i * g_i / (B * CHW), the DMD gradient, weighted per
    sample (w = 1: DMD; GDMD's reward-derived weights otherwise). x: (B, C, H, W); weights (B,).
    The mean over C, H, W keeps the loss O(1) whatever the resolution, so the RL terms added
    to it (NFT, NaPO: also means) have weights of order 1.
    """
    per_sample = _half_squared_error(x, target)
    if weights is not None:
        per_sample = weights.to(per_sample.dtype) * per_sample
    loss = per_sample.mean()
    return loss, {"dmd_loss": loss.item()}


def regression_loss(x: torch.Tensor, target: torch.Tensor):
    """DMD's regression loss (Yin et al. CVPR 2024, Sec. 3.3), here in model space:
    L = mean_i 0.5 * mean_{CHW} (x_i - target_i)^2 (reduced as `dmd_loss`), where x_i is the
    generator's output from noise z_i and target_i the teacher's ODE solution from the same
    z_i. dL/dx_i = (x_i - target_i) / (B * CHW). DMD uses LPIPS in pixel space."""
    loss = _half_squared_error(x, target).mean()
    return loss, {"reg_loss": loss.item()}


def _half_squared_error(x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """0.5 * mean_{CHW} (x_i - target_i)^2 per sample (B,)."""
    return 0.5 * (_wide(x) - _wide(target)).pow(2).flatten(1).mean(1)


# -- RL losses -------------------------------------------------------------------------


def group_advantages(rewards: torch.Tensor, groups: torch.Tensor, eps: float = 1e-4, global_std: bool = False):
    """Group-relative advantages A_i = (r_i - mean_{g(i)} r) / (std + eps).

    The mean is over the rows of row i's group (`groups`: (B,) integer ids); the std is the
    group's population std, or with `global_std` the whole batch's (DiffusionNFT's
    PerPromptStatTracker(global_std=True), NVlabs/DiffusionNFT flow_grpo/stat_tracking.py;
    eps 1e-4 as there; GRPO, Shao et al. 2024, uses the group's std). rewards (B,) ->
    (B,) float64 advantages, and metrics (the groups' mean reward std, the share of groups
    whose rewards are all equal).
    """
    r = rewards.detach().double()
    _, inv = torch.unique(groups, return_inverse=True)
    n = int(inv.max()) + 1
    count = torch.zeros(n, dtype=r.dtype, device=r.device).index_add_(0, inv, torch.ones_like(r))
    mean = torch.zeros(n, dtype=r.dtype, device=r.device).index_add_(0, inv, r) / count
    centred = r - mean[inv]
    var = torch.zeros(n, dtype=r.dtype, device=r.device).index_add_(0, inv, centred.pow(2)) / count
    std = r.std(unbiased=False).expand(n) if global_std else var.sqrt()
    adv = centred / (std[inv] + eps)
    return adv, {"reward_group_std": var.sqrt().mean().item(), "zero_std_groups": (var == 0).double().mean().item()}


def optimality(advantages: torch.Tensor, a_max: float) -> torch.Tensor:
    """DiffusionNFT's optimality probability r = 0.5 + 0.5 * clip(A / a_max, -1, 1) in [0, 1]
    (NVlabs/DiffusionNFT scripts/train_nft_sd3.py: advantages clipped to +-adv_clip_max,
    normalised to [0, 1]). A = 0 gives 0.5: neither pulled toward nor pushed from."""
    return 0.5 + 0.5 * (advantages / a_max).clamp(-1.0, 1.0)


def nft_loss(f: torch.Tensor, f_old: torch.Tensor, y: torch.Tensor, r: torch.Tensor, beta: float):
    """DiffusionNFT's negative-aware fine-tuning loss (Zheng et al. 2025, arXiv 2509.16117,
    Eq. 8; NVlabs/DiffusionNFT scripts/train_nft_sd3.py), in x0-prediction space.

    Positive and implicit negative predictions of the clean target y:
        p+ = beta f + (1 - beta) sg(f_old),   p- = (1 + beta) sg(f_old) - beta f,
    L_i = [r_i ||p+_i - y_i||^2 / w+_i + (1 - r_i) ||p-_i - y_i||^2 / w-_i] / beta,
    with ||.||^2 the mean over C, H, W and w+- = sg(mean_CHW |p+- - y|) clipped at 1e-5
    (DiffusionNFT's adaptive weight, computed in float64 there and here); L = mean_i L_i.
    DiffusionNFT writes the same loss on velocities at x_t; x0 = x_t - t v is affine in v,
    so the two are equal. It also multiplies L by adv_clip_max, a constant the callers'
    weight (lambda) absorbs.

    p+- - y is computed as (sg(f_old) - y) +- beta (f - sg(f_old)), the same numbers, so
    that on policy (f == f_old) both residuals are exactly sg(f_old) - y and the gradient
    is exactly dL/df_i = 2 (2 r_i - 1) (f_i - y_i) / (w_i CHW B), w_i = mean |f_i - y_i|:
    zero where r = 1/2, toward y where r > 1/2, away from y where r < 1/2.
    f, f_old, y: (B, C, H, W); r: (B,) in [0, 1]. Returns (loss, metrics).
    """
    f, old, y = _wide(f), _wide(f_old).detach(), _wide(y).detach()
    base, step = old - y, beta * (f - old)
    pos, neg = base + step, base - step
    dims = tuple(range(1, f.ndim))
    with torch.no_grad():
        w_pos = pos.double().abs().mean(dims, keepdim=True).clamp_min(1e-5).to(f.dtype)
        w_neg = neg.double().abs().mean(dims, keepdim=True).clamp_min(1e-5).to(f.dtype)
    pos_loss = (pos.pow(2) / w_pos).mean(dims)
    neg_loss = (neg.pow(2) / w_neg).mean(dims)
    r = r.to(f.dtype)
    loss = ((r * pos_loss + (1 - r) * neg_loss) / beta).mean()
    return loss, {"nft_loss": loss.item(), "nft_r_mean": r.mean().item()}


def refl_hinge(rewards: torch.Tensor, margin: float):
    """ReFL-style reward loss with DMDR's hinge: L = mean_i relu(margin - R_i) (vvvvvjdy/dmdr
    train_t2i/sd3/train_sd3_refl_deepspeed.py: relu(-score + 0.7).mean() for CLIP and HPSv2.1
    cosines; ImageReward's ReFL, Xu et al. 2023, uses relu-free -R). Gradient -1/B per sample
    whose reward is below the margin, 0 above it. rewards (B,) differentiable."""
    loss = torch.relu(margin - rewards).mean()
    return loss, {"hinge_active": (rewards.detach() < margin).float().mean().item()}
