"""Quick DMD recipe checks: train a 4-step student with overrides, score it on held-out prompts.

    python benchmarks/dmd_quick_check.py --teacher resources/shapes/teacher \
        --set '{"reg_weight": 4.0}' --evals 300,500 --out benchmarks/results/dmd_quick/reg4.json

Trains DMD (the study's `dmd` recipe from config/shapes.yaml, updated by `--set`) in
process, with the step functions `gdmd.train` runs, and at each iteration in `--evals`
samples the student once for each of `--per-tag` GenEval-shapes prompts per tag drawn
with `--prompt-seed` (1: not the study's evaluation prompts, which use seed 0) and judges
them with the shapes detector. One image per prompt: the overall score moves by about
+-0.03 between reruns, so use it to find collapses and large effects, then measure a
recipe with the study's DAG. Also writes a sample grid (PNG) of the last evaluation.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
import yaml
from PIL import Image

from eval.geneval import judge, select, summarize
from gdmd import config as cfglib
from gdmd.backbones.shapes import load_teacher
from gdmd.io import atomic_write_json, provenance
from gdmd.methods import dmd
from gdmd.samplers import to_uint8
from gdmd.shapes.detector import detect
from gdmd.shapes.prompts import evaluation_metadata
from gdmd.study import RunConfig, run_settings
from gdmd.train import prompt_source


@torch.no_grad()
def student_images(state, metas, seed: int, chunk: int = 120):
    bb, g = state.backbone, torch.Generator().manual_seed(seed)
    out = []
    for i in range(0, len(metas), chunk):
        part = metas[i : i + chunk]
        cond = bb.encode_prompts([m["prompt"] for m in part])
        noises = [bb.noise_like(len(part), g) for _ in range(len(state.timesteps))]
        out.extend(to_uint8(bb.decode(dmd.few_step(bb, state.generator, cond, noises, state.timesteps))))
    return out


def score(state, metas) -> dict:
    state.generator.eval()
    rows = [
        {"tag": m["tag"], "correct": judge(m, select(detect(img), m["tag"]))[0]}
        for m, img in zip(metas, student_images(state, metas, seed=0))
    ]
    state.generator.train()
    s = summarize(rows)
    return {"overall": round(s["overall"], 3), **{k: round(v, 3) for k, v in s["tags"].items()}}


def save_grid(state, metas, path: Path, cols: int = 10, rows: int = 4) -> None:
    state.generator.eval()
    imgs = student_images(state, metas[:: max(1, len(metas) // (cols * rows))][: cols * rows], seed=1)
    grid = np.concatenate([np.concatenate(imgs[r * cols : (r + 1) * cols], 1) for r in range(len(imgs) // cols)], 0)
    Image.fromarray(grid).resize((grid.shape[1] * 4, grid.shape[0] * 4), Image.NEAREST).save(path)
    state.generator.train()


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", default="config/shapes.yaml")
    p.add_argument("--run", default="dmd")
    p.add_argument("--teacher", help="teacher directory (default: the study's)")
    p.add_argument("--set", default="{}", help="JSON overrides of the run's train: section")
    p.add_argument("--evals", default="300,500", help="iterations at which to score the student")
    p.add_argument("--per-tag", type=int, default=40)
    p.add_argument("--prompt-seed", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, required=True, help="JSON results; the grid goes beside it (.png)")
    args = p.parse_args()

    study = yaml.safe_load(Path(args.config).read_text())
    run = cfglib.from_dict(RunConfig, run_settings(study, args.run))
    train = {**run.train, **json.loads(args.set)}
    evals = sorted(int(x) for x in args.evals.split(","))
    cfg = cfglib.from_dict(dmd.DMDConfig, {**train, "iterations": evals[-1]}, "train")
    torch.manual_seed(args.seed)
    backbone, teacher = load_teacher(args.teacher or run.assets.teacher, run.assets.text_encoder)
    source = prompt_source(cfg.prompts, backbone)
    state = dmd.setup(cfg, run, backbone, teacher, source)
    prompts = source(args.seed)
    metas = evaluation_metadata(args.per_tag, seed=args.prompt_seed)

    results, t0 = [], time.time()
    for it in range(evals[-1] + 1):
        if it in evals:
            results.append({"iteration": it, "seconds": round(time.time() - t0), **score(state, metas)})
            print(json.dumps(results[-1]), flush=True)
        if it == evals[-1]:
            break
        captions, images = prompts.batch(cfg.batch_size, images=state.needs_real)
        cond = backbone.encode_prompts(captions)
        real = None if images is None else backbone.encode_images(images).to(backbone.device)
        for name in dmd.schedule(cfg, it):
            dmd.STEPS[name](state, cond, real)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    save_grid(state, metas, args.out.with_suffix(".png"))
    settings = vars(args) | {"out": str(args.out), "train": train}
    atomic_write_json(args.out, {"results": results, "settings": settings, **provenance()})


if __name__ == "__main__":
    main()
