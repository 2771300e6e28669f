"""`gdmd`: Guiding DMD with gradient-based RL (GDMD, arXiv 2604.19009): DMD + DaGC + IGS + NaPO.

What the paper states (verbatim facts, DESIGN.md): three components, Distillation-aware
Gradient Collection (DaGC), Implicit Gradient Scoring (IGS) and Negative-aware Preference
Optimization (NaPO); DMD gradients are reinterpreted as implicit target tensors that
existing reward models score after decoding; this acts as an adaptive weighting of the
distillation update; a target group comes from different t / fake-score snapshots (its
Table 4 ablates t, fake, both); the RL rewards are CLIP Score and HP Score. Everything
else below is our reading, marked (inferred), each a config key (docs/methods.md):

1. DaGC: for each generator sample x (DMD's backward simulation) a group of G DMD
   gradients g_j and implicit targets xhat_j = sg(x - eta d_j), d_j = g_j / mean|g_j|
   (`target_norm`, default) or g_j (eta = `target_step`; eta = 1 with d = g is DMD's own
   implicit target; inferred). Normalised, every target lies the same distance from x, so
   rewards compare the directions; unnormalised, |g| varies by orders of magnitude with
   tau (small tau, small denominator) and the rewards mostly rank the step sizes
   (benchmarks/README.md, "GDMD"). `group: t`: G re-noise times tau_j (the first is
   DMD's own draw, the rest drawn as DMD draws tau; queried in one batched forward);
   `group: fake`: one tau, the current fake score and EMAs of it at `fake_ema_decays`
   (snapshots kept in the checkpoint; inferred: the paper says "snapshots");
   `group: both`: every tau with every snapshot.
2. IGS: r_j = R(decode(xhat_j), c), forward only (no gradient reaches the reward model
   or flows from it into the generator).
3. NaPO: advantages within each sample's own group of targets (`baseline: group`; or
   `raw`: A_j = (r_j - R(x)) / raw_scale, inferred); `weights: nft` (inferred, default):
   DiffusionNFT's loss with y = xhat_j, f = x, f_old = sg(x), optimality
   r_j = 0.5 + 0.5 clip(A_j / a_max), and L = L_DMD + napo_weight * L_NaPO. On policy its
   gradient moves x along sum_j 2 (2 r_j - 1) g_j / (w_j CHW B G) (w_j = mean |eta g_j|):
   DMD's step plus reward-weighted copies of the group's DMD gradients, the "adaptive
   weighting" of the abstract. Alternatives (inferred): `advantage`: L = the DMD loss over
   the group with per-target weights clamp(1 + lambda A_j, 0, w_max); `softmax`: weights
   1 + lambda (G softmax(A / T)_j - 1). With lambda = 0 these two are DMD averaged over the
   group's targets; `nft` with lambda = 0 is exactly DMD.
L_DMD is `dmd`'s term (its random draws first), so GDMD and DMD share their DMD step.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from gdmd.lora import frozen_copy
from gdmd.losses import dmd_gradient, dmd_loss, group_advantages, implicit_target, nft_loss, optimality
from gdmd.rewards import Rewards

from . import Batch, dmd, rl
from .configs import GDMDConfig

__all__ = ["GDMDConfig", "setup", "STEPS", "schedule"]


@dataclass
class GDMDState(rl.RewardedState):
    fake_snapshots: torch.nn.ModuleList | None = None  # EMAs of the fake score (group fake / both)

    @property
    def modules(self) -> dict[str, torch.nn.Module]:
        mods = super().modules
        if self.fake_snapshots is not None:
            mods["fake_snapshots"] = self.fake_snapshots
        return mods


def setup(cfg: GDMDConfig, run, backbone, teacher, prompt_source=None, pairs_file=None) -> GDMDState:
    state = rl.setup(cfg, run, backbone, teacher, prompt_source, GDMDState, pairs_file=pairs_file)
    if cfg.group in ("fake", "both"):  # EMAs of the fake score, from its start (the teacher)
        state.fake_snapshots = torch.nn.ModuleList(
            frozen_copy(state.fake_score, f"fake_snapshot{i}") for i in range(len(cfg.fake_ema_decays))
        )
    return state


@dataclass
class Group:
    """DaGC's targets of B samples, G each, sample-major (row i * G + j)."""

    targets: torch.Tensor  # (B * G, C, H, W) implicit targets x - step, detached
    g: torch.Tensor  # (B * G, C, H, W) their DMD gradients
    step: torch.Tensor  # (B * G, C, H, W) eta d: x - targets
    tau: torch.Tensor  # (B, G) each target's re-noise time
    nonfinite: int


def dagc(state: GDMDState, term: dmd.Term, batch: Batch) -> Group:
    """Distillation-aware Gradient Collection (see the module docstring)."""
    cfg, bb = state.cfg, state.backbone
    x, q1 = term.x, term.query
    n = x.shape[0]
    n_tau = cfg.targets if cfg.group in ("t", "both") else 1
    taus, x_taus, reals, fakes = [q1.tau[:, None]], [q1.x_tau[:, None]], [q1.x0_real[:, None]], [q1.x0_fake[:, None]]
    nonfinite = 0
    if n_tau > 1:  # the other G - 1 re-noise times in one batched query of real and fake score
        q = dmd.distribution_matching(state, x.detach().repeat_interleave(n_tau - 1, 0), batch.cond.repeat(n_tau - 1))
        taus.append(q.tau.view(n, n_tau - 1))
        for dest, t in ((x_taus, q.x_tau), (reals, q.x0_real), (fakes, q.x0_fake)):
            dest.append(t.view(n, n_tau - 1, *t.shape[1:]))
    tau, x_tau, real = torch.cat(taus, 1), torch.cat(x_taus, 1), torch.cat(reals, 1)  # (B, Gt, ...)
    fake = [torch.cat(fakes, 1)]
    if state.fake_snapshots is not None:  # older fake scores at the same noisy inputs
        cond = batch.cond.repeat(n_tau)
        with torch.no_grad():
            for snap in state.fake_snapshots:
                pred = dmd.x0_prediction(bb, snap, x_tau.flatten(0, 1), tau.flatten(), cond)
                fake.append(pred.view_as(real))
    fake = torch.stack(fake, 2)  # (B, Gt, Gf, C, H, W)
    n_fake = fake.shape[2]
    real = real[:, :, None].expand_as(fake)
    xs = x.detach()[:, None, None].expand_as(fake)
    g, bad = dmd_gradient(xs.flatten(0, 2), real.flatten(0, 2), fake.flatten(0, 2))
    nonfinite += bad
    d = g / g.abs().mean((1, 2, 3), keepdim=True) if cfg.target_norm else g
    step = cfg.target_step * d
    targets = implicit_target(xs.flatten(0, 2), step)
    return Group(targets, g, step, tau[:, :, None].expand(n, n_tau, n_fake).flatten(1), nonfinite)


def igs(state: GDMDState, group: Group, x, captions: list[str]):
    """Implicit Gradient Scoring: every metric's rewards of the decoded targets (B, G) and of
    the raw samples x (B,), forward only."""
    G = group.tau.shape[1]
    with torch.no_grad():
        on_targets = state.rewards(group.targets, [c for c in captions for _ in range(G)])
        on_x = state.rewards(x.detach(), captions)
    return {k: v.view(-1, G) for k, v in on_targets.items()}, on_x


def advantages(state: GDMDState, r_targets: torch.Tensor, r_x: torch.Tensor):
    """NaPO's advantages (B * G,) within each sample's group, and their metrics."""
    cfg = state.cfg
    n, G = r_targets.shape
    if cfg.baseline == "raw":
        adv = ((r_targets - r_x[:, None]) / cfg.raw_scale).flatten().double()
        return adv, {}
    groups = torch.arange(n).repeat_interleave(G)
    return group_advantages(r_targets.flatten(), groups, cfg.adv_eps, cfg.adv_std == "global")


def _stats(name: str, w: torch.Tensor) -> dict:
    w = w.detach().double()
    return {f"{name}_mean": w.mean().item(), f"{name}_std": w.std(unbiased=False).item(),
            f"{name}_min": w.min().item(), f"{name}_max": w.max().item()}  # fmt: skip


def napo(state: GDMDState, term: dmd.Term, group: Group, adv: torch.Tensor):
    """Negative-aware Preference Optimization: (the loss replacing L_DMD, metrics)."""
    cfg = state.cfg
    G = group.tau.shape[1]
    f = term.x.repeat_interleave(G, 0)  # the sample, once per target, with its gradient
    if cfg.weights == "nft":
        r = optimality(adv, cfg.adv_clip_max)
        loss, m = nft_loss(f, f.detach(), group.targets, r, cfg.nft_beta)
        return term.loss + cfg.napo_weight * loss, {**m, "napo_loss": m["nft_loss"], **_stats("napo_r", r)}
    if cfg.weights == "advantage":
        w = (1.0 + cfg.napo_weight * adv).clamp(0.0, cfg.w_max)
    else:  # softmax over each sample's group
        soft = torch.softmax(adv.view(-1, G) / cfg.temperature, dim=1).flatten()
        w = 1.0 + cfg.napo_weight * (G * soft - 1.0)
    loss, m = dmd_loss(f, group.targets, w)
    return loss, {"napo_loss": m["dmd_loss"], **_stats("napo_w", w)}


def generator_step(state: GDMDState, batch: Batch) -> dict:
    term = dmd.dmd_term(state, batch)
    group = dagc(state, term, batch)
    per_target, per_x = igs(state, group, term.x, batch.captions)
    r_targets, r_x = state.rewards.total(per_target), state.rewards.total(per_x)
    adv, m_adv = advantages(state, r_targets, r_x)
    loss, m = napo(state, term, group, adv)
    loss, m_dmd = dmd.generator_extras(state, term.x, batch, loss, term.metrics)
    m = {**m_dmd, **m, **m_adv, "nonfinite": term.metrics["nonfinite"] + group.nonfinite,
         "reward_x": r_x.mean().item(), "reward_target": r_targets.mean().item(),
         **Rewards.log(per_x, "reward_x"), **Rewards.log(per_target, "reward_target")}  # fmt: skip
    if group.tau.shape[1] > 1 and cfg_varies_tau(state.cfg):
        best = group.tau.gather(1, r_targets.argmax(1, keepdim=True)).squeeze(1)
        m["best_not_smallest_tau"] = (best > group.tau.min(1).values).double().mean().item()
    return dmd.generator_update(state, loss, m)


def cfg_varies_tau(cfg: GDMDConfig) -> bool:
    return cfg.group in ("t", "both") and cfg.targets > 1


def critic_step(state: GDMDState, batch: Batch) -> dict:
    """DMD's critic step, then the fake-score snapshots' EMA updates."""
    m = dmd.critic_step(state, batch)
    if state.fake_snapshots is not None:
        for snap, decay in zip(state.fake_snapshots, state.cfg.fake_ema_decays):
            dmd.ema_update(snap, state.fake_score, decay)
    return m


schedule = dmd.schedule
STEPS = {"critic": critic_step, "generator": generator_step}
