"""Seconds per generator update and per critic update of a study's runs, in one process.

    python benchmarks/step_time.py --config config/shapes.yaml \
        --runs dmd,dmd_nft,dmd_refl,dmdr,gdmd --repeats 20 --out benchmarks/results/step_time.json

Builds each run exactly as `gdmd.train` does (teacher, generator and fake score from the
committed assets, the run's batch and rewards), warms up, then times `repeats` calls of
each step function on batches drawn as the loop draws them (DMDR past its cold start, so
its reward term is timed). Writes the set-up's seconds (the teacher copies, and DMD's
regression pairs where a run has them, unless `--pairs` gives the seed's file as the study
shares it), mean / std / min seconds per step, each run's ratio to the first run's generator
update, the machine and versions.
"""

from __future__ import annotations

import gdmd  # noqa: F401  (fixes the numerics mode before torch loads)

# isort: split
import argparse
import statistics
import time
from pathlib import Path

import torch

from gdmd import backbones
from gdmd import config as cfglib
from gdmd.config import read_yaml
from gdmd.io import atomic_write_json, provenance
from gdmd.methods import get_method
from gdmd.study import RunConfig, resolve, run_settings
from gdmd.train import draw_batch, prompt_source


def time_run(study: dict, name: str, repeats: int, device: str, pairs: Path | None = None) -> dict:
    run = cfglib.from_dict(RunConfig, run_settings(study, name))
    method = get_method(run.method)
    cfg = cfglib.from_dict(method.Config, run.train, "train")
    torch.manual_seed(0)
    backbone, teacher = backbones.load(run.backbone, run.assets.teacher, run.assets.text_encoder, device=device)
    source = prompt_source(cfg, backbone)
    t0 = time.perf_counter()
    state = method.setup(cfg, run, backbone, teacher, source, pairs_file=pairs)
    setup_s = time.perf_counter() - t0  # copies of the teacher; DMD's regression pairs where on (unless --pairs)
    prompts = source(0)
    late = getattr(cfg, "cold_start", 0) + 1  # an iteration past any cold start

    def timed(step):
        batch = draw_batch(prompts, backbone, late, cfg.batch_size, getattr(state, "prompt_repeats", 1),
                           getattr(state, "needs_real", False))  # fmt: skip
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        method.steps[step](state, batch)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        return time.perf_counter() - t0

    for step in method.steps:  # warm-up
        timed(step)
    out = {}
    for step in method.steps:
        secs = [timed(step) for _ in range(repeats)]
        out[step] = {"mean_s": statistics.mean(secs), "std_s": statistics.stdev(secs), "min_s": min(secs), "repeats": repeats}
    return {"method": run.method, "batch_size": cfg.batch_size, "gen_every": cfg.gen_every, "setup_s": setup_s,
            "seconds_per_update": out}  # fmt: skip


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", default="config/shapes.yaml")
    p.add_argument("--runs", default="dmd,dmd_nft,dmdr,gdmd", help="comma-separated run names of the config")
    p.add_argument("--repeats", type=int, default=20)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--out", type=Path, default=Path("benchmarks/results/step_time.json"))
    p.add_argument("--pairs", type=Path, help="seed 0's regression pairs (python -m gdmd.pairs), shared as in the study")
    args = p.parse_args()

    study = resolve(read_yaml(args.config))
    names = [n for n in args.runs.split(",") if n]
    results = {n: time_run(study, n, args.repeats, args.device, args.pairs) for n in names}
    base = results[names[0]]["seconds_per_update"]["generator"]["mean_s"]
    for r in results.values():
        r["generator_ratio_to_first"] = r["seconds_per_update"]["generator"]["mean_s"] / base
    out = {
        "config": args.config,
        "device": args.device,
        "torch_threads": torch.get_num_threads(),
        "runs": results,
        **provenance(),
    }
    atomic_write_json(args.out, out)
    for n, r in results.items():
        s = r["seconds_per_update"]
        print(
            f"{n:10s} generator {s['generator']['mean_s']:.3f} s (x{r['generator_ratio_to_first']:.2f})  critic {s['critic']['mean_s']:.3f} s"
        )


if __name__ == "__main__":
    main()
