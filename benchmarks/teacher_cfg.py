"""GenEval-shapes of the committed teacher against its guidance scale, at 50 and 4 Euler steps.

    python benchmarks/teacher_cfg.py --out benchmarks/results/teacher_cfg.json

Chooses the study's `cfg_scale` (config/shapes.yaml). Uses the progress-check evaluator of
pretraining (`gdmd.shapes.teacher.quick_geneval`: 40 prompts per tag, one image each, fixed
noise), so the numbers are quick estimates; the study's table is the measurement.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from gdmd.backbones.shapes import load_teacher
from gdmd.io import atomic_write_json, provenance
from gdmd.shapes.teacher import quick_geneval


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--teacher", default="resources/shapes/teacher")
    p.add_argument("--clip", default="resources/shapes/clip")
    p.add_argument("--scales", default="1.5,2,3,4,5")
    p.add_argument("--steps", default="50,4")
    p.add_argument("--per-tag", type=int, default=40)
    p.add_argument("--out", type=Path, default=Path("benchmarks/results/teacher_cfg.json"))
    args = p.parse_args()

    backbone, model = load_teacher(args.teacher, args.clip)
    rows = []
    for steps in map(int, args.steps.split(",")):
        for scale in map(float, args.scales.split(",")):
            t0 = time.perf_counter()
            r = quick_geneval(backbone, model, per_tag=args.per_tag, images_per_prompt=1, steps=steps, cfg_scale=scale)
            rows.append({"steps": steps, "cfg_scale": scale, **r, "seconds": round(time.perf_counter() - t0, 1)})
            print(json.dumps(rows[-1]), flush=True)
    atomic_write_json(args.out, {"results": rows, "per_tag": args.per_tag, **provenance()})


if __name__ == "__main__":
    main()
