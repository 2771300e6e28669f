"""Score a GenEval image folder: `python -m eval.geneval --images DIR --out results.jsonl`.

Writes one row per image in the official schema (filename, tag, prompt, correct, reason,
metadata, details) and a summary JSON (per-tag accuracy, overall = mean of the tags, the
settings and package versions). Both are written atomically.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from tqdm import tqdm

from gdmd.io import CliParser, UserError, atomic_write_json, atomic_write_text, provenance, run_cli

from . import rules as J
from .backends import BACKENDS, get_backend
from .color import DEFAULT_ARCH, ColorClassifier, assign_colors
from .folder import list_samples, load_image


def score_folder(images_dir: Path, backend, opts: dict, batch_size: int = 64, colors=None) -> list[dict]:
    """Detect, select, colour-check (where the backend does not know colours) and judge."""
    samples = list_samples(images_dir)
    rows = []
    for i in tqdm(range(0, len(samples), batch_size), desc="geneval", mininterval=5):
        chunk = samples[i : i + batch_size]
        images = [load_image(s.path) for s in chunk]
        raw = backend.detect(images)
        for s, image, det in zip(chunk, images, raw):
            objects = J.select(
                det,
                s.metadata["tag"],
                threshold=opts["threshold"],
                counting_threshold=opts["counting_threshold"],
                max_objects=opts["max_objects"],
                max_overlap=opts["max_overlap"],
            )
            if colors is not None:
                assign_colors(colors, image, s.metadata, objects)
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


def read_text(path: Path) -> str:
    try:
        return Path(path).read_text()
    except FileNotFoundError:
        raise UserError(f"{path}: file not found") from None


def main(argv=None):
    p = CliParser(prog="python -m eval.geneval", description=__doc__.splitlines()[0])
    p.add_argument("--images", required=True, type=Path, help="GenEval image folder")
    p.add_argument("--out", required=True, type=Path, help="per-image results (.jsonl)")
    p.add_argument("--summary", type=Path, help="summary JSON (default: <out>.summary.json)")
    p.add_argument("--backend", default="shapes", choices=sorted(BACKENDS))
    p.add_argument("--detector-weights", help="transformers: Mask2Former directory; mmdet: checkpoint file")
    p.add_argument("--object-names", type=Path, help="GenEval's object_names.txt (real backends)")
    p.add_argument("--color-weights", help="open_clip weights file of the colour check (real backends)")
    p.add_argument("--color-arch", default=DEFAULT_ARCH)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--no-amp", action="store_true", help="transformers backend: fp32 on GPU too (the official code has no AMP)")
    p.add_argument("--threshold", type=float, default=J.THRESHOLD)
    p.add_argument("--counting-threshold", type=float, default=J.COUNTING_THRESHOLD)
    p.add_argument("--max-objects", type=int, default=J.MAX_OBJECTS)
    p.add_argument("--max-overlap", type=float, default=J.MAX_OVERLAP)
    p.add_argument("--position-threshold", type=float, default=J.POSITION_THRESHOLD)
    args = p.parse_args(argv)
    opts = {k: getattr(args, k) for k in ("threshold", "counting_threshold", "max_objects", "max_overlap", "position_threshold")}
    colors = None
    if args.backend == "shapes":
        backend = get_backend("shapes")
    else:
        if not args.detector_weights or not args.object_names or not args.color_weights:
            raise UserError(f"backend {args.backend!r} needs --detector-weights, --object-names and --color-weights")
        names = [n.strip() for n in read_text(args.object_names).splitlines() if n.strip()]
        backend = get_backend(
            args.backend, weights=args.detector_weights, object_names=names, device=args.device, batch_size=args.batch_size,
            amp=not args.no_amp,
        )  # fmt: skip
        colors = ColorClassifier(args.color_weights, args.color_arch, device=args.device)
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    rows = score_folder(args.images, backend, opts, batch_size=max(args.batch_size, 1) * 8, colors=colors)
    summary = J.summarize(rows)
    summary.update(
        empty=J.empty_rates(rows),
        images=len(rows),
        prompts=len({r["metadata"] for r in rows}),
        options=opts,
        **backend.describe(),
        **(colors.describe() if colors else {}),
        device=args.device,
        tf32={"matmul": torch.backends.cuda.matmul.allow_tf32, "cudnn": torch.backends.cudnn.allow_tf32},
        **provenance(),
    )
    atomic_write_text(args.out, "".join(json.dumps(r) + "\n" for r in rows))
    atomic_write_json(args.summary or args.out.with_suffix(".summary.json"), summary)
    print(
        f"GenEval overall {summary['overall']:.4f} over {len(rows)} images: "
        + ", ".join(f"{k} {v:.3f}" for k, v in summary["tags"].items())
    )


if __name__ == "__main__":
    run_cli(main)
