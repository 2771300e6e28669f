"""The malloc settings of gdmd/allocator.py against glibc's defaults, one thread.

    python benchmarks/allocator.py --rounds 2 --pairs results/shapes-full/pairs/dmd/seed0.safetensors \
        --out benchmarks/results/allocator.json

Runs benchmarks/profile_teacher.py (the committed teacher's guided call at the study's
sampling batch, and its op profile) and benchmarks/step_time.py (DMD's generator and critic
updates, with `--pairs`) in fresh interpreters with `GDMD_MALLOC=default` and without it,
alternating, `--rounds` times each; writes each round's milliseconds per call and the op
shares. That the two settings compute the same bits is a test
(tests/integration/test_numerics.py), not measured here.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
MODES = {"tuned": {}, "default": {"GDMD_MALLOC": "default"}}


def _profile(mode: str, batch: int, tmp: Path) -> dict:
    out = tmp / f"profile-{mode}.json"
    cmd = [sys.executable, str(HERE / "profile_teacher.py"), "--batch", str(batch), "--sweep", str(batch), "--out", str(out)]
    subprocess.run(cmd, env={**os.environ, **MODES[mode]}, check=True, capture_output=True, text=True)
    r = json.loads(out.read_text())
    assert r["malloc"] == ("tuned" if mode == "tuned" else "default (GDMD_MALLOC=default)"), r["malloc"]
    return {"ms_per_call": round(1000 * r["seconds_per_call"], 1), "self_cpu_share": r["self_cpu_share"]}


def _steps(mode: str, pairs: Path, tmp: Path) -> dict:
    out = tmp / f"steps-{mode}.json"
    cmd = [
        sys.executable,
        str(HERE / "step_time.py"),
        "--runs",
        "dmd",
        "--repeats",
        "10",
        "--pairs",
        str(pairs),
        "--out",
        str(out),
    ]
    subprocess.run(cmd, env={**os.environ, **MODES[mode]}, check=True, capture_output=True, text=True)
    s = json.loads(out.read_text())["runs"]["dmd"]["seconds_per_update"]
    return {k: round(1000 * s[k]["mean_s"], 1) for k in ("generator", "critic")}


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, default=25, help="images per guided call (the study's sampling batch)")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--pairs", type=Path, required=True, help="seed 0's regression pairs (python -m gdmd.pairs)")
    p.add_argument("--out", type=Path, default=HERE / "results" / "allocator.json")
    args = p.parse_args()
    rounds = {m: [] for m in MODES}
    steps = {m: [] for m in MODES}
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(args.rounds):
            for mode in MODES:
                rounds[mode].append(_profile(mode, args.batch, Path(tmp)))
                steps[mode].append(_steps(mode, args.pairs, Path(tmp)))
    summary = {m: sorted(r["ms_per_call"] for r in rs) for m, rs in rounds.items()}
    result = {
        "command": "python benchmarks/allocator.py " + " ".join(sys.argv[1:]),
        "batch": args.batch,
        "ms_per_guided_call": summary,
        "dmd_ms_per_update": steps,
        "op_shares_last_round": {m: rs[-1]["self_cpu_share"] for m, rs in rounds.items()},
    }
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    for m in MODES:
        print(f"{m:8s} ms per guided call (batch {args.batch} x 2 rows): {summary[m]}; dmd updates: {steps[m]}")


if __name__ == "__main__":
    main()
