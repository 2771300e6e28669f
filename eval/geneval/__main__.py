"""Score a GenEval image folder: `python -m eval.geneval --images DIR --out results.jsonl`.

Writes one row per image in the official schema (filename, tag, prompt, correct, reason,
metadata, details) and a summary JSON (per-tag accuracy, overall = mean of the tags, the
settings and package versions). Both are written atomically.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from tqdm import tqdm

from gdmd.io import atomic_write_json, atomic_write_text, provenance, run_cli

from . import rules as J
from .backends import BACKENDS, get_backend
from .folder import list_samples, load_image


def score_folder(images_dir: Path, backend, opts: dict, batch_size: int = 64) -> list[dict]:
    samples = list_samples(images_dir)
    rows = []
    for i in tqdm(range(0, len(samples), batch_size), desc="geneval", mininterval=5):
        chunk = samples[i : i + batch_size]
        raw = backend.detect([load_image(s.path) for s in chunk])
        for s, det in zip(chunk, raw):
            objects = J.select(
                det,
                s.metadata["tag"],
                threshold=opts["threshold"],
                counting_threshold=opts["counting_threshold"],
                max_objects=opts["max_objects"],
                max_overlap=opts["max_overlap"],
            )
            correct, reason = J.judge(s.metadata, objects, position_threshold=opts["position_threshold"])
            rows.append(
                {
                    "filename": str(s.path),
                    "tag": s.metadata["tag"],
                    "prompt": s.metadata["prompt"],
                    "correct": correct,
                    "reason": reason,
                    "metadata": json.dumps(s.metadata),
                    # GenEval stores each kept box as [x1, y1, x2, y2, score]
                    "details": json.dumps({k: [[*d.box, d.score] for d in v] for k, v in objects.items()}),
                }
            )
    return rows


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m eval.geneval", description=__doc__.splitlines()[0])
    p.add_argument("--images", required=True, type=Path, help="GenEval image folder")
    p.add_argument("--out", required=True, type=Path, help="per-image results (.jsonl)")
    p.add_argument("--summary", type=Path, help="summary JSON (default: <out>.summary.json)")
    p.add_argument("--backend", default="shapes", choices=sorted(BACKENDS))
    p.add_argument("--threshold", type=float, default=J.THRESHOLD)
    p.add_argument("--counting-threshold", type=float, default=J.COUNTING_THRESHOLD)
    p.add_argument("--max-objects", type=int, default=J.MAX_OBJECTS)
    p.add_argument("--max-overlap", type=float, default=J.MAX_OVERLAP)
    p.add_argument("--position-threshold", type=float, default=J.POSITION_THRESHOLD)
    args = p.parse_args(argv)
    opts = {k: getattr(args, k) for k in ("threshold", "counting_threshold", "max_objects", "max_overlap", "position_threshold")}
    backend = get_backend(args.backend)
    rows = score_folder(args.images, backend, opts)
    summary = J.summarize(rows)
    summary.update(
        images=len(rows),
        prompts=len({r["metadata"] for r in rows}),
        options=opts,
        **backend.describe(),
        **provenance(),
    )
    atomic_write_text(args.out, "".join(json.dumps(r) + "\n" for r in rows))
    atomic_write_json(args.summary or args.out.with_suffix(".summary.json"), summary)
    print(f"GenEval overall {summary['overall']:.4f} over {len(rows)} images: " + ", ".join(f"{k} {v:.3f}" for k, v in summary["tags"].items()))


if __name__ == "__main__":
    run_cli(main)
