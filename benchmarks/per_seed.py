"""Each seed's GenEval overall, single-object empty rate and reward metrics, per run.

    python benchmarks/per_seed.py --results results/shapes-full --out benchmarks/results/study_shapes_full/per_seed.md
    python benchmarks/per_seed.py --results benchmarks/results/dmd_regression --runs dmd-e97,dmd-reg16,gdmd-reg16 --mean \
        --out benchmarks/results/dmd_regression/per_seed.md

Reads the study's score summaries (geneval/<run>/seed<k>.summary.json and
preference/<run>/seed<k>.summary.json); runs in the order of tables/main.csv, or those
named by --runs (for a study whose tables were not made). `--mean` adds each value's mean
+- 95% Student-t interval over the seeds that ran (reports.tables.mean_ci95, as the tables).
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

from gdmd.io import UserError, atomic_write_text, run_cli
from reports.tables import mean_ci95


def _read(path: Path):
    return json.loads(path.read_text()) if path.is_file() else None


def _seeds(values, get, digits: int, mean: bool) -> str:
    """One cell: each seed's value, `-` where that seed was not run (and the mean +- interval)."""
    cell = " / ".join("-" if v is None else f"{get(v):.{digits}f}" for v in values)
    ran = [get(v) for v in values if v is not None]
    if mean and len(ran) > 1:
        m, h = mean_ci95(ran)
        cell += f" (mean {m:.{digits}f} +- {h:.{digits}f})"
    return cell


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--results", type=Path, required=True, help="a finished study's results directory")
    p.add_argument("--runs", help="comma-separated runs (default: those of the study's tables/main.csv)")
    p.add_argument("--mean", action="store_true", help="add each value's mean +- 95%% interval over the seeds")
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args(argv)
    table = args.results / "tables" / "main.csv"
    if args.runs:
        runs = args.runs.split(",")
    elif table.is_file():
        runs = [row["run"] for row in csv.DictReader(table.open())]
    else:
        raise UserError(f"{table}: not found (run the study first, or name the runs with --runs)")
    seeds = sorted({int(f.stem.split(".")[0][4:]) for f in (args.results / "geneval").glob("*/seed*.summary.json")})
    metrics = None
    lines = []
    for run in runs:
        g = [_read(args.results / "geneval" / run / f"seed{s}.summary.json") for s in seeds]
        pr = [_read(args.results / "preference" / run / f"seed{s}.summary.json") for s in seeds]
        if not any(g):
            raise UserError(f"{args.results / 'geneval' / run}: no seed's summary (is {run!r} a run of the study?)")
        metrics = metrics or list(next(p for p in pr if p)["metrics"])
        cells = [
            _seeds(g, lambda x: x["overall"], 3, args.mean),
            _seeds(g, lambda x: x["empty"]["tags"]["single_object"], 3, args.mean),
        ]
        cells += [_seeds(pr, lambda x, k=k: x["metrics"][k]["mean"], 2, args.mean) for k in metrics]
        lines.append(f"| {run} | " + " | ".join(cells) + " |")
    s = " / ".join(str(k) for k in seeds)
    head = ["run", f"GenEval seed {s}", f"empty (single) seed {s}", *(f"{k} seed {s}" for k in metrics)]
    text = "| " + " | ".join(head) + " |\n|" + "---|" * len(head) + "\n" + "\n".join(lines) + "\n"
    atomic_write_text(args.out, text)
    print(text)


if __name__ == "__main__":
    run_cli(main)
