"""The DAG: lint/format, schema errors at parse time, dry runs, and the smoke study end to end."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from ..conftest import ROOT

BIN = Path(sys.executable).parent


def snakemake(workdir, *args, timeout=1800):
    env = dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ['PATH']}")
    cmd = [str(BIN / "snakemake"), "-s", str(ROOT / "workflow" / "Snakefile"), "--directory", str(workdir), *map(str, args)]
    return subprocess.run(cmd, cwd=workdir, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.fixture()
def workdir(tmp_path):
    """A scratch working directory with the project's configs and committed assets."""
    shutil.copytree(ROOT / "config", tmp_path / "config")
    (tmp_path / "resources").symlink_to(ROOT / "resources")
    return tmp_path


def write_config(workdir, name, **changes):
    cfg = yaml.safe_load((workdir / "config" / "smoke.yaml").read_text())
    for dotted, value in changes.items():
        node = cfg
        *path, last = dotted.split(".")
        for p in path:
            node = node[p]
        if value is None:
            del node[last]
        else:
            node[last] = value
    (workdir / "config" / name).write_text(yaml.safe_dump(cfg))
    return f"config/{name}"


def test_lint_and_format_are_clean(workdir):
    r = snakemake(workdir, "--lint", "--configfile", "config/shapes.yaml")
    assert r.returncode == 0 and "Congratulations" in r.stdout + r.stderr, r.stdout + r.stderr
    f = subprocess.run([str(BIN / "snakefmt"), "--check", str(ROOT / "workflow")], capture_output=True, text=True)
    assert f.returncode == 0, f.stderr


@pytest.mark.parametrize("config", ["config/shapes.yaml", "config/smoke.yaml"])
def test_dry_run(workdir, config):
    r = snakemake(workdir, "-n", "--configfile", config)
    assert r.returncode == 0, r.stderr
    assert "sample" in r.stdout and "table" in r.stdout


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"prompt": {"per_tag": 2}}, "config: unknown key 'prompt'; known: study, backbone, assets"),
        ({"prompts.per_tag": "many"}, "config: prompts.per_tag: 'many' is not of type 'integer'"),
        ({"runs.dmd.method": "dmd3"}, "config: runs.dmd.method: 'dmd3' is not one of teacher, dmd"),
        ({"backbone": "sdxl"}, "config: backbone: 'sdxl' is not one of shapes"),
        ({"runs.dmd.train.gen_evry": 2}, "runs.dmd.train: unknown key 'gen_evry'; known: iterations"),
        ({"runs.dmd.train.batch_size": 2.5}, "runs.dmd.train.batch_size: expected int, got 2.5"),
        ({"geneval.backend": "yolo"}, "config: geneval.backend: 'yolo' is not one of shapes, transformers, mmdet"),
        ({"preference.metrics": ["hps"]}, "config: preference.metrics.0: 'hps' is not one of shapes_clipscore, shapes_aesthetic"),
        ({"seeds": []}, "config: seeds: [] should be non-empty"),
    ],
)
def test_bad_config_fails_at_parse_time_naming_the_key(workdir, changes, message):
    cfg = write_config(workdir, "bad.yaml", **{k: v for k, v in changes.items() if "." in k})
    if any("." not in k for k in changes):
        data = yaml.safe_load((workdir / cfg).read_text())
        data.update({k: v for k, v in changes.items() if "." not in k})
        (workdir / cfg).write_text(yaml.safe_dump(data))
    r = snakemake(workdir, "-n", "--configfile", cfg)
    assert r.returncode != 0
    assert message in r.stdout + r.stderr, (r.stdout + r.stderr)[-3000:]
    assert not (workdir / "results").exists()


@pytest.mark.slow
def test_smoke_study_end_to_end(workdir):
    r = snakemake(workdir, "--cores", "2", "--configfile", "config/smoke.yaml")
    assert r.returncode == 0, (r.stdout + r.stderr)[-5000:]
    res = workdir / "results" / "smoke"
    df = pd.read_csv(res / "tables" / "main.csv")
    assert df["run"].tolist() == ["teacher-8step", "teacher-2step", "dmd"]
    assert df["seeds"].tolist() == [2, 2, 2]
    assert df.set_index("run").loc["teacher-8step", "nfe"] == 16 and df.set_index("run").loc["dmd", "nfe"] == 4
    for col in ["geneval_overall", "single_object", "color_attr", "shapes_clipscore", "shapes_aesthetic"]:
        assert df[col].between(-100, 100).all() and df[col].notna().all()
    assert "| run | method |" in (res / "tables" / "main.md").read_text()
    for fig in ["geneval_tags.png", "training_curves.png", "samples/dmd_seed1.png"]:
        assert (res / "figures" / fig).stat().st_size > 1000
    # every job logged and was benchmarked
    assert (res / "logs" / "train" / "dmd" / "seed0.log").is_file()
    assert (res / "benchmarks" / "sample" / "teacher-8step" / "seed1.tsv").is_file()
    summary = json.loads((res / "geneval" / "dmd" / "seed0.summary.json").read_text())
    assert summary["images"] == 24 and summary["backend"] == "shapes"
    # a second run has nothing to do
    r = snakemake(workdir, "-n", "--configfile", "config/smoke.yaml")
    assert "Nothing to be done" in r.stdout + r.stderr


@pytest.mark.slow
def test_pretrain_target_trains_installable_assets(workdir):
    r = snakemake(workdir, "pretrain", "--cores", "2", "--configfile", "config/smoke.yaml")
    assert r.returncode == 0, (r.stdout + r.stderr)[-5000:]
    out = workdir / "results" / "pretrain" / "smoke"
    for asset in ["clip", "aesthetic", "teacher"]:
        info = json.loads((out / asset / "info.json").read_text())
        assert "metrics" in info and "config" in info and "gdmd.shapes.pretrain" in info["command"]
        assert (out / asset / "metrics.csv").is_file()
    # the smoke config's teacher has three stages: teacher_base -> teacher_stage2 -> teacher
    info = json.loads((out / "teacher" / "info.json").read_text())
    assert info["stage"] == 3 and info["init"]["path"].endswith("teacher_stage2")
    assert info["init"]["init"]["path"].endswith("teacher_base") and info["init"]["init"]["stage"] == 1
    assert "teacher-finetune --stage 3" in info["command"]
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    r = subprocess.run(
        [sys.executable, "-m", "gdmd.shapes.assets", "install", str(out), str(workdir / "installed")],
        env=env, capture_output=True, text=True,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    manifest = json.loads((workdir / "installed" / "MANIFEST.json").read_text())
    assert set(manifest) == {"clip", "aesthetic", "teacher"}
    assert "teacher/transformer/diffusion_pytorch_model.safetensors" in manifest["teacher"]["files"]
