"""Backbone adapter of the shapes world: pixel space, a tiny diffusers network, the shapes CLIP.

Flow matching as every backbone (gdmd.backbones.flow), with no time shift. Images live in
[-1, 1] pixel space, so `decode` is only the affine map to [0, 1].

The network is any diffusers model of a small lookup table (`ARCHS`): an SD3-architecture
transformer (`SD3Transformer2DModel`) or a convolutional `UNet2DConditionModel`, both
conditioned on the CLIP's token states (cross/joint attention) and its pooled embedding.
Like diffusers' SD3 pipeline, the network sees the timestep scaled to [0, 1000].
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch
from diffusers import SD3Transformer2DModel, UNet2DConditionModel
from torch import nn

from gdmd.io import UserError, atomic_dir, provenance
from gdmd.shapes import clip as shapes_clip

from .flow import Cond, FlowBackbone, sd3_call


def _unet_call(model, x, t, tokens, pooled):
    return model(x, t * 1000, encoder_hidden_states=tokens, class_labels=pooled).sample


# arch name -> (diffusers class, forward call, sub-folder of the saved teacher)
ARCHS = {
    "sd3": (SD3Transformer2DModel, sd3_call, "transformer"),
    "unet": (UNet2DConditionModel, _unet_call, "unet"),
}
# arch name -> (sub-module whose activations are the network's features, "input" or "output"):
# the SD3 transformer's last hidden tokens (input of its output norm), the UNet's bottleneck
FEATURES = {"sd3": ("norm_out", "input"), "unet": ("mid_block", "output")}


def feature_width(model: nn.Module, arch: str) -> int:
    """Channels of the features `ShapesBackbone.velocity_and_features` returns."""
    if arch == "sd3":
        return model.config.num_attention_heads * model.config.attention_head_dim
    return model.config.block_out_channels[-1]


def build_network(arch: str, model_cfg: dict) -> nn.Module:
    if arch not in ARCHS:
        raise UserError(f"unknown network arch {arch!r}; known: {', '.join(ARCHS)}")
    cls = ARCHS[arch][0]
    return cls.from_config(model_cfg)


def file_digest(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


class ShapesBackbone(FlowBackbone):
    """The shapes world's adapter (the surface of DESIGN.md, Backbones; shared code in `FlowBackbone`)."""

    name = "shapes"

    def __init__(self, clip_dir: str | Path, arch: str = "sd3", resolution: int = 32, device="cpu", dtype=torch.float32):
        if arch not in ARCHS:
            raise UserError(f"unknown network arch {arch!r}; known: {', '.join(ARCHS)}")
        self.clip_dir = Path(clip_dir)
        self.clip, self.tokenizer = shapes_clip.load_clip(clip_dir, device=device)
        self.arch = arch
        self.resolution = resolution
        self.device = torch.device(device)
        self.dtype = dtype
        self._empty: Cond | None = None

    # -- prompts ---------------------------------------------------------------------
    @torch.no_grad()
    def encode_prompts(self, prompts: list[str]) -> Cond:
        tokens = self.tokenizer(list(prompts)).to(self.device)
        states, pooled = shapes_clip.text_states(self.clip, tokens)
        return Cond(states.to(self.dtype), pooled.to(self.dtype))

    # -- network ---------------------------------------------------------------------
    def build(self, model_cfg: dict) -> nn.Module:
        return build_network(self.arch, model_cfg).to(self.device, self.dtype)

    def raw_velocity(self, model: nn.Module, x_t: torch.Tensor, t: torch.Tensor, cond: Cond) -> torch.Tensor:
        """The network's velocity prediction, no guidance. x_t (B, 3, H, W), t (B,) in [0, 1]."""
        call = ARCHS[self.arch][1]
        return call(model, x_t.to(self.dtype), t.to(self.dtype), cond.tokens, cond.pooled)

    def feature_width(self, model: nn.Module) -> int:
        return feature_width(model, self.arch)

    def velocity_and_features(self, model: nn.Module, x_t: torch.Tensor, t: torch.Tensor, cond: Cond):
        """raw_velocity and the network's features (see `FlowBackbone`): the SD3 transformer's
        last hidden tokens, the UNet's bottleneck."""
        return super().velocity_and_features(model, x_t, t, cond, where=FEATURES[self.arch])

    # -- pixels ----------------------------------------------------------------------
    def latent_shape(self) -> tuple[int, int, int]:
        return (3, self.resolution, self.resolution)

    @staticmethod
    def encode_images(images: torch.Tensor) -> torch.Tensor:
        """Images in [0, 1] -> model space [-1, 1]."""
        return images * 2 - 1

    @staticmethod
    def decode(latents: torch.Tensor) -> torch.Tensor:
        """Model space -> images in [0, 1] (differentiable; clamped)."""
        return ((latents.float() + 1) / 2).clamp(0, 1)


# ---------------------------------------------------------------------------------------
# Saved teachers: `<dir>/backbone.json` + the diffusers network in `<dir>/<subfolder>/`.


def save_teacher(model: nn.Module, backbone: ShapesBackbone, out_dir: str | Path, info: dict, extra_files=None) -> None:
    import shutil

    sub = ARCHS[backbone.arch][2]
    meta = {
        "backbone": "shapes",
        "arch": backbone.arch,
        "resolution": backbone.resolution,
        "clip_sha256": file_digest(backbone.clip_dir / "open_clip_model.safetensors"),
    }
    with atomic_dir(out_dir) as tmp:
        model.save_pretrained(tmp / sub, safe_serialization=True)
        # a network loaded with from_pretrained records where from; the saved asset must not
        config = json.loads((tmp / sub / "config.json").read_text())
        config.pop("_name_or_path", None)
        (tmp / sub / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
        (tmp / "backbone.json").write_text(json.dumps(meta, indent=2))
        (tmp / "info.json").write_text(json.dumps(provenance(**info), indent=2))
        for name, src in (extra_files or {}).items():
            shutil.copyfile(src, tmp / name)


def load_teacher(
    teacher_dir: str | Path, clip_dir: str | Path, device="cpu", dtype=torch.float32
) -> tuple[ShapesBackbone, nn.Module]:
    """Load a saved shapes teacher (frozen) with `from_pretrained`, and its backbone adapter."""
    teacher_dir = Path(teacher_dir)
    meta_path = teacher_dir / "backbone.json"
    if not meta_path.is_file():
        raise UserError(f"{meta_path}: teacher weights not found (run `make pretrain` or fix the path)")
    meta = json.loads(meta_path.read_text())
    backbone = ShapesBackbone(clip_dir, arch=meta["arch"], resolution=meta["resolution"], device=device, dtype=dtype)
    digest = file_digest(Path(clip_dir) / "open_clip_model.safetensors")
    if digest != meta["clip_sha256"]:
        raise UserError(f"{clip_dir}: this CLIP is not the one the teacher in {teacher_dir} was trained with (sha256 differs)")
    cls, _, sub = ARCHS[meta["arch"]]
    model = cls.from_pretrained(teacher_dir / sub, torch_dtype=dtype).to(device)
    return backbone, model.eval().requires_grad_(False)
