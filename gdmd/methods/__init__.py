"""Distillation methods as step functions, picked by the run's `method` from `METHODS`.

A method is a `Method`: its config dataclass (the run's `train:` section), `setup(cfg, run,
backbone, teacher, prompt_source)` (build the trainable modules and optimisers from the
teacher; `prompt_source(seed)` gives training captions for anything made at set-up), its
step functions by name, and `schedule(cfg, iteration)`, which names the steps one
iteration runs. `gdmd.train` is the
one loop that drives them all.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from gdmd.io import UserError

from . import dmd


@dataclass(frozen=True)
class Method:
    Config: type
    setup: Callable
    steps: dict[str, Callable]
    schedule: Callable


METHODS: dict[str, Method] = {
    "dmd": Method(dmd.DMDConfig, dmd.setup, dmd.STEPS, dmd.schedule),
}


def get_method(name: str) -> Method:
    if name not in METHODS:
        raise UserError(f"unknown method {name!r}; known: teacher, {', '.join(METHODS)}")
    return METHODS[name]


def noises_per_image(run) -> int:
    """Independent noise tensors one image needs: the start, plus one re-noise per later step."""
    return 1 if run.method == "teacher" else run.steps


def load_generator(run, backbone, teacher, checkpoint_path):
    """A trained few-step generator and its sampler `(cond, noises) -> x0`."""
    import copy

    from gdmd import checkpoint

    if checkpoint_path is None:
        raise UserError(f"run {run.run!r} ({run.method}) samples from a trained generator: pass --checkpoint")
    generator = copy.deepcopy(teacher)
    checkpoint.load_module_weights(checkpoint_path, "generator", generator)
    generator.eval().requires_grad_(False)
    timesteps = dmd.generator_timesteps(run.steps)

    @torch.no_grad()
    def sample(cond, noises):
        return dmd.few_step(backbone, generator, cond, noises, timesteps)

    return generator, sample
