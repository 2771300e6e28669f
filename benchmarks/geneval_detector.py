"""Images per second of GenEval's Mask2Former evaluator, batched against one image at a time.

    python benchmarks/geneval_detector.py --images 8 --batch-size 4 \
        --out benchmarks/results/geneval_detector_cpu.json

A full-size Swin-S Mask2Former (the architecture of facebook/mask2former-swin-small-coco-instance:
Swin-S backbone, 100 queries, 80 COCO classes) with random weights, saved and loaded back
through the evaluator's own loading code; 512 x 512 inputs resized to GenEval's test
resolution (shorter side 800). Times detection + post-processing (the part that depends on
the batch size), after one warm-up batch.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from eval.geneval.mask2former import ALIASES, TransformersMask2Former
from gdmd.io import atomic_write_json, provenance

NAMES = Path(__file__).resolve().parent.parent / "eval" / "geneval" / "data" / "coco_names.txt"


def build(path: Path, names: list[str]) -> None:
    from transformers import Mask2FormerConfig, Mask2FormerForUniversalSegmentation, SwinConfig

    swin = SwinConfig(
        embed_dim=96, depths=[2, 2, 18, 2], num_heads=[3, 6, 12, 24], window_size=7, drop_path_rate=0.3,
        out_features=["stage1", "stage2", "stage3", "stage4"],
    )  # fmt: skip
    cfg = Mask2FormerConfig(backbone_config=swin, id2label=dict(enumerate(names)), label2id={n: i for i, n in enumerate(names)})
    torch.manual_seed(0)
    Mask2FormerForUniversalSegmentation(cfg).save_pretrained(path)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--images", type=int, default=8)
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--size", type=int, default=512)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--out", type=Path, default=Path("benchmarks/results/geneval_detector_cpu.json"))
    args = p.parse_args()
    names = [n for n in NAMES.read_text().splitlines() if n]
    geneval_names = [ALIASES.get(n, n) for n in names]  # GenEval's object_names.txt spelling
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (args.size, args.size, 3), dtype=np.uint8) for _ in range(args.images)]
    result = {}
    with tempfile.TemporaryDirectory() as tmp:
        build(Path(tmp), names)
        for bs in (1, args.batch_size):
            det = TransformersMask2Former(tmp, geneval_names, device=args.device, batch_size=bs)
            n_params = sum(q.numel() for q in det.model.parameters())
            det.detect(images[:bs])  # warm-up
            if args.device.startswith("cuda"):
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            det.detect(images)
            if args.device.startswith("cuda"):
                torch.cuda.synchronize()
            dt = time.perf_counter() - t0
            result[f"batch_{bs}"] = {"images_per_s": args.images / dt, "seconds": dt}
            print(f"batch {bs}: {args.images / dt:.3f} images/s ({dt:.1f} s for {args.images})", flush=True)
    out = {
        "model": "Mask2Former Swin-S (random weights)",
        "params_M": n_params / 1e6,
        "input": f"{args.size}x{args.size} -> shorter side 800",
        "device": args.device,
        "amp": args.device.startswith("cuda"),
        "torch_threads": torch.get_num_threads(),
        "results": result,
        **provenance(),
    }
    atomic_write_json(args.out, out)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
