"""Backbone adapter of Stable Diffusion 3 / 3.5 (diffusers' StableDiffusion3 components).

A teacher is a diffusers pipeline directory (`StableDiffusion3Pipeline.save_pretrained`'s
layout, as `python -m gdmd.weights` downloads it): `transformer/`, `vae/`, `scheduler/`,
`text_encoder{,_2,_3}/`, `tokenizer{,_2,_3}/`. Every component is loaded with
`from_pretrained` from that local directory; nothing here downloads.

- Latent space: the VAE's latents with its scaling and shift factors, z = (E(x) - shift)
  * scale and back (as diffusers' pipeline decodes). `decode` is differentiable (reward
  backprop); callers that only score (IGS, NFT) call it under `torch.no_grad()`.
- Prompts: the three text encoders through diffusers' own `encode_prompt` (CLIP-L and
  CLIP-G pooled and token states, T5-XXL token states, concatenated as the pipeline does).
  Embeddings are cached on disk (`prompt_cache`): one safetensors file per prompt, keyed by
  the prompt and a fingerprint of the encoders, so training runs the encoders only for a
  prompt it has never seen, and the encoders are loaded only when such a prompt comes.
- Time: flow matching as every backbone (gdmd.backbones.flow), with the model's time shift
  (the scheduler's `shift`: 3.0 for SD3-M and SD3.5) on the teacher's Euler grid and on the
  few-step generator's timesteps; the network sees t * 1000 as in the pipeline.
"""

from __future__ import annotations

import hashlib
import json
from collections import OrderedDict
from pathlib import Path

import torch
from torch import nn

from gdmd.io import UserError, atomic_path

from .flow import Cond, FlowBackbone, sd3_call

TEXT_PARTS = ("text_encoder", "text_encoder_2", "text_encoder_3", "tokenizer", "tokenizer_2", "tokenizer_3")
PARTS = ("transformer", "vae", "scheduler", *TEXT_PARTS)


def check_pipeline_dir(root: Path, parts=PARTS) -> None:
    """A one-line error naming the first missing piece of a diffusers SD3 directory."""
    if not (root / "model_index.json").is_file():
        raise UserError(f"{root}: not a diffusers SD3 pipeline (no model_index.json); `python -m gdmd.weights` downloads one")
    for part in parts:
        if not (root / part).is_dir():
            raise UserError(f"{root}: no {part}/ (an incomplete download? rerun `python -m gdmd.weights`)")


def encoders_fingerprint(root: Path, max_sequence_length: int) -> str:
    """sha256 over the text encoders' and tokenizers' JSON files, their weight files' names
    and sizes, and the T5 sequence length: what decides a prompt's embedding."""
    h = hashlib.sha256(f"max_sequence_length={max_sequence_length}".encode())
    for part in TEXT_PARTS:
        for f in sorted((root / part).iterdir()):
            h.update(f"{part}/{f.name}".encode())
            h.update(f.read_bytes() if f.suffix in (".json", ".txt") else str(f.stat().st_size).encode())
    return h.hexdigest()


class PromptCache:
    """Prompt embeddings on disk: `<dir>/<fingerprint[:16]>/<sha256(prompt)[:2]>/<sha256>.safetensors`
    (token states and pooled embedding, in the backbone's dtype), written atomically; plus
    the last `memory` prompts in memory."""

    def __init__(self, directory: str | Path | None, fingerprint: str, memory: int = 4096):
        self.dir = None if directory is None else Path(directory) / fingerprint[:16]
        self.memory: OrderedDict[str, tuple[torch.Tensor, torch.Tensor]] = OrderedDict()
        self.size = memory

    def _file(self, prompt: str) -> Path:
        key = hashlib.sha256(prompt.encode()).hexdigest()
        return self.dir / key[:2] / f"{key}.safetensors"

    def get(self, prompt: str):
        if prompt in self.memory:
            self.memory.move_to_end(prompt)
            return self.memory[prompt]
        if self.dir is not None and self._file(prompt).is_file():
            from safetensors.torch import load_file

            t = load_file(self._file(prompt))
            return self._remember(prompt, (t["tokens"], t["pooled"]))
        return None

    def put(self, prompt: str, tokens: torch.Tensor, pooled: torch.Tensor):
        entry = (tokens.detach().cpu().contiguous(), pooled.detach().cpu().contiguous())
        if self.dir is not None:
            from safetensors.torch import save_file

            path = self._file(prompt)
            path.parent.mkdir(parents=True, exist_ok=True)
            with atomic_path(path, ".safetensors") as tmp:
                save_file({"tokens": entry[0], "pooled": entry[1]}, tmp, metadata={"prompt": prompt})
        return self._remember(prompt, entry)

    def _remember(self, prompt, entry):
        self.memory[prompt] = entry
        while len(self.memory) > self.size:
            self.memory.popitem(last=False)
        return entry


class SD3Backbone(FlowBackbone):
    """SD3-family adapter (the surface of DESIGN.md, Backbones; shared code in `FlowBackbone`)."""

    name = "sd3"

    def __init__(
        self,
        root: str | Path,
        text_root: str | Path | None = None,
        device="cpu",
        dtype=torch.float32,
        resolution: int | None = None,
        shift: float | None = None,
        max_sequence_length: int = 256,
        prompt_cache: str | Path | None = None,
    ):
        from diffusers import AutoencoderKL

        self.root = Path(root)
        self.text_root = Path(text_root or root)
        check_pipeline_dir(self.root, ("transformer", "vae", "scheduler"))
        check_pipeline_dir(self.text_root, TEXT_PARTS)
        self.device = torch.device(device)
        self.dtype = dtype
        self.vae = AutoencoderKL.from_pretrained(self.root, subfolder="vae", torch_dtype=dtype)
        self.vae.to(self.device).eval().requires_grad_(False)
        scheduler = json.loads((self.root / "scheduler" / "scheduler_config.json").read_text())
        self.shift = float(scheduler.get("shift", 1.0) if shift is None else shift)
        transformer = json.loads((self.root / "transformer" / "config.json").read_text())
        self.vae_factor = 2 ** (len(self.vae.config.block_out_channels) - 1)
        self.latent_channels = transformer["in_channels"]
        self.resolution = int(resolution or transformer["sample_size"] * self.vae_factor)
        if self.resolution % (self.vae_factor * transformer["patch_size"]):
            raise UserError(
                f"backbone_options.resolution: must be a multiple of {self.vae_factor * transformer['patch_size']}, got {self.resolution}"
            )
        self.max_sequence_length = max_sequence_length
        self.cache = PromptCache(prompt_cache, encoders_fingerprint(self.text_root, max_sequence_length))
        self._text = None  # the text encoders, loaded on the first prompt the cache lacks
        self._grids: dict[int, torch.Tensor] = {}  # sampling_times by step count
        self._empty: Cond | None = None

    # -- prompts ---------------------------------------------------------------------
    def text_pipeline(self):
        """diffusers' SD3 pipeline with only its text encoders (transformer and VAE absent)."""
        if self._text is None:
            from diffusers import StableDiffusion3Pipeline

            pipe = StableDiffusion3Pipeline.from_pretrained(self.text_root, transformer=None, vae=None, torch_dtype=self.dtype)
            self._text = pipe.to(self.device)
        return self._text

    @torch.no_grad()
    def encode_prompts(self, prompts: list[str]) -> Cond:
        prompts = list(prompts)
        missing = list(dict.fromkeys(p for p in prompts if self.cache.get(p) is None))
        if missing:
            tokens, _, pooled, _ = self.text_pipeline().encode_prompt(
                prompt=missing, prompt_2=None, prompt_3=None, device=self.device, num_images_per_prompt=1,
                do_classifier_free_guidance=False, max_sequence_length=self.max_sequence_length,
            )  # fmt: skip
            for p, tok, pool in zip(missing, tokens.to(self.dtype), pooled.to(self.dtype)):
                self.cache.put(p, tok, pool)
        entries = [self.cache.get(p) for p in prompts]
        tokens = torch.stack([e[0] for e in entries]).to(self.device, self.dtype)
        return Cond(tokens, torch.stack([e[1] for e in entries]).to(self.device, self.dtype))

    # -- network ---------------------------------------------------------------------
    def raw_velocity(self, model: nn.Module, x_t: torch.Tensor, t: torch.Tensor, cond: Cond) -> torch.Tensor:
        """The transformer's velocity prediction, no guidance. x_t (B, C, h, w) latents, t (B,)."""
        return sd3_call(model, x_t.to(self.dtype), t.to(self.dtype), cond.tokens, cond.pooled)

    @staticmethod
    def feature_width(model: nn.Module) -> int:
        return model.config.num_attention_heads * model.config.attention_head_dim

    def sampling_times(self, steps: int) -> torch.Tensor:
        """The teacher's Euler grid: the model's own scheduler's sigmas for `steps` steps (and
        the final 0), so the teacher baseline samples as diffusers' StableDiffusion3Pipeline
        does (its grid ends at the scheduler's sigma_min, not at 1/steps)."""
        from diffusers import FlowMatchEulerDiscreteScheduler

        if steps not in self._grids:
            scheduler = FlowMatchEulerDiscreteScheduler.from_pretrained(self.root, subfolder="scheduler", shift=self.shift)
            scheduler.set_timesteps(steps)
            self._grids[steps] = scheduler.sigmas.float()
        return self._grids[steps]

    # -- latents ---------------------------------------------------------------------
    def latent_shape(self) -> tuple[int, int, int]:
        side = self.resolution // self.vae_factor
        return (self.latent_channels, side, side)

    def encode_images(self, images: torch.Tensor) -> torch.Tensor:
        """Images in [0, 1] (B, 3, H, W) -> latents (the posterior's mode, scaled and shifted)."""
        cfg = self.vae.config
        z = self.vae.encode((images * 2 - 1).to(self.device, self.vae.dtype)).latent_dist.mode()
        return ((z - cfg.shift_factor) * cfg.scaling_factor).to(self.dtype)

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Latents -> images in [0, 1] (differentiable; clamped), as diffusers' pipeline decodes."""
        cfg = self.vae.config
        z = latents.to(self.vae.dtype) / cfg.scaling_factor + cfg.shift_factor
        return ((self.vae.decode(z).sample.float() + 1) / 2).clamp(0, 1)


def load_teacher(
    teacher_dir: str | Path, text_encoder: str | Path, device="cpu", dtype=torch.float32, **options
) -> tuple[SD3Backbone, nn.Module]:
    """The SD3 adapter and the frozen teacher transformer, from a local pipeline directory
    (`text_encoder`: the directory with the text encoders, usually the same)."""
    from diffusers import SD3Transformer2DModel

    backbone = SD3Backbone(teacher_dir, text_encoder, device=device, dtype=dtype, **options)
    model = SD3Transformer2DModel.from_pretrained(Path(teacher_dir), subfolder="transformer", torch_dtype=dtype)
    return backbone, model.to(device).eval().requires_grad_(False)
