"""Samplers as pure functions: the model, condition and noise come in, images come out.

`euler` integrates the flow-matching ODE dx/dt = v(x, t) from t = 1 (noise) to t = 0 with
Euler steps on the backbone's grid (`sampling_times`: uniform, time-shifted for SD3 as
diffusers' FlowMatchEulerDiscreteScheduler; the teacher's sampler, with classifier-free
guidance).
"""

from __future__ import annotations

import torch

from .backbones.flow import FlowBackbone


def uniform_timesteps(steps: int) -> torch.Tensor:
    """steps + 1 times from 1 to 0 (both included): the unshifted grid."""
    return FlowBackbone().sampling_times(steps)


@torch.no_grad()
def euler(backbone, model, cond, noise: torch.Tensor, steps: int, cfg_scale: float = 1.0) -> torch.Tensor:
    """Euler sampler with classifier-free guidance; one network call (doubled batch) per step.

    noise (B, C, H, W) at t = 1; returns x at t = 0 in model space.
    """
    ts = backbone.sampling_times(steps).to(noise.device)
    x = noise
    for t, t_next in zip(ts[:-1], ts[1:]):
        tb = t.expand(x.shape[0])
        v = backbone.velocity(model, x, tb, cond, cfg_scale)
        x = x + (t_next - t) * v  # dt < 0: toward the data
    return x


def to_uint8(images: torch.Tensor):
    """(B, 3, H, W) in [0, 1] -> (B, H, W, 3) uint8 numpy."""
    return (images.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
