"""Wall time of `snakemake -n` (the DAG's parse, paid by every SLURM job) per study config.

    profiles/local-slurm/cluster.sh start      # or no SLURM installed: see below
    python benchmarks/dryrun_time.py           # -> benchmarks/results/dryrun_time.json

With the SLURM executor plugin installed, snakemake runs `scontrol show config` at start;
where slurm.conf exists but slurmctld is down that stalls about 10 s, so time with the
controller up (recorded in the output) or without SLURM. The real studies are timed with
the cluster profile (`--profile profiles/slurm`), the shapes study without.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
CASES = {
    "shapes": ["--configfile", "config/shapes.yaml"],
    "sd3m": ["--profile", "profiles/slurm", "--configfile", "config/sd3m.yaml"],
    "sd35m": ["--profile", "profiles/slurm", "--configfile", "config/sd35m.yaml"],
    "sd35l": ["--profile", "profiles/slurm", "--configfile", "config/sd35l.yaml"],
}


def main(repeats: int = 3):
    env = dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ['PATH']}")
    up = subprocess.run(["scontrol", "ping"], capture_output=True, text=True) if Path("/etc/slurm/slurm.conf").exists() else None
    out = {"command": "snakemake -n <args>", "slurm": "not configured" if up is None else up.stdout.strip(), "runs": {}}
    for name, args in CASES.items():
        secs, jobs = [], None
        for _ in range(repeats):
            t0 = time.perf_counter()
            r = subprocess.run([str(BIN / "snakemake"), "-n", *args], cwd=ROOT, env=env, capture_output=True, text=True)
            secs.append(round(time.perf_counter() - t0, 2))
            if r.returncode:
                sys.exit(f"{name}: snakemake -n failed:\n{r.stderr[-2000:]}")
            jobs = int(re.search(r"^total\s+(\d+)$", r.stdout, re.M).group(1))
        out["runs"][name] = {"args": " ".join(args), "seconds": secs, "jobs": jobs}
        print(name, secs, jobs, flush=True)
    path = ROOT / "benchmarks" / "results" / "dryrun_time.json"
    path.write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
