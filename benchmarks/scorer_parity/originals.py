"""The original side of the scorer parity check: runs inside each original package's own venv.

    <venv>/bin/python benchmarks/scorer_parity/originals.py imagereward --work .parity/work

Imports only the original package, torch, numpy and PIL (never this project). For one
scorer it builds the model through the original code with seeded random weights, saves them
in the official checkpoint format under WORK/weights/, scores WORK/images/*.png with their
prompts (WORK/prompts.json) through the original scoring code, and writes
WORK/original_<scorer>.json. The inputs (images, prompts, tokenizer files) are written by
parity.py, which then scores the same images with our scorers and compares.

Offline workarounds (no hub access here), each only replacing a download:
- ImageReward: BLIP's `init_tokenizer` loads `bert-base-uncased` from the hub; it is given
  the local vocabulary WORK/bert instead. The MLP head is re-drawn with a larger scale
  (the package initialises it with std 1/769, which makes every score the same number, so
  a comparison would say nothing).
- HPSv2: `initialize_model` would download the LAION ViT-H-14 weights that the HPS
  checkpoint then overwrites; the same model is built with `pretrained=None` and put in
  `hpsv2.img_score.model_dict`, then the package's scoring function runs unchanged with
  `cp=` our checkpoint (`hpsv2.score` calls `hpsv2.img_score.score` without `cp`, which
  downloads the official checkpoint; we call `img_score.score` with it).
  The package ships without open_clip's BPE vocabulary; parity.py copies it in.
- PickScore: the model card's code with `from_pretrained(<local dir>)`.
- CLIP / aesthetic: OpenAI's `clip` package, loading a state dict as `clip.load(path,
  jit=False)` does (`build_model`, `.float()` on CPU, `_transform`): `clip.load` itself
  fails on a state-dict file with torch >= 2.6 (its JIT attempt exhausts the file handle).
  The state dict is saved in float16 as OpenAI's checkpoints are (`build_model` converts to
  float16 and back, so a float32 file would be rounded on this side only).
"""

from __future__ import annotations

import argparse
import json
import sys
from importlib.metadata import version
from pathlib import Path

import numpy as np
import torch
from PIL import Image

SEED = 0


def inputs(work: Path):
    paths = sorted((work / "images").glob("*.png"))
    prompts = json.loads((work / "prompts.json").read_text())
    return [Image.open(p).convert("RGB") for p in paths], prompts


def write(work: Path, name: str, scores: dict, packages: list[str], **extra):
    out = {"scores": {k: [float(x) for x in v] for k, v in scores.items()},
           "versions": {p: version(p) for p in packages}, "python": sys.version.split()[0], **extra}  # fmt: skip
    (work / f"original_{name}.json").write_text(json.dumps(out, indent=1))


def imagereward(work: Path):
    import ImageReward as RM
    import ImageReward.models.BLIP.blip as blip
    from ImageReward.ImageReward import ImageReward
    from transformers import BertTokenizer

    class LocalBert(BertTokenizer):
        @classmethod
        def from_pretrained(cls, name, *args, **kwargs):  # only 'bert-base-uncased' is asked for
            return BertTokenizer.from_pretrained(str(work / "bert"), *args, **kwargs)

    blip.BertTokenizer = LocalBert
    med = work / "weights" / "imagereward" / "med_config.json"
    torch.manual_seed(SEED)
    model = ImageReward(med_config=str(med), device="cpu")
    g = torch.Generator().manual_seed(SEED + 1)
    with torch.no_grad():
        for layer in model.mlp.layers:
            if isinstance(layer, torch.nn.Linear):
                layer.weight.copy_(torch.randn(layer.weight.shape, generator=g) / layer.in_features**0.5)
                layer.bias.copy_(0.1 * torch.randn(layer.bias.shape, generator=g))
    ckpt = work / "weights" / "imagereward" / "ImageReward.pt"
    torch.save(model.state_dict(), ckpt)
    # the package's own loading and scoring
    model = RM.load(str(ckpt), device="cpu", med_config=str(med))
    images, prompts = inputs(work)
    with torch.no_grad():
        scores = [model.score(p, im) for im, p in zip(images, prompts)]
    write(work, "imagereward", {"imagereward": scores}, ["image-reward", "transformers", "timm", "fairscale", "torch"],
          parameters=sum(p.numel() for p in model.parameters()))  # fmt: skip


def hpsv2(work: Path):
    from hpsv2 import img_score
    from hpsv2.src.open_clip import create_model_and_transforms

    torch.manual_seed(SEED)
    model, _, preprocess_val = create_model_and_transforms(
        "ViT-H-14",
        None,
        precision="amp",
        device="cpu",
        jit=False,
        force_quick_gelu=False,
        force_custom_text=False,
        force_patch_dropout=False,
        force_image_size=None,
        pretrained_image=False,
        image_mean=None,
        image_std=None,
        light_augmentation=True,
        aug_cfg={},
        output_dict=True,
        with_score_predictor=False,
        with_region_predictor=False,
    )  # img_score.initialize_model's arguments, pretrained=None
    ckpt = work / "weights" / "hpsv2" / "HPS_v2_compressed.pt"
    torch.save({"state_dict": model.state_dict()}, ckpt)
    img_score.model_dict.update(model=model, preprocess_val=preprocess_val)
    images, prompts = inputs(work)
    scores = [img_score.score([im], p, cp=str(ckpt), hps_version="v2.0")[0] for im, p in zip(images, prompts)]
    # hpsv2 returns the cosine; our scorer reports 100 x cosine, as HPSv2's benchmark tables
    write(work, "hpsv2", {"hpsv2": 100 * np.asarray(scores, dtype=np.float64)}, ["hpsv2", "torch", "torchvision"],
          parameters=sum(p.numel() for p in model.parameters()))  # fmt: skip


# laion/CLIP-ViT-H-14-laion2B-s32B-b79K's config, the architecture PickScore_v1 fine-tunes
PICKSCORE_CONFIG = {
    "projection_dim": 1024,
    "text_config": {"hidden_size": 1024, "intermediate_size": 4096, "num_attention_heads": 16, "num_hidden_layers": 24,
                    "vocab_size": 49408, "max_position_embeddings": 77, "hidden_act": "gelu", "bos_token_id": 49406,
                    "eos_token_id": 49407, "pad_token_id": 1},
    "vision_config": {"hidden_size": 1280, "intermediate_size": 5120, "num_attention_heads": 16, "num_hidden_layers": 32,
                      "patch_size": 14, "image_size": 224, "hidden_act": "gelu"},
}  # fmt: skip


def pickscore(work: Path):
    from transformers import AutoModel, AutoProcessor, CLIPConfig, CLIPModel

    torch.manual_seed(SEED)
    model = CLIPModel(CLIPConfig(**PICKSCORE_CONFIG))
    out = work / "weights" / "pickscore" / "PickScore_v1"
    model.save_pretrained(out)
    # the PickScore model card's code (yuvalkirstain/PickScore_v1, "calc_probs"), per image
    processor = AutoProcessor.from_pretrained(str(work / "weights" / "pickscore" / "processor"))
    model = AutoModel.from_pretrained(str(out)).eval()
    images, prompts = inputs(work)
    scores = []
    for im, p in zip(images, prompts):
        image_inputs = processor(images=[im], padding=True, truncation=True, max_length=77, return_tensors="pt")
        text_inputs = processor(text=p, padding=True, truncation=True, max_length=77, return_tensors="pt")
        with torch.no_grad():
            image_embs = model.get_image_features(**image_inputs)
            image_embs = image_embs / torch.norm(image_embs, dim=-1, keepdim=True)
            text_embs = model.get_text_features(**text_inputs)
            text_embs = text_embs / torch.norm(text_embs, dim=-1, keepdim=True)
            scores.append((model.logit_scale.exp() * (text_embs @ image_embs.T)[0])[0].item())
    write(
        work, "pickscore", {"pickscore": scores}, ["transformers", "torch"], parameters=sum(p.numel() for p in model.parameters())
    )


class LaionMLP(torch.nn.Module):
    """improved-aesthetic-predictor's MLP (christophschuhmann/improved-aesthetic-predictor,
    simple_inference.py), without its pytorch_lightning base class (training code only)."""

    def __init__(self, input_size: int):
        super().__init__()
        self.layers = torch.nn.Sequential(
            torch.nn.Linear(input_size, 1024), torch.nn.Dropout(0.2), torch.nn.Linear(1024, 128), torch.nn.Dropout(0.2),
            torch.nn.Linear(128, 64), torch.nn.Dropout(0.1), torch.nn.Linear(64, 16), torch.nn.Linear(16, 1),
        )  # fmt: skip

    def forward(self, x):
        return self.layers(x)


def normalized(a, axis=-1, order=2):
    """simple_inference.py's L2 normalisation (numpy)."""
    l2 = np.atleast_1d(np.linalg.norm(a, order, axis))
    l2[l2 == 0] = 1
    return a / np.expand_dims(l2, axis)


def clip(work: Path):
    import clip as openai_clip
    from clip.model import CLIP

    torch.manual_seed(SEED)
    # ViT-L/14's dimensions (clip.model.build_model reads them from the state dict)
    model = CLIP(768, 224, 24, 1024, 14, 77, 49408, 768, 12, 12)
    state = {k: v.half() if v.is_floating_point() else v for k, v in model.state_dict().items()}
    ckpt = work / "weights" / "clip" / "ViT-L-14.pt"
    torch.save(state, ckpt)
    mlp = LaionMLP(768)  # torch's default Linear init, seeded
    mlp_path = work / "weights" / "clip" / "sac+logos+ava1-l14-linearMSE.pth"
    torch.save(mlp.state_dict(), mlp_path)
    # clip.load(str(ckpt), jit=False) on this file: it tries torch.jit.load first, which
    # reads the whole file, then torch.load on the same (now exhausted) handle fails with
    # EOFError on torch >= 2.6; what it does next for a state dict is these two lines
    model = openai_clip.model.build_model(torch.load(ckpt, map_location="cpu", weights_only=True)).float().eval()
    preprocess = openai_clip.clip._transform(model.visual.input_resolution)
    mlp.load_state_dict(torch.load(mlp_path, map_location="cpu", weights_only=True))
    mlp.eval()
    images, prompts = inputs(work)
    clipscore, aesthetic = [], []
    with torch.no_grad():
        for im, p in zip(images, prompts):
            img = model.encode_image(preprocess(im).unsqueeze(0))
            txt = model.encode_text(openai_clip.tokenize([p]))
            cos = torch.nn.functional.cosine_similarity(img, txt).item()
            clipscore.append(max(100 * cos, 0.0))  # torchmetrics' CLIPScore: max(100 cos, 0)
            emb = normalized(img.cpu().detach().numpy())  # simple_inference.py, from here on
            aesthetic.append(mlp(torch.from_numpy(emb).type(torch.FloatTensor)).item())
    write(work, "clip", {"clipscore": clipscore, "aesthetic": aesthetic}, ["openai-clip", "torch", "torchvision"],
          parameters=sum(p.numel() for p in model.parameters()))  # fmt: skip


ORIGINALS = {"imagereward": imagereward, "hpsv2": hpsv2, "pickscore": pickscore, "clip": clip}

if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("scorer", choices=sorted(ORIGINALS))
    p.add_argument("--work", type=Path, required=True)
    args = p.parse_args()
    torch.set_num_threads(int(__import__("os").environ.get("PARITY_THREADS", "2")))
    ORIGINALS[args.scorer](args.work)
