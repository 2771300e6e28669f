"""Build a study's report pieces: `python -m reports {table,geneval-bars,sample-grid} ...`."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from gdmd.io import CliParser, atomic_path, atomic_write_text, run_cli

from . import plots, tables


def main(argv=None):
    p = CliParser(prog="python -m reports", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("table", help="main results table (csv + markdown)")
    t.add_argument("--runs", required=True, nargs="+", type=Path, help="run settings files, in table order")
    t.add_argument("--geneval", required=True, nargs="+", type=Path, help="GenEval summaries <run>/seed<k>.summary.json")
    t.add_argument("--preference", required=True, nargs="+", type=Path, help="preference summaries, same layout")
    t.add_argument("--out", required=True, type=Path)
    t.add_argument("--markdown", type=Path)
    b = sub.add_parser("geneval-bars", help="per-tag GenEval bar chart from a table")
    b.add_argument("--table", required=True, type=Path)
    b.add_argument("--out", required=True, type=Path)
    g = sub.add_parser("sample-grid", help="grid of samples with their prompts")
    g.add_argument("--images", required=True, type=Path)
    g.add_argument("--out", required=True, type=Path)
    c = sub.add_parser("training-curves", help="training curves from the runs' metrics.csv")
    c.add_argument("--runs", required=True, nargs="+", type=Path, help="final checkpoint directories")
    c.add_argument("--out", required=True, type=Path)
    args = p.parse_args(argv)

    if args.cmd == "table":
        df = tables.build_table(args.runs, args.geneval, args.preference)
        with atomic_path(args.out, ".csv") as tmp:
            df.to_csv(tmp, index=False, float_format="%.6g")
        if args.markdown:
            atomic_write_text(args.markdown, tables.to_markdown(df))
        print(tables.to_markdown(df))
    elif args.cmd == "geneval-bars":
        with atomic_path(args.out, ".png") as tmp:
            plots.geneval_bars(pd.read_csv(args.table), tmp)
    elif args.cmd == "training-curves":
        with atomic_path(args.out, ".png") as tmp:
            plots.training_curves(args.runs, tmp)
    else:
        with atomic_path(args.out, ".png") as tmp:
            plots.sample_grid(args.images, tmp)


if __name__ == "__main__":
    run_cli(main)
