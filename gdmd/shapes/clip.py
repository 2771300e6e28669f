"""The shapes world's text/reward model: a tiny open_clip CLIP, and a quality head on it.

The CLIP is an ordinary open_clip model built from a custom config (`shapes-clip.json`,
registered with `open_clip.add_model_config`) with a word-level tokenizer over the world's
closed vocabulary, so its embedding table is tiny. It is saved in open_clip's `local-dir`
layout (`open_clip_config.json` + `open_clip_model.safetensors`, plus `tokenizer.json`)
and loaded back through `open_clip.create_model("local-dir:<path>")`, the same loading
code as any open_clip checkpoint.

It serves three roles: the teacher's text encoder (token states + pooled embedding), the
study's CLIPScore-style alignment metric (100 * cos), and a differentiable reward.

`AestheticHead` is the shapes analogue of the LAION aesthetic predictor: an MLP on
L2-normalised CLIP image embeddings, trained to score clean renders high and degraded
ones low (a quality axis independent of prompt alignment).
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import open_clip
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn

from gdmd.io import UserError, atomic_dir, provenance

from .prompts import vocabulary

MODEL_NAME = "shapes-clip"
CONFIG_FILE = Path(__file__).with_name(f"{MODEL_NAME}.json")
MEAN = (0.5, 0.5, 0.5)
STD = (0.5, 0.5, 0.5)


class ShapesTokenizer:
    """Word-level tokenizer: <pad>=0, <unk>=1, <sot>=2, the words, then <eot> as the highest id.

    open_clip's text tower pools at the argmax token id, so <eot> must be the largest id.
    Callable like open_clip's tokenizers: list of strings -> (B, context_length) LongTensor.
    """

    SPECIALS = ("<pad>", "<unk>", "<sot>")

    def __init__(self, words: list[str], context_length: int = 16):
        self.words = list(words)
        self.context_length = context_length
        self.ids = {w: i + len(self.SPECIALS) for i, w in enumerate(self.words)}
        self.eot = len(self.SPECIALS) + len(self.words)
        self.vocab_size = self.eot + 1

    def encode(self, text: str) -> list[int]:
        return [self.ids.get(w, 1) for w in re.findall(r"[a-z]+", text.lower())]

    def __call__(self, texts: str | list[str], context_length: int | None = None) -> torch.Tensor:
        if isinstance(texts, str):
            texts = [texts]
        n = context_length or self.context_length
        out = torch.zeros(len(texts), n, dtype=torch.long)
        for i, t in enumerate(texts):
            ids = [2, *self.encode(t)][: n - 1] + [self.eot]
            out[i, : len(ids)] = torch.tensor(ids)
        return out

    def to_json(self) -> dict:
        return {"words": self.words, "context_length": self.context_length}

    @classmethod
    def from_json(cls, d: dict) -> ShapesTokenizer:
        return cls(d["words"], d["context_length"])

    @classmethod
    def default(cls) -> ShapesTokenizer:
        return cls(vocabulary())


def model_config() -> dict:
    return json.loads(CONFIG_FILE.read_text())


def build_clip() -> nn.Module:
    """A randomly initialised shapes CLIP from the registered custom config."""
    open_clip.add_model_config(CONFIG_FILE)
    return open_clip.create_model(MODEL_NAME, pretrained=None)


def _copy_extra(tmp: Path, extra_files: dict | None):
    for name, src in (extra_files or {}).items():
        shutil.copyfile(src, tmp / name)


def save_clip(
    model: nn.Module, tokenizer: ShapesTokenizer, out_dir: str | Path, info: dict | None = None, extra_files: dict | None = None
) -> None:
    """Write open_clip's local-dir layout (config + safetensors) plus the tokenizer, atomically."""
    cfg = {
        "model_cfg": model_config(),
        "preprocess_cfg": {"size": model_config()["vision_cfg"]["image_size"], "mean": MEAN, "std": STD},
    }
    with atomic_dir(out_dir) as tmp:
        (tmp / "open_clip_config.json").write_text(json.dumps(cfg, indent=2))
        (tmp / "tokenizer.json").write_text(json.dumps(tokenizer.to_json()))
        state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
        save_file(state, tmp / "open_clip_model.safetensors")
        (tmp / "info.json").write_text(json.dumps(provenance(**(info or {})), indent=2))
        _copy_extra(tmp, extra_files)


def load_clip(path: str | Path, device: str | torch.device = "cpu") -> tuple[nn.Module, ShapesTokenizer]:
    """Load a saved shapes CLIP (eval mode, frozen) and its tokenizer."""
    path = Path(path)
    for f in ("open_clip_config.json", "open_clip_model.safetensors", "tokenizer.json"):
        if not (path / f).is_file():
            raise UserError(f"{path / f}: shapes CLIP weights not found (run `make pretrain` or fix the path)")
    model = open_clip.create_model(f"local-dir:{path}", device=device)
    tokenizer = ShapesTokenizer.from_json(json.loads((path / "tokenizer.json").read_text()))
    model.eval().requires_grad_(False)
    return model, tokenizer


def normalize(images: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) images in [0, 1] -> the CLIP's input normalisation."""
    mean = images.new_tensor(MEAN)[None, :, None, None]
    std = images.new_tensor(STD)[None, :, None, None]
    return (images - mean) / std


def encode_images(model: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """L2-normalised image embeddings (B, E) of images in [0, 1]; differentiable."""
    return model.encode_image(normalize(images), normalize=True)


def encode_texts(model: nn.Module, tokens: torch.Tensor) -> torch.Tensor:
    """L2-normalised text embeddings (B, E)."""
    return model.encode_text(tokens, normalize=True)


def text_states(model: nn.Module, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token states (B, L, W) after the final LayerNorm, and the pooled embedding (B, E).

    Mirrors open_clip's `CLIP.encode_text` without the pooling step, as Stable Diffusion
    conditions on a CLIP text encoder's last hidden states.
    """
    x = model.token_embedding(tokens) + model.positional_embedding
    x = model.ln_final(model.transformer(x, attn_mask=model.attn_mask))  # (B, L, W)
    pooled = x[torch.arange(x.shape[0]), tokens.argmax(dim=-1)] @ model.text_projection  # (B, E)
    return x, pooled


def clip_score(model: nn.Module, tokenizer: ShapesTokenizer, images: torch.Tensor, prompts: list[str]) -> torch.Tensor:
    """CLIPScore-style alignment: 100 * cos(image, text), per image (differentiable in images)."""
    tokens = tokenizer(prompts).to(images.device)
    return 100 * (encode_images(model, images) * encode_texts(model, tokens)).sum(-1)


class AestheticHead(nn.Module):
    """MLP on L2-normalised CLIP image embeddings -> a quality score (about 0 bad .. 10 clean).

    The shapes analogue of LAION's improved aesthetic predictor (an MLP on CLIP ViT-L/14
    embeddings), sized for a 64-d embedding.
    """

    def __init__(self, embed_dim: int, hidden: tuple[int, ...] = (128, 32)):
        super().__init__()
        dims = (embed_dim, *hidden)
        layers: list[nn.Module] = []
        for a, b in zip(dims[:-1], dims[1:]):
            layers += [nn.Linear(a, b), nn.GELU()]
        layers.append(nn.Linear(dims[-1], 1))
        self.mlp = nn.Sequential(*layers)
        self.embed_dim, self.hidden = embed_dim, tuple(hidden)

    def forward(self, emb: torch.Tensor) -> torch.Tensor:
        return self.mlp(F.normalize(emb, dim=-1)).squeeze(-1)


def save_aesthetic(head: AestheticHead, out_dir: str | Path, info: dict | None = None, extra_files: dict | None = None) -> None:
    with atomic_dir(out_dir) as tmp:
        save_file({k: v.detach().contiguous() for k, v in head.state_dict().items()}, tmp / "model.safetensors")
        (tmp / "config.json").write_text(json.dumps({"embed_dim": head.embed_dim, "hidden": list(head.hidden)}))
        (tmp / "info.json").write_text(json.dumps(provenance(**(info or {})), indent=2))
        _copy_extra(tmp, extra_files)


def load_aesthetic(path: str | Path, device: str | torch.device = "cpu") -> AestheticHead:
    path = Path(path)
    for f in ("model.safetensors", "config.json"):
        if not (path / f).is_file():
            raise UserError(f"{path / f}: aesthetic head weights not found (run `make pretrain` or fix the path)")
    cfg = json.loads((path / "config.json").read_text())
    head = AestheticHead(cfg["embed_dim"], tuple(cfg["hidden"]))
    head.load_state_dict(load_file(path / "model.safetensors", device=str(device)))
    return head.to(device).eval().requires_grad_(False)
