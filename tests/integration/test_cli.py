"""The real entry points on tiny random-weight assets: sample -> GenEval -> preference -> table."""

import json

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from eval.geneval.folder import list_samples
from gdmd.shapes.prompts import evaluation_metadata, write_metadata

from ..conftest import run_cli


def _run_settings(tmp_path, assets, run="teacher-3step", steps=3, cfg_scale=2.0):
    path = tmp_path / "runs" / f"{run}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    settings = {
        "study": "t",
        "run": run,
        "backbone": "shapes",
        "assets": {"teacher": str(assets / "teacher"), "text_encoder": str(assets / "clip")},
        "method": "teacher",
        "steps": steps,
        "cfg_scale": cfg_scale,
        "batch_size": 5,
        "train": {},
    }
    r = run_cli("gdmd.study", "--settings", json.dumps(settings), "--out", path)
    assert r.returncode == 0, r.stderr
    return path


@pytest.fixture(scope="module")
def pipeline(tiny_assets, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("cli")
    meta = tmp / "meta.jsonl"
    write_metadata(evaluation_metadata(per_tag=1, seed=0), meta)
    run = _run_settings(tmp, tiny_assets)
    out = tmp / "samples" / "teacher-3step" / "seed0"
    r = run_cli("gdmd.sample", "--run-config", run, "--metadata", meta, "--images-per-prompt", 2, "--seed", 0, "--out", out)
    assert r.returncode == 0, r.stderr
    return tmp, run, meta, out


def test_sample_writes_geneval_layout(pipeline):
    tmp, _, meta, out = pipeline
    samples = list_samples(out)
    assert len(samples) == 12
    assert (out / "00000" / "metadata.jsonl").is_file() and (out / "00005" / "samples" / "0001.png").is_file()
    assert json.loads((out / "sampling.json").read_text())["nfe"] == 6
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".")]  # no temp dirs left


# the native mode's bound on how far an image may move across batch sizes (grey levels of
# 255); measured: at most 1 on an AVX-512 AMD EPYC with 2 threads (MKL's kernels differ by
# the matrix's row count); the pinned mode must give the same bytes
NATIVE_TOLERANCE = 2


@pytest.mark.parametrize("mode", ["pinned", "native"])
def test_sampling_does_not_depend_on_batching(pipeline, mode):
    tmp, run, meta, _ = pipeline
    settings = json.loads(run.read_text())
    outs = []
    for batch in (5, 3, 1):  # 12 images: chunks 5+5+2, 3+3+3+3, 1 x 12 (padded to MIN_ROWS)
        settings["batch_size"] = batch
        other = tmp / "runs" / f"{mode}-batch{batch}.json"
        other.write_text(json.dumps(settings))
        out = tmp / "samples" / f"{mode}-batch{batch}"
        args = ("--run-config", other, "--metadata", meta, "--images-per-prompt", 2, "--seed", 0, "--out", out)
        r = run_cli("gdmd.sample", *args, env={"GDMD_NUMERICS": mode})
        assert r.returncode == 0, r.stderr
        assert json.loads((out / "sampling.json").read_text())["numerics"]["mode"] == mode
        outs.append(sorted(out.rglob("*.png")))
    for a, b, c in zip(*outs):
        if mode == "pinned":
            assert a.read_bytes() == b.read_bytes() == c.read_bytes(), a
        else:
            ia, ib, ic = (np.asarray(Image.open(p), dtype=int) for p in (a, b, c))
            assert np.abs(ia - ib).max() <= NATIVE_TOLERANCE and np.abs(ia - ic).max() <= NATIVE_TOLERANCE, a


def test_geneval_preference_and_table(pipeline, tiny_assets):
    tmp, run, _, out = pipeline
    res = tmp / "results"
    g = res / "geneval" / "teacher-3step"
    r = run_cli(
        "eval.geneval", "--images", out, "--backend", "shapes", "--out", g / "seed0.jsonl", "--summary", g / "seed0.summary.json"
    )
    assert r.returncode == 0, r.stderr
    rows = [json.loads(line) for line in (g / "seed0.jsonl").read_text().splitlines()]
    assert len(rows) == 12
    assert set(rows[0]) == {"filename", "tag", "prompt", "correct", "reason", "metadata", "details"}
    summary = json.loads((g / "seed0.summary.json").read_text())
    assert set(summary["tags"]) == {"single_object", "two_object", "counting", "colors", "position", "color_attr"}
    assert 0.0 <= summary["overall"] <= 1.0 and summary["images"] == 12

    p = res / "preference" / "teacher-3step"
    weights = f"clip={tiny_assets / 'clip'},aesthetic_head={tiny_assets / 'aesthetic'}"
    r = run_cli(
        "eval.preference", "--images", out, "--metrics", "shapes_clipscore,shapes_aesthetic", "--weights", weights,
        "--out", p / "seed0.csv", "--summary", p / "seed0.summary.json",
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    scores = pd.read_csv(p / "seed0.csv")
    assert list(scores.columns) == ["filename", "tag", "prompt", "shapes_clipscore", "shapes_aesthetic"] and len(scores) == 12

    table = tmp / "tables" / "main.csv"
    r = run_cli(
        "reports", "table", "--runs", run, "--geneval", g / "seed0.summary.json", "--preference", p / "seed0.summary.json",
        "--out", table, "--markdown", table.with_suffix(".md"),
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    df = pd.read_csv(table)
    assert df.loc[0, "run"] == "teacher-3step" and df.loc[0, "nfe"] == 6
    assert df.loc[0, "geneval_overall"] == pytest.approx(summary["overall"])
    assert df.loc[0, "shapes_clipscore"] == pytest.approx(scores["shapes_clipscore"].mean(), rel=1e-5)


def test_missing_teacher_is_a_one_line_error_and_leaves_no_output(tiny_assets, tmp_path):
    run = _run_settings(tmp_path, tiny_assets)
    settings = json.loads(run.read_text())
    settings["assets"]["teacher"] = str(tmp_path / "nowhere")
    run.write_text(json.dumps(settings))
    meta = tmp_path / "meta.jsonl"
    write_metadata(evaluation_metadata(per_tag=1), meta)
    out = tmp_path / "out"
    r = run_cli("gdmd.sample", "--run-config", run, "--metadata", meta, "--out", out)
    assert r.returncode == 2
    assert r.stderr.strip().count("\n") == 0 and "nowhere/backbone.json: teacher weights not found" in r.stderr
    assert not out.exists()


def test_unknown_method_lists_the_known_ones(tmp_path):
    settings = {
        "study": "t",
        "run": "x",
        "backbone": "shapes",
        "assets": {"teacher": "a", "text_encoder": "b"},
        "method": "dmd2",
        "steps": 4,
    }
    r = run_cli("gdmd.study", "--settings", json.dumps(settings), "--out", tmp_path / "x.json")
    assert r.returncode == 2 and "unknown method 'dmd2'; known: teacher" in r.stderr
    assert not (tmp_path / "x.json").exists()
