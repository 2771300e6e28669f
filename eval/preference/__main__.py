"""Score a GenEval image folder with preference metrics.

    python -m eval.preference --images DIR --metrics shapes_clipscore,shapes_aesthetic \
        --weights clip=resources/shapes/clip,aesthetic_head=resources/shapes/aesthetic \
        --out scores.csv [--summary summary.json]

Writes one row per image (filename, tag, prompt, one column per metric) and a summary JSON
(mean, std and count per metric, what each metric computes, package versions).
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from eval.geneval.folder import list_samples, load_image
from gdmd.io import CliParser, UserError, atomic_write_json, atomic_write_text, provenance, run_cli

from . import SCORERS, get_scorer


def parse_weights(text: str) -> dict:
    out = {}
    for item in filter(None, text.split(",")):
        if "=" not in item:
            raise UserError(f"--weights: expected NAME=PATH, got {item!r}")
        k, v = item.split("=", 1)
        out[k.strip()] = v.strip()
    return out


def main(argv=None):
    p = CliParser(prog="python -m eval.preference", description=__doc__.splitlines()[0])
    p.add_argument("--images", required=True, type=Path)
    p.add_argument("--metrics", required=True, help=f"comma-separated, from: {', '.join(SCORERS)}")
    p.add_argument("--weights", default="", help="NAME=PATH,... weight paths the metrics need")
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--summary", type=Path)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = p.parse_args(argv)
    weights = parse_weights(args.weights)
    names = [m.strip() for m in args.metrics.split(",") if m.strip()]
    scorers = [get_scorer(n, weights, args.device) for n in names]
    samples = list_samples(args.images)
    scores = {n: [] for n in names}
    for i in tqdm(range(0, len(samples), args.batch_size), desc="preference", mininterval=5):
        chunk = samples[i : i + args.batch_size]
        images = [load_image(s.path) for s in chunk]
        prompts = [s.metadata["prompt"] for s in chunk]
        for n, sc in zip(names, scorers):
            scores[n].extend(np.asarray(sc.score(images, prompts), dtype=np.float64).tolist())
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["filename", "tag", "prompt", *names])
    for j, s in enumerate(samples):
        w.writerow([str(s.path), s.metadata["tag"], s.metadata["prompt"], *(f"{scores[n][j]:.6f}" for n in names)])
    summary = {
        "metrics": {
            n: {
                "mean": float(np.mean(scores[n])),
                "std": float(np.std(scores[n])),
                "n": len(scores[n]),
                "description": sc.description,
            }
            for n, sc in zip(names, scorers)
        },
        "weights": weights,
        "device": args.device,
        **provenance(),
    }
    atomic_write_text(args.out, buf.getvalue())
    atomic_write_json(args.summary or args.out.with_suffix(".summary.json"), summary)
    print(", ".join(f"{n} {summary['metrics'][n]['mean']:.4f}" for n in names))


if __name__ == "__main__":
    run_cli(main)
