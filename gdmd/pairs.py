"""The regression loss's teacher pairs of a run and seed, made once and shared.

    python -m gdmd.pairs --run-config results/shapes/runs/dmd.json --seed 0 \
        --out results/shapes/pairs/dmd/seed0.safetensors

DMD's regression loss (gdmd.methods.dmd, `reg_weight` > 0) ties `reg_pairs` noises to the
teacher's ODE solutions for them. Solving the ODEs is the costly part of a student's set-up
and depends only on the seed, the teacher and the pair settings, so the study makes them once
per seed with this command, and every student run with the same settings reads them
(`python -m gdmd.train --pairs FILE`). The set-up here is the run's own (`gdmd.train.
load_training`: same seeding, same draws), so the file holds exactly the pairs the run would
have made; the run checks that it does before using it.
"""

from __future__ import annotations

import time
from pathlib import Path

from .io import CliParser, UserError, run_cli
from .methods import dmd


def make_pairs(run_config: Path, seed: int, out: Path, device: str = "cpu") -> None:
    from .train import load_training

    run, _, cfg, backbone, teacher, source = load_training(run_config, seed, device)
    if getattr(cfg, "reg_weight", 0) <= 0:
        raise UserError(f"{run_config}: train.reg_weight is 0: this run has no regression loss, so no pairs to make")
    t0 = time.time()
    pairs = dmd.teacher_pairs(cfg, backbone, teacher.eval(), source)
    dmd.save_pairs(pairs, out, dmd.pairs_settings(cfg, run))
    print(f"wrote {out}: {cfg.reg_pairs} pairs of {cfg.reg_steps} teacher steps in {time.time() - t0:.0f} s", flush=True)


def main(argv=None):
    import torch

    p = CliParser(prog="python -m gdmd.pairs", description=__doc__.splitlines()[0])
    p.add_argument("--run-config", required=True, type=Path)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True, type=Path, help="the pairs file (.safetensors)")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = p.parse_args(argv)
    make_pairs(args.run_config, args.seed, args.out, args.device)


if __name__ == "__main__":
    run_cli(main)
