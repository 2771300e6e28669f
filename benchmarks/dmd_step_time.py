"""Seconds per DMD generator update and per critic (fake-score) update on a study's DMD run.

    python benchmarks/dmd_step_time.py --config config/shapes.yaml --run dmd \
        --repeats 20 --out benchmarks/results/dmd_step_time.json

Builds the run exactly as `gdmd.train` does (teacher, generator and fake score from the
committed assets, the run's batch size), warms up, then times `repeats` calls of each
step function separately. Writes mean / std / min seconds, the machine and versions.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import torch
import yaml

from gdmd import backbones
from gdmd import config as cfglib
from gdmd.io import atomic_write_json, provenance
from gdmd.methods import get_method
from gdmd.study import RunConfig, run_settings
from gdmd.train import prompt_source


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", default="config/shapes.yaml")
    p.add_argument("--run", default="dmd")
    p.add_argument("--repeats", type=int, default=20)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--out", type=Path, default=Path("benchmarks/results/dmd_step_time.json"))
    args = p.parse_args()

    study = yaml.safe_load(Path(args.config).read_text())
    run = cfglib.from_dict(RunConfig, run_settings(study, args.run))
    method = get_method(run.method)
    cfg = cfglib.from_dict(method.Config, run.train, "train")
    torch.manual_seed(0)
    backbone, teacher = backbones.load(run.backbone, run.assets.teacher, run.assets.text_encoder, device=args.device)
    source = prompt_source(cfg.prompts, backbone)
    state = method.setup(cfg, run, backbone, teacher, source)
    prompts = source(0)

    def timed(name):
        captions, images = prompts.batch(cfg.batch_size, images=getattr(state, "needs_real", False))
        cond = backbone.encode_prompts(captions)
        real = None if images is None else backbone.encode_images(images).to(backbone.device)
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        method.steps[name](state, cond, real)
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()
        return time.perf_counter() - t0

    for name in method.steps:  # warm-up
        timed(name)
    result = {}
    for name in method.steps:
        secs = [timed(name) for _ in range(args.repeats)]
        result[name] = {
            "mean_s": statistics.mean(secs),
            "std_s": statistics.stdev(secs),
            "min_s": min(secs),
            "repeats": len(secs),
        }
    out = {
        "config": args.config,
        "run": args.run,
        "batch_size": cfg.batch_size,
        "generator_steps": run.steps,
        "real_cfg_scale": cfg.real_cfg_scale,
        "device": args.device,
        "cpu": platform.processor() or platform.machine(),
        "torch_threads": torch.get_num_threads(),
        "seconds_per_update": result,
        **provenance(),
    }
    atomic_write_json(args.out, out)
    print(json.dumps({"batch_size": cfg.batch_size, **{k: round(v["mean_s"], 4) for k, v in result.items()}}))


if __name__ == "__main__":
    main()
