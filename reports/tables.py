"""The main results table: one row per run, GenEval + preference metrics, mean and 95% CI over seeds.

Inputs are files only: the run settings (results/<study>/runs/<run>.json) and the score
summaries (.../geneval/<run>/seed<k>.summary.json and .../preference/<run>/seed<k>.summary.json;
the parent directory names the run).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from gdmd.io import UserError

TAGS = ("single_object", "two_object", "counting", "colors", "position", "color_attr")
GENEVAL_COLUMNS = ("geneval_overall", *TAGS)


def mean_ci95(values) -> tuple[float, float]:
    """Mean and the half-width of its 95% t-interval (NaN with fewer than two values)."""
    v = np.asarray(values, dtype=np.float64)
    if len(v) < 2:
        return float(v.mean()) if len(v) else math.nan, math.nan
    return float(v.mean()), float(stats.t.ppf(0.975, len(v) - 1) * v.std(ddof=1) / math.sqrt(len(v)))


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
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


def build_table(run_files: list[str | Path], geneval_files: list[str | Path], preference_files: list[str | Path]) -> pd.DataFrame:
    runs = [_read_json(Path(rf)) for rf in run_files]
    names = [r["run"] for r in runs]
    gfiles_by_run = _by_run(geneval_files, "geneval", names)
    pfiles_by_run = _by_run(preference_files, "preference", names)
    rows = []
    for run in runs:
        name = run["run"]
        per_seed: dict[str, list[float]] = {}
        gfiles = gfiles_by_run[name]
        for f in gfiles:
            s = _read_json(f)
            per_seed.setdefault("geneval_overall", []).append(s["overall"])
            for t in TAGS:
                per_seed.setdefault(t, []).append(s["tags"].get(t, math.nan))
        for f in pfiles_by_run[name]:
            for m, v in _read_json(f)["metrics"].items():
                per_seed.setdefault(m, []).append(v["mean"])
        nfe = run["steps"] * (2 if run.get("cfg_scale", 1.0) != 1.0 else 1)
        row = {
            "run": name,
            "method": run["method"],
            "steps": run["steps"],
            "nfe": nfe,
            "cfg_scale": run.get("cfg_scale", 1.0),
            "seeds": len(gfiles),
        }
        for col, vals in per_seed.items():
            row[col], row[f"{col}_ci95"] = mean_ci95(vals)
        rows.append(row)
    return pd.DataFrame(rows)


def metric_columns(df: pd.DataFrame) -> list[str]:
    fixed = {"run", "method", "steps", "nfe", "cfg_scale", "seeds"}
    return [c for c in df.columns if c not in fixed and not c.endswith("_ci95")]


def to_markdown(df: pd.DataFrame) -> str:
    """Markdown table: mean (+- 95% CI when several seeds); the best value per column in bold."""
    cols = metric_columns(df)
    head = ["run", "method", "steps", "NFE", "seeds", *cols]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    best = {c: df[c].max() for c in cols}
    for _, r in df.iterrows():
        cells = [str(r["run"]), str(r["method"]), str(r["steps"]), str(r["nfe"]), str(r["seeds"])]
        for c in cols:
            v, ci = r[c], r.get(f"{c}_ci95", math.nan)
            txt = f"{v:.3f}" if math.isnan(ci) else f"{v:.3f} ± {ci:.3f}"
            cells.append(f"**{txt}**" if v == best[c] and len(df) > 1 else txt)
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
