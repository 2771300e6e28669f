"""Human-preference scorers: one module per scorer, one signature.

Every scorer has `score(images, prompts) -> np.ndarray` (evaluation: a list of (H, W, 3)
uint8 arrays or a (B, 3, H, W) tensor in [0, 1]) and `reward(images, prompts) ->
torch.Tensor` (the differentiable path, for RL rewards). `SCORERS` maps the config/CLI
name to where its class lives and the named weight paths it needs; the classes are
imported only when a scorer is built, so this table (and `check_metric`, which the DAG
calls when it parses a config) costs no torch import.
"""

from __future__ import annotations

import importlib
from typing import NamedTuple

from gdmd.io import UserError


class Spec(NamedTuple):
    module: str  # eval.preference.<module>
    cls: str
    weights: tuple[str, ...]  # named weight paths the scorer needs (the class's `weights`)


SCORERS = {
    "shapes_clipscore": Spec("shapes", "ShapesClipScore", ("clip",)),
    "shapes_aesthetic": Spec("shapes", "ShapesAesthetic", ("clip", "aesthetic_head")),
    "hpsv2": Spec("hps", "HPS", ("hpsv2",)),
    "hpsv21": Spec("hps", "HPSv21", ("hpsv21",)),
    "hpsv2_noaa": Spec("hps", "HPSNoAA", ("hpsv2",)),
    "hpsv21_noaa": Spec("hps", "HPSv21NoAA", ("hpsv21",)),
    "pickscore": Spec("pickscore", "PickScore", ("pickscore", "pickscore_processor")),
    "imagereward": Spec("imagereward", "ImageReward", ("imagereward", "imagereward_med_config", "bert_tokenizer")),
    "clipscore": Spec("clipscore", "CLIPScore", ("clip_l14",)),
    "aesthetic": Spec("clipscore", "Aesthetic", ("clip_l14", "aesthetic_mlp")),
}
# every scorer's `reward` is differentiable, so each may be a training reward
REWARDS = tuple(SCORERS)


def check_metric(name: str, weights: dict, how: str = "give it as {}=PATH") -> str | None:
    """Why `name` cannot be scored with the named weight paths `weights` (None if it can);
    `how` tells where a missing path goes."""
    if name not in SCORERS:
        return f"unknown preference metric {name!r}; known: {', '.join(SCORERS)}"
    missing = [w for w in SCORERS[name].weights if w not in weights]
    if missing:
        return f"metric {name!r} needs weight path {missing[0]!r} ({how.format(missing[0])})"
    return None


def scorer_class(name: str) -> type:
    spec = SCORERS[name]
    return getattr(importlib.import_module(f"{__name__}.{spec.module}"), spec.cls)


def get_scorer(name: str, weights: dict, device="cpu"):
    problem = check_metric(name, weights)
    if problem:
        raise UserError(problem)
    return scorer_class(name)(weights, device=device)


__all__ = ["REWARDS", "SCORERS", "check_metric", "get_scorer", "scorer_class"]
