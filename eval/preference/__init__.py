"""Human-preference scorers: one module per scorer, one signature.

Every scorer has `score(images, prompts) -> np.ndarray` (evaluation: a list of (H, W, 3)
uint8 arrays or a (B, 3, H, W) tensor in [0, 1]) and `reward(images, prompts) ->
torch.Tensor` (the differentiable path, for RL rewards). `SCORERS` maps the config/CLI
name to the class; each class lists the named weight paths it needs in `weights`.
"""

from __future__ import annotations

from gdmd.io import UserError

from .clipscore import Aesthetic, CLIPScore
from .hps import HPS, HPSv21
from .imagereward import ImageReward
from .pickscore import PickScore
from .shapes import ShapesAesthetic, ShapesClipScore

SCORERS = {c.name: c for c in (ShapesClipScore, ShapesAesthetic, HPS, HPSv21, PickScore, ImageReward, CLIPScore, Aesthetic)}


def get_scorer(name: str, weights: dict, device="cpu"):
    if name not in SCORERS:
        raise UserError(f"unknown preference metric {name!r}; known: {', '.join(SCORERS)}")
    cls = SCORERS[name]
    missing = [w for w in cls.weights if w not in weights]
    if missing:
        raise UserError(f"metric {name!r} needs weight path {missing[0]!r} (give it as {missing[0]}=PATH)")
    return cls(weights, device=device)


__all__ = ["SCORERS", "get_scorer"]
