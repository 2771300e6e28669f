"""Each seed's GenEval overall, single-object empty rate and reward metrics, per run.

    python benchmarks/per_seed.py --results results/shapes-full --out benchmarks/results/study_shapes_full/per_seed.md

Reads the study's score summaries (geneval/<run>/seed<k>.summary.json and
preference/<run>/seed<k>.summary.json); runs in the order of tables/main.csv.
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

from gdmd.io import UserError, atomic_write_text, run_cli


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--results", type=Path, required=True, help="a finished study's results directory")
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args(argv)
    table = args.results / "tables" / "main.csv"
    if not table.is_file():
        raise UserError(f"{table}: not found (run the study first)")
    runs = [row["run"] for row in csv.DictReader(table.open())]
    seeds = sorted({int(f.stem.split(".")[0][4:]) for f in (args.results / "geneval").glob("*/seed*.summary.json")})
    metrics = None
    lines = []
    for run in runs:
        g = [json.loads((args.results / "geneval" / run / f"seed{s}.summary.json").read_text()) for s in seeds]
        pr = [json.loads((args.results / "preference" / run / f"seed{s}.summary.json").read_text())["metrics"] for s in seeds]
        metrics = metrics or list(pr[0])
        cells = [
            " / ".join(f"{x['overall']:.3f}" for x in g),
            " / ".join(f"{x['empty']['tags']['single_object']:.3f}" for x in g),
        ]
        cells += [" / ".join(f"{m[k]['mean']:.2f}" for m in pr) for k in metrics]
        lines.append(f"| {run} | " + " | ".join(cells) + " |")
    s = " / ".join(str(k) for k in seeds)
    head = ["run", f"GenEval seed {s}", f"empty (single) seed {s}", *(f"{k} seed {s}" for k in metrics)]
    text = "| " + " | ".join(head) + " |\n|" + "---|" * len(head) + "\n" + "\n".join(lines) + "\n"
    atomic_write_text(args.out, text)
    print(text)


if __name__ == "__main__":
    run_cli(main)
