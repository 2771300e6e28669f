"""GenEval's colour check: zero-shot CLIP over ten colours on the masked, cropped object.

As the official evaluator (djghosh13/geneval, evaluation/evaluate_images.py): the object is
composited over a grey #999 background through its mask, cropped to its box (PIL rounds
the box), preprocessed by CLIP's eval transform and classified against a zero-shot head
built from three templates per colour ("a photo of a {c} {class}", "a photo of a
{c}-colored {class}", "a photo of a {c} object"): text embeddings normalised, averaged over
templates and normalised again (clip_benchmark's zero_shot_classifier).

The backbone is open_clip `ViT-L-14-quickgelu` with OpenAI weights from a local file
(open_clip 3 builds plain GELU for `ViT-L-14`, which silently changes results). It runs in
fp32 with TF32 off, so results do not depend on the GPU generation.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from gdmd.io import UserError

from .rules import COLORS, Detection

TEMPLATES = ("a photo of a {c} {cls}", "a photo of a {c}-colored {cls}", "a photo of a {c} object")
BACKGROUND = "#999"
DEFAULT_ARCH = "ViT-L-14-quickgelu"


class ColorClassifier:
    def __init__(self, weights: str, arch: str = DEFAULT_ARCH, device: str = "cpu", batch_size: int = 16):
        import open_clip

        # extra model configs (tests register tiny architectures this way)
        for cfg in filter(None, os.environ.get("GDMD_OPEN_CLIP_CONFIGS", "").split(os.pathsep)):
            open_clip.add_model_config(cfg)
        if not Path(weights).is_file():
            raise UserError(f"{weights}: CLIP weights for the colour check not found (see eval/README.md, weights layout)")
        self.device = torch.device(device)
        self.model, _, self.transform = open_clip.create_model_and_transforms(arch, pretrained=str(weights), device=self.device)
        self.model.eval()
        self.tokenizer = open_clip.get_tokenizer(arch)
        self.batch_size = batch_size
        self.arch, self.weights = arch, str(weights)
        self._heads: dict[str, torch.Tensor] = {}

    @torch.no_grad()
    def head(self, classname: str) -> torch.Tensor:
        """(D, 10) zero-shot weights for one object class."""
        if classname not in self._heads:
            cols = []
            for c in COLORS:
                tokens = self.tokenizer([t.format(c=c, cls=classname) for t in TEMPLATES]).to(self.device)
                emb = torch.nn.functional.normalize(self.model.encode_text(tokens).float(), dim=-1).mean(0)
                cols.append(emb / emb.norm())
            self._heads[classname] = torch.stack(cols, dim=1)
        return self._heads[classname]

    def crops(self, image: np.ndarray, dets: list[Detection]) -> list[Image.Image]:
        pil = Image.fromarray(image).convert("RGB")
        blank = Image.new("RGB", pil.size, color=BACKGROUND)
        out = []
        for d in dets:
            im = (
                pil if d.mask is None else Image.composite(pil, blank, Image.fromarray(np.asarray(d.mask).astype(np.uint8) * 255))
            )
            out.append(im.crop(d.box))
        return out

    @torch.no_grad()
    def classify(self, image: np.ndarray, dets: list[Detection], classname: str) -> list[str]:
        """Colour names of `dets` (objects of `classname` in `image`)."""
        if not dets:
            return []
        tf32 = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
        try:
            x = torch.stack([self.transform(c) for c in self.crops(image, dets)]).to(self.device)
            feats = []
            for i in range(0, len(x), self.batch_size):
                feats.append(torch.nn.functional.normalize(self.model.encode_image(x[i : i + self.batch_size]).float(), dim=-1))
            logits = 100.0 * torch.cat(feats) @ self.head(classname)
        finally:
            torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = tf32
        return [COLORS[i] for i in logits.argmax(1).tolist()]

    def describe(self) -> dict:
        return {"color_model": self.arch, "color_weights": self.weights, "color_dtype": "float32"}


def assign_colors(classifier: ColorClassifier, image: np.ndarray, metadata: dict, objects: dict[str, list[Detection]]) -> None:
    """Set `.color` on the detections GenEval's colour clauses look at (the `count` most
    confident of each class with a colour clause), as the official evaluator classifies them."""
    for clause in metadata.get("include", []):
        if "color" in clause:
            dets = objects.get(clause["class"], [])[: clause["count"]]
            todo = [d for d in dets if d.color is None]
            for d, c in zip(todo, classifier.classify(image, todo, clause["class"])):
                d.color = c
