"""ImageReward (THUDM/ImageReward, Xu et al. 2023), ported onto transformers' BLIP.

The PyPI package (image-reward 1.5) does not import with current transformers. The model
is BLIP's ViT-L/16 image encoder, a BERT text encoder with cross-attention into the image
tokens, and an MLP head on the text [CLS] state (ImageReward/ImageReward.py):

    r = (mlp(text_encoder(tokens, encoder_hidden_states=vit(image))[:, 0]) - mean) / std

with mean 0.16717362830052426 and std 1.0333394966054072. Here the ViT is transformers'
`BlipVisionModel` (LayerNorm eps 1e-6 as BLIP's), the text encoder `BlipTextModel` with
cross-attention layers (built as a decoder, run bidirectionally), and `load_official`
maps the keys of the official `ImageReward.pt` state dict onto them. Tokens: BLIP's
bert-base-uncased tokenizer plus its [DEC] and [ENC] tokens, padded to 35. Images: PIL
Resize(224, bicubic), CenterCrop(224), CLIP mean/std.
"""

from __future__ import annotations

import json
import re

import numpy as np
import torch
from PIL import Image
from torch import nn
from torchvision import transforms as T

from gdmd.io import UserError

from .common import OPENAI_MEAN, OPENAI_STD, autocast, clip_tensor_preprocess, load_torch_state, need_dir, need_file, to_tensor01

MEAN = 0.16717362830052426
STD = 1.0333394966054072
MAX_LENGTH = 35


class RewardHead(nn.Module):
    """ImageReward's MLP: 768-1024-128-64-16-1 with dropout (no activations, as the original)."""

    def __init__(self, dim: int = 768):
        super().__init__()
        self.layers = nn.Sequential(
            nn.Linear(dim, 1024), nn.Dropout(0.2), nn.Linear(1024, 128), nn.Dropout(0.2),
            nn.Linear(128, 64), nn.Dropout(0.1), nn.Linear(64, 16), nn.Linear(16, 1),
        )  # fmt: skip

    def forward(self, x):
        return self.layers(x).squeeze(-1)


def _vision_key(k: str) -> str | None:
    """Official BLIP ViT key (after `blip.visual_encoder.`) -> BlipVisionModel key."""
    fixed = {
        "cls_token": "embeddings.class_embedding",
        "pos_embed": "embeddings.position_embedding",
        "patch_embed.proj.weight": "embeddings.patch_embedding.weight",
        "patch_embed.proj.bias": "embeddings.patch_embedding.bias",
        "norm.weight": "post_layernorm.weight",
        "norm.bias": "post_layernorm.bias",
    }
    if k in fixed:
        return fixed[k]
    m = re.fullmatch(r"blocks\.(\d+)\.(norm1|norm2|attn\.qkv|attn\.proj|mlp\.fc1|mlp\.fc2)\.(weight|bias)", k)
    if not m:
        return None
    part = {"norm1": "layer_norm1", "norm2": "layer_norm2", "attn.qkv": "self_attn.qkv", "attn.proj": "self_attn.projection",
            "mlp.fc1": "mlp.fc1", "mlp.fc2": "mlp.fc2"}[m.group(2)]  # fmt: skip
    return f"encoder.layers.{m.group(1)}.{part}.{m.group(3)}"


def split_official(state: dict) -> tuple[dict, dict, dict]:
    """The official ImageReward state dict -> (vision, text, head) state dicts in this port's names."""
    vision, text, head = {}, {}, {}
    for k, v in state.items():
        if k.startswith("blip.visual_encoder."):
            nk = _vision_key(k.removeprefix("blip.visual_encoder."))
            if nk is None:
                raise UserError(f"ImageReward checkpoint: unexpected vision key {k!r}")
            vision[nk] = v
        elif k.startswith("blip.text_encoder."):
            nk = k.removeprefix("blip.text_encoder.")
            if nk != "embeddings.position_ids":
                text[nk] = v
        elif k.startswith("mlp."):
            head[k.removeprefix("mlp.")] = v
    return vision, text, head


def configs(med_config: dict, vision_state: dict):
    """transformers configs of the vision and text towers, from BLIP's med_config and the weights.

    As the original, the cross-attention width is the vision tower's width, whatever the
    med_config's `encoder_width` says (BLIP's blip.py sets `med_config.encoder_width =
    vision_width`; its med_config.json says 768, ImageReward's ViT-L is 1024 wide), and
    the ViT's heads are its width / 64 (BLIP's ViT-B: 12, ViT-L: 16)."""
    from transformers import BlipTextConfig, BlipVisionConfig

    width = vision_state["embeddings.patch_embedding.weight"].shape[0]
    patch = vision_state["embeddings.patch_embedding.weight"].shape[-1]
    n_pos = vision_state["embeddings.position_embedding"].shape[1]
    layers = 1 + max(int(k.split(".")[2]) for k in vision_state if k.startswith("encoder.layers."))
    image_size = int(round((n_pos - 1) ** 0.5)) * patch
    vision = BlipVisionConfig(
        hidden_size=width, intermediate_size=vision_state["encoder.layers.0.mlp.fc1.weight"].shape[0],
        num_hidden_layers=layers, num_attention_heads=max(width // 64, 1),
        image_size=image_size, patch_size=patch, layer_norm_eps=1e-6, hidden_act="gelu",
    )  # fmt: skip
    text = BlipTextConfig(
        vocab_size=med_config["vocab_size"], hidden_size=med_config["hidden_size"],
        encoder_hidden_size=width, intermediate_size=med_config["intermediate_size"],
        num_hidden_layers=med_config["num_hidden_layers"], num_attention_heads=med_config["num_attention_heads"],
        max_position_embeddings=med_config["max_position_embeddings"], layer_norm_eps=med_config.get("layer_norm_eps", 1e-12),
        hidden_act=med_config.get("hidden_act", "gelu"), is_decoder=True, pad_token_id=med_config.get("pad_token_id", 0),
    )  # fmt: skip
    return vision, text


class ImageRewardModel(nn.Module):
    def __init__(self, vision_config, text_config):
        from transformers import BlipTextModel, BlipVisionModel

        super().__init__()
        self.vision = BlipVisionModel(vision_config)
        self.text = BlipTextModel(text_config, add_pooling_layer=False)
        self.head = RewardHead(text_config.hidden_size)

    def forward(self, pixel_values, input_ids, attention_mask):
        image_embeds = self.vision(pixel_values=pixel_values).last_hidden_state  # (B, 1 + N, Dv)
        image_atts = torch.ones(image_embeds.shape[:-1], dtype=torch.long, device=image_embeds.device)
        out = self.text(
            input_ids=input_ids, attention_mask=attention_mask, encoder_hidden_states=image_embeds,
            encoder_attention_mask=image_atts, is_decoder=False,
        )  # fmt: skip
        return (self.head(out.last_hidden_state[:, 0].float()) - MEAN) / STD


def load_official(checkpoint, med_config_path) -> ImageRewardModel:
    vision_sd, text_sd, head_sd = split_official(load_torch_state(checkpoint))
    med = json.loads(need_file(med_config_path, "ImageReward med_config.json").read_text())
    vc, tc = configs(med, vision_sd)
    model = ImageRewardModel(vc, tc)
    for name, module, sd in (("vision", model.vision, vision_sd), ("text", model.text, text_sd), ("mlp", model.head, head_sd)):
        missing, unexpected = module.load_state_dict(sd, strict=False)
        missing = [k for k in missing if not k.endswith("position_ids")]
        if missing or unexpected:
            raise UserError(
                f"{checkpoint}: ImageReward {name} weights do not fit (missing {missing[:3]}, unexpected {unexpected[:3]})"
            )
    return model


def blip_tokenizer(path):
    """BLIP's tokenizer: bert-base-uncased with [DEC] as bos and [ENC] added (vocab 30524)."""
    from transformers import BertTokenizer

    tok = BertTokenizer.from_pretrained(need_dir(path, "bert-base-uncased tokenizer"))
    tok.add_special_tokens({"bos_token": "[DEC]"})
    tok.add_special_tokens({"additional_special_tokens": ["[ENC]"]})
    return tok


class ImageReward:
    name = "imagereward"
    weights = ("imagereward", "imagereward_med_config", "bert_tokenizer")
    description = "ImageReward v1.0 (BLIP ViT-L + BERT cross-attention + MLP), normalised: (r - 0.1672) / 1.0333"

    def __init__(self, weights: dict, device="cpu"):
        self.device = torch.device(device)
        path = need_file(weights["imagereward"], "ImageReward checkpoint")
        self.model = load_official(path, weights["imagereward_med_config"]).to(self.device).eval().requires_grad_(False)
        self.tokenizer = blip_tokenizer(weights["bert_tokenizer"])
        size = self.model.vision.config.image_size
        self.size = size
        self.preprocess = T.Compose(
            [
                T.Resize(size, interpolation=T.InterpolationMode.BICUBIC),
                T.CenterCrop(size),
                T.ToTensor(),
                T.Normalize(OPENAI_MEAN, OPENAI_STD),
            ]
        )

    def _tokens(self, prompts):
        t = self.tokenizer(list(prompts), padding="max_length", truncation=True, max_length=MAX_LENGTH, return_tensors="pt")
        return t.input_ids.to(self.device), t.attention_mask.to(self.device)

    def reward(self, images: torch.Tensor, prompts: list[str]) -> torch.Tensor:
        ids, mask = self._tokens(prompts)
        with autocast(self.device):
            return self.model(clip_tensor_preprocess(images, self.size), ids, mask).float()

    @torch.no_grad()
    def score(self, images, prompts: list[str]) -> np.ndarray:
        if torch.is_tensor(images):
            return self.reward(to_tensor01(images, self.device), prompts).cpu().numpy()
        pixels = torch.stack([self.preprocess(Image.fromarray(im).convert("RGB")) for im in images]).to(self.device)
        ids, mask = self._tokens(prompts)
        with autocast(self.device):
            return self.model(pixels, ids, mask).float().cpu().numpy()
