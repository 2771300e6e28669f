"""Losses as pure functions of tensors: noise and timesteps come in as arguments.

Each returns `(loss, metrics)`; metrics are plain floats for the training log.
Notation (DESIGN.md): flow matching with x_t = (1 - t) x0 + t eps, v = eps - x0.
"""

from __future__ import annotations

import torch


def flow_matching_loss(v_pred: torch.Tensor, x0: torch.Tensor, noise: torch.Tensor, weights: torch.Tensor | None = None):
    """Rectified-flow / conditional flow-matching loss (Lipman et al. 2023, Liu et al. 2023).

    L = mean_i w_i * mean_{CHW} || v_pred_i - (noise_i - x0_i) ||^2, where v_pred is the
    network's velocity at x_t = (1 - t) x0 + t noise. Shapes: (B, C, H, W); weights (B,).
    Used for the teacher's pretraining and for DMD's fake score.
    """
    per_sample = (v_pred.float() - (noise - x0).float()).pow(2).flatten(1).mean(1)  # (B,)
    loss = per_sample.mean() if weights is None else (weights * per_sample).mean()
    return loss, {"fm_loss": loss.item()}
