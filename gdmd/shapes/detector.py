"""An exact, programmatic object detector for the shapes world.

It returns per-class detections in the form GenEval's real detectors produce (box, score,
mask, colour), so the shared GenEval judge scores shapes images and real images alike.

For each image:
1. the background colour is the median of the border pixels; foreground pixels are those
   farther than FG_DISTANCE from it (RGB, 0..255);
2. connected foreground components (8-connectivity) are objects; a component whose pixels
   fall into two or more well-populated palette colours is split by colour (two touching
   objects of different colours);
3. each object's colour is the palette colour nearest to the median of its core pixels,
   and its soft coverage (alpha) per pixel is the projection of pixel - background onto
   colour - background;
4. every shape class is fitted to the alpha map: the box is initialised from the area and
   centroid and refined by a small grid search maximising the soft IoU between the alpha
   map and the class's exactly rendered coverage;
5. the class is the best fit; its score is class probability x mask quality, as GenEval's
   Mask2Former score is: probability = softmax(SHARPNESS * IoU) over classes, quality =
   clip((IoU - IOU_FLOOR) / (IOU_FULL - IOU_FLOOR), 0, 1). A clean render scores ~1; a blob
   halfway between two shapes scores below GenEval's 0.3 threshold.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from eval.geneval import Detection

from .world import COLORS, SHAPES, SUPERSAMPLE, shape_inside

FG_DISTANCE = 40.0
MIN_PIXELS = 3
SHARPNESS = 50.0
IOU_FLOOR = 0.5
IOU_FULL = 0.8

_PALETTE_NAMES = tuple(COLORS)
_PALETTE = np.array([COLORS[c] for c in _PALETTE_NAMES], dtype=np.float64)  # (10, 3)
_EIGHT = np.ones((3, 3), dtype=bool)
# grid search around the moment estimate: relative size x centre shift (px)
_SIZE_STEPS = np.array([0.9, 0.95, 1.0, 1.05, 1.1])
_SHIFT_STEPS = np.array([-0.5, 0.0, 0.5])


def _nearest_color(rgb: np.ndarray) -> np.ndarray:
    """Index of the nearest palette colour for each row of (N, 3) rgb."""
    d = ((rgb[:, None, :] - _PALETTE[None]) ** 2).sum(-1)
    return d.argmin(1)


def _initial_box(shape: str, alpha: np.ndarray, ys: np.ndarray, xs: np.ndarray):
    m0 = alpha.sum()
    mx, my = (alpha * xs).sum() / m0, (alpha * ys).sum() / m0
    if shape == "circle":
        s = np.sqrt(4 * m0 / np.pi)
        return mx, my, s
    if shape == "square":
        return mx, my, np.sqrt(m0)
    s = np.sqrt(2 * m0)  # triangle: area s^2/2, centroid s/6 below the box centre
    return mx, my - s / 6, s


def _coverage(inside: np.ndarray, h: int, w: int, ss: int) -> np.ndarray:
    """(C, h*ss, w*ss) sub-pixel hits -> (C, h, w) covered fraction of each pixel.

    The same values as `inside.reshape(C, h, ss, w, ss).mean(axis=(2, 4))` (integer counts,
    exact, over ss^2), 10x faster: ss slices added along each axis instead of a reduction."""
    hits = inside.view(np.uint8).reshape(len(inside) * h, ss, w * ss)
    rows = hits[:, 0].astype(np.int16)
    for i in range(1, ss):
        rows += hits[:, i]
    counts = rows[:, 0::ss].copy()
    for i in range(1, ss):
        counts += rows[:, i::ss]
    return counts.reshape(len(inside), h, w) / (ss * ss)


def _fit(shape: str, alpha: np.ndarray, y0: int, x0: int) -> tuple[float, tuple[float, float, float]]:
    """Best soft IoU of `shape` against the (h, w) alpha window at (y0, x0); returns (iou, (cx, cy, s))."""
    h, w = alpha.shape
    ys = np.arange(h)[:, None] + y0 + 0.5
    xs = np.arange(w)[None, :] + x0 + 0.5
    cx0, cy0, s0 = _initial_box(shape, alpha, ys, xs)
    sizes = s0 * _SIZE_STEPS
    cand = np.stack(np.meshgrid(cx0 + _SHIFT_STEPS, cy0 + _SHIFT_STEPS, sizes, indexing="ij"), -1).reshape(-1, 3)
    ss = SUPERSAMPLE
    py = (np.arange(h * ss) + 0.5) / ss + y0
    px = (np.arange(w * ss) + 0.5) / ss + x0
    inside = shape_inside(
        shape, px[None, None, :], py[None, :, None], cand[:, 0, None, None], cand[:, 1, None, None], cand[:, 2, None, None]
    )  # (C, h*ss, w*ss)
    cov = _coverage(inside, h, w, ss)
    inter = np.minimum(cov, alpha[None]).sum(axis=(1, 2))
    union = np.maximum(cov, alpha[None]).sum(axis=(1, 2))
    iou = inter / np.maximum(union, 1e-9)
    k = int(iou.argmax())
    return float(iou[k]), tuple(float(v) for v in cand[k])


def _line_residual(pix: np.ndarray, bg: np.ndarray) -> np.ndarray:
    """(N, 10) distance of each pixel from each segment background -> palette colour.

    An anti-aliased edge pixel is a mix of background and its object's colour, so it lies
    on that colour's segment even where its plain RGB distance is nearer another colour
    (half-covered white looks pink, half-covered black looks brown).
    """
    ref = _PALETTE - bg  # (10, 3)
    rel = pix - bg  # (N, 3)
    a = np.clip(rel @ ref.T / (ref * ref).sum(1), 0, 1)  # (N, 10)
    return np.linalg.norm(rel[:, None, :] - a[..., None] * ref[None], axis=-1)


def _split_by_color(img: np.ndarray, comp: np.ndarray, bg: np.ndarray) -> list[np.ndarray]:
    """Split one component into per-colour parts when it holds several populated colours."""
    pix = img[comp]
    resid = _line_residual(pix, bg)
    labels = resid.argmin(1)
    counts = np.bincount(labels, minlength=len(_PALETTE))
    major = np.flatnonzero(counts >= max(6, 0.2 * len(pix)))
    if len(major) < 2:
        return [comp]
    owner = major[resid[:, major].argmin(1)]
    parts = []
    for m in major:
        sub = np.zeros_like(comp)
        sub[comp] = owner == m
        lab, n = ndimage.label(sub, structure=_EIGHT)
        parts.extend(lab == i for i in range(1, n + 1))
    return parts


def detect(image: np.ndarray) -> dict[str, list[Detection]]:
    """Detect shapes in an (H, W, 3) uint8 RGB image.

    Returns {class: [Detection, ...]} with every object found (no thresholding: that is
    GenEval's `select`), each with box, score, mask and colour, most confident first.
    """
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected an (H, W, 3) RGB image, got shape {image.shape}")
    img = image.astype(np.float64)
    H, W = img.shape[:2]
    border = np.concatenate([img[0], img[-1], img[:, 0], img[:, -1]])
    bg = np.median(border, axis=0)
    dist = np.linalg.norm(img - bg, axis=-1)
    fg = dist > FG_DISTANCE
    lab, n = ndimage.label(fg, structure=_EIGHT)
    parts = []
    for i in range(1, n + 1):
        comp = lab == i
        if comp.sum() >= MIN_PIXELS:
            parts.extend(p for p in _split_by_color(img, comp, bg) if p.sum() >= MIN_PIXELS)
    occupied = np.zeros((H, W), dtype=bool)
    for p in parts:
        occupied |= p
    out: dict[str, list[Detection]] = {}
    for comp in parts:
        d = dist[comp]
        core = img[comp][d >= 0.75 * d.max()]
        color = np.median(core, axis=0)
        cidx = int(_nearest_color(color[None])[0])
        # soft coverage on the component and its 1-px rim (anti-aliased edges below the
        # foreground threshold), never on pixels of another object
        region = ndimage.binary_dilation(comp, structure=_EIGHT) & ~(occupied & ~comp)
        ref = color - bg
        alpha_full = np.clip(((img - bg) @ ref) / max(ref @ ref, 1e-9), 0, 1) * region
        ys, xs = np.nonzero(region)
        y0, y1 = max(ys.min() - 2, 0), min(ys.max() + 3, H)
        x0, x1 = max(xs.min() - 2, 0), min(xs.max() + 3, W)
        alpha = alpha_full[y0:y1, x0:x1]
        if alpha.sum() <= 0:
            continue
        fits = [_fit(s, alpha, y0, x0) for s in SHAPES]
        ious = np.array([f[0] for f in fits])
        k = int(ious.argmax())
        prob = np.exp(SHARPNESS * (ious - ious.max()))
        prob = prob[k] / prob.sum()
        quality = np.clip((ious[k] - IOU_FLOOR) / (IOU_FULL - IOU_FLOOR), 0.0, 1.0)
        cx, cy, s = fits[k][1]
        det = Detection(
            box=(cx - s / 2, cy - s / 2, cx + s / 2, cy + s / 2),
            score=float(prob * quality),
            mask=comp,
            color=_PALETTE_NAMES[cidx],
        )
        out.setdefault(SHAPES[k], []).append(det)
    for dets in out.values():
        dets.sort(key=lambda d: -d.score)
    return out


def scene_detections(objects) -> dict[str, list[Detection]]:
    """The exact detections of a scene's ground truth: its boxes and colours, score 1."""
    out: dict[str, list[Detection]] = {}
    for o in objects:
        out.setdefault(o.shape, []).append(Detection(box=o.box, score=1.0, color=o.color))
    return out


def truth(metadata: dict, objects) -> bool:
    """Whether a GenEval-schema prompt is true of a scene, by GenEval's own rules."""
    from eval.geneval import judge

    return judge(metadata, scene_detections(objects))[0]
