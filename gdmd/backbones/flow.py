"""What every backbone shares: the prompt condition, flow matching and classifier-free guidance.

Flow matching (rectified flow) throughout: x_t = (1 - t) x0 + t eps, v = eps - x0,
x0 = x_t - t v, with t in [0, 1] (1 = pure noise). A backbone subclasses `FlowBackbone` and
provides `encode_prompts`, `raw_velocity`, `latent_shape`, `encode_images`, `decode` and,
where its schedule is not the uniform one, `shift` (SD3's time shift).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


@dataclass
class Cond:
    """Prompt condition: token states (B, L, W) and pooled embedding (B, E)."""

    tokens: torch.Tensor
    pooled: torch.Tensor

    def __len__(self):
        return self.tokens.shape[0]

    def cat(self, other: Cond) -> Cond:
        return Cond(torch.cat([self.tokens, other.tokens]), torch.cat([self.pooled, other.pooled]))

    def index(self, idx) -> Cond:
        return Cond(self.tokens[idx], self.pooled[idx])

    def repeat(self, n: int) -> Cond:
        return Cond(self.tokens.repeat_interleave(n, 0), self.pooled.repeat_interleave(n, 0))


def sd3_call(model, x, t, tokens, pooled):
    """An `SD3Transformer2DModel`'s velocity; like diffusers' SD3 pipeline, the network sees
    the time scaled to [0, 1000]."""
    return model(hidden_states=x, encoder_hidden_states=tokens, pooled_projections=pooled, timestep=t * 1000).sample


def shift_times(t: torch.Tensor, shift: float) -> torch.Tensor:
    """SD3's time shift (Esser et al. 2024, Eq. 23; diffusers' FlowMatchEulerDiscreteScheduler):
    t' = s t / (1 + (s - 1) t); s = 1 is the identity."""
    if shift == 1.0:
        return t
    return shift * t / (1 + (shift - 1) * t)


class FlowBackbone:
    """The adapter surface of DESIGN.md (Backbones), less what each model family defines."""

    name = "flow"
    shift: float = 1.0  # time shift of the teacher's sampler and the generator's timesteps
    resolution: int  # image side in pixels
    device: torch.device
    dtype: torch.dtype
    _empty: Cond | None = None

    # -- implemented by each backbone ------------------------------------------------
    def encode_prompts(self, prompts: list[str]) -> Cond:
        raise NotImplementedError

    def raw_velocity(self, model: nn.Module, x_t: torch.Tensor, t: torch.Tensor, cond: Cond) -> torch.Tensor:
        raise NotImplementedError

    def latent_shape(self) -> tuple[int, int, int]:
        raise NotImplementedError

    # -- shared ------------------------------------------------------------------------
    def empty_cond(self, n: int) -> Cond:
        """The unconditional condition (empty prompt), as used for classifier-free guidance."""
        if self._empty is None:
            self._empty = self.encode_prompts([""])
        return self._empty.repeat(n)

    def velocity(self, model: nn.Module, x_t: torch.Tensor, t: torch.Tensor, cond: Cond, cfg_scale: float = 1.0) -> torch.Tensor:
        """Velocity with classifier-free guidance: v_u + w (v_c - v_u); w = 1 is plain conditional."""
        if cfg_scale == 1.0:
            return self.raw_velocity(model, x_t, t, cond)
        n = x_t.shape[0]
        both = self.raw_velocity(model, torch.cat([x_t, x_t]), torch.cat([t, t]), cond.cat(self.empty_cond(n)))
        v_c, v_u = both[:n], both[n:]
        return v_u + cfg_scale * (v_c - v_u)

    def velocity_and_features(
        self, model: nn.Module, x_t: torch.Tensor, t: torch.Tensor, cond: Cond, where=("norm_out", "input")
    ):
        """raw_velocity and the network's internal features (B, tokens, C) from the same call
        (what DMD2's GAN classifier reads, Yin et al. NeurIPS 2024, Sec. 4.3): the input or
        output of sub-module `where[0]` (default the SD3 transformer's last hidden tokens)."""
        name, side = where
        seen = []

        def hook(module, args, output):
            seen.append(args[0] if side == "input" else output)

        handle = model.get_submodule(name).register_forward_hook(hook)
        try:
            v = self.raw_velocity(model, x_t, t, cond)
        finally:
            handle.remove()
        f = seen[0]
        return v, (f.flatten(2).transpose(1, 2) if f.ndim == 4 else f)

    @staticmethod
    def x0_from_velocity(x_t: torch.Tensor, t: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        return x_t - t.view(-1, 1, 1, 1) * v

    @staticmethod
    def add_noise(x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        t = t.view(-1, 1, 1, 1)
        return (1 - t) * x0 + t * noise

    def noise_like(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        return torch.randn((n, *self.latent_shape()), generator=generator).to(self.device, self.dtype)

    def generator_timesteps(self, k: int) -> torch.Tensor:
        """The few-step generator's K timesteps from 1 down: K evenly spaced, time-shifted
        (shift 1: K = 4 -> [1.0, 0.75, 0.5, 0.25]; SD3-M's shift 3 -> [1.0, 0.9, 0.75, 0.5])."""
        return shift_times(torch.tensor([1.0 - i / k for i in range(k)]), self.shift)

    def sampling_times(self, steps: int) -> torch.Tensor:
        """The teacher sampler's steps + 1 times from 1 to 0 (both included), time-shifted as
        diffusers' FlowMatchEulerDiscreteScheduler shifts them."""
        if steps < 1:
            raise ValueError(f"steps must be >= 1, got {steps}")
        return shift_times(torch.linspace(1.0, 0.0, steps + 1), self.shift)
