"""Where the teacher's forward pass spends its time on CPU: torch profiler, one thread.

    python benchmarks/profile_teacher.py --batch 200 --out benchmarks/results/profile_teacher.json

One guided velocity call (batch x 2 rows with CFG) of the committed shapes teacher, as
the 50-step sampling runs it; writes each op's share of self CPU time. Then the time per
image of the same call at each batch size of `--sweep` (the study's `sampling.batch_size`
is chosen from it: on one thread, smaller batches keep the activations in cache).
"""

from __future__ import annotations

import gdmd  # noqa: F401  (fixes the numerics mode before torch loads)

# isort: split
import argparse
import time
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

from gdmd import backbones
from gdmd.io import atomic_write_json, provenance


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, default=200)
    p.add_argument("--cfg-scale", type=float, default=3.0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--sweep", default="200,100,50,25,12,8", help="batch sizes to time (ms per image)")
    p.add_argument("--out", type=Path, default=Path("benchmarks/results/profile_teacher.json"))
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    bb, teacher = backbones.load("shapes", "resources/shapes/teacher", "resources/shapes/clip", device="cpu")
    teacher.eval()
    cond = bb.encode_prompts(["a photo of a red circle and a blue square"] * args.batch)
    x, t = torch.randn(args.batch, 3, 32, 32), torch.full((args.batch,), 0.5)
    with torch.no_grad():
        bb.velocity(teacher, x, t, cond, args.cfg_scale)  # warm-up
        t0 = time.perf_counter()
        for _ in range(3):
            bb.velocity(teacher, x, t, cond, args.cfg_scale)
        seconds = (time.perf_counter() - t0) / 3
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            bb.velocity(teacher, x, t, cond, args.cfg_scale)
        by_batch = {b: round(1000 * _seconds(bb, teacher, b, args.cfg_scale) / b, 3) for b in map(int, args.sweep.split(","))}
    events = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
    total = sum(e.self_cpu_time_total for e in events)
    ops = {e.key: round(e.self_cpu_time_total / total, 4) for e in events[:15]}
    atomic_write_json(args.out, {"seconds_per_call": seconds, "batch": args.batch, "threads": args.threads,
                                 "self_cpu_share": ops, "ms_per_image_by_batch": by_batch, **provenance()})  # fmt: skip
    for k, v in ops.items():
        print(f"{v:6.1%}  {k}")
    for b, ms in by_batch.items():
        print(f"batch {b:4d}: {ms:.2f} ms per image per guided call")


def _seconds(bb, teacher, batch: int, cfg_scale: float, images: int = 400) -> float:
    """Seconds per guided velocity call at this batch size (mean over about `images` images)."""
    cond = bb.encode_prompts(["a photo of a red circle and a blue square"] * batch)
    x, t = torch.randn(batch, 3, 32, 32), torch.full((batch,), 0.5)
    bb.velocity(teacher, x, t, cond, cfg_scale)  # warm-up
    n = max(1, images // batch)
    t0 = time.perf_counter()
    for _ in range(n):
        bb.velocity(teacher, x, t, cond, cfg_scale)
    return (time.perf_counter() - t0) / n


if __name__ == "__main__":
    main()
