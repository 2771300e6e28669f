"""Report tables: mean and 95% t-interval over seeds, the markdown layout, file-only inputs."""

import json
import math

import pytest

from gdmd.io import UserError
from reports.tables import build_table, mean_ci95, to_markdown


def test_mean_ci95_known_answer():
    m, h = mean_ci95([1.0, 2.0, 3.0])
    # s = 1, t_{0.975, 2} = 4.302653, half-width = 4.302653 / sqrt(3)
    assert m == 2.0 and h == pytest.approx(4.302653 / math.sqrt(3), rel=1e-6)
    m, h = mean_ci95([0.5])
    assert m == 0.5 and math.isnan(h)


def _write(path, obj):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj))
    return path


def test_table_from_score_files(tmp_path):
    runs, gfiles, pfiles = [], [], []
    for name, method, steps, cfg, overall in [
        ("teacher-50step", "teacher", 50, 4.0, [0.6, 0.7]),
        ("dmd", "dmd", 4, 1.0, [0.5, 0.55]),
    ]:
        runs.append(_write(tmp_path / "runs" / f"{name}.json", {"run": name, "method": method, "steps": steps, "cfg_scale": cfg}))
        for seed, o in enumerate(overall):
            tags = {t: o for t in ["single_object", "two_object", "counting", "colors", "position", "color_attr"]}
            gfiles.append(_write(tmp_path / "geneval" / name / f"seed{seed}.summary.json", {"overall": o, "tags": tags}))
            pfiles.append(
                _write(tmp_path / "preference" / name / f"seed{seed}.summary.json", {"metrics": {"m": {"mean": 10 * o}}})
            )
    df = build_table(runs, gfiles, pfiles)
    assert df["run"].tolist() == ["teacher-50step", "dmd"]
    assert df["nfe"].tolist() == [100, 4] and df["seeds"].tolist() == [2, 2]
    assert df.loc[0, "geneval_overall"] == pytest.approx(0.65) and df.loc[1, "m"] == pytest.approx(5.25)
    assert df.loc[0, "geneval_overall_ci95"] == pytest.approx(12.7062 * 0.0707107 / math.sqrt(2), rel=1e-4)
    md = to_markdown(df)
    assert md.splitlines()[0].startswith("| run | method | steps | NFE | seeds | geneval_overall |")
    assert "**0.650 ± 0.635**" in md  # best overall in bold, with its interval
    with pytest.raises(UserError, match="run 'dmd': no preference score files"):
        build_table(runs, gfiles, pfiles[:2])
