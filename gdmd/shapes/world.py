"""The shapes world: scenes of flat shapes in GenEval's colours on a plain background.

A scene is a list of objects, each a shape class, a colour name and a square box
(centre and side length, in pixels). Every shape fills its box the same way for every
size, so the box is also the box a detector should find:

- circle:   the disc inscribed in the box;
- square:   the box itself;
- triangle: apex at the top centre of the box, base along the box's bottom edge.

Rendering is exact area coverage estimated by supersampling, so edges are anti-aliased
and a renderer at another resolution draws the same scene.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# GenEval's ten colour names, in GenEval's order (djghosh13/geneval, prompts/create_prompts.py).
# RGB values are chosen far apart from each other and from the background.
COLORS: dict[str, tuple[int, int, int]] = {
    "red": (220, 40, 40),
    "orange": (245, 145, 30),
    "yellow": (245, 225, 50),
    "green": (40, 160, 60),
    "blue": (40, 90, 220),
    "purple": (140, 60, 190),
    "pink": (250, 150, 200),
    "brown": (125, 80, 40),
    "black": (20, 20, 20),
    "white": (245, 245, 245),
}
BACKGROUND: tuple[int, int, int] = (128, 128, 128)
SHAPES: tuple[str, ...] = ("circle", "square", "triangle")
DEFAULT_RESOLUTION = 32
SUPERSAMPLE = 4


@dataclass(frozen=True)
class ShapeObject:
    """One object: `size` is the side of its square box, (cx, cy) the box centre, in pixels."""

    shape: str
    color: str
    cx: float
    cy: float
    size: float

    def __post_init__(self):
        if self.shape not in SHAPES:
            raise ValueError(f"unknown shape {self.shape!r}; known: {', '.join(SHAPES)}")
        if self.color not in COLORS:
            raise ValueError(f"unknown colour {self.color!r}; known: {', '.join(COLORS)}")
        if not self.size > 0:
            raise ValueError(f"object size must be positive, got {self.size}")

    @property
    def box(self) -> tuple[float, float, float, float]:
        """(x1, y1, x2, y2) in pixel coordinates, y pointing down."""
        h = self.size / 2
        return (self.cx - h, self.cy - h, self.cx + h, self.cy + h)


def shape_inside(shape: str, x: np.ndarray, y: np.ndarray, cx, cy, size) -> np.ndarray:
    """Boolean mask of the points (x, y) inside `shape` with box centre (cx, cy) and side `size`.

    Broadcasts over leading dimensions of cx, cy, size against x, y (used by the detector to
    test many candidate placements at once).
    """
    h = size / 2
    dx, dy = x - cx, y - cy
    if shape == "circle":
        return dx * dx + dy * dy <= h * h
    if shape == "square":
        return (np.abs(dx) <= h) & (np.abs(dy) <= h)
    if shape == "triangle":
        # apex (cx, cy - h), base from (cx - h, cy + h) to (cx + h, cy + h):
        # inside when below the apex line pair and above the base; half-width grows as
        # (dy + h) / 2 from 0 at the apex to h at the base.
        return (dy <= h) & (np.abs(dx) <= (dy + h) / 2)
    raise ValueError(f"unknown shape {shape!r}; known: {', '.join(SHAPES)}")


def _sample_grid(resolution: int, ss: int = SUPERSAMPLE) -> tuple[np.ndarray, np.ndarray]:
    # (R*ss,) sample positions at the centres of the sub-pixel cells
    pos = (np.arange(resolution * ss, dtype=np.float64) + 0.5) / ss
    return pos[None, :], pos[:, None]  # x: (1, W*ss), y: (H*ss, 1)


def coverage(shape: str, cx: float, cy: float, size: float, resolution: int, ss: int = SUPERSAMPLE) -> np.ndarray:
    """Fraction of each pixel covered by the shape, (resolution, resolution) in [0, 1]."""
    x, y = _sample_grid(resolution, ss)
    inside = shape_inside(shape, x, y, cx, cy, size).astype(np.float32)  # (H*ss, W*ss)
    return inside.reshape(resolution, ss, resolution, ss).mean(axis=(1, 3))


def render(objects: list[ShapeObject] | tuple[ShapeObject, ...], resolution: int = DEFAULT_RESOLUTION) -> np.ndarray:
    """Render a scene to an (H, W, 3) uint8 RGB image; later objects are drawn on top."""
    img = np.empty((resolution, resolution, 3), dtype=np.float32)
    img[:] = BACKGROUND
    for obj in objects:
        a = coverage(obj.shape, obj.cx, obj.cy, obj.size, resolution)[..., None]
        img = img * (1 - a) + np.asarray(COLORS[obj.color], dtype=np.float32) * a
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def render_batch(scenes, resolution: int = DEFAULT_RESOLUTION) -> np.ndarray:
    """Render scenes to a (B, H, W, 3) uint8 array."""
    return np.stack([render(s, resolution) for s in scenes]) if scenes else np.zeros((0, resolution, resolution, 3), np.uint8)


# ---------------------------------------------------------------------------------------
# Degradations: the quality axis of the shapes world. The aesthetic-style metric is trained
# to tell clean renders from these; each takes a severity in [0, 1] (0 = unchanged).


def _blur(img: np.ndarray, severity: float, rng: np.random.Generator) -> np.ndarray:
    # separable Gaussian blur, sigma up to 1.5 px
    sigma = 1.5 * severity + 1e-6
    r = 3
    k = np.exp(-0.5 * (np.arange(-r, r + 1) / sigma) ** 2)
    k /= k.sum()
    pad = np.pad(img, ((r, r), (r, r), (0, 0)), mode="edge")
    tmp = sum(k[i] * pad[:, i : i + img.shape[1]] for i in range(2 * r + 1))
    return sum(k[i] * tmp[i : i + img.shape[0]] for i in range(2 * r + 1))


def _noise(img, severity, rng):
    return img + rng.normal(0, 60 * severity, img.shape)


def _pixelate(img, severity, rng):
    f = 1 + int(round(3 * severity))  # block size 1..4
    h, w = img.shape[:2]
    small = img[: h - h % f, : w - w % f].reshape(h // f, f, w // f, f, 3).mean(axis=(1, 3))
    out = img.copy()
    out[: h - h % f, : w - w % f] = np.repeat(np.repeat(small, f, 0), f, 1)
    return out


def _color_shift(img, severity, rng):
    return img + rng.normal(0, 50 * severity, (1, 1, 3))


def _speckle(img, severity, rng):
    out = img.copy()
    m = rng.random(img.shape[:2]) < 0.25 * severity
    out[m] = rng.integers(0, 256, (int(m.sum()), 3))
    return out


DEGRADATIONS = {
    "blur": _blur,
    "noise": _noise,
    "pixelate": _pixelate,
    "color_shift": _color_shift,
    "speckle": _speckle,
}


def degrade(img: np.ndarray, kind: str, severity: float, rng: np.random.Generator) -> np.ndarray:
    """Apply one named degradation to a uint8 image; returns uint8."""
    if kind not in DEGRADATIONS:
        raise ValueError(f"unknown degradation {kind!r}; known: {', '.join(DEGRADATIONS)}")
    out = DEGRADATIONS[kind](img.astype(np.float64), float(severity), rng)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)
