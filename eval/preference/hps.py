"""HPSv2 and HPSv2.1: open_clip ViT-H-14 fine-tuned on human preferences (tgxs002/HPSv2).

Score = 100 * cos(image, text), the number HPSv2's benchmark reports (its `score` returns
the cosine itself). v2.0 and v2.1 are different checkpoints and their scores are not
comparable.

Preprocessing as `hpsv2.score` does it (tgxs002/HPSv2 hpsv2/img_score.py builds the model
with `light_augmentation=True`, so its validation transform is hpsv2/src/open_clip/
transform.py's `ResizeMaxSize`): ToTensor, then on the float tensor resize the *longest*
side to 224 (bicubic, aspect kept, sizes rounded) and pad the short side with 0 (black,
before normalisation) split as hpsv2 splits it (left/top get the floor half), then OpenAI
mean/std. Square images are only resized. hpsv2 skips resize and pad when the longest
side is already 224; for non-square images its ViT then fails on the non-square input,
so here such images are padded (the one deviation).

The resize runs torchvision's `resize` on the tensor, whose `antialias` default changed in
torchvision 0.17 (on since; off in the releases HPSv2 was published with): `hpsv2` and
`hpsv21` antialias (what the package does on this project's torchvision), `hpsv2_noaa`
and `hpsv21_noaa` do not (HPSv2's published setting). The difference is measured in
eval/README.md. Both the uint8 and the differentiable path run this same code.
"""

from __future__ import annotations

import numpy as np
import torch
from torchvision.transforms import functional as TF

from .common import (
    OPENAI_MEAN,
    OPENAI_STD,
    autocast,
    cosine,
    load_torch_state,
    need_file,
    register_open_clip_configs,
    to_tensor01,
)

ARCH = "ViT-H-14"


def resize_max_size(x: torch.Tensor, size: int, antialias: bool) -> torch.Tensor:
    """HPSv2's ResizeMaxSize on (B, 3, H, W) floats in [0, 1]: the longest side to `size`
    (bicubic), the short side padded with 0, floor half left/top -> (B, 3, size, size)."""
    h, w = x.shape[-2:]
    scale = size / float(max(h, w))
    nh, nw = round(h * scale), round(w * scale)
    if (nh, nw) != (h, w):
        x = TF.resize(x, [nh, nw], interpolation=TF.InterpolationMode.BICUBIC, antialias=antialias)
    ph, pw = size - nh, size - nw
    if ph or pw:
        x = TF.pad(x, [pw // 2, ph // 2, pw - pw // 2, ph - ph // 2], fill=0)
    return x


class HPS:
    version = "v2.0"
    name = "hpsv2"
    weights = ("hpsv2",)
    antialias = True
    description = "HPSv2.0: 100 * cos(image, text) with open_clip ViT-H-14 + the HPSv2.0 checkpoint (antialiased resize)"

    def __init__(self, weights: dict, device="cpu"):
        import open_clip

        register_open_clip_configs()
        path = need_file(weights[self.weights[0]], f"HPS {self.version} checkpoint")
        self.device = torch.device(device)
        self.model = open_clip.create_model(ARCH, pretrained=None)
        self.model.load_state_dict(load_torch_state(path))
        self.model.to(self.device).eval().requires_grad_(False)
        self.tokenizer = open_clip.get_tokenizer(ARCH)
        self.size = self.model.visual.image_size
        self.size = self.size[0] if isinstance(self.size, (tuple, list)) else self.size

    def _score(self, pixels: torch.Tensor, prompts: list[str]) -> torch.Tensor:
        with autocast(self.device):
            img = self.model.encode_image(pixels)
            txt = self.model.encode_text(self.tokenizer(prompts).to(self.device))
        return 100 * cosine(img, txt)

    def preprocess(self, x: torch.Tensor) -> torch.Tensor:
        return TF.normalize(resize_max_size(x, self.size, self.antialias), OPENAI_MEAN, OPENAI_STD)

    def reward(self, images: torch.Tensor, prompts: list[str]) -> torch.Tensor:
        return self._score(self.preprocess(images.to(self.device)), prompts)

    @torch.no_grad()
    def score(self, images, prompts: list[str]) -> np.ndarray:
        if torch.is_tensor(images):
            return self.reward(images, prompts).cpu().numpy()
        pixels = torch.cat([self.preprocess(to_tensor01([im], self.device)) for im in images])  # sizes may differ
        return self._score(pixels, prompts).cpu().numpy()


class HPSv21(HPS):
    version = "v2.1"
    name = "hpsv21"
    weights = ("hpsv21",)
    description = "HPSv2.1: 100 * cos(image, text) with open_clip ViT-H-14 + the HPSv2.1 checkpoint (antialiased resize)"


class HPSNoAA(HPS):
    name = "hpsv2_noaa"
    antialias = False
    description = "HPSv2.0 as published (torchvision < 0.17: resize without antialiasing)"


class HPSv21NoAA(HPSv21):
    name = "hpsv21_noaa"
    antialias = False
    description = "HPSv2.1 as published (torchvision < 0.17: resize without antialiasing)"
