"""Result tables in the paper's layout, from score files only, in CSV, Markdown and LaTeX.

One table model (`Table`) feeds every format: one row per run in the config's order
(teachers at each NFE, DMD, the naive variants, DMDR, GDMD, ablations), columns NFE,
seeds, GenEval overall and its six tags, the collapse diagnostic (empty-image rates), and
every preference metric; each cell is the mean over seeds with the half-width of its 95%
Student-t interval (none with one seed: the seeds column says n = 1). The best measured
value of each column is marked (ties all marked; for the empty-image rates the lowest).
Published reference rows (reports/reference/*.csv) appear below the measured ones,
marked with their source, and never take part in the best marks.

Inputs are files only: the run settings (results/<study>/runs/<run>.json) and the score
summaries (.../geneval/<run>/seed<k>.summary.json, .../preference/<run>/seed<k>.summary.json;
the parent directory names the run).
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from gdmd.io import UserError

TAGS = ("single_object", "two_object", "counting", "colors", "position", "color_attr")
GENEVAL_COLUMNS = ("geneval_overall", *TAGS)
EMPTY_COLUMNS = ("empty", "empty_single_object")  # lower is better
LOWER_IS_BETTER = set(EMPTY_COLUMNS)
LABELS = {"geneval_overall": "GenEval", "single_object": "single", "two_object": "two", "counting": "count",
          "colors": "colors", "position": "position", "color_attr": "attr", "empty": "empty",
          "empty_single_object": "empty (single)"}  # fmt: skip
REFERENCE_DIR = Path(__file__).with_name("reference")
REFERENCE_FIELDS = ("id", "model", "method", "nfe", "source", "protocol")


def mean_ci95(values) -> tuple[float, float]:
    """Mean and the half-width of its 95% Student-t interval (NaN with fewer than two values)."""
    v = np.asarray(values, dtype=np.float64)
    v = v[~np.isnan(v)]
    if len(v) < 2:
        return float(v.mean()) if len(v) else math.nan, math.nan
    return float(v.mean()), float(stats.t.ppf(0.975, len(v) - 1) * v.std(ddof=1) / math.sqrt(len(v)))


@dataclass
class Row:
    run: str
    method: str
    nfe: float
    seeds: int  # 0 for reference rows
    values: dict[str, tuple[float, float]]  # column -> (mean, ci95 half-width)
    steps: int | None = None
    cfg_scale: float | None = None
    source: str = ""  # reference rows: where the numbers come from
    protocol: str = ""

    @property
    def reference(self) -> bool:
        return bool(self.source)


@dataclass
class Table:
    rows: list[Row]
    columns: list[str]
    title: str = ""
    extra: list[str] = field(default_factory=list)  # leading per-row columns (ablation parameters)

    @property
    def measured(self) -> list[Row]:
        return [r for r in self.rows if not r.reference]

    def best(self, column: str) -> set[str]:
        """Runs holding the best measured mean of `column` (all of them when tied; none
        with fewer than two measured rows or no finite value)."""
        vals = {r.run: r.values.get(column, (math.nan, math.nan))[0] for r in self.measured}
        finite = {k: v for k, v in vals.items() if not math.isnan(v)}
        if len(self.measured) < 2 or not finite:
            return set()
        target = min(finite.values()) if column in LOWER_IS_BETTER else max(finite.values())
        return {k for k, v in finite.items() if v == target}


def _read_json(path: Path) -> dict:
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise UserError(f"{path}: score file not found") from None
    except json.JSONDecodeError as e:
        raise UserError(f"{path}: malformed JSON ({e.msg})") from None


def _by_run(files: list[str | Path], kind: str, runs: list[str]) -> dict[str, list[Path]]:
    out: dict[str, list[Path]] = {r: [] for r in runs}
    for f in map(Path, files):
        out.setdefault(f.parent.name, []).append(f)
    for r in runs:
        if not out[r]:
            raise UserError(f"run {r!r}: no {kind} score files given")
    return out


def measured_rows(run_files, geneval_files, preference_files) -> list[Row]:
    """One row per run file, in the order given (the config's)."""
    runs = [_read_json(Path(rf)) for rf in run_files]
    names = [r["run"] for r in runs]
    gfiles_by_run = _by_run(geneval_files, "geneval", names)
    pfiles_by_run = _by_run(preference_files, "preference", names)
    rows = []
    for run in runs:
        name = run["run"]
        per_seed: dict[str, list[float]] = {}
        for f in gfiles_by_run[name]:
            s = _read_json(f)
            per_seed.setdefault("geneval_overall", []).append(s["overall"])
            for t in TAGS:
                per_seed.setdefault(t, []).append(s["tags"].get(t, math.nan))
            empty = s.get("empty", {})  # the collapse diagnostic (eval.geneval.rules.empty_rates)
            per_seed.setdefault("empty", []).append(empty.get("overall", math.nan))
            per_seed.setdefault("empty_single_object", []).append(empty.get("tags", {}).get("single_object", math.nan))
        for f in pfiles_by_run[name]:
            for m, v in _read_json(f)["metrics"].items():
                per_seed.setdefault(m, []).append(v["mean"])
        cfg_scale = run.get("cfg_scale", 1.0)
        rows.append(
            Row(
                name,
                run["method"],
                run["steps"] * (2 if cfg_scale != 1.0 else 1),
                len(gfiles_by_run[name]),
                {k: mean_ci95(v) for k, v in per_seed.items()},
                run["steps"],
                cfg_scale,
            )  # fmt: skip
        )
    return rows


def read_reference(path: str | Path, ids: list[str] | None = None) -> list[Row]:
    """Reference rows of a CSV (REFERENCE_FIELDS plus metric columns in our units; empty
    cells are numbers the source does not give), all or those with the given ids."""
    path = Path(path)
    if not path.is_file() and not path.is_absolute():
        path = REFERENCE_DIR / path
    try:
        with open(path, newline="") as f:
            records = list(csv.DictReader(f))
    except FileNotFoundError:
        raise UserError(f"{path}: reference table not found") from None
    missing = [k for k in REFERENCE_FIELDS if records and k not in records[0]]
    if missing:
        raise UserError(f"{path}: missing column {missing[0]!r}")
    known = {r["id"] for r in records}
    for i in ids or []:
        if i not in known:
            raise UserError(f"{path}: no reference row {i!r}; known: {', '.join(sorted(known))}")
    rows = []
    for rec in records:
        if ids and rec["id"] not in ids:
            continue
        values = {k: (float(v), math.nan) for k, v in rec.items() if k not in REFERENCE_FIELDS and k != "note" and v != ""}
        rows.append(Row(rec["id"], rec["method"], float(rec["nfe"]), 0, values, source=rec["source"], protocol=rec["protocol"]))
    return rows


def build(rows: list[Row], reference: list[Row] = (), title: str = "", extra: list[str] = ()) -> Table:
    """The table of measured rows plus reference rows; columns: GenEval, the empty-image
    rates, then every other metric in order of appearance."""
    seen: list[str] = []
    for r in [*rows, *reference]:  # the leading parameter columns (`extra`) are not metrics
        seen += [c for c in r.values if c not in seen and c not in extra]
    ordered = [c for c in (*GENEVAL_COLUMNS, *EMPTY_COLUMNS) if c in seen] + [
        c for c in seen if c not in GENEVAL_COLUMNS and c not in EMPTY_COLUMNS
    ]
    return Table(list(rows) + list(reference), ordered, title, list(extra))


def build_table(run_files, geneval_files, preference_files) -> pd.DataFrame:
    """The measured table as a DataFrame (the CSV): mean and `<col>_ci95` per column."""
    return to_frame(build(measured_rows(run_files, geneval_files, preference_files)))


def to_frame(table: Table) -> pd.DataFrame:
    out = []
    for r in table.rows:
        rec = {"run": r.run, "method": r.method, "steps": r.steps, "nfe": r.nfe, "cfg_scale": r.cfg_scale, "seeds": r.seeds}
        rec.update({k: r.values.get(k) for k in table.extra})
        for c in table.columns:
            rec[c], rec[f"{c}_ci95"] = r.values.get(c, (math.nan, math.nan))
        rec["source"] = r.source
        out.append(rec)
    df = pd.DataFrame(out)
    if not any(r.reference for r in table.rows):
        df = df.drop(columns="source")
    return df


def metric_columns(df: pd.DataFrame) -> list[str]:
    fixed = {"run", "method", "steps", "nfe", "cfg_scale", "seeds", "source"}
    return [c for c in df.columns if c not in fixed and not c.endswith("_ci95")]


def _digits(column: str) -> int:
    return 3 if column in GENEVAL_COLUMNS or column in EMPTY_COLUMNS else 2


def _cell(table: Table, row: Row, column: str, bold, plus_minus: str) -> str:
    mean, ci = row.values.get(column, (math.nan, math.nan))
    if math.isnan(mean):
        return "-"
    d = _digits(column)
    text = f"{mean:.{d}f}" if math.isnan(ci) else f"{mean:.{d}f}{plus_minus}{ci:.{d}f}"
    return bold(text) if not row.reference and row.run in table.best(column) else text


def _label(row: Row) -> str:
    return f"{row.run} [ref]" if row.reference else row.run


def _nfe(row: Row) -> str:
    return f"{row.nfe:g}"


def _value(v) -> str:
    if isinstance(v, tuple):
        v = v[0]
    return "-" if v is None else (f"{v:g}" if isinstance(v, float) else str(v))


def to_markdown(table: Table) -> str:
    """Markdown: mean ± 95% CI (n = 1: the mean alone), the best per column in bold,
    reference rows marked [ref] with their sources in notes below."""
    head = ["run", *table.extra, "method", "NFE", "n", *(LABELS.get(c, c) for c in table.columns)]
    lines = ([f"**{table.title}**", ""] if table.title else []) + ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    notes = []
    for r in table.rows:
        cells = [_label(r), *(_value(r.values.get(k)) for k in table.extra), r.method, _nfe(r), str(r.seeds) if r.seeds else "-"]
        cells += [_cell(table, r, c, lambda t: f"**{t}**", " ± ") for c in table.columns]
        lines.append("| " + " | ".join(cells) + " |")
        if r.reference:
            notes.append(f"- [ref] {r.run}: {r.source}; protocol: {r.protocol}")
    lines += ["", "Mean ± 95% Student-t interval over the n seeds (n = 1: no interval); bold: the best measured value "
              "per column (lowest for the empty-image rates); [ref] rows are published numbers, not measured here, "
              "and never marked."]  # fmt: skip
    return "\n".join(lines + notes) + "\n"


def _tex(s: str) -> str:
    for a, b in (("\\", r"\textbackslash{}"), ("_", r"\_"), ("%", r"\%"), ("&", r"\&"), ("#", r"\#")):
        s = s.replace(a, b)
    return s


def to_latex(table: Table) -> str:
    """A booktabs table (\\toprule, \\midrule, \\bottomrule; needs \\usepackage{booktabs}):
    the same cells as the Markdown, best in \\textbf, reference rows after a \\midrule."""
    head = ["Run", *table.extra, "NFE", "$n$", *(LABELS.get(c, c) for c in table.columns)]
    spec = "l" * (1 + len(table.extra)) + "r" * (2 + len(table.columns))
    out = [r"\begin{table}[t]", r"\centering", r"\small", rf"\begin{{tabular}}{{{spec}}}", r"\toprule"]
    out.append(" & ".join(_tex(h) for h in head) + r" \\")
    out.append(r"\midrule")
    first_ref = True
    for r in table.rows:
        if r.reference and first_ref:
            out.append(r"\midrule")
            first_ref = False
        cells = [
            _tex(_label(r)),
            *(_tex(_value(r.values.get(k))) for k in table.extra),
            _nfe(r),
            str(r.seeds) if r.seeds else "--",
        ]
        cells += [_cell(table, r, c, lambda t: rf"\textbf{{{t}}}", r"$\pm$") for c in table.columns]
        out.append(" & ".join(cells) + r" \\")
    out += [r"\bottomrule", r"\end{tabular}"]
    caption = "Mean $\\pm$ 95\\% Student-t interval over $n$ seeds; best measured value per column in bold."
    if not first_ref:
        caption += (
            " [ref]: published numbers (" + "; ".join(_tex(f"{r.run}: {r.source}") for r in table.rows if r.reference) + ")."
        )
    out += [rf"\caption{{{_tex(table.title) + ': ' if table.title else ''}{caption}}}", r"\end{table}"]
    return "\n".join(out) + "\n"


def to_html(table: Table) -> str:
    """A standalone HTML page of the table (what the Snakemake report shows): the same
    cells as the Markdown, best in bold, reference rows marked and sourced below."""
    import html

    head = ["run", *table.extra, "method", "NFE", "n", *(LABELS.get(c, c) for c in table.columns)]
    out = ["<!DOCTYPE html>", '<html><head><meta charset="utf-8">', f"<title>{html.escape(table.title or 'results')}</title>",
           "<style>body{font-family:sans-serif;font-size:13px}table{border-collapse:collapse}"
           "th,td{padding:3px 8px;border-bottom:1px solid #ccc;text-align:right;white-space:nowrap}th:first-child,td:first-child{text-align:left}"
           "tr.ref{color:#666;font-style:italic}</style></head><body>"]  # fmt: skip
    if table.title:
        out.append(f"<h3>{html.escape(table.title)}</h3>")
    out.append("<table><thead><tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in head) + "</tr></thead><tbody>")
    notes = []
    for r in table.rows:
        cells = [_label(r), *(_value(r.values.get(k)) for k in table.extra), r.method, _nfe(r), str(r.seeds) if r.seeds else "-"]
        cells = [html.escape(c) for c in cells]
        cells += [_cell(table, r, c, lambda t: f"<b>{html.escape(t)}</b>", " ± ") for c in table.columns]
        tr = '<tr class="ref">' if r.reference else "<tr>"
        out.append(tr + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
        if r.reference:
            notes.append(f"<li>[ref] {html.escape(r.run)}: {html.escape(r.source)}; protocol: {html.escape(r.protocol)}</li>")
    out.append("</tbody></table>")
    out.append("<p>Mean ± 95% Student-t interval over the n seeds (n = 1: no interval); bold: the best measured value per "
               "column (lowest for the empty-image rates); [ref] rows are published numbers, never marked.</p>")  # fmt: skip
    if notes:
        out.append("<ul>" + "".join(notes) + "</ul>")
    return "\n".join(out + ["</body></html>"]) + "\n"
