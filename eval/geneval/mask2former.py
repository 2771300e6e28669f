"""GenEval's detector on real images: Mask2Former (COCO instance segmentation).

Two backends return the same thing, per-class `Detection`s with box, score and mask:

- `transformers`: `Mask2FormerForUniversalSegmentation` loaded with `from_pretrained` from a
  local directory: GenEval's own mmdet checkpoint converted by `eval.geneval.convert`
  (`python -m eval.weights geneval` makes it; another training of the architecture, such as
  facebook/mask2former-swin-small-coco-instance, loads too but is not GenEval). Post-processing
  follows mmdet's Mask2Former instance head, which GenEval's official evaluator runs:
  the top 100 (query, class) pairs by class probability; mask = sigmoid(mask logits) > 0.5
  at image resolution; score = class probability x mean mask probability inside the mask;
  box = the mask's extent (x2, y2 exclusive, as mmdet's mask2bbox).
- `mmdet`: the official config and checkpoint through mmdet's own API, when installed.

Images go through GenEval's mmdet test pipeline exactly (the instance config,
mask2former_r50_lsj_8x2_50e_coco.py, which the Swin-S config inherits): resized with OpenCV's
bilinear resize on uint8 pixels as mmcv.imresize does (shorter side 800, longer at most
1333), padded to a multiple of 32 with grey 128 *before* normalising with ImageNet mean/std
(the instance config's `Pad(size_divisor=32, pad_val=128)` precedes `Normalize`). Images are
batched by padded size, so a batch is padded exactly as mmdet pads a lone image (the network
has no padding mask: extra padding would change its outputs). On GPU the network runs under
autocast (AMP). benchmarks/geneval_mmdet/ checks all of this against mmdet itself.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from gdmd.io import UserError

from .rules import Detection

TEST_SCALE = (1333, 800)  # mmdet's test Resize(scale=(1333, 800), keep_ratio=True)
MEAN = (123.675, 116.28, 103.53)
STD = (58.395, 57.12, 57.375)
SIZE_DIVISOR = 32
PAD_VALUE = 128  # the instance config's pad_cfg img=(128, 128, 128), in pixel values
TOP_K = 100  # mmdet Mask2Former test_cfg max_per_image

# COCO names as detectron2/HF configs spell them -> GenEval's object_names.txt
ALIASES = {
    "mouse": "computer mouse",
    "remote": "tv remote",
    "keyboard": "computer keyboard",
    "tvmonitor": "tv",
    "tv monitor": "tv",
    "sofa": "couch",
    "motorbike": "motorcycle",
    "aeroplane": "airplane",
    "diningtable": "dining table",
    "pottedplant": "potted plant",
    "hair dryer": "hair drier",
    "donut": "donut",
    "doughnut": "donut",
}


def _norm(name: str) -> str:
    return re.sub(r"[\s_\-]+", " ", name.strip().lower())


def map_labels(id2label: dict, object_names: list[str]) -> dict[int, str]:
    """Model label id -> GenEval class name; every one of GenEval's classes must be covered."""
    wanted = {_norm(n): n for n in object_names}
    out = {}
    for i, label in id2label.items():
        n = _norm(label)
        n = _norm(ALIASES.get(n, n))
        if n in wanted:
            out[int(i)] = wanted[n]
    missing = sorted(set(object_names) - set(out.values()))
    if missing:
        raise UserError(f"detector labels do not cover {len(missing)} GenEval classes: {', '.join(missing[:10])}")
    return out


def resized_size(h: int, w: int, scale=TEST_SCALE) -> tuple[int, int]:
    """mmcv's rescale with keep_ratio: the largest size fitting (long, short) = scale."""
    long_edge, short_edge = max(scale), min(scale)
    factor = min(long_edge / max(h, w), short_edge / min(h, w))
    return int(h * factor + 0.5), int(w * factor + 0.5)


def resize(img: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """mmcv.imresize(img, (w, h), interpolation="bilinear"): OpenCV's INTER_LINEAR on uint8."""
    try:
        import cv2
    except ImportError:
        raise UserError("the Mask2Former backends need OpenCV (pip install opencv-python-headless), as mmcv does") from None
    return cv2.resize(np.ascontiguousarray(img), (size[1], size[0]), interpolation=cv2.INTER_LINEAR)


def padded_size(h: int, w: int) -> tuple[int, int]:
    rh, rw = resized_size(h, w)
    return math.ceil(rh / SIZE_DIVISOR) * SIZE_DIVISOR, math.ceil(rw / SIZE_DIVISOR) * SIZE_DIVISOR


def preprocess(images: list[np.ndarray]) -> tuple[torch.Tensor, list[tuple[int, int]], list[tuple[int, int]]]:
    """Resize, pad and normalise a batch: (B, 3, Hp, Wp), resized sizes, original sizes.

    Every image of a batch must have the same padded size (`detect` groups them so).
    """
    sizes = {padded_size(*img.shape[:2]) for img in images}
    if len(sizes) != 1:
        raise ValueError(f"preprocess: one padded size per batch, got {sorted(sizes)}")
    hp, wp = sizes.pop()
    batch = torch.full((len(images), hp, wp, 3), float(PAD_VALUE))
    resized, original = [], []
    for i, img in enumerate(images):
        h, w = img.shape[:2]
        rh, rw = resized_size(h, w)
        batch[i, :rh, :rw] = torch.from_numpy(resize(img, (rh, rw))).float()
        resized.append((rh, rw))
        original.append((h, w))
    batch = (batch - torch.tensor(MEAN)) / torch.tensor(STD)
    return batch.permute(0, 3, 1, 2).contiguous(), resized, original


def batches_by_size(images: list[np.ndarray], batch_size: int) -> list[list[int]]:
    """Indices of `images` in batches of at most `batch_size`, one padded size per batch."""
    groups: dict[tuple[int, int], list[int]] = {}
    for i, img in enumerate(images):
        groups.setdefault(padded_size(*img.shape[:2]), []).append(i)
    return [idx[j : j + batch_size] for idx in groups.values() for j in range(0, len(idx), batch_size)]


def mask_boxes(masks: torch.Tensor) -> torch.Tensor:
    """(N, H, W) bool -> (N, 4) boxes [x1, y1, x2, y2] with x2, y2 exclusive (mmdet mask2bbox)."""
    n = masks.shape[0]
    boxes = torch.zeros(n, 4)
    xs, ys = masks.any(dim=1), masks.any(dim=2)
    for i in range(n):
        x = torch.nonzero(xs[i]).flatten()
        y = torch.nonzero(ys[i]).flatten()
        if len(x) and len(y):
            boxes[i] = torch.tensor([x[0], y[0], x[-1] + 1, y[-1] + 1], dtype=torch.float32)
    return boxes


def instances(class_logits, mask_logits, resized, original, labels: dict[int, str], top_k: int = TOP_K):
    """One image's Mask2Former outputs -> {class: [Detection]} (see module docstring).

    class_logits (Q, C + 1) with the last column "no object"; mask_logits (Q, h, w) at a
    quarter of the padded input.
    """
    probs = class_logits.float().softmax(-1)[:, :-1]  # (Q, C)
    q, c = probs.shape
    scores, flat = probs.flatten().topk(min(top_k, q * c))
    query, label = flat // c, flat % c
    m = mask_logits[query].float()[None]  # (1, K, h, w)
    pad_h, pad_w = m.shape[-2] * 4, m.shape[-1] * 4
    m = F.interpolate(m, size=(pad_h, pad_w), mode="bilinear", align_corners=False)
    m = m[..., : resized[0], : resized[1]]
    m = F.interpolate(m, size=original, mode="bilinear", align_corners=False)[0].sigmoid()  # (K, H, W)
    binary = m > 0.5
    mask_score = (m * binary).flatten(1).sum(1) / (binary.flatten(1).sum(1) + 1e-6)
    det_scores = scores * mask_score
    boxes = mask_boxes(binary)
    out: dict[str, list[Detection]] = {}
    for i in range(len(det_scores)):
        name = labels.get(int(label[i]))
        if name is None:
            continue
        out.setdefault(name, []).append(Detection(boxes[i].tolist(), float(det_scores[i]), mask=binary[i].cpu().numpy()))
    for dets in out.values():
        dets.sort(key=lambda d: -d.score)
    return out


class TransformersMask2Former:
    """Mask2Former through transformers, from a local `from_pretrained` directory."""

    name = "transformers"

    def __init__(self, weights: str, object_names: list[str], device: str = "cpu", batch_size: int = 8, amp: bool = True):
        from transformers import Mask2FormerForUniversalSegmentation

        path = Path(weights)
        if not (path / "config.json").is_file():
            raise UserError(f"{path / 'config.json'}: Mask2Former weights not found (see eval/README.md, weights layout)")
        self.device = torch.device(device)
        self.model = Mask2FormerForUniversalSegmentation.from_pretrained(path).to(self.device).eval()
        self.labels = map_labels(self.model.config.id2label, object_names)
        self.batch_size = batch_size
        self.amp = amp and self.device.type == "cuda"
        self.weights = str(path)

    @torch.no_grad()
    def detect(self, images: list[np.ndarray]) -> list[dict[str, list[Detection]]]:
        out: list = [None] * len(images)
        for idx in batches_by_size(images, self.batch_size):
            pixels, resized, original = preprocess([images[i] for i in idx])
            with torch.autocast(self.device.type, enabled=self.amp):
                res = self.model(pixel_values=pixels.to(self.device, self.model.dtype))  # float64 if converted so
            for j, i in enumerate(idx):
                out[i] = instances(res.class_queries_logits[j], res.masks_queries_logits[j], resized[j], original[j], self.labels)
        return out

    def describe(self) -> dict:
        return {"backend": self.name, "weights": self.weights, "amp": self.amp, "test_scale": TEST_SCALE}


class MMDetMask2Former:
    """The official detector through mmdet (config + checkpoint), when mmdet is installed."""

    name = "mmdet"
    CONFIG = "configs/mask2former/mask2former_swin-s-p4-w7-224_lsj_8x2_50e_coco.py"

    def __init__(self, weights: str, object_names: list[str], device: str = "cpu", config: str | None = None, **_):
        try:
            import mmdet
            from mmdet.apis import inference_detector, init_detector
        except ImportError:
            raise UserError("backend 'mmdet' needs mmdet (and mmcv) installed; use backend 'transformers' otherwise") from None
        # a pip-installed mmdet keeps its configs in mmdet/.mim/, a source checkout beside the package
        here = Path(mmdet.__file__).parent
        cfg = config or str(next((p for p in (here / ".mim" / self.CONFIG, here.parent / self.CONFIG) if p.is_file()), ""))
        if not cfg:
            raise UserError(f"mmdet {mmdet.__version__} has no {self.CONFIG}; pass the config's path")
        if not Path(weights).is_file():
            raise UserError(f"{weights}: mmdet Mask2Former checkpoint not found")
        self.model = init_detector(cfg, weights, device=device)
        self._infer = inference_detector
        self.object_names = object_names
        self.weights = weights

    def detect(self, images: list[np.ndarray]) -> list[dict[str, list[Detection]]]:
        out = []
        for img in images:
            result = self._infer(self.model, img[..., ::-1].copy())  # mmdet expects BGR arrays
            bbox, segm = result if isinstance(result, tuple) else (result, None)
            dets = {}
            for k, name in enumerate(self.object_names):
                rows = [Detection(b[:4], b[4], mask=None if segm is None else segm[k][j]) for j, b in enumerate(bbox[k])]
                if rows:
                    dets[name] = sorted(rows, key=lambda d: -d.score)
            out.append(dets)
        return out

    def describe(self) -> dict:
        return {"backend": self.name, "weights": self.weights}
