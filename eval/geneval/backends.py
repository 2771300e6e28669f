"""Detector backends behind one interface.

A backend turns RGB images into raw per-class detections (box, score, mask and, where it
knows it, colour); thresholding, suppression and judging are shared (`eval.geneval.rules`).
`BACKENDS` maps the config/CLI name to a factory taking the backend's options.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from gdmd.io import UserError

from .rules import Detection


class ShapesBackend:
    """The exact programmatic detector of the shapes world (sets colours itself)."""

    name = "shapes"

    def __init__(self, **options):
        if options:
            raise UserError(f"backend 'shapes' takes no options, got {', '.join(options)}")
        from gdmd.shapes.detector import detect

        self._detect = detect

    def detect(self, images: list[np.ndarray]) -> list[dict[str, list[Detection]]]:
        return [self._detect(im) for im in images]

    def describe(self) -> dict:
        return {"backend": self.name}


BACKENDS: dict[str, Callable[..., object]] = {"shapes": ShapesBackend}


def get_backend(name: str, **options):
    if name not in BACKENDS:
        raise UserError(f"unknown detector backend {name!r}; known: {', '.join(BACKENDS)}")
    return BACKENDS[name](**options)
