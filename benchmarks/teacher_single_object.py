"""Why the committed teacher misses single_object: per shape, under prompt phrasings and time grids.

    python benchmarks/teacher_single_object.py --out benchmarks/results/teacher_single_object.json

For each shape, `--images` samples (fixed noise, 50 guided Euler steps) of several
phrasings of the single-object prompt - GenEval's "a photo of a <shape>" (never a training
caption) and training-caption phrasings - judged by the shapes detector and GenEval's rules.
Then the GenEval phrasing under SD3-style shifted time grids t' = s t / (1 + (s - 1) t)
(s = 1 is the study's uniform grid). A diagnosis, not the study's measurement.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from eval.geneval import judge, select
from gdmd.backbones.shapes import load_teacher
from gdmd.io import atomic_write_json, provenance
from gdmd.samplers import to_uint8
from gdmd.shapes.detector import detect
from gdmd.shapes.world import SHAPES

PHRASINGS = ("a photo of a {}", "a photo of a {} on a grey background", "an image of a {}", "a picture of a {}", "a {}")


@torch.no_grad()
def shifted_euler(backbone, model, cond, x, steps: int, cfg_scale: float, shift: float) -> torch.Tensor:
    t = torch.linspace(1, 0, steps + 1)
    t = shift * t / (1 + (shift - 1) * t)
    for a, b in zip(t[:-1], t[1:]):
        x = x + (b - a) * backbone.velocity(model, x, a.expand(x.shape[0]), cond, cfg_scale)
    return x


def correct(backbone, model, prompt: str, shape: str, n: int, steps: int, cfg: float, shift: float) -> int:
    meta = {"tag": "single_object", "prompt": prompt, "include": [{"class": shape, "count": 1}], "exclude": []}
    noise = backbone.noise_like(n, torch.Generator().manual_seed(0))
    x = shifted_euler(backbone, model, backbone.encode_prompts([prompt] * n), noise, steps, cfg, shift)
    return sum(judge(meta, select(detect(img), "single_object"))[0] for img in to_uint8(backbone.decode(x)))


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--teacher", default="resources/shapes/teacher")
    p.add_argument("--clip", default="resources/shapes/clip")
    p.add_argument("--images", type=int, default=32)
    p.add_argument("--steps", type=int, default=50)
    p.add_argument("--cfg-scale", type=float, default=3.0)
    p.add_argument("--shifts", default="0.5,1,2,3")
    p.add_argument("--out", type=Path, default=Path("benchmarks/results/teacher_single_object.json"))
    args = p.parse_args()

    backbone, model = load_teacher(args.teacher, args.clip)
    run = dict(n=args.images, steps=args.steps, cfg=args.cfg_scale)
    phrasings = []
    for shape in SHAPES:
        for form in PHRASINGS:
            k = correct(backbone, model, form.format(shape), shape, shift=1.0, **run)
            phrasings.append({"shape": shape, "phrasing": form.format("<shape>"), "correct": k, "images": args.images})
            print(json.dumps(phrasings[-1]), flush=True)
    shifts = []
    for s in map(float, args.shifts.split(",")):
        per_shape = {shape: correct(backbone, model, PHRASINGS[0].format(shape), shape, shift=s, **run) for shape in SHAPES}
        shifts.append(
            {"shift": s, "correct": per_shape, "accuracy": round(sum(per_shape.values()) / (len(SHAPES) * args.images), 3)}
        )
        print(json.dumps(shifts[-1]), flush=True)
    atomic_write_json(
        args.out, {"phrasings": phrasings, "shifts": shifts, "settings": vars(args) | {"out": str(args.out)}, **provenance()}
    )


if __name__ == "__main__":
    main()
