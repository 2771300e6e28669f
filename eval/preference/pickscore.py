"""PickScore (yuvalkirstain/PickScore_v1): a CLIP ViT-H/14 fine-tuned on Pick-a-Pic.

Score = logit_scale.exp() * cos(image, text), with the model's own logit scale (about 100),
as the PickScore model card computes it. Evaluation preprocesses with the CLIPProcessor of
laion/CLIP-ViT-H-14-laion2B-s32B-b79K; the differentiable reward with the equivalent tensor
transform. transformers >= 5 returns output objects from get_*_features: the projected
embedding is their `pooler_output`.
"""

from __future__ import annotations

import numpy as np
import torch

from .common import autocast, clip_tensor_preprocess, cosine, need_dir


def crop_height(crop) -> int:
    """The processor's crop size as an int: written as an int in old-format processor
    configs (laion's CLIP-ViT-H-14, PickScore's processor, is one), as a dict in new ones,
    and as a SizeDict object by transformers >= 5 whatever the file says."""
    if isinstance(crop, int):
        return crop
    return crop["height"] if isinstance(crop, dict) else crop.height


def features(out) -> torch.Tensor:
    return out if torch.is_tensor(out) else out.pooler_output


class PickScore:
    name = "pickscore"
    weights = ("pickscore", "pickscore_processor")
    description = "PickScore: logit_scale.exp() * cos(image, text) with PickScore_v1"

    def __init__(self, weights: dict, device="cpu"):
        from transformers import AutoProcessor, CLIPModel

        self.device = torch.device(device)
        self.processor = AutoProcessor.from_pretrained(need_dir(weights["pickscore_processor"], "PickScore processor"))
        self.model = CLIPModel.from_pretrained(need_dir(weights["pickscore"], "PickScore model")).to(self.device)
        self.model.eval().requires_grad_(False)
        ip = self.processor.image_processor
        self.size = crop_height(ip.crop_size)
        self.mean, self.std = tuple(ip.image_mean), tuple(ip.image_std)

    def _text(self, prompts):
        t = self.processor(text=prompts, padding=True, truncation=True, max_length=77, return_tensors="pt").to(self.device)
        return features(self.model.get_text_features(**t))

    def _combine(self, img, txt):
        return self.model.logit_scale.exp().float() * cosine(img, txt)

    def reward(self, images: torch.Tensor, prompts: list[str]) -> torch.Tensor:
        with autocast(self.device):
            pixels = clip_tensor_preprocess(images, self.size, self.mean, self.std)
            return self._combine(features(self.model.get_image_features(pixel_values=pixels)), self._text(prompts))

    @torch.no_grad()
    def score(self, images, prompts: list[str]) -> np.ndarray:
        if torch.is_tensor(images):
            return self.reward(images.to(self.device), prompts).cpu().numpy()
        pixels = self.processor(images=list(images), return_tensors="pt")["pixel_values"].to(self.device)
        with autocast(self.device):
            img = features(self.model.get_image_features(pixel_values=pixels))
            return self._combine(img, self._text(prompts)).cpu().numpy()
