"""Build a study's report pieces from score files and training logs: `python -m reports <command>`.

table             the main table (CSV + Markdown + LaTeX), with reference rows if named
ablations         one table per ablation group of the config (Markdown + LaTeX)
geneval-bars      per-tag GenEval bars with 95% CI whiskers (PNG + PDF)
metric-vs-nfe     every metric against NFE (PNG + PDF)
reward-vs-geneval each training reward's metric against GenEval overall (PNG + PDF)
training-curves   losses, rewards, weights and schedules from the training logs (PNG + PDF)
sample-grid       one image folder's samples (PNG + PDF)
study-grid        every run's samples of the same prompts and seeds (PNG + PDF)
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pandas as pd

from gdmd.io import CliParser, UserError, atomic_path, atomic_write_text, run_cli

from . import plots, tables


def _scores(p):
    p.add_argument("--runs", required=True, nargs="+", type=Path, help="run settings files, in table order")
    p.add_argument("--geneval", required=True, nargs="+", type=Path, help="GenEval summaries <run>/seed<k>.summary.json")
    p.add_argument("--preference", required=True, nargs="+", type=Path, help="preference summaries, same layout")


def _figure(out: Path, draw) -> None:
    """The figure `draw()` makes, as `out` (PNG) and the same name .pdf, each written under a
    temporary name and renamed when complete."""
    fig = draw()
    with atomic_path(out, ".png") as png, atomic_path(out.with_suffix(".pdf"), ".pdf") as pdf:
        plots.save(fig, png, pdf, dpi=110)


def ablation_tables(run_files, geneval, preference, groups: dict) -> list[tables.Table]:
    """One table per ablation group {title: {"key": train key, "runs": [names]}}: the group's
    runs in the given order, with the key's value (its method default where a run leaves it
    out) as a leading column."""
    from gdmd.methods import get_method

    rows = {r.run: r for r in tables.measured_rows(run_files, geneval, preference)}
    settings = {json.loads(Path(f).read_text())["run"]: json.loads(Path(f).read_text()) for f in run_files}
    out = []
    for title, spec in groups.items():
        key, names = spec["key"], spec["runs"]
        unknown = [n for n in names if n not in rows]
        if unknown:
            raise UserError(f"ablation {title!r}: run {unknown[0]!r} is not in the table")
        group = []
        for n in names:
            run = settings[n]
            value = run[key] if key in ("method", "steps", "cfg_scale") else run.get("train", {}).get(key)
            if value is None and run["method"] != "teacher":  # the method's default
                value = getattr(get_method(run["method"]).Config(), key, None)
            # a copy per group: a run in two groups (gdmd in all of them) carries only this group's key
            r = dataclasses.replace(rows[n], values={**rows[n].values})
            if key != "method":  # the method is a column already
                r.values[key] = (value if isinstance(value, (int, float)) else str(value), float("nan"))
            group.append(r)
        out.append(tables.build(group, title=title, extra=[] if key == "method" else [key]))
    return out


def main(argv=None):
    p = CliParser(prog="python -m reports", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("table", help="main results table (CSV + Markdown + LaTeX)")
    _scores(t)
    t.add_argument("--out", required=True, type=Path, help="CSV")
    t.add_argument("--markdown", type=Path)
    t.add_argument("--latex", type=Path)
    t.add_argument("--html", type=Path)
    t.add_argument("--reference", nargs="*", default=[], help="reference rows: FILE.csv or FILE.csv:id1,id2")
    t.add_argument("--title", default="")
    a = sub.add_parser("ablations", help="one table per ablation group (Markdown + LaTeX)")
    _scores(a)
    a.add_argument("--groups", required=True, help="JSON {title: {key, runs}} (the config's report.ablations)")
    a.add_argument("--markdown", required=True, type=Path)
    a.add_argument("--latex", required=True, type=Path)
    a.add_argument("--html", required=True, type=Path)
    for name, helptext in (("geneval-bars", "per-tag GenEval bars"), ("metric-vs-nfe", "metrics against NFE"),
                           ("metrics-by-run", "GenEval overall and the preference metrics per run")):  # fmt: skip
        b = sub.add_parser(name, help=helptext)
        b.add_argument("--table", required=True, type=Path)
        b.add_argument("--out", required=True, type=Path)
    rv = sub.add_parser("reward-vs-geneval", help="reward metrics against GenEval overall")
    rv.add_argument("--table", required=True, type=Path)
    rv.add_argument("--rewards", default="", help="comma-separated metric columns (default: the preference metrics)")
    rv.add_argument("--out", required=True, type=Path)
    c = sub.add_parser("training-curves", help="training curves from the runs' logs")
    c.add_argument("--logs", required=True, nargs="+", type=Path, help="<run>/seed<k>.csv training logs")
    c.add_argument("--out", required=True, type=Path)
    g = sub.add_parser("sample-grid", help="one folder's samples with their prompts")
    g.add_argument("--images", required=True, type=Path)
    g.add_argument("--out", required=True, type=Path)
    sg = sub.add_parser("study-grid", help="every run's samples of the same prompts and seeds")
    sg.add_argument("--images", required=True, nargs="+", type=Path, help="one folder per row (run)")
    sg.add_argument("--out", required=True, type=Path)
    args = p.parse_args(argv)

    if args.cmd == "table":
        reference = []
        for spec in args.reference:
            path, _, ids = spec.partition(":")
            reference += tables.read_reference(path, [i for i in ids.split(",") if i] or None)
        table = tables.build(tables.measured_rows(args.runs, args.geneval, args.preference), reference, args.title)
        with atomic_path(args.out, ".csv") as tmp:
            tables.to_frame(table).to_csv(tmp, index=False, float_format="%.6g")
        if args.markdown:
            atomic_write_text(args.markdown, tables.to_markdown(table))
        if args.latex:
            atomic_write_text(args.latex, tables.to_latex(table))
        if args.html:
            atomic_write_text(args.html, tables.to_html(table))
        print(tables.to_markdown(table))
    elif args.cmd == "ablations":
        try:
            groups = json.loads(args.groups)
        except json.JSONDecodeError as e:
            raise UserError(f"--groups: malformed JSON ({e.msg})") from None
        made = ablation_tables(args.runs, args.geneval, args.preference, groups)
        atomic_write_text(args.markdown, "\n".join(tables.to_markdown(t) for t in made) or "No ablations.\n")
        atomic_write_text(args.latex, "\n".join(tables.to_latex(t) for t in made) or "% no ablations\n")
        atomic_write_text(args.html, "\n".join(tables.to_html(t) for t in made) or "<p>No ablations.</p>\n")
    elif args.cmd == "geneval-bars":
        _figure(args.out, lambda: plots.geneval_bars(pd.read_csv(args.table)))
    elif args.cmd == "metrics-by-run":
        _figure(args.out, lambda: plots.metrics_by_run(pd.read_csv(args.table)))
    elif args.cmd == "metric-vs-nfe":
        _figure(args.out, lambda: plots.metric_vs_nfe(pd.read_csv(args.table)))
    elif args.cmd == "reward-vs-geneval":
        rewards = [r for r in args.rewards.split(",") if r]
        _figure(args.out, lambda: plots.reward_vs_geneval(pd.read_csv(args.table), rewards))
    elif args.cmd == "training-curves":
        _figure(args.out, lambda: plots.training_curves(args.logs))
    elif args.cmd == "sample-grid":
        _figure(args.out, lambda: plots.sample_grid(args.images))
    else:
        _figure(args.out, lambda: plots.study_grid(args.images))


if __name__ == "__main__":
    run_cli(main)
