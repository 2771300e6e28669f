"""Detector backends behind one interface.

A backend turns RGB images into raw per-class detections (box, score, mask and, where it
knows it, colour) with `detect(images) -> [{class: [Detection]}]`; thresholding,
suppression and judging are shared (`eval.geneval.rules`). Backends that do not know
colours (`needs_colors = True`) get them from GenEval's CLIP colour check.
`BACKENDS` maps the config/CLI name to its factory.
"""

from __future__ import annotations

import numpy as np

from gdmd.io import UserError

from .rules import Detection


class ShapesBackend:
    """The exact programmatic detector of the shapes world (sets colours itself)."""

    name = "shapes"
    needs_colors = False

    def __init__(self, **_):
        from gdmd.shapes.detector import detect

        self._detect = detect

    def detect(self, images: list[np.ndarray]) -> list[dict[str, list[Detection]]]:
        return [self._detect(im) for im in images]

    def describe(self) -> dict:
        return {"backend": self.name}


def _transformers(**kw):
    from .mask2former import TransformersMask2Former

    b = TransformersMask2Former(**kw)
    b.needs_colors = True
    return b


def _mmdet(**kw):
    from .mask2former import MMDetMask2Former

    b = MMDetMask2Former(**kw)
    b.needs_colors = True
    return b


BACKENDS = {"shapes": ShapesBackend, "transformers": _transformers, "mmdet": _mmdet}


def get_backend(name: str, **options):
    if name not in BACKENDS:
        raise UserError(f"unknown detector backend {name!r}; known: {', '.join(BACKENDS)}")
    return BACKENDS[name](**options)
