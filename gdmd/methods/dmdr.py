"""`dmdr`: DMDR (Jiang et al., arXiv 2511.13649), after the authors' code (vvvvvjdy/dmdr at
3af9698, train_t2i/sd3/train_sd3_refl_deepspeed.py and utils.py; DESIGN.md, DMDR).

DMD with `dmd_refl`'s reward hinge, switched on after a DMD-only cold start, plus two
schedules over the first K_dyn = `dyn_steps` iterations, with c(k) = 0.5 (1 + cos(pi
min(k / K_dyn, 1))):
- DynaDG (dynamic distribution guidance): the real score is the teacher plus the fake
  score's weight delta at LoRA scale real_lora_scale * c(k) (DMDR: 0.5 c(k), so the pure
  teacher from K_dyn on); its CFG scale is drawn from U(real_cfg_scale +- real_cfg_jitter)
  at every generator update (DMDR: U(7 +- 0.5) on SD3). In DMDR real and fake share one
  LoRA'd teacher; the fake score is that LoRA at scale fake_lora_scale (DMDR: 2.0). Here
  `fake_lora_rank` > 0 builds that peft LoRA; with a full-weight fake score (rank 0, the
  shapes study's choice, as every other method's) the real score is
  teacher + (real_lora_scale c(k) / fake_lora_scale) (fake - teacher): the same network a
  LoRA fake at fake_lora_scale would give (`tests/unit/test_rl_methods.py` checks it).
- DynaRS (dynamic re-noise sampling): DMD's re-noise time tau ~ Beta(a(k), b(k)) with
  a(k) = 1 + (dynars_a - 1) c(k), b(k) = 1 + (dynars_b - 1) c(k): Beta(4, 1.5) (mostly
  high noise) annealed to Beta(1, 1) = uniform; DMDR draws the fake score's training time
  from the same schedule (`dynars_critic`). Here tau is clamped to [tau_min, tau_max]
  (DMDR rounds it to its 1/1000 timestep grid instead).
DMDR counts cold start and K_dyn in generator updates (its global_step); here both are in
iterations (critic updates), so DMDR's 2000 at its update ratio 5 is 10000 iterations.
Every schedule value is logged per iteration.
"""

from __future__ import annotations

import contextlib
import math

import torch
from torch.func import functional_call

from gdmd.lora import lora_scale, set_lora_scale

from . import Batch, dmd, rl
from .configs import DMDRConfig
from .dmd_refl import reward_term

__all__ = ["DMDRConfig", "setup", "STEPS", "schedule"]


def cosine(cfg: DMDRConfig, k: int) -> float:
    """c(k) = 0.5 (1 + cos(pi min(k / K_dyn, 1))): 1 at k = 0, 0 from K_dyn on."""
    return 0.5 * (1.0 + math.cos(math.pi * min(k / cfg.dyn_steps, 1.0)))


def real_scale(cfg: DMDRConfig, k: int) -> float:
    """DynaDG: the real score's LoRA scale at iteration k."""
    return cfg.real_lora_scale * cosine(cfg, k)


def dynars_beta(cfg: DMDRConfig, k: int) -> tuple[float, float]:
    """DynaRS: Beta(a(k), b(k)), from (dynars_a, dynars_b) at k = 0 to (1, 1) at K_dyn."""
    c = cosine(cfg, k)
    return 1.0 + (cfg.dynars_a - 1.0) * c, 1.0 + (cfg.dynars_b - 1.0) * c


def in_cold_start(cfg: DMDRConfig, k: int) -> bool:
    return k < cfg.cold_start


# -- the fake score as a LoRA, and the real score between teacher and fake ----------------


def lora_fake_score(cfg: DMDRConfig):
    """`make_fake` for dmd.setup: the teacher (frozen) with a trainable peft LoRA on DMDR's
    targets, rank fake_lora_rank, alpha fake_lora_alpha (DMDR: = rank), Gaussian init (B = 0:
    starts as the teacher), used at scale fake_lora_scale."""

    def make(teacher):
        fake = dmd.default_fake(cfg)(teacher)
        if cfg.fake_lora_rank > 0:
            set_lora_scale(fake, cfg.fake_lora_scale)
        return fake

    return make


class Interpolated(torch.nn.Module):
    """teacher + s (fake - teacher), parameter by parameter, called like the teacher."""

    def __init__(self, teacher, fake, s: float):
        super().__init__()
        self.teacher = teacher
        fake_params = dict(fake.named_parameters())  # (a LoRA generator's adapter on the teacher is not the fake's)
        self.params = {n: p + s * (fake_params[n].detach() - p) for n, p in teacher.named_parameters() if n in fake_params}

    def forward(self, *args, **kwargs):
        return functional_call(self.teacher, self.params, args, kwargs)


@contextlib.contextmanager
def real_score(state, s: float):
    """DynaDG's real network at LoRA scale s (see the module docstring)."""
    cfg = state.cfg
    if s == 0.0:
        yield state.teacher
    elif cfg.fake_lora_rank > 0:
        with lora_scale(state.fake_score, s) as model:
            yield model
    else:
        yield Interpolated(state.teacher, state.fake_score, s / cfg.fake_lora_scale)


def real_cfg(cfg: DMDRConfig) -> float:
    """The real score's CFG for one update: U(w +- jitter) (DMDR: 1 when w <= 1)."""
    if cfg.real_cfg_scale <= 1.0:
        return 1.0
    return cfg.real_cfg_scale + cfg.real_cfg_jitter * (2.0 * torch.rand(()).item() - 1.0)


def dynars_times(cfg: DMDRConfig, k: int, n: int, device, clamp: bool = True) -> torch.Tensor:
    a, b = dynars_beta(cfg, k)
    tau = torch.distributions.Beta(torch.tensor(a), torch.tensor(b)).sample((n,)).to(device)
    return tau.clamp(cfg.tau_min, cfg.tau_max) if clamp else tau


def schedule_values(cfg: DMDRConfig, k: int) -> dict:
    a, b = dynars_beta(cfg, k)
    return {"cold_start": float(in_cold_start(cfg, k)), "real_lora_scale": real_scale(cfg, k), "dynars_a": a, "dynars_b": b}


# -- steps -------------------------------------------------------------------------------


def setup(cfg: DMDRConfig, run, backbone, teacher, prompt_source=None, pairs_file=None) -> rl.RewardedState:
    return rl.setup(cfg, run, backbone, teacher, prompt_source, pairs_file=pairs_file, make_fake=lora_fake_score(cfg))


def generator_step(state: rl.RewardedState, batch: Batch) -> dict:
    cfg, k = state.cfg, batch.iteration
    w = real_cfg(cfg)
    with real_score(state, real_scale(cfg, k)) as real:

        def real_x0(state_, x_tau, tau, cond):
            return dmd.x0_prediction(state_.backbone, real, x_tau, tau, cond, w)

        tau = dynars_times(cfg, k, len(batch.cond), state.backbone.device)
        term = dmd.dmd_term(state, batch, tau=tau, real_x0=real_x0)
    loss, m = dmd.generator_extras(state, term.x, batch, term.loss, term.metrics)
    m = {**m, **schedule_values(cfg, k), "real_cfg": w}
    if not in_cold_start(cfg, k):  # the reward model is not called during the cold start
        hinge, m_r = reward_term(state, term.x, batch)
        loss = loss + hinge
        m = {**m, **m_r, "reward_loss": hinge.item()}
    return dmd.generator_update(state, loss, m)


def critic_step(state: rl.RewardedState, batch: Batch) -> dict:
    cfg, k = state.cfg, batch.iteration
    t = dynars_times(cfg, k, len(batch.cond), state.backbone.device, clamp=False) if cfg.dynars_critic else None
    return {**dmd.critic_step(state, batch, t=t), **schedule_values(cfg, k)}


schedule = dmd.schedule
STEPS = {"critic": critic_step, "generator": generator_step}
