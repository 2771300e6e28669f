"""Speed of candidate shapes-teacher networks on this machine: train step and sampling cost.

    python benchmarks/teacher_arch.py --out benchmarks/results/teacher_arch.json

For each candidate (diffusers networks at 32 px): seconds per AdamW training step at
batch 64, and milliseconds per image of one inference forward at batch 128, with the
shapes conditioning shapes (16 tokens x 128, pooled 64). Sampling the shapes evaluation set
(1,200 images) at 50 guided steps costs 100 forwards per image.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from gdmd.backbones.shapes import ARCHS
from gdmd.io import atomic_write_json, provenance

SD3 = dict(sample_size=32, in_channels=3, out_channels=3, attention_head_dim=32, joint_attention_dim=128,
           pooled_projection_dim=64, pos_embed_max_size=16)  # fmt: skip
CANDIDATES = {
    "sd3 p4 L6 w128 (chosen)": ("sd3", dict(SD3, patch_size=4, num_layers=6, num_attention_heads=4, caption_projection_dim=128)),
    "sd3 p4 L4 w128": ("sd3", dict(SD3, patch_size=4, num_layers=4, num_attention_heads=4, caption_projection_dim=128)),
    "sd3 p2 L4 w128": ("sd3", dict(SD3, patch_size=2, num_layers=4, num_attention_heads=4, caption_projection_dim=128)),
    "unet 32px (32,64,128)": (
        "unet",
        dict(
            sample_size=32,
            in_channels=3,
            out_channels=3,
            cross_attention_dim=128,
            attention_head_dim=32,
            norm_num_groups=16,
            block_out_channels=(32, 64, 128),
            layers_per_block=1,
            down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
            up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
            class_embed_type="projection",
            projection_class_embeddings_input_dim=64,
        ),
    ),  # fmt: skip
}


def measure(arch, cfg):
    cls, call, _ = ARCHS[arch]
    m = cls.from_config(cfg)
    opt = torch.optim.AdamW(m.parameters(), 1e-3)
    B = 64
    x, c, p, t = torch.randn(B, 3, 32, 32), torch.randn(B, 16, 128), torch.randn(B, 64), torch.rand(B)
    times = []
    for _ in range(5):
        t0 = time.perf_counter()
        F.mse_loss(call(m, x, t, c, p), x).backward()
        opt.step()
        opt.zero_grad()
        times.append(time.perf_counter() - t0)
    B = 128
    x, c, p, t = torch.randn(B, 3, 32, 32), torch.randn(B, 16, 128), torch.randn(B, 64), torch.rand(B)
    inf = []
    with torch.inference_mode():
        for _ in range(4):
            t0 = time.perf_counter()
            call(m, x, t, c, p)
            inf.append(time.perf_counter() - t0)
    return {
        "params_M": sum(q.numel() for q in m.parameters()) / 1e6,
        "train_step_b64_s": min(times[1:]),
        "infer_ms_per_image_b128": 1000 * min(inf[1:]) / B,
    }


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=Path("benchmarks/results/teacher_arch.json"))
    args = p.parse_args()
    torch.manual_seed(0)
    res = {name: measure(arch, cfg) for name, (arch, cfg) in CANDIDATES.items()}
    for name, r in res.items():
        print(
            f"{name:28s} {r['params_M']:.2f}M  train {r['train_step_b64_s']:.3f} s/step  infer {r['infer_ms_per_image_b128']:.2f} ms/img"
        )
    atomic_write_json(args.out, {"torch_threads": torch.get_num_threads(), "results": res, **provenance()})


if __name__ == "__main__":
    main()
