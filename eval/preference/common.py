"""Shared pieces of the preference scorers: image conversion, CLIP preprocessing, safe loading."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torchvision.transforms import functional as TF

from gdmd.io import UserError

OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)


def register_open_clip_configs() -> None:
    """Extra open_clip model configs named in GDMD_OPEN_CLIP_CONFIGS (os.pathsep-separated
    files or directories). Tests use it to give the real architecture names tiny configs."""
    import open_clip

    for cfg in filter(None, os.environ.get("GDMD_OPEN_CLIP_CONFIGS", "").split(os.pathsep)):
        open_clip.add_model_config(cfg)


def to_tensor01(images, device) -> torch.Tensor:
    """A list of (H, W, 3) uint8 arrays, or a (B, 3, H, W) tensor in [0, 1] -> tensor in [0, 1]."""
    if torch.is_tensor(images):
        return images.to(device)
    return torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float().div(255).to(device)


def clip_tensor_preprocess(x: torch.Tensor, size: int = 224, mean=OPENAI_MEAN, std=OPENAI_STD) -> torch.Tensor:
    """Differentiable CLIP preprocessing of (B, 3, H, W) images in [0, 1]: resize the shorter
    side to `size` (bicubic, antialiased, as torchvision's Resize on tensors), centre crop,
    normalise."""
    x = TF.resize(x, size, interpolation=TF.InterpolationMode.BICUBIC, antialias=True)
    x = TF.center_crop(x, [size, size])
    return TF.normalize(x, mean, std)


def clip_preprocess_images(images, device, size: int = 224, mean=OPENAI_MEAN, std=OPENAI_STD) -> torch.Tensor:
    """`clip_tensor_preprocess` image by image (images of any sizes) -> (B, 3, size, size)."""
    if torch.is_tensor(images):
        return clip_tensor_preprocess(images.to(device), size, mean, std)
    return torch.cat([clip_tensor_preprocess(to_tensor01([im], device), size, mean, std) for im in images])


def cosine(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return (F.normalize(a.float(), dim=-1) * F.normalize(b.float(), dim=-1)).sum(-1)


def need_file(path, what: str) -> Path:
    p = Path(path)
    if not p.is_file():
        raise UserError(f"{p}: {what} not found (see eval/README.md, weights layout)")
    return p


def need_dir(path, what: str) -> Path:
    p = Path(path)
    if not p.is_dir() or not any(p.iterdir()):
        raise UserError(f"{p}: {what} not found (see eval/README.md, weights layout)")
    return p


def load_torch_state(path) -> dict:
    """A state dict from a torch checkpoint, unpickled with weights_only=True (no code runs)."""
    obj = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(obj, dict) and "state_dict" in obj:
        obj = obj["state_dict"]
    if isinstance(obj, dict) and "model" in obj and isinstance(obj["model"], dict):
        obj = obj["model"]
    return {k.removeprefix("module."): v for k, v in obj.items()}


def autocast(device: torch.device):
    return torch.autocast(device.type, enabled=device.type == "cuda")
