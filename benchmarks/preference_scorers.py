"""Images per second of each preference scorer, full-size random weights, batch 1 vs batch 16.

    python benchmarks/preference_scorers.py --out benchmarks/results/preference_cpu.json

Each scorer's real architecture (HPSv2/2.1: open_clip ViT-H-14; PickScore: CLIP ViT-H/14;
ImageReward: BLIP ViT-L/16 + BERT-base with cross-attention; CLIPScore and aesthetic:
ViT-L-14-quickgelu) is built with random weights, saved in the official checkpoint format
and loaded back through the scorer, then `score` is timed on 512 x 512 images after a
warm-up, at batch 1 and batch 16 (AMP on GPU).
"""

from __future__ import annotations

import argparse
import json
import math
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from eval.preference import get_scorer
from eval.preference.offline import char_clip_tokenizer
from gdmd.io import atomic_write_json, provenance


def build_weights(root: Path) -> dict:
    import open_clip
    from transformers import BertConfig, CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor

    torch.manual_seed(0)
    w = {}
    h14 = open_clip.create_model("ViT-H-14")
    torch.save({"state_dict": h14.state_dict()}, root / "hps.pt")
    w["hpsv2"] = w["hpsv21"] = str(root / "hps.pt")
    del h14
    l14 = open_clip.create_model("ViT-L-14-quickgelu")
    torch.save(l14.state_dict(), root / "clip_l14.pt")
    w["clip_l14"] = str(root / "clip_l14.pt")
    mlp = {}
    for i, (a, b) in zip([0, 2, 4, 6, 7], [(768, 1024), (1024, 128), (128, 64), (64, 16), (16, 1)]):
        mlp[f"layers.{i}.weight"] = torch.randn(b, a) / math.sqrt(a)
        mlp[f"layers.{i}.bias"] = torch.zeros(b)
    torch.save(mlp, root / "aesthetic.pth")
    w["aesthetic_mlp"] = str(root / "aesthetic.pth")
    # PickScore: CLIP ViT-H/14 in transformers, with a character-level stand-in tokenizer
    tok, _ = char_clip_tokenizer(root / "tok")
    cfg = CLIPConfig(
        text_config={"vocab_size": 49408, "hidden_size": 1024, "intermediate_size": 4096, "num_hidden_layers": 24,
                     "num_attention_heads": 16, "max_position_embeddings": 77, "bos_token_id": 0, "eos_token_id": 1},
        vision_config={"hidden_size": 1280, "intermediate_size": 5120, "num_hidden_layers": 32, "num_attention_heads": 16,
                       "image_size": 224, "patch_size": 14},
        projection_dim=1024,
    )  # fmt: skip
    CLIPModel(cfg).save_pretrained(root / "pickscore")
    CLIPProcessor(image_processor=CLIPImageProcessor(), tokenizer=tok).save_pretrained(root / "processor")
    w["pickscore"], w["pickscore_processor"] = str(root / "pickscore"), str(root / "processor")
    w.update(imagereward_full(root, BertConfig))
    return w


def imagereward_full(root: Path, BertConfig) -> dict:
    """An official-format ImageReward.pt of the real sizes (ViT-L/16 224, BERT-base, 30524 tokens)."""
    from eval.preference.imagereward import ImageRewardModel, configs

    med = {"vocab_size": 30524, "hidden_size": 768, "encoder_width": 1024, "intermediate_size": 3072, "num_hidden_layers": 12,
           "num_attention_heads": 12, "max_position_embeddings": 512, "layer_norm_eps": 1e-12, "hidden_act": "gelu"}  # fmt: skip
    (root / "med_config.json").write_text(json.dumps(med))
    vision_state = {"embeddings.patch_embedding.weight": torch.zeros(1024, 3, 16, 16),
                    "embeddings.position_embedding": torch.zeros(1, 197, 1024),
                    "encoder.layers.23.mlp.fc1.weight": torch.zeros(4096, 1024),
                    "encoder.layers.0.mlp.fc1.weight": torch.zeros(4096, 1024)}  # fmt: skip
    vc, tc = configs(med, vision_state)
    model = ImageRewardModel(vc, tc)
    inv_vision = {"embeddings.class_embedding": "cls_token", "embeddings.position_embedding": "pos_embed",
                  "embeddings.patch_embedding.weight": "patch_embed.proj.weight", "embeddings.patch_embedding.bias": "patch_embed.proj.bias",
                  "post_layernorm.weight": "norm.weight", "post_layernorm.bias": "norm.bias"}  # fmt: skip
    parts = {"layer_norm1": "norm1", "layer_norm2": "norm2", "self_attn.qkv": "attn.qkv", "self_attn.projection": "attn.proj",
             "mlp.fc1": "mlp.fc1", "mlp.fc2": "mlp.fc2"}  # fmt: skip
    sd = {}
    for k, v in model.vision.state_dict().items():
        if k in inv_vision:
            sd["blip.visual_encoder." + inv_vision[k]] = v
        else:
            _, _, i, *rest = k.split(".")
            name = ".".join(rest[:-1])
            sd[f"blip.visual_encoder.blocks.{i}.{parts[name]}.{rest[-1]}"] = v
    sd.update({"blip.text_encoder." + k: v for k, v in model.text.state_dict().items()})
    sd.update({"mlp." + k: v for k, v in model.head.state_dict().items()})
    torch.save(sd, root / "ImageReward.pt")
    bert = root / "bert"
    bert.mkdir()
    (bert / "vocab.txt").write_text(
        "\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + [f"w{i}" for i in range(30517)]) + "\n"
    )
    return {
        "imagereward": str(root / "ImageReward.pt"),
        "imagereward_med_config": str(root / "med_config.json"),
        "bert_tokenizer": str(bert),
    }


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--scorers", default="hpsv21,pickscore,imagereward,clipscore,aesthetic")
    p.add_argument("--images", type=int, default=16)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--out", type=Path, default=Path("benchmarks/results/preference_cpu.json"))
    args = p.parse_args()
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (512, 512, 3), dtype=np.uint8) for _ in range(args.images)]
    prompts = ["a photo of a red bicycle leaning against a brick wall"] * args.images
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        weights = build_weights(Path(tmp))
        for name in args.scorers.split(","):
            scorer = get_scorer(name, weights, device=args.device)
            scorer.score(images[:2], prompts[:2])  # warm-up
            res = {}
            for bs in (1, 16):
                t0 = time.perf_counter()
                for i in range(0, args.images, bs):
                    scorer.score(images[i : i + bs], prompts[i : i + bs])
                if args.device.startswith("cuda"):
                    torch.cuda.synchronize()
                res[f"batch_{bs}"] = args.images / (time.perf_counter() - t0)
            results[name] = res
            print(f"{name:12s} batch 1: {res['batch_1']:.2f} img/s   batch 16: {res['batch_16']:.2f} img/s", flush=True)
            del scorer
    atomic_write_json(args.out, {"device": args.device, "amp": args.device.startswith("cuda"), "torch_threads": torch.get_num_threads(),
                                 "images_per_s": results, **provenance()})  # fmt: skip


if __name__ == "__main__":
    main()
