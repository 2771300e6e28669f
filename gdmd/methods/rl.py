"""Shared pieces of the RL methods (dmd_nft, dmd_refl, dmdr, gdmd): DMD's state with the
run's training rewards."""

from __future__ import annotations

from dataclasses import dataclass

from gdmd.rewards import Rewards

from . import dmd


@dataclass
class RewardedState(dmd.DMDState):
    rewards: Rewards | None = None


def setup(cfg, run, backbone, teacher, prompt_source=None, state_class=RewardedState, **fields):
    """DMD's set-up plus the rewards of `cfg.rewards` (weight paths: the run's `weights`)."""
    rewards = Rewards(cfg.rewards, run.weights, backbone)
    return dmd.setup(cfg, run, backbone, teacher, prompt_source, state_class, rewards=rewards, **fields)
