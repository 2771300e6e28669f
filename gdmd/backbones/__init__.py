"""Backbone adapters: one per model family, all with the same surface (DESIGN.md, Backbones).

`BACKBONES` maps the config's `backbone` name to its loader `(teacher, text_encoder,
device, dtype) -> (adapter, frozen teacher network)`.
"""

from __future__ import annotations

from gdmd.io import UserError

from .shapes import ShapesBackbone
from .shapes import load_teacher as _load_shapes

BACKBONES = {"shapes": _load_shapes}


def load(name: str, teacher: str, text_encoder: str, device="cpu", dtype=None):
    if name not in BACKBONES:
        raise UserError(f"unknown backbone {name!r}; known: {', '.join(BACKBONES)}")
    kwargs = {} if dtype is None else {"dtype": dtype}
    return BACKBONES[name](teacher, text_encoder, device=device, **kwargs)


__all__ = ["BACKBONES", "ShapesBackbone", "load"]
