"""Shared pieces of the RL methods (dmd_nft, dmd_refl, dmdr, gdmd): DMD's state with the
run's training rewards."""

from __future__ import annotations

from dataclasses import dataclass

from gdmd.rewards import Rewards

from . import dmd


@dataclass
class RewardedState(dmd.DMDState):
    rewards: Rewards | None = None


def setup(cfg, run, backbone, teacher, prompt_source=None, state_class=RewardedState, pairs_file=None, **fields):
    """DMD's set-up plus the rewards of `cfg.rewards` (weight paths: the run's `weights`).
    The reward models load after DMD's set-up: building them draws from torch's RNG, and the
    regression pairs (made first in DMD's set-up) must be every method's same pairs."""
    state = dmd.setup(cfg, run, backbone, teacher, prompt_source, state_class, pairs_file=pairs_file, **fields)
    state.rewards = Rewards(cfg.rewards, run.weights, backbone)
    return state
