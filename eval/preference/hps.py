"""HPSv2 and HPSv2.1: open_clip ViT-H-14 fine-tuned on human preferences (tgxs002/HPSv2).

Score = 100 * cos(image, text), the number HPSv2's benchmark reports (its `score` returns
the cosine itself). v2.0 and v2.1 are different checkpoints and their scores are not
comparable. Preprocessing as HPSv2's validation transform (hpsv2/src/open_clip/transform.py):
ToTensor, Resize(224, bicubic) on the tensor, CenterCrop(224), OpenAI mean/std.
"""

from __future__ import annotations

import numpy as np
import torch

from .common import (
    autocast,
    clip_preprocess_images,
    clip_tensor_preprocess,
    cosine,
    load_torch_state,
    need_file,
    register_open_clip_configs,
)

ARCH = "ViT-H-14"


class HPS:
    version = "v2.0"
    name = "hpsv2"
    weights = ("hpsv2",)
    description = "HPSv2.0: 100 * cos(image, text) with open_clip ViT-H-14 + the HPSv2.0 checkpoint"

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

    def reward(self, images: torch.Tensor, prompts: list[str]) -> torch.Tensor:
        return self._score(clip_tensor_preprocess(images, self.size), prompts)

    @torch.no_grad()
    def score(self, images, prompts: list[str]) -> np.ndarray:
        return self._score(clip_preprocess_images(images, self.device, self.size), prompts).cpu().numpy()


class HPSv21(HPS):
    version = "v2.1"
    name = "hpsv21"
    weights = ("hpsv21",)
    description = "HPSv2.1: 100 * cos(image, text) with open_clip ViT-H-14 + the HPSv2.1 checkpoint"
