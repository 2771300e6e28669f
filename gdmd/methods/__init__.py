"""Distillation methods as step functions, picked by the run's `method` from `METHODS`.

A method is a `Method`: its config dataclass (the run's `train:` section, in
`gdmd.methods.configs`), and a module `gdmd.methods.<module>` with
- `setup(cfg, run, backbone, teacher, prompt_source, pairs_file=None) -> state`: the
  trainable modules and optimisers from the teacher (`prompt_source(seed)` gives training
  captions for anything made at set-up; `pairs_file`: the regression loss's teacher pairs,
  made beforehand by `gdmd.pairs`); the state names its `modules` and `optimizers` (what checkpoints hold)
  and may set `prompt_repeats` (each caption of a batch repeated that many times: a
  group of samples per prompt) and `needs_real` (real images with each batch);
- `STEPS`: its step functions by name, each `step(state, batch) -> metrics` on a `Batch`;
- `schedule(cfg, iteration)`: the names of the steps one iteration runs.
`gdmd.train` is the one loop that drives them all. The module is imported only when the
method is used, so the table, and the configs the DAG checks at parse time, cost no torch.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any

from gdmd.io import UserError

from .configs import CONFIGS


@dataclass
class Batch:
    """What one iteration's steps receive: the iteration (0-based), the batch's captions, their
    condition (backbone-specific), real images in model space (methods that ask), and the
    group each row belongs to (rows with the same caption drawn together: `prompt_repeats`)."""

    iteration: int
    captions: list[str]
    cond: Any
    real: Any = None
    groups: Any = None  # (B,) LongTensor


@dataclass(frozen=True)
class Method:
    Config: type
    module: str  # gdmd.methods.<module>

    @property
    def impl(self):
        return importlib.import_module(f"{__name__}.{self.module}")

    @property
    def setup(self):
        return self.impl.setup

    @property
    def steps(self) -> dict:
        return self.impl.STEPS

    @property
    def schedule(self):
        return self.impl.schedule


METHODS: dict[str, Method] = {name: Method(cfg, name) for name, cfg in CONFIGS.items()}


def get_method(name: str) -> Method:
    if name not in METHODS:
        raise UserError(f"unknown method {name!r}; known: teacher, {', '.join(METHODS)}")
    return METHODS[name]


def noises_per_image(run) -> int:
    """Independent noise tensors one image needs: the start, plus one re-noise per later step."""
    return 1 if run.method == "teacher" else run.steps
