"""The DAG: lint/format, schema errors at parse time, dry runs, and the smoke study end to end."""

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
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


def _job_counts(stdout: str) -> dict[str, int]:
    table = stdout.split("Job stats:")[1].split("total")[0]
    return {m.group(1): int(m.group(2)) for m in re.finditer(r"^(\w+)\s+(\d+)$", table, re.M)}


@pytest.mark.parametrize("study", ["sd3m", "sd35m", "sd35l"])
def test_real_studies_list_the_paper_matrix_on_the_slurm_profile(workdir, study):
    """The SD3 studies parse (torch-free) and list the whole matrix with the cluster profile:
    9 trained runs (dmd, dmd_nft, dmdr, gdmd, 5 ablations) and the teacher, 3 seeds each."""
    r = snakemake(workdir, "-n", "--profile", ROOT / "profiles" / "slurm", "--configfile", f"config/{study}.yaml")
    assert r.returncode == 0, r.stderr[-3000:]
    counts = _job_counts(r.stdout)
    assert counts["train"] == 9 * 3 and counts["run_config"] == 10
    assert counts["sample"] == counts["geneval"] == counts["preference"] == 10 * 3
    assert counts["table"] == counts["ablations"] == 1


def test_slurm_profile_submits_training_with_gpu_time_memory_and_usr1(workdir):
    """The sbatch call the SLURM executor plugin builds for a training job from the profile's
    resources (as the dry run resolves them): GPU model and count, time, memory, and the USR1
    warning the training loop saves on."""
    from types import SimpleNamespace

    from snakemake_executor_plugin_slurm.submit_string import get_submit_command
    from snakemake_executor_plugin_slurm.utils import set_gres_string

    target = "results/sd35m/train/gdmd/seed0/final"
    r = snakemake(workdir, target, "-n", "--profile", ROOT / "profiles" / "slurm", "--configfile", "config/sd35m.yaml")
    assert r.returncode == 0, r.stderr[-3000:]
    line = next(x for x in r.stdout.split("rule train:")[1].splitlines() if x.strip().startswith("resources:"))
    resources = dict(kv.split("=", 1) for kv in re.split(r", (?=\w+=)", line.split("resources:")[1].strip()))
    assert resources["gpu"] == "1" and resources["gpu_model"] == "h100"
    job = SimpleNamespace(
        resources=SimpleNamespace(**resources, get=resources.get), threads=8, name="train", is_group=lambda: False
    )
    params = {"run_uuid": "u", "slurm_logfile": "log", "comment_str": "rule_train", "account": "-A acct", "partition": "-p gpu",
              "workdir": ".", "attempt": 1}  # fmt: skip
    call = get_submit_command(job, params) + " " + set_gres_string(job)
    assert "--gpus=h100:1" in call and "-t 1440" in call and "--mem 96000" in call and "--signal=USR1@120" in call
    from snakemake_executor_plugin_slurm.validation import validate_slurm_extra

    validate_slurm_extra(job)  # the plugin accepts the extra option (it refuses ones it manages itself)
    assert "Shell command: python -m gdmd.train" in r.stdout
    # granted 4 GPUs, the job trains data-parallel: one process per GPU through accelerate
    r = snakemake(workdir, target, "-n", "--profile", ROOT / "profiles" / "slurm", "--configfile", "config/sd35m.yaml",
                  "--set-resources", "train:gpu=4")  # fmt: skip
    assert r.returncode == 0, r.stderr[-3000:]
    assert "Shell command: accelerate launch --multi_gpu --num_processes 4 -m gdmd.train" in r.stdout


def test_longest_training_is_scheduled_first(workdir):
    """Train jobs are prioritised by their estimated cost (each method's measured generator
    update cost: dmd_nft > gdmd with its fake-score group > dmdr > dmd), all below the longest
    teacher sampling, the shared regression pairs and the settings files, and above every
    other sampling job."""
    r = snakemake(workdir, "-n", "--configfile", "config/shapes.yaml")
    assert r.returncode == 0, r.stderr
    jobs = re.findall(r"rule (\w+):\n(?:    .*\n)*?    wildcards: run=([\w-]+), seed=0\n(?:    .*\n)*?    priority: ([\d.e-]+)",
                      r.stdout)  # fmt: skip
    train = {run: float(p) for rule, run, p in jobs if rule == "train"}
    assert set(train) == {"dmd", "dmd_nft", "dmdr", "gdmd"}, jobs
    assert sorted(train, key=train.get, reverse=True) == ["dmd_nft", "gdmd", "dmdr", "dmd"], train
    assert all(0 < p < 1 for p in train.values()), train
    # only the longest sampling job goes before the trainings; the others (no priority line)
    # fill the cores while the last training runs
    sample = {run: float(p) for rule, run, p in jobs if rule == "sample"}
    assert sample == {"teacher-50step": 1}, sample
    assert "rule pairs:" in r.stdout and re.search(r"rule pairs:\n(?:    .*\n)*?    priority: 2\n", r.stdout)


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"prompt": {"per_tag": 2}}, "config: unknown key 'prompt'; known: base, study, backbone, backbone_options, assets"),
        ({"prompts.per_tag": "many"}, "config: prompts.per_tag: 'many' is not of type 'integer'"),
        (
            {"runs.dmd.method": "dmd3"},
            "config: runs.dmd.method: 'dmd3' is not one of teacher, dmd, dmd_nft, dmd_refl, dmdr, gdmd",
        ),
        ({"backbone": "sdxl"}, "config: backbone: 'sdxl' is not one of shapes"),
        ({"runs.dmd.train.gen_evry": 2}, "runs.dmd.train: unknown key 'gen_evry'; known: iterations"),
        ({"runs.dmd.train.batch_size": 2.5}, "runs.dmd.train.batch_size: expected int, got 2.5"),
        ({"geneval.backend": "yolo"}, "config: geneval.backend: 'yolo' is not one of shapes, transformers, mmdet"),
        ({"preference.metrics": ["hps"]}, "config: preference.metrics.0: 'hps' is not one of shapes_clipscore, shapes_aesthetic"),
        ({"seeds": []}, "config: seeds: [] should be non-empty"),
        ({"seeds": [0, 0]}, "config: seeds: [0, 0] has non-unique elements"),
        (
            {"runs.teacher-2step.cfg_scale": float("inf")},
            "config: runs.teacher-2step.cfg_scale: expected a finite number, got inf",
        ),
        (
            {"report": {"reference": ["sd3n.csv"]}},
            "config: report.reference[0]: 'sd3n.csv' is neither a file nor one of reports/reference/ (sd3m.csv)",
        ),
        (
            {"base": "config/bad.yaml"},
            "config/bad.yaml: base: 'config/bad.yaml' makes a cycle (config/bad.yaml -> config/bad.yaml)",
        ),
        # ranges of train: keys (docs/errors.md rows 25-28)
        ({"runs.dmd.train.gen_every": 0}, "runs.dmd.train.gen_every: must be >= 1, got 0"),
        ({"runs.dmd.train.lr_generator": float("nan")}, "runs.dmd.train.lr_generator: expected a finite number, got nan"),
        ({"runs.dmd.train.iterations": -5}, "runs.dmd.train.iterations: must be >= 1, got -5"),
        ({"runs.dmd.train.tau_min": 0.99}, "runs.dmd.train.tau_min: must be below tau_max (0.98), got 0.99"),
        (
            {"runs.gdmd.train.group": "t", "runs.gdmd.train.targets": 1},
            "runs.gdmd.train.targets: a target group needs at least 2 targets, got 1 (group t)",
        ),
        (
            {"runs.dmd_nft.train.batch_size": 5},
            "runs.dmd_nft.train.batch_size: must be a multiple of samples_per_prompt (2), got 5",
        ),
        # rewards: unknown metric, a weight path the study does not give, a hinge without margin
        (
            {"runs.gdmd.train.rewards": [{"metric": "geneval"}]},
            "runs.gdmd.train.rewards[0].metric: 'geneval' is not a reward; known:",
        ),
        (
            {"preference.weights": {"clip": "resources/shapes/clip"}},
            "config: preference.metrics[1]: metric 'shapes_aesthetic' needs weight path 'aesthetic_head' (add aesthetic_head to preference.weights)",
        ),
        (
            {"preference.weights": {"clip": "resources/shapes/clip"}, "preference.metrics": ["shapes_clipscore"]},
            "runs.dmd_nft.train.rewards[1].metric: metric 'shapes_aesthetic' needs weight path 'aesthetic_head' (add aesthetic_head to preference.weights)",
        ),
        (
            {"runs.dmd_refl.train.rewards": [{"metric": "shapes_clipscore", "weight": 1.0}]},
            "runs.dmd_refl.train.rewards[0].margin: a ReFL hinge needs a margin",
        ),
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


def _copy_project(path):
    path.mkdir(parents=True, exist_ok=True)
    shutil.copytree(ROOT / "config", path / "config")
    (path / "resources").symlink_to(ROOT / "resources")
    return path


RUNS = ["teacher-8step", "teacher-2step", "dmd", "dmd_nft", "dmd_refl", "dmdr", "gdmd"]


@pytest.mark.slow
def test_smoke_study_end_to_end(smoke):
    res = smoke / "results" / "smoke"
    df = pd.read_csv(res / "tables" / "main.csv")
    assert df["run"].tolist() == RUNS
    assert df["seeds"].tolist() == [2] * 7
    assert df.set_index("run").loc["teacher-8step", "nfe"] == 16 and df.set_index("run").loc["dmd", "nfe"] == 4
    for col in ["geneval_overall", "single_object", "color_attr", "empty", "shapes_clipscore", "shapes_aesthetic"]:
        assert df[col].between(-100, 100).all() and df[col].notna().all()
    assert "| run | method | NFE | n |" in (res / "tables" / "main.md").read_text()
    assert "\\toprule" in (res / "tables" / "main.tex").read_text()
    for fig in ["geneval_tags", "metrics_by_run", "metric_vs_nfe", "reward_vs_geneval", "training_curves", "samples"]:
        assert (res / "figures" / f"{fig}.png").stat().st_size > 1000
        assert (res / "figures" / f"{fig}.pdf").read_bytes()[:4] == b"%PDF"
    # every job logged and was benchmarked; every RL run logged its rewards
    assert (res / "logs" / "train" / "dmd" / "seed0.log").is_file()
    assert (res / "benchmarks" / "sample" / "teacher-8step" / "seed1.tsv").is_file()
    for run in ("dmd_nft", "dmd_refl", "dmdr", "gdmd"):
        logged = pd.read_csv(res / "metrics" / run / "seed0.csv")
        assert any(c.startswith("reward") for c in logged.columns), run
    # dmd and gdmd train with the regression loss on one pairs file per seed, made once
    assert sorted(p.relative_to(res).as_posix() for p in (res / "pairs").rglob("*.safetensors")) == [
        "pairs/dmd/seed0.safetensors",
        "pairs/dmd/seed1.safetensors",
    ]
    for run in ("dmd", "gdmd"):
        assert pd.read_csv(res / "metrics" / run / "seed1.csv")["reg_loss"].notna().any(), run
    summary = json.loads((res / "geneval" / "dmd" / "seed0.summary.json").read_text())
    assert summary["images"] == 24 and summary["backend"] == "shapes" and 0 <= summary["empty"]["overall"] <= 1
    # a second run has nothing to do
    r = snakemake(smoke, "-n", "--configfile", "config/smoke.yaml")
    assert "Nothing to be done" in r.stdout + r.stderr


def _chromium():
    """Debian's chromium (.ci/run installs it and sets GDMD_REQUIRE_CHROMIUM=1)."""
    path = shutil.which("chromium")
    if path is None:
        if os.environ.get("GDMD_REQUIRE_CHROMIUM"):
            pytest.fail("chromium is not installed (apt-get install chromium)")
        pytest.skip("chromium is not installed (apt-get install chromium)")
    return path


@pytest.mark.slow
def test_html_report_shows_the_table_and_figures_in_a_browser(smoke, tmp_path):
    """`snakemake --report` on the smoke study, opened in headless Chromium: the table page
    shows every run, each figure loads (a decoded image, not a broken one), and the
    screenshot is not a blank page."""
    from PIL import Image
    from playwright.sync_api import sync_playwright

    html = smoke / "report.html"
    r = snakemake(smoke, "--configfile", "config/smoke.yaml", "--report", html)
    assert r.returncode == 0, r.stderr[-3000:]
    flags = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
             "--disable-component-update", "--disable-sync"]  # fmt: skip
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=_chromium(), args=flags)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(html.as_uri())
        page.get_by_text("Tables").first.click()
        page.locator("tr", has_text="main.html").first.locator("a[iconname=eye]").click()
        frame = page.frame_locator("iframe").first
        text = frame.locator("table").inner_text(timeout=10000)
        assert all(run in text for run in RUNS) and "GenEval" in text, text[:500]
        page.screenshot(path=tmp_path / "table.png")
        sizes = {}
        for fig in ("geneval_tags", "metrics_by_run", "metric_vs_nfe", "reward_vs_geneval", "training_curves", "samples"):
            page.goto(html.as_uri())
            page.get_by_text("Figures").first.click()
            page.locator("tr", has_text=f"{fig}.png").first.locator("a[iconname=eye]").click()
            img = page.locator("img[src^='data:image/png']").first
            img.wait_for(timeout=10000)
            sizes[fig] = img.evaluate("e => e.complete ? e.naturalWidth : 0")
        page.screenshot(path=tmp_path / "figure.png")
        browser.close()
    assert all(w > 300 for w in sizes.values()), sizes
    for shot in ("table.png", "figure.png"):
        pixels = np.asarray(Image.open(tmp_path / shot).convert("L"), dtype=float)
        assert pixels.std() > 10, shot  # not a blank page


SCORE_DIRS = ("runs", "geneval", "preference", "metrics")  # what a cluster run's report needs


@pytest.mark.slow
def test_report_rebuilds_from_scores_alone(smoke, tmp_path):
    """Only the score files and training logs, copied into a fresh directory: the documented
    command rebuilds identical tables, and nothing trains, samples or scores."""
    fresh = _copy_project(tmp_path / "fresh")
    for d in SCORE_DIRS:
        shutil.copytree(smoke / "results" / "smoke" / d, fresh / "results" / "smoke" / d)
    args = ("--configfile", "config/smoke.yaml", "--config", "scores_only=true")
    dry = snakemake(fresh, "-n", *args)
    assert dry.returncode == 0, dry.stderr[-3000:]
    planned = set(re.findall(r"^(\w+)\s+\d+$", dry.stdout, re.M))
    assert planned and not planned & {"train", "sample", "geneval", "preference", "pretrain_teacher"}, planned
    r = snakemake(fresh, "--cores", "1", *args)
    assert r.returncode == 0, (r.stdout + r.stderr)[-3000:]
    for name in ("main.csv", "main.md", "main.tex"):
        a = (smoke / "results" / "smoke" / "tables" / name).read_bytes()
        assert (fresh / "results" / "smoke" / "tables" / name).read_bytes() == a, name
    assert (fresh / "results" / "smoke" / "figures" / "training_curves.png").stat().st_size > 1000
    assert not (fresh / "results" / "smoke" / "samples").exists()


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
