"""The shapes world's preference metrics, analogues of CLIPScore and the LAION aesthetic score.

- `shapes_clipscore`: 100 * cos(image, text) with the shapes CLIP (prompt alignment);
- `shapes_aesthetic`: the aesthetic head on the shapes CLIP's image embedding (image
  quality, about 10 for a clean render and lower the more degraded it is).
Both give a differentiable `reward(images, prompts)` on (B, 3, H, W) tensors in [0, 1].
"""

from __future__ import annotations

import numpy as np
import torch

from gdmd.shapes import clip as shapes_clip


def _to_tensor(images, device) -> torch.Tensor:
    if torch.is_tensor(images):
        return images.to(device)
    arr = np.stack(images)  # (B, H, W, 3) uint8
    return torch.from_numpy(arr).permute(0, 3, 1, 2).float().div(255).to(device)


class ShapesClipScore:
    name = "shapes_clipscore"
    weights = ("clip",)
    description = "100 * cos(image, text) with the shapes CLIP"

    def __init__(self, weights: dict, device="cpu"):
        self.device = torch.device(device)
        self.model, self.tokenizer = shapes_clip.load_clip(weights["clip"], device=device)

    def reward(self, images: torch.Tensor, prompts: list[str]) -> torch.Tensor:
        return shapes_clip.clip_score(self.model, self.tokenizer, images, prompts)

    @torch.no_grad()
    def score(self, images, prompts: list[str]) -> np.ndarray:
        return self.reward(_to_tensor(images, self.device), prompts).cpu().numpy()


class ShapesAesthetic:
    name = "shapes_aesthetic"
    weights = ("clip", "aesthetic_head")
    description = "shapes aesthetic head on the shapes CLIP image embedding (0 degraded .. 10 clean)"

    def __init__(self, weights: dict, device="cpu"):
        self.device = torch.device(device)
        self.model, _ = shapes_clip.load_clip(weights["clip"], device=device)
        self.head = shapes_clip.load_aesthetic(weights["aesthetic_head"], device=device)

    def reward(self, images: torch.Tensor, prompts: list[str] | None = None) -> torch.Tensor:
        return self.head(shapes_clip.encode_images(self.model, images))

    @torch.no_grad()
    def score(self, images, prompts: list[str] | None = None) -> np.ndarray:
        return self.reward(_to_tensor(images, self.device)).cpu().numpy()
