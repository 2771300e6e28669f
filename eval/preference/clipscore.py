"""CLIPScore and the LAION aesthetic score, both on open_clip ViT-L-14-quickgelu (OpenAI weights).

- CLIPScore (Hessel et al. 2021; torchmetrics' convention): max(100 * cos(image, text), 0).
  The backbone is named in the output: ViT-L-14-quickgelu, OpenAI weights (open_clip 3
  builds plain GELU for `ViT-L-14`, which silently changes the numbers).
- Aesthetic (LAION improved-aesthetic-predictor, sac+logos+ava1-l14-linearMSE): an MLP
  768-1024-128-64-16-1 on the L2-normalised image embedding.
Evaluation uses open_clip's own eval transform (PIL resize 224 bicubic, centre crop); the
differentiable reward the equivalent tensor transform.
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image
from torch import nn

from .common import autocast, clip_preprocess_images, cosine, load_torch_state, need_file, register_open_clip_configs

ARCH = "ViT-L-14-quickgelu"


class _OpenAIClip:
    def __init__(self, weights: dict, device):
        import open_clip

        register_open_clip_configs()
        path = need_file(weights["clip_l14"], "CLIP ViT-L-14 OpenAI weights")
        self.device = torch.device(device)
        self.model, _, self.preprocess = open_clip.create_model_and_transforms(ARCH, pretrained=str(path), device=self.device)
        self.model.eval().requires_grad_(False)
        self.tokenizer = open_clip.get_tokenizer(ARCH)
        size = self.model.visual.image_size
        self.size = size[0] if isinstance(size, (tuple, list)) else size

    def image_features(self, images, differentiable: bool) -> torch.Tensor:
        if differentiable or torch.is_tensor(images):
            x = clip_preprocess_images(images, self.device, self.size)
        else:
            x = torch.stack([self.preprocess(Image.fromarray(im)) for im in images]).to(self.device)
        with autocast(self.device):
            return self.model.encode_image(x)

    def text_features(self, prompts) -> torch.Tensor:
        with autocast(self.device):
            return self.model.encode_text(self.tokenizer(prompts).to(self.device))


class CLIPScore(_OpenAIClip):
    name = "clipscore"
    weights = ("clip_l14",)
    description = "CLIPScore: max(100 * cos(image, text), 0) with open_clip ViT-L-14-quickgelu, OpenAI weights"

    def __init__(self, weights: dict, device="cpu"):
        super().__init__(weights, device)

    def reward(self, images: torch.Tensor, prompts: list[str]) -> torch.Tensor:
        """100 * cos, not clipped at 0: the clip is an evaluation convention and would cut
        the gradient of every sample below it."""
        return 100 * cosine(self.image_features(images, True), self.text_features(prompts))

    @torch.no_grad()
    def score(self, images, prompts: list[str]) -> np.ndarray:
        return (100 * cosine(self.image_features(images, False), self.text_features(prompts))).clamp(min=0).cpu().numpy()


class AestheticMLP(nn.Module):
    """LAION's predictor head: 768-1024-128-64-16-1 (dropout between the first layers)."""

    def __init__(self, dim: int = 768):
        super().__init__()
        self.layers = nn.Sequential(
            nn.Linear(dim, 1024), nn.Dropout(0.2), nn.Linear(1024, 128), nn.Dropout(0.2),
            nn.Linear(128, 64), nn.Dropout(0.1), nn.Linear(64, 16), nn.Linear(16, 1),
        )  # fmt: skip

    def forward(self, emb: torch.Tensor) -> torch.Tensor:
        return self.layers(emb).squeeze(-1)


class Aesthetic(_OpenAIClip):
    name = "aesthetic"
    weights = ("clip_l14", "aesthetic_mlp")
    description = "LAION aesthetic predictor v2 (MLP on L2-normalised CLIP ViT-L/14 image embeddings), about 1-10"

    def __init__(self, weights: dict, device="cpu"):
        super().__init__(weights, device)
        state = load_torch_state(need_file(weights["aesthetic_mlp"], "LAION aesthetic MLP"))
        self.head = AestheticMLP(state["layers.0.weight"].shape[1])
        self.head.load_state_dict(state)
        self.head.to(self.device).eval().requires_grad_(False)

    def _head(self, feats):
        return self.head(torch.nn.functional.normalize(feats.float(), dim=-1))

    def reward(self, images: torch.Tensor, prompts: list[str] | None = None) -> torch.Tensor:
        return self._head(self.image_features(images, True))

    @torch.no_grad()
    def score(self, images, prompts: list[str] | None = None) -> np.ndarray:
        return self._head(self.image_features(images, False)).cpu().numpy()
