"""Backbone adapter of the shapes world: pixel space, a tiny diffusers network, the shapes CLIP.

Flow matching (rectified flow) throughout: x_t = (1 - t) x0 + t eps, v = eps - x0,
x0 = x_t - t v, with t in [0, 1] (1 = pure noise). Images live in [-1, 1] pixel space, so
`decode` is only the affine map to [0, 1].

The network is any diffusers model of a small lookup table (`ARCHS`): an SD3-architecture
transformer (`SD3Transformer2DModel`) or a convolutional `UNet2DConditionModel`, both
conditioned on the CLIP's token states (cross/joint attention) and its pooled embedding.
Like diffusers' SD3 pipeline, the network sees the timestep scaled to [0, 1000].
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import torch
from diffusers import SD3Transformer2DModel, UNet2DConditionModel
from torch import nn

from gdmd.io import UserError, atomic_dir, provenance
from gdmd.shapes import clip as shapes_clip


def _sd3_call(model, x, t, tokens, pooled):
    return model(hidden_states=x, encoder_hidden_states=tokens, pooled_projections=pooled, timestep=t * 1000).sample


def _unet_call(model, x, t, tokens, pooled):
    return model(x, t * 1000, encoder_hidden_states=tokens, class_labels=pooled).sample


# arch name -> (diffusers class, forward call, sub-folder of the saved teacher)
ARCHS = {
    "sd3": (SD3Transformer2DModel, _sd3_call, "transformer"),
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


@dataclass
class Cond:
    """Prompt condition: CLIP token states (B, L, W) and pooled embedding (B, E)."""

    tokens: torch.Tensor
    pooled: torch.Tensor

    def __len__(self):
        return self.tokens.shape[0]

    def cat(self, other: Cond) -> Cond:
        return Cond(torch.cat([self.tokens, other.tokens]), torch.cat([self.pooled, other.pooled]))

    def index(self, idx) -> Cond:
        return Cond(self.tokens[idx], self.pooled[idx])

    def repeat(self, n: int) -> Cond:
        return Cond(self.tokens.repeat_interleave(n, 0), self.pooled.repeat_interleave(n, 0))


class ShapesBackbone:
    """The adapter surface shared with the SD3 backbone (see DESIGN.md, Backbones)."""

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

    def empty_cond(self, n: int) -> Cond:
        """The unconditional condition (empty prompt), as used for classifier-free guidance."""
        if self._empty is None:
            self._empty = self.encode_prompts([""])
        return self._empty.repeat(n)

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
        """raw_velocity and the network's internal features (B, tokens, C) from the same call
        (what DMD2's GAN classifier reads, Yin et al. NeurIPS 2024, Sec. 4.3)."""
        name, where = FEATURES[self.arch]
        seen = []

        def hook(module, args, output):
            seen.append(args[0] if where == "input" else output)

        handle = model.get_submodule(name).register_forward_hook(hook)
        try:
            v = self.raw_velocity(model, x_t, t, cond)
        finally:
            handle.remove()
        f = seen[0]
        return v, (f.flatten(2).transpose(1, 2) if f.ndim == 4 else f)

    def velocity(self, model: nn.Module, x_t: torch.Tensor, t: torch.Tensor, cond: Cond, cfg_scale: float = 1.0) -> torch.Tensor:
        """Velocity with classifier-free guidance: v_u + w (v_c - v_u); w = 1 is plain conditional."""
        if cfg_scale == 1.0:
            return self.raw_velocity(model, x_t, t, cond)
        n = x_t.shape[0]
        both = self.raw_velocity(model, torch.cat([x_t, x_t]), torch.cat([t, t]), cond.cat(self.empty_cond(n)))
        v_c, v_u = both[:n], both[n:]
        return v_u + cfg_scale * (v_c - v_u)

    @staticmethod
    def x0_from_velocity(x_t: torch.Tensor, t: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        return x_t - t.view(-1, 1, 1, 1) * v

    @staticmethod
    def add_noise(x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        t = t.view(-1, 1, 1, 1)
        return (1 - t) * x0 + t * noise

    # -- pixels ----------------------------------------------------------------------
    def latent_shape(self) -> tuple[int, int, int]:
        return (3, self.resolution, self.resolution)

    def noise_like(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        return torch.randn((n, *self.latent_shape()), generator=generator).to(self.device, self.dtype)

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
