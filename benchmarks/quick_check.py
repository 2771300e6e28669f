"""Quick recipe checks: train a study run with overrides, score its student on held-out prompts.

    python benchmarks/quick_check.py --run dmd --set '{"ema_decay": 0.99}' \
        --evals 300,500 --out benchmarks/results/quick/dmd-ema.json

Trains a run of a study config (`--run`, any method; its `train:` section updated by
`--set`) in process, with the step functions and batches `gdmd.train` uses, and at each
iteration in `--evals` samples the student (its EMA where the run keeps one) once for each
of `--per-tag` GenEval-shapes prompts per tag drawn with `--prompt-seed` (1: not the
study's evaluation prompts, which use seed 0), judges them with the shapes detector and
scores them with the study's preference metrics. Reports GenEval-shapes (overall, tags),
the empty-image rate (nothing detected above GenEval's threshold) and the metrics' means.
One image per prompt: the overall score moves by about +-0.03 between reruns, so use it to
find collapses and large effects, then measure a recipe with the study's DAG (3 seeds).
Also writes a sample grid (PNG) of the last evaluation.
"""

from __future__ import annotations

import gdmd  # noqa: F401  (fixes the numerics mode before torch loads)

# isort: split
import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from eval.geneval import judge, select, summarize
from eval.preference import get_scorer
from gdmd import config as cfglib
from gdmd.backbones import load
from gdmd.config import read_yaml
from gdmd.io import atomic_write_json, provenance
from gdmd.methods import dmd, get_method
from gdmd.samplers import to_uint8
from gdmd.shapes.detector import detect
from gdmd.shapes.prompts import evaluation_metadata
from gdmd.study import RunConfig, resolve, run_settings
from gdmd.train import draw_batch, prompt_source


def _sampler(state):
    return state.generator_ema if state.generator_ema is not None else state.generator


@torch.no_grad()
def student_images(state, metas, seed: int, chunk: int = 120, generator=None):
    bb, g = state.backbone, torch.Generator().manual_seed(seed)
    generator, out = generator or _sampler(state), []
    for i in range(0, len(metas), chunk):
        part = metas[i : i + chunk]
        cond = bb.encode_prompts([m["prompt"] for m in part])
        noises = [bb.noise_like(len(part), g) for _ in range(len(state.timesteps))]
        out.extend(to_uint8(bb.decode(dmd.few_step(bb, generator, cond, noises, state.timesteps))))
    return out


def score(state, metas, scorers: dict, generator=None) -> dict:
    """GenEval-shapes, the empty-image rate and the preference metrics of one image per prompt."""
    was = state.generator.training
    state.generator.eval()
    images = student_images(state, metas, seed=0, generator=generator)
    state.generator.train(was)
    rows, empty = [], []
    for m, img in zip(metas, images):
        objects = select(detect(img), m["tag"])
        rows.append({"tag": m["tag"], "correct": judge(m, objects)[0]})
        empty.append(not any(objects.values()))
    s = summarize(rows)
    prompts = [m["prompt"] for m in metas]
    prefs = {n: float(np.mean(sc.score(images, prompts))) for n, sc in scorers.items()}
    single = [e for e, m in zip(empty, metas) if m["tag"] == "single_object"]
    return {"overall": round(s["overall"], 3), **{k: round(v, 3) for k, v in s["tags"].items()},
            "empty": round(float(np.mean(empty)), 3), "empty_single_object": round(float(np.mean(single)), 3),
            **{k: round(v, 3) for k, v in prefs.items()}}  # fmt: skip


def save_grid(state, metas, path: Path, cols: int = 10, rows: int = 4) -> None:
    imgs = student_images(state, metas[:: max(1, len(metas) // (cols * rows))][: cols * rows], seed=1)
    grid = np.concatenate([np.concatenate(imgs[r * cols : (r + 1) * cols], 1) for r in range(len(imgs) // cols)], 0)
    Image.fromarray(grid).resize((grid.shape[1] * 4, grid.shape[0] * 4), Image.NEAREST).save(path)


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
    p.add_argument("--pairs", type=Path, help="regression pairs made by `python -m gdmd.pairs` for this run and seed")
    p.add_argument("--extra-emas", default="", help="also score EMAs of the generator at these decays (comma-separated)")
    p.add_argument("--out", type=Path, required=True, help="JSON results; the grid goes beside it (.png)")
    args = p.parse_args()

    study = resolve(read_yaml(args.config))
    settings = run_settings(study, args.run)
    run = cfglib.from_dict(RunConfig, settings)
    method = get_method(run.method)
    train = {**run.train, **json.loads(args.set)}
    evals = sorted(int(x) for x in args.evals.split(","))
    cfg = cfglib.from_dict(method.Config, {**train, "iterations": evals[-1]}, "train")
    torch.manual_seed(args.seed)
    backbone, teacher = load(run.backbone, args.teacher or run.assets.teacher, run.assets.text_encoder)
    source = prompt_source(cfg, backbone)
    state = method.setup(cfg, run, backbone, teacher, source, pairs_file=args.pairs)
    prompts = source(args.seed)
    metas = evaluation_metadata(args.per_tag, seed=args.prompt_seed)
    scorers = {n: get_scorer(n, run.weights) for n in study["preference"]["metrics"]}
    repeats, needs_real = getattr(state, "prompt_repeats", 1), getattr(state, "needs_real", False)

    from gdmd.lora import frozen_copy

    emas = {float(d): frozen_copy(state.generator, f"generator_ema_{i}") for i, d in enumerate(args.extra_emas.split(",")) if d}
    results, t0, log = [], time.time(), []
    for it in range(evals[-1] + 1):
        if it in evals:
            results.append({"iteration": it, "seconds": round(time.time() - t0), **score(state, metas, scorers)})
            print(json.dumps(results[-1]), flush=True)
            for d, ema in emas.items():
                results.append({"iteration": it, "ema": d, **score(state, metas, scorers, generator=ema)})
                print(json.dumps(results[-1]), flush=True)
        if it == evals[-1]:
            break
        batch = draw_batch(prompts, backbone, it, cfg.batch_size, repeats, needs_real)
        row = {"iteration": it}
        for name in method.schedule(cfg, it):
            row.update(method.steps[name](state, batch))
        if "generator" in method.schedule(cfg, it):
            for d, ema in emas.items():
                dmd.ema_update(ema, state.generator, d)
        log.append(row)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    save_grid(state, metas, args.out.with_suffix(".png"))
    gen_rows = [r for r in log if "grad_norm_generator" in r]
    tail = {k: float(np.mean([r[k] for r in gen_rows[-20:] if k in r])) for k in gen_rows[-1] if k != "iteration"}
    settings = vars(args) | {"out": str(args.out), "train": train, "pairs": args.pairs and str(args.pairs)}
    atomic_write_json(args.out, {"results": results, "last_generator_steps": tail, "settings": settings, **provenance()})
    print(json.dumps({k: round(v, 4) for k, v in tail.items()}))


if __name__ == "__main__":
    main()
