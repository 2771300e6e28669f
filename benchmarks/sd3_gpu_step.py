"""Seconds per generator update and peak GPU memory of dmd, dmdr and gdmd on SD3.5-Medium's
shape (issue: real teachers; benchmarks/README.md, "SD3 on a GPU").

    python benchmarks/sd3_gpu_step.py --shape sd35m --device cuda --batch-sizes 1 2
    python benchmarks/sd3_gpu_step.py --shape tiny --device cpu --iterations 4   # a CPU check of the script

A random-weight pipeline of the shape (gdmd.backbones.random_sd3: SD3.5-M's transformer and
VAE, small text encoders with the right output widths) is saved to a temporary directory
and trained through the real loop (gdmd.train) with config/sd35m.yaml's recipe: LoRA
generator (64/128) and fake score (32), bf16 frozen networks and autocast, gradient
checkpointing, at 512 px. Each (method, batch) runs `--iterations` iterations with
gen_every 1, so every iteration is one generator update plus one critic update; the first
`--warmup` are dropped. Rewards: the tiny random shapes CLIP (a stand-in of CLIP/HPS's cost
is not measured here). Writes benchmarks/results/sd3_gpu_step.json.
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

import gdmd  # noqa: E402,F401  (numerics mode before torch)
from gdmd.backbones.random_sd3 import SD35M, TINY, save_random_pipeline  # noqa: E402
from gdmd.prompts import sha256_of  # noqa: E402
from gdmd.study import run_settings  # noqa: E402
from gdmd.train import train  # noqa: E402

PROMPTS = ["a photo of a cat", "two red apples on a table", "a blue car left of a tree", "a bowl of soup"]
RECIPE = dict(gen_every=1, lr_generator=1e-6, lr_fake=5e-7, real_cfg_scale=7.0, generator_lora_rank=64, generator_lora_alpha=128,
              fake_lora_rank=32, mixed_precision="bf16", gradient_checkpointing=True, checkpoint_every=10**6, prompts="captions")  # fmt: skip
REWARD = [{"metric": "shapes_clipscore", "weight": 0.003, "margin": 70.0}]
METHODS = {
    "dmd": {},
    "dmdr": {"cold_start": 0, "dyn_steps": 1000, "rewards": REWARD},
    "gdmd": {"targets": 4, "rewards": REWARD},
}


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--shape", choices=("sd35m", "tiny"), default="sd35m")
    p.add_argument("--device", default="cuda")
    p.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 2])
    p.add_argument("--iterations", type=int, default=12)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--methods", nargs="+", default=list(METHODS))
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "sd3_gpu_step.json")
    args = p.parse_args()
    shape = {"sd35m": SD35M, "tiny": TINY}[args.shape]
    tmp = Path(tempfile.mkdtemp(prefix="sd3bench-"))
    t0 = time.time()
    pipe = save_random_pipeline(tmp / "pipeline", **shape)
    print(f"random {args.shape} pipeline in {time.time() - t0:.0f} s", flush=True)
    captions = tmp / "captions.txt"
    captions.write_text("\n".join(PROMPTS) + "\n")
    resolution = 512 if args.shape == "sd35m" else 32
    study = {
        "study": "bench", "backbone": "sd3",
        "backbone_options": {"dtype": "bf16", "resolution": resolution, "prompt_cache": str(tmp / "cache")},
        "assets": {"teacher": str(pipe), "text_encoder": str(pipe)},
        "preference": {"metrics": ["shapes_clipscore"], "weights": {"clip": str(ROOT / "resources" / "shapes" / "clip")}},
        "runs": {},
    }  # fmt: skip
    results = []
    for method in args.methods:
        for batch in args.batch_sizes:
            train_cfg = {**RECIPE, **METHODS[method], "iterations": args.iterations, "batch_size": batch,
                         "captions": str(captions), "captions_sha256": sha256_of(captions)}  # fmt: skip
            study["runs"] = {method: {"method": method, "steps": 4, "train": train_cfg}}
            run = tmp / f"{method}-b{batch}.json"
            run.write_text(json.dumps(run_settings(study, method)))
            work = tmp / f"work-{method}-b{batch}"
            if args.device.startswith("cuda"):
                torch.cuda.reset_peak_memory_stats()
            train(run, 0, work / "final", work, device=args.device)
            with open(work / "metrics.csv") as f:
                secs = [float(r["sec"]) for r in csv.DictReader(f)][args.warmup :]
            peak = torch.cuda.max_memory_allocated() / 2**30 if args.device.startswith("cuda") else None
            row = {"method": method, "batch": batch, "sec_per_generator_update": statistics.median(secs),
                   "peak_gpu_gib": peak, "iterations_timed": len(secs)}  # fmt: skip
            print(row, flush=True)
            results.append(row)
    info = {"shape": args.shape, "resolution": resolution, "device": args.device,
            "gpu": torch.cuda.get_device_name() if args.device.startswith("cuda") else None,
            "torch": torch.__version__, "recipe": RECIPE, "results": results}  # fmt: skip
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(info, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
