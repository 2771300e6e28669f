"""Report tables: the interval arithmetic against scipy, best marks, row order, the three
formats from one model, reference rows; the figures from files."""

import json
import math
import re

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from gdmd.io import UserError
from reports import plots, tables
from reports.tables import Row, build, build_table, mean_ci95, read_reference, to_latex, to_markdown

TAGS = ["single_object", "two_object", "counting", "colors", "position", "color_attr"]


def test_mean_ci95_known_answer():
    m, h = mean_ci95([1.0, 2.0, 3.0])
    # s = 1, t_{0.975, 2} = 4.302653, half-width = 4.302653 / sqrt(3)
    assert m == 2.0 and h == pytest.approx(4.302653 / math.sqrt(3), rel=1e-6)
    m, h = mean_ci95([0.5])
    assert m == 0.5 and math.isnan(h)


@pytest.mark.parametrize("n", [2, 3, 5, 10])
def test_mean_ci95_is_scipys_t_interval(n):
    x = np.random.default_rng(n).normal(3.0, 2.0, n)
    m, h = mean_ci95(x)
    lo, hi = stats.t.interval(0.95, n - 1, loc=x.mean(), scale=stats.sem(x))
    assert m == pytest.approx(x.mean(), rel=1e-12) and h == pytest.approx((hi - lo) / 2, rel=1e-10)


def _write(path, obj):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj))
    return path


def _study(tmp_path, runs):
    """Score files of runs [(name, method, steps, cfg, [overall per seed])]."""
    rfiles, gfiles, pfiles = [], [], []
    for name, method, steps, cfg, overall in runs:
        rfiles.append(
            _write(tmp_path / "runs" / f"{name}.json", {"run": name, "method": method, "steps": steps, "cfg_scale": cfg})
        )
        for seed, o in enumerate(overall):
            summary = {
                "overall": o,
                "tags": {t: o for t in TAGS},
                "empty": {"overall": 1 - o, "tags": {"single_object": 0.5 - o / 2}},
            }
            gfiles.append(_write(tmp_path / "geneval" / name / f"seed{seed}.summary.json", summary))
            pfiles.append(
                _write(tmp_path / "preference" / name / f"seed{seed}.summary.json", {"metrics": {"m": {"mean": 10 * o}}})
            )
    return rfiles, gfiles, pfiles


def test_table_from_score_files(tmp_path):
    files = _study(tmp_path, [("teacher-50step", "teacher", 50, 4.0, [0.6, 0.7]), ("dmd", "dmd", 4, 1.0, [0.5, 0.55])])
    df = build_table(*files)
    assert df["run"].tolist() == ["teacher-50step", "dmd"]
    assert df["nfe"].tolist() == [100, 4] and df["seeds"].tolist() == [2, 2]
    assert df.loc[0, "geneval_overall"] == pytest.approx(0.65) and df.loc[1, "m"] == pytest.approx(5.25)
    assert df.loc[0, "geneval_overall_ci95"] == pytest.approx(12.7062 * 0.0707107 / math.sqrt(2), rel=1e-4)
    assert df.loc[1, "empty"] == pytest.approx(0.475) and df.loc[1, "empty_single_object"] == pytest.approx(0.2375)
    with pytest.raises(UserError, match="run 'dmd': no preference score files"):
        build_table(*files[:2], files[2][:2])


def test_rows_follow_the_run_files_order(tmp_path):
    runs = [("zeta", "dmd", 4, 1.0, [0.3]), ("alpha", "teacher", 8, 3.0, [0.2]), ("mid", "gdmd", 4, 1.0, [0.4])]
    rfiles, gfiles, pfiles = _study(tmp_path, runs)
    assert build_table(rfiles, gfiles[::-1], pfiles)["run"].tolist() == ["zeta", "alpha", "mid"]


def _row(run, values, **kw):
    return Row(run, "dmd", 4, kw.pop("seeds", 3), {k: (v, 0.01) for k, v in values.items()}, **kw)


def test_best_marks_ties_direction_and_reference_rows():
    ref = Row("paper", "gdmd", 4, 0, {"geneval_overall": (0.99, math.nan), "m": (99.0, math.nan)}, source="a paper", protocol="p")
    t = build(
        [_row("a", {"geneval_overall": 0.5, "empty": 0.1, "m": 3.0}), _row("b", {"geneval_overall": 0.5, "empty": 0.2, "m": 4.0}),
         _row("c", {"geneval_overall": 0.4, "empty": 0.1, "m": math.nan})],
        [ref],
    )  # fmt: skip
    assert t.best("geneval_overall") == {"a", "b"}  # a tie: both marked; the reference's 0.99 never
    assert t.best("empty") == {"a", "c"}  # lower is better
    assert t.best("m") == {"b"}  # NaN ignored, reference excluded
    md = to_markdown(t)
    assert md.count("**0.500 ± 0.010**") == 2 and "0.990" in md and "**0.990" not in md
    assert "| paper [ref] |" in md and "- [ref] paper: a paper; protocol: p" in md
    assert "**99.00" not in md and "**4.00 ± 0.01**" in md
    single = build([_row("only", {"geneval_overall": 0.5})])
    assert single.best("geneval_overall") == set() and "**" not in to_markdown(single).split("\n\n")[0]


def test_one_seed_shows_no_interval_and_says_n():
    t = build(
        [Row("a", "dmd", 4, 1, {"geneval_overall": (0.5, math.nan)}), Row("b", "dmd", 4, 1, {"geneval_overall": (0.4, math.nan)})]
    )
    md = to_markdown(t)
    assert "| a | dmd | 4 | 1 | **0.500** |" in md and "±" not in md.splitlines()[3]
    assert "n = 1: no interval" in md


def test_latex_is_a_booktabs_table_with_the_same_cells():
    ref = Row("paper_x", "gdmd", 4, 0, {"geneval_overall": (0.9, math.nan)}, source="Table 1 & more", protocol="p")
    t = build([_row("dmd_a", {"geneval_overall": 0.5}), _row("dmd_b", {"geneval_overall": 0.4})], [ref], title="shapes")
    tex = to_latex(t)
    lines = tex.splitlines()
    assert lines[0] == r"\begin{table}[t]" and lines[-1] == r"\end{table}"
    body = tex[tex.index(r"\begin{tabular}") : tex.index(r"\end{tabular}")]
    assert [body.count(k) for k in (r"\toprule", r"\midrule", r"\bottomrule")] == [1, 2, 1]
    assert tex.index(r"\toprule") < tex.index(r"\midrule") < tex.index(r"\bottomrule") < tex.index(r"\end{tabular}")
    spec = re.search(r"\\begin\{tabular\}\{(\w+)\}", tex).group(1)
    rows = [ln for ln in body.splitlines() if ln.endswith(r"\\")]
    assert all(ln.count("&") == len(spec) - 1 for ln in rows)  # every row has every column
    assert r"\textbf{0.500$\pm$0.010}" in tex and r"dmd\_a" in tex and r"paper\_x [ref]" in tex and r"Table 1 \& more" in tex


def test_markdown_csv_and_latex_come_from_one_model(tmp_path):
    files = _study(
        tmp_path, [("teacher-8step", "teacher", 8, 3.0, [0.4, 0.5, 0.45]), ("gdmd", "gdmd", 4, 1.0, [0.5, 0.52, 0.49])]
    )
    t = build(tables.measured_rows(*files))
    df = tables.to_frame(t)
    for r in t.rows:
        mean, ci = r.values["geneval_overall"]
        cell = f"{mean:.3f} ± {ci:.3f}"
        assert cell in to_markdown(t) and cell.replace(" ± ", r"$\pm$") in to_latex(t)
        assert df.set_index("run").loc[r.run, "geneval_overall_ci95"] == ci


def test_reference_rows_come_with_their_source():
    rows = read_reference("sd3m.csv", ["rtdmd-sd3m-teacher", "rtdmd-sd3m-gdmd"])
    assert [r.run for r in rows] == ["rtdmd-sd3m-teacher", "rtdmd-sd3m-gdmd"]
    assert all(r.reference and "RTDMD" in r.source and r.seeds == 0 for r in rows)
    assert rows[1].values["pickscore"][0] == pytest.approx(22.4614) and rows[0].values["clipscore"][0] == pytest.approx(29.36)
    with pytest.raises(UserError, match="no reference row 'nope'"):
        read_reference("sd3m.csv", ["nope"])


def test_figures_from_a_table_and_logs(tmp_path):
    files = _study(tmp_path, [("teacher-8step", "teacher", 8, 3.0, [0.4, 0.5]), ("dmd", "dmd", 4, 1.0, [0.5, 0.55])])
    df = tables.to_frame(build(tables.measured_rows(*files)))
    for fig in (plots.geneval_bars(df), plots.metrics_by_run(df), plots.metric_vs_nfe(df), plots.reward_vs_geneval(df, ["m"])):
        png, pdf = tmp_path / "f.png", tmp_path / "f.pdf"
        plots.save(fig, png, pdf)
        assert png.read_bytes()[:4] == b"\x89PNG" and pdf.read_bytes()[:4] == b"%PDF"
    logs = []
    for seed in (0, 1):
        path = tmp_path / "metrics" / "gdmd" / f"seed{seed}.csv"
        path.parent.mkdir(parents=True, exist_ok=True)
        pd.DataFrame({"iteration": range(30), "dmd_loss": np.linspace(1, 0.5, 30) + seed, "napo_r_mean": 0.5}).to_csv(
            path, index=False
        )
        logs.append(path)
    fig = plots.training_curves(logs)
    titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
    assert titles == ["dmd_loss", "napo_r_mean"]
    assert fig.axes[0].get_legend_handles_labels()[1] == ["gdmd (n=2)"]
    # a run that logs only the second quantity keeps its own colour in every panel
    only = tmp_path / "metrics" / "dmd_nft" / "seed0.csv"
    only.parent.mkdir(parents=True)
    pd.DataFrame({"iteration": range(30), "napo_r_mean": 0.4}).to_csv(only, index=False)
    fig = plots.training_curves([only, *logs])
    colours = {}
    for ax in fig.axes:
        for line in ax.get_lines():
            colours.setdefault(line.get_label(), set()).add(line.get_color())
    assert set(colours) == {"gdmd (n=2)", "dmd_nft (n=1)"} and all(len(c) == 1 for c in colours.values()), colours
    assert colours["gdmd (n=2)"] != colours["dmd_nft (n=1)"]


def test_ablation_tables_lead_with_the_changed_key(tmp_path):
    """One table per group; the key's value (a string, a number, or the method's default
    where the run leaves it out) is a leading column, never a metric column."""
    from reports.__main__ import ablation_tables

    rfiles, gfiles, pfiles = _study(
        tmp_path,
        [("gdmd", "gdmd", 4, 1.0, [0.3, 0.4]), ("gdmd-fake", "gdmd", 4, 1.0, [0.5, 0.6]), ("gdmd-G8", "gdmd", 4, 1.0, [0.2])],
    )
    for f, train in zip(rfiles[1:], ({"group": "fake"}, {"targets": 8})):
        run = json.loads(f.read_text())
        f.write_text(json.dumps({**run, "train": train}))
    groups = {"source": {"key": "group", "runs": ["gdmd", "gdmd-fake"]}, "size": {"key": "targets", "runs": ["gdmd", "gdmd-G8"]}}
    made = ablation_tables(rfiles, gfiles, pfiles, groups)
    assert [t.title for t in made] == ["source", "size"] and [t.extra for t in made] == [["group"], ["targets"]]
    assert all(t.extra[0] not in t.columns for t in made)
    md = to_markdown(made[0])
    assert "| gdmd | t | gdmd |" in md and "| gdmd-fake | fake | gdmd |" in md
    assert "| gdmd | 4 | gdmd |" in to_markdown(made[1]) and "| gdmd-G8 | 8 | gdmd |" in to_markdown(made[1])
    assert "fake" in to_latex(made[0]) and "fake" in tables.to_html(made[0])
