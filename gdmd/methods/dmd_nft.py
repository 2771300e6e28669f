"""`dmd_nft`: DMD + DiffusionNFT on the generator's raw samples (the GDMD paper's naive
baseline, "DMD + NFT, sample-based scoring with SDE sampling"; DESIGN.md, Naive DMD+RL).

Each batch is P prompts x G rows (`samples_per_prompt` = G; the loop repeats each caption
G times). Per generator update:
1. DMD's term on the batch, exactly as `dmd` computes it (same random draws first);
2. raw samples: the stochastic few-step generator run from fresh noise for each row (all K
   steps, re-noising between them with fresh noise: the "SDE sampling"), no gradient;
3. their rewards (`train.rewards`, forward only) and advantages within each prompt's group
   of G samples, A = (R - mean) / (std + eps), and optimalities r = 0.5 + 0.5 clip(A / a_max);
4. DiffusionNFT's loss with y = the raw sample, f = the generator's x0 prediction at y
   re-noised to a time t (one of the generator's own timesteps, as DiffusionNFT trains at
   its sampler's timesteps; or U[tau_min, tau_max]), f_old = sg(f) (on policy: one update
   per sampled batch; DiffusionNFT keeps a slowly updated "old" copy instead);
5. L = L_DMD + nft_weight * L_NFT, one generator update.
The critic step is DMD's. Sources: NVlabs/DiffusionNFT scripts/train_nft_sd3.py (the loss,
the advantage clipping at adv_clip_max = 5, the std epsilon 1e-4); GDMD arXiv 2604.19009
names the baseline. With `nft_weight` 0 the generator update is DMD's; with a constant
reward every advantage is 0, every r is 1/2 and L_NFT's gradient is exactly zero.
"""

from __future__ import annotations

import torch

from gdmd.losses import group_advantages, nft_loss, optimality
from gdmd.rewards import Rewards

from . import Batch, dmd, rl
from .configs import NFTConfig

__all__ = ["NFTConfig", "setup", "STEPS", "schedule"]


def setup(cfg: NFTConfig, run, backbone, teacher, prompt_source=None, pairs_file=None) -> rl.RewardedState:
    return rl.setup(cfg, run, backbone, teacher, prompt_source, pairs_file=pairs_file, prompt_repeats=cfg.samples_per_prompt)


def raw_samples(state: dmd.DMDState, cond) -> torch.Tensor:
    """Step 2: the generator's full K-step stochastic chain from fresh noises, no gradient."""
    noises = [state.backbone.noise_like(len(cond)) for _ in state.timesteps]
    with torch.no_grad():
        return dmd.few_step(state.backbone, state.generator, cond, noises, state.timesteps)


def nft_times(state: dmd.DMDState, n: int, device) -> torch.Tensor:
    cfg = state.cfg
    if cfg.nft_t == "generator":
        return state.timesteps.to(device)[torch.randint(len(state.timesteps), (n,))]
    return dmd.renoise_times(cfg, n, device)


def nft_term(state: rl.RewardedState, batch: Batch):
    """Steps 2-4: (L_NFT, metrics)."""
    cfg, bb = state.cfg, state.backbone
    y = raw_samples(state, batch.cond)
    with torch.no_grad():
        per_metric = state.rewards(y, batch.captions)
    adv, m_adv = group_advantages(state.rewards.total(per_metric), batch.groups, cfg.adv_eps, cfg.adv_std == "global")
    r = optimality(adv, cfg.adv_clip_max)
    t = nft_times(state, y.shape[0], y.device)
    f = dmd.x0_prediction(bb, state.generator, bb.add_noise(y, t, torch.randn_like(y)), t, batch.cond)
    loss, m = nft_loss(f, f.detach(), y, r, cfg.nft_beta)
    return loss, {**m, **m_adv, **Rewards.log(per_metric)}


def generator_step(state: rl.RewardedState, batch: Batch) -> dict:
    term = dmd.dmd_term(state, batch)
    loss, m = dmd.generator_extras(state, term.x, batch, term.loss, term.metrics)
    nft, m_nft = nft_term(state, batch)
    return dmd.generator_update(state, loss + state.cfg.nft_weight * nft, {**m, **m_nft})


schedule = dmd.schedule
STEPS = {"critic": dmd.critic_step, "generator": generator_step}
