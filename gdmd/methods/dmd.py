"""DMD, DMD2-style: a few-step generator distilled by distribution matching.

Per iteration (DMD2, Yin et al. NeurIPS 2024, Alg. 1; tianweiy/DMD2 main/sd_guidance.py):
- critic step (every iteration): the fake score learns the generator's current output
  distribution by flow matching on sg(x);
- generator step (every `gen_every` iterations, the two time-scale update rule):
  1. backward simulation: k ~ U{0..K-1}; run the generator from noise for k steps without
     grad (x0 = G(x_t), re-noise to the next timestep); then x = G(x_{t_k}, t_k, c) with grad;
  2. tau ~ U[tau_min, tau_max], eps: x_tau = (1 - tau) x + tau eps;
  3. x0_real = the teacher's x0 prediction with CFG (real score), x0_fake = the fake
     score's (no CFG);
  4. g = (x0_fake - x0_real) / mean_CHW |x - x0_real|;
  5. L_DMD = 0.5 || x - sg(x - g) ||^2.
Generator and fake score start as copies of the teacher.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch

from gdmd.losses import dmd_gradient, dmd_loss, flow_matching_loss, implicit_target


@dataclass(frozen=True)
class DMDConfig:
    iterations: int = 1000  # critic updates; the generator updates every `gen_every`
    batch_size: int = 32
    gen_every: int = 5  # DMD2: 5 (SD1.5) or 10 (SDXL)
    tau_min: float = 0.02  # DMD2's renoise range
    tau_max: float = 0.98
    real_cfg_scale: float = 4.0
    lr_generator: float = 2e-5
    lr_fake: float = 2e-5
    betas: tuple[float, float] = (0.0, 0.999)
    weight_decay: float = 0.0
    grad_clip: float = 10.0
    checkpoint_every: int = 100
    prompts: str = "shapes"  # training prompt source (see gdmd.train.PROMPT_SOURCES)


@dataclass
class DMDState:
    """Everything the step functions touch. `modules`/`optimizers` are what checkpoints hold."""

    cfg: DMDConfig
    backbone: object
    teacher: torch.nn.Module  # the real score (frozen)
    generator: torch.nn.Module
    fake_score: torch.nn.Module
    opt_generator: torch.optim.Optimizer
    opt_fake: torch.optim.Optimizer
    timesteps: torch.Tensor  # (K,) generator timesteps, from 1 down

    @property
    def modules(self) -> dict[str, torch.nn.Module]:
        return {"generator": self.generator, "fake_score": self.fake_score}

    @property
    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"opt_generator": self.opt_generator, "opt_fake": self.opt_fake}


def generator_timesteps(k: int) -> torch.Tensor:
    """K evenly spaced generator timesteps from 1 down: K = 4 -> [1.0, 0.75, 0.5, 0.25]."""
    return torch.tensor([1.0 - i / k for i in range(k)])


def setup(cfg: DMDConfig, run, backbone, teacher) -> DMDState:
    generator = copy.deepcopy(teacher).train().requires_grad_(True)
    fake_score = copy.deepcopy(teacher).train().requires_grad_(True)
    opt_g = torch.optim.AdamW(generator.parameters(), lr=cfg.lr_generator, betas=cfg.betas, weight_decay=cfg.weight_decay)
    opt_f = torch.optim.AdamW(fake_score.parameters(), lr=cfg.lr_fake, betas=cfg.betas, weight_decay=cfg.weight_decay)
    return DMDState(cfg, backbone, teacher, generator, fake_score, opt_g, opt_f, generator_timesteps(run.steps))


def x0_prediction(backbone, model, x_t, t, cond, cfg_scale: float = 1.0) -> torch.Tensor:
    return backbone.x0_from_velocity(x_t, t, backbone.velocity(model, x_t, t, cond, cfg_scale))


def few_step(backbone, generator, cond, noises: list[torch.Tensor], timesteps: torch.Tensor, grad_from: int | None = None):
    """DMD2's multi-step generator: x0 = G(x_t); re-noise to the next timestep with the next noise.

    noises[0] is the start (t = 1), noises[k] re-noises step k's x0 to timesteps[k]. Runs
    all K steps, or stops after step `grad_from` (backward simulation) with gradient only
    through that last step. Returns the final x0 prediction.
    """
    n = noises[0].shape[0]
    x = noises[0]
    last = len(timesteps) - 1 if grad_from is None else grad_from
    for k in range(last + 1):
        t = timesteps[k].expand(n).to(x.device)
        with torch.set_grad_enabled(grad_from is not None and k == last and torch.is_grad_enabled()):
            x0 = x0_prediction(backbone, generator, x, t, cond)
        if k < last:
            x = backbone.add_noise(x0.detach(), timesteps[k + 1].expand(n).to(x.device), noises[k + 1])
    return x0


def _simulate(state: DMDState, cond, with_grad: bool) -> torch.Tensor:
    """Backward simulation: k ~ U{0..K-1}, k steps without grad, then G at t_k."""
    K = len(state.timesteps)
    n = len(cond)
    k = int(torch.randint(K, ()).item())
    noises = [state.backbone.noise_like(n) for _ in range(k + 1)]
    with torch.set_grad_enabled(with_grad):
        return few_step(state.backbone, state.generator, cond, noises, state.timesteps, grad_from=k)


def distribution_matching(state: DMDState, x: torch.Tensor, cond):
    """Steps 2-4: renoise x, query real and fake scores, return (g, nonfinite, tau)."""
    cfg, bb = state.cfg, state.backbone
    n = x.shape[0]
    tau = cfg.tau_min + (cfg.tau_max - cfg.tau_min) * torch.rand(n, device=x.device)
    x_tau = bb.add_noise(x.detach(), tau, torch.randn_like(x))
    with torch.no_grad():
        x0_real = x0_prediction(bb, state.teacher, x_tau, tau, cond, cfg.real_cfg_scale)
        x0_fake = x0_prediction(bb, state.fake_score, x_tau, tau, cond)
    g, nonfinite = dmd_gradient(x, x0_real, x0_fake)
    return g, nonfinite, tau


def _update(model, opt, loss, clip) -> float:
    opt.zero_grad(set_to_none=True)
    loss.backward()
    gn = torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
    opt.step()
    return float(gn)


def generator_step(state: DMDState, cond) -> dict:
    """DMD generator update (steps 1-5); touches only the generator's parameters."""
    x = _simulate(state, cond, with_grad=True)
    g, nonfinite, _ = distribution_matching(state, x, cond)
    loss, m = dmd_loss(x, implicit_target(x, g))
    gn = _update(state.generator, state.opt_generator, loss, state.cfg.grad_clip)
    return {**m, "g_abs": g.abs().mean().item(), "nonfinite": nonfinite, "grad_norm_generator": gn}


def critic_step(state: DMDState, cond) -> dict:
    """Fake-score update: flow matching on the generator's (detached) samples."""
    with torch.no_grad():
        x = _simulate(state, cond, with_grad=False)
    n = x.shape[0]
    t = torch.rand(n, device=x.device)
    noise = torch.randn_like(x)
    v = state.backbone.raw_velocity(state.fake_score, state.backbone.add_noise(x, t, noise), t, cond)
    loss, m = flow_matching_loss(v, x, noise)
    gn = _update(state.fake_score, state.opt_fake, loss, state.cfg.grad_clip)
    return {"fake_loss": m["fm_loss"], "grad_norm_fake": gn}


def schedule(cfg: DMDConfig, iteration: int) -> tuple[str, ...]:
    """The two time-scale rule: a critic update every iteration, a generator update every
    gen_every (first, as DMD2's loop does its generator turn before its guidance turn)."""
    return ("generator", "critic") if iteration % cfg.gen_every == 0 else ("critic",)


STEPS = {"critic": critic_step, "generator": generator_step}
