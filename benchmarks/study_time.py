"""Where a finished study's time went: every job's seconds and the job timeline.

    git clone <repo> /tmp/s && cd /tmp/s && time make study          # note the wall time
    python benchmarks/study_time.py --clone /tmp/s --wall-seconds 1090 \
        --out benchmarks/results/study_shapes/times.json

Reads the rules' benchmark files (`results/<study>/benchmarks/**.tsv`, Snakemake's
`benchmark:` directive: seconds per job) and the run's Snakemake log (when each job started
and finished), and writes them with the measured wall time of `make study` and Snakemake's
own elapsed time. Prints the jobs by seconds, their sum and what an ideal packing onto the
cores would take, so the gap to the wall time (idle cores, start-up) is visible.
"""

from __future__ import annotations

import argparse
import csv
import re
from datetime import datetime
from pathlib import Path

STAMP = re.compile(r"^\[(\w{3} \w{3} +\d+ [\d:]+ \d{4})\]$")


def job_seconds(bench: Path, only: str = "", column: str = "s") -> dict[str, float]:
    """Seconds (or another benchmark column, e.g. cpu_time) per job whose name matches `only`."""
    out = {}
    for f in sorted(bench.rglob("*.tsv")):
        name = str(f.relative_to(bench).with_suffix(""))
        if re.search(only, name):
            rows = list(csv.DictReader(f.open(), delimiter="\t"))
            out[name] = round(float(rows[0][column]), 2)
    return out


def timeline(log: Path) -> tuple[list[dict], float]:
    """Start and finish events of every job, and Snakemake's elapsed seconds (first to last stamp)."""
    events, stamp, current = [], None, None
    stamps = []
    for line in log.read_text().splitlines():
        m = STAMP.match(line.strip())
        if m:
            stamp = m.group(1)
            stamps.append(datetime.strptime(stamp, "%a %b %d %H:%M:%S %Y"))
            continue
        s = line.strip()
        if re.match(r"^(local)?rule \w+:$", s):
            current = {"time": stamp, "event": "start", "rule": s.split()[-1].rstrip(":"), "wildcards": ""}
            events.append(current)
        elif current is not None and s.startswith("wildcards:"):
            current["wildcards"] = s.removeprefix("wildcards:").strip()
        elif current is not None and s.startswith("jobid:"):
            current["jobid"] = s.split()[-1]
        elif s.startswith("Finished jobid:"):
            jobid, rule = re.match(r"Finished jobid: (\d+) \(Rule: (\w+)\)", s).groups()
            events.append({"time": stamp, "event": "finish", "jobid": jobid, "rule": rule})
            current = None
    elapsed = (stamps[-1] - stamps[0]).total_seconds() if stamps else float("nan")
    return events, elapsed


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--clone", type=Path, required=True, help="the clone `make study` ran in")
    p.add_argument("--study", default="shapes")
    p.add_argument("--wall-seconds", type=float, required=True, help="measured wall time of `make study`")
    p.add_argument("--cores", type=int, default=2)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--log", type=Path, help="the timed run's Snakemake log (default: the clone's newest)")
    p.add_argument("--only", default="", help="regex: count only the jobs whose name matches (e.g. the ablation runs)")
    p.add_argument("--command", default="git clone <repo> && cd <repo> && time make study   (GDMD_NUMERICS=pinned, 2 cores)")
    args = p.parse_args()

    import gdmd  # noqa: F401  (only for the JSON writer and provenance; no torch)
    from gdmd.io import atomic_write_json

    bench = args.clone / "results" / args.study / "benchmarks"
    logs = sorted((args.clone / ".snakemake" / "log").glob("*.snakemake.log"))
    if not bench.is_dir() or not logs:
        p.error(f"--clone {args.clone}: no {bench} or no .snakemake/log/*.snakemake.log (run `make study` there first)")
    jobs = job_seconds(bench, args.only)
    cpu = job_seconds(bench, args.only, "cpu_time")
    events, elapsed = timeline(args.log or logs[-1])
    total = sum(jobs.values())
    result = {
        "command": args.command,
        "only": args.only,
        "wall_seconds": {"measured": args.wall_seconds, "snakemake": elapsed},
        "job_seconds": jobs,
        "job_seconds_total": round(total, 1),
        "cpu_seconds_total": round(sum(cpu.values()), 1),
        "ideal_packing_seconds": round(total / args.cores, 1),
        "timeline": events,
        "timeline_source": "the Snakemake log of the timed run (start and finish of every job)",
    }
    atomic_write_json(args.out, result)
    for name, s in sorted(jobs.items(), key=lambda kv: -kv[1])[:12]:
        print(f"{s:8.1f}  {name}")
    print(f"sum of jobs {total:.0f} s; ideal on {args.cores} cores {total / args.cores:.0f} s; Snakemake {elapsed:.0f} s; "
          f"measured {args.wall_seconds:.0f} s; CPU {sum(cpu.values()):.0f} s")  # fmt: skip


if __name__ == "__main__":
    main()
