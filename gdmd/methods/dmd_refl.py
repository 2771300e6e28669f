"""`dmd_refl`: DMD + ReFL-style reward backpropagation (DESIGN.md, Naive DMD+RL).

L = L_DMD + sum_j weight_j relu(margin_j - R_j(decode(x), c)), where x is the generator's
backward-simulated sample (DMD's step 1) and the reward's gradient flows through the
backbone's decoder and the frozen reward model into the generator only (the fake score
never sees it). This is DMDR's reward term (vvvvvjdy/dmdr at 3af9698,
train_t2i/sd3/train_sd3_refl_deepspeed.py: hinge relu(0.7 - cos) on CLIP and HPSv2.1)
without DMDR's cold start and dynamic schedules (see `dmdr`).
"""

from __future__ import annotations

from . import Batch, dmd, rl
from .configs import ReflConfig
from .rl import RewardedState

__all__ = ["ReflConfig", "setup", "STEPS", "schedule", "reward_term"]


def setup(cfg: ReflConfig, run, backbone, teacher, prompt_source=None, pairs_file=None) -> RewardedState:
    return rl.setup(cfg, run, backbone, teacher, prompt_source, pairs_file=pairs_file)


def reward_term(state: RewardedState, x, batch: Batch):
    """(sum_j weight_j hinge_j, metrics) of the samples x, differentiable in x."""
    per_metric = state.rewards(x, batch.captions)
    loss, m = state.rewards.hinge(per_metric)
    return loss, {**m, **state.rewards.log(per_metric)}


def generator_step(state: RewardedState, batch: Batch) -> dict:
    term = dmd.dmd_term(state, batch)
    loss, m = dmd.generator_extras(state, term.x, batch, term.loss, term.metrics)
    hinge, m_r = reward_term(state, term.x, batch)
    return dmd.generator_update(state, loss + hinge, {**m, **m_r, "reward_loss": hinge.item()})


schedule = dmd.schedule
STEPS = {"critic": dmd.critic_step, "generator": generator_step}
