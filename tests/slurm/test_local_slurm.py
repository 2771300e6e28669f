"""The DAG on a real single-node SLURM (profiles/local-slurm): submission, GPU requests, preemption.

Needs Debian's SLURM (profiles/local-slurm/cluster.sh install) and root; .ci/run installs
it and sets GDMD_REQUIRE_SLURM=1, so there a missing SLURM fails instead of skipping.
"""

import csv
import os
import random
import re
import shutil
import subprocess
import time

import pandas as pd
import pytest
import torch
import yaml

from ..conftest import ROOT
from ..integration.test_dag import BIN, snakemake

CLUSTER = ROOT / "profiles" / "local-slurm" / "cluster.sh"
PROFILE = ROOT / "profiles" / "local-slurm"
GPU_RULES = {"sample", "pairs", "train", "geneval", "preference"}
# the Snakefile's localrules: reports and settings files never go to the cluster
LOCAL_RULES = {"all", "run_config", "table", "ablations", "figure_geneval_tags", "figure_metrics_by_run", "figure_metric_vs_nfe",
               "figure_reward_vs_geneval", "training_curves", "study_grid", "sample_grid", "reports_from_scores"}  # fmt: skip


@pytest.fixture(scope="module")
def cluster():
    missing = shutil.which("sbatch") is None or shutil.which("slurmctld") is None
    if missing or os.geteuid() != 0:
        why = "SLURM is not installed (profiles/local-slurm/cluster.sh install)" if missing else "needs root"
        if os.environ.get("GDMD_REQUIRE_SLURM"):
            pytest.fail(why)
        pytest.skip(why)
    subprocess.run([str(CLUSTER), "start"], check=True, capture_output=True, timeout=120)
    yield
    subprocess.run([str(CLUSTER), "stop"], capture_output=True, timeout=120)


# the SLURM tests exercise submission, GPU requests and preemption, not every method: a
# teacher, DMD and GDMD (the DAG test runs the whole smoke study locally)
SLURM_RUNS = ("teacher-2step", "dmd", "gdmd")


def make_workdir(path, **train):
    """Project configs + committed assets in `path`; the smoke study's SLURM_RUNS, or with
    `train` keys a single, longer DMD run."""
    path.mkdir(parents=True, exist_ok=True)
    shutil.copytree(ROOT / "config", path / "config")
    (path / "resources").symlink_to(ROOT / "resources")
    cfg = yaml.safe_load((path / "config" / "smoke.yaml").read_text())
    if train:
        cfg["runs"] = {"dmd": {**cfg["runs"]["dmd"], "train": {**cfg["runs"]["dmd"]["train"], **train}}}
        cfg["seeds"] = [0]
    else:
        cfg["runs"] = {k: v for k, v in cfg["runs"].items() if k in SLURM_RUNS}
    (path / "config" / "smoke.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def job_counts(output: str) -> dict[str, int]:
    """Rule -> number of jobs, from the first 'Job stats' table Snakemake prints."""
    table = output[output.index("Job stats:") :]
    table = table[: table.index("\ntotal") + 1 + table[table.index("\ntotal") + 1 :].index("\n")]
    return {rule: int(n) for rule, n in re.findall(r"^(\w+)\s+(\d+)$", table, re.M)}


def submitted_jobs(output: str) -> dict[int, str]:
    """SLURM job id -> rule name, from Snakemake's 'submitted with SLURM jobid' lines."""
    jobs = {}
    for m in re.finditer(r"has been submitted with SLURM jobid (\d+) \(log: [^)]*/rule_(\w+?)/", output):
        jobs[int(m.group(1))] = m.group(2)
    return jobs


def test_srun_gpu_sets_cuda_visible_devices(cluster):
    r = subprocess.run(
        ["srun", "--gpus=1", "bash", "-c", "echo $CUDA_VISIBLE_DEVICES"], capture_output=True, text=True, timeout=60
    )
    assert r.returncode == 0 and r.stdout.strip() in {"0", "1"}, r.stderr


def test_smoke_study_through_slurm_equals_local(cluster, smoke, tmp_path):
    """SLURM_RUNS of the smoke study through sbatch: every job but the localrules is a SLURM
    job, GPU rules get a GPU, and the table's rows are the local run's (the `smoke`
    fixture: the whole smoke study), to the last digit."""
    slurm = make_workdir(tmp_path / "slurm")
    r = snakemake(slurm, "--profile", PROFILE, "--configfile", "config/smoke.yaml")
    out = r.stdout + r.stderr
    assert r.returncode == 0, out[-3000:]
    counts = job_counts(out)
    jobs = submitted_jobs(out)
    n_local = sum(n for rule, n in counts.items() if rule in LOCAL_RULES)
    assert len(jobs) == counts["total"] - n_local  # every job but the workflow's localrules went through sbatch
    assert not set(jobs.values()) & LOCAL_RULES
    for job_id, rule in jobs.items():
        info = subprocess.run(["scontrol", "show", "job", str(job_id)], capture_output=True, text=True).stdout
        assert ("gres:gpu:1" in info) == (rule in GPU_RULES), (rule, info)
    for sampling in (slurm / "results" / "smoke" / "samples").glob("*/seed*/sampling.json"):
        assert yaml.safe_load(sampling.read_text())["cuda_visible_devices"] in {"0", "1"}
    a = pd.read_csv(smoke / "results" / "smoke" / "tables" / "main.csv").set_index("run").loc[list(SLURM_RUNS)]
    b = pd.read_csv(slurm / "results" / "smoke" / "tables" / "main.csv").set_index("run").loc[list(SLURM_RUNS)]
    pd.testing.assert_frame_equal(a, b, check_dtype=False, check_exact=True)  # (a column of zeros reads as int)


def _train_rows(workdir):
    path = workdir / "results" / "smoke" / "train" / "dmd" / "seed0" / "work" / "metrics.csv"
    if not path.exists():
        return 0
    with open(path, newline="") as f:
        return sum(1 for _ in csv.DictReader(f))


def _train_job():
    out = subprocess.run(["squeue", "-h", "-o", "%i %k %T"], capture_output=True, text=True).stdout
    for line in out.splitlines():
        job, comment, state = line.split()
        if comment.startswith("rule_train") and state == "RUNNING":
            return job
    return None


def test_preemption_resumes_training_and_changes_nothing(cluster, tmp_path):
    """Three SIGTERMs (scancel, as preemption sends) at random iterations of a training job:
    each saves and the next submission resumes; the final checkpoint is bit for bit the
    uninterrupted run's (made locally)."""
    from safetensors.torch import load_file

    train = {"iterations": 40, "checkpoint_every": 4}
    final = "results/smoke/train/dmd/seed0/final"
    ref = make_workdir(tmp_path / "ref", **train)
    r = snakemake(ref, final, "--cores", "2", "--configfile", "config/smoke.yaml")
    assert r.returncode == 0, (r.stdout + r.stderr)[-3000:]

    work = make_workdir(tmp_path / "preempted", **train)
    rng = random.Random(0)
    kill_points = sorted(rng.sample(range(5, 36), 3))
    for k in kill_points:
        env = dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ['PATH']}")
        cmd = [str(BIN / "snakemake"), "-s", str(ROOT / "workflow" / "Snakefile"), "--directory", str(work), final,
               "--profile", str(PROFILE), "--configfile", "config/smoke.yaml"]  # fmt: skip
        proc = subprocess.Popen(cmd, cwd=work, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        t0 = time.time()
        while _train_rows(work) < k:
            assert proc.poll() is None, proc.stdout.read()[-3000:]
            assert time.time() - t0 < 900
            time.sleep(0.2)
        job = _train_job()
        assert job is not None
        subprocess.run(["scancel", job], check=True)
        out, _ = proc.communicate(timeout=600)
        assert proc.returncode != 0, out[-2000:]
    r = snakemake(work, final, "--profile", PROFILE, "--configfile", "config/smoke.yaml")
    assert r.returncode == 0, (r.stdout + r.stderr)[-3000:]
    # the rule log holds the last attempt; the work directory's attempts.log all of them
    log = (work / "results" / "smoke" / "logs" / "train" / "dmd" / "seed0.log").read_text()
    history = (work / "results" / "smoke" / "train" / "dmd" / "seed0" / "work" / "attempts.log").read_text()
    resumed = [int(x) for x in re.findall(r"resuming dmd seed 0 from iteration (\d+)", history)]
    assert f"from iteration {resumed[-1]}" in log
    assert len(resumed) == 3 and resumed == sorted(resumed) and resumed[0] >= 4
    # each attempt resumed near where it was killed: SIGTERM saves on the spot, at worst
    # the periodic checkpoint before it (every 4 iterations) is used
    assert all(abs(k - i) <= 4 for k, i in zip(kill_points, resumed)), (kill_points, resumed)
    a, b = load_file(ref / final / "tensors.safetensors"), load_file(work / final / "tensors.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def _job_info(job_id: int) -> dict[str, str]:
    out = subprocess.run(["scontrol", "show", "job", str(job_id)], capture_output=True, text=True).stdout
    return dict(re.findall(r"(\w+)=(\S*)", out))


def test_a_training_past_two_time_limits_requeues_itself_with_the_same_resources(cluster, tmp_path, monkeypatch):
    """A training job submitted with a 2-minute limit stops itself 80 s before it
    (GDMD_STOP_MARGIN), saves and requeues itself (`scontrol requeue`): the same SLURM job,
    so the same memory and time request, starts again and resumes where it saved, until done.
    The USR1 warning (here 10 s before the limit; SLURM may send it up to 60 s early) comes
    after the stop, as the profile's 120 s comes after the default margin of 300 s.
    Snakemake's retries are 0 here, so no resubmission can be what finished it. (That a
    resumed run is bit-identical to an uninterrupted one is tested in
    tests/integration/test_train.py and by the preemption test above.)"""
    monkeypatch.setenv("GDMD_STOP_MARGIN", "80")  # jobs get the submitting environment (sbatch --export=ALL)
    iterations = 220  # about 60 s of training here, in windows of 15-25 s: three attempts at least
    work = make_workdir(tmp_path / "w", iterations=iterations, checkpoint_every=10 * iterations)
    r = snakemake(work, "results/smoke/train/dmd/seed0/final", "--profile", PROFILE, "--configfile", "config/smoke.yaml",
                  "--retries", "0", "--set-resources", "train:runtime=2", "train:mem_mb=1500",
                  "train:slurm_extra='--signal=USR1@10'", timeout=1500)  # fmt: skip
    out = r.stdout + r.stderr
    assert r.returncode == 0, out[-3000:]
    history = (work / "results" / "smoke" / "train" / "dmd" / "seed0" / "work" / "attempts.log").read_text()
    saves = [int(x) for x in re.findall(r"s left before the job's time limit: saved .* at iteration (\d+), exiting", history)]
    requeued = re.findall(r"requeued SLURM job (\d+):", history)
    resumed = [int(x) for x in re.findall(r"resuming dmd seed 0 from iteration (\d+)", history)]
    assert len(saves) >= 2 and resumed == saves and len(requeued) == len(saves), history  # each save resumed
    assert "received signal" not in history, history  # stopped before the warning came
    jobs = [j for j, rule in submitted_jobs(out).items() if rule == "train"]
    assert len(jobs) == 1 and set(requeued) == {str(jobs[0])}, (jobs, requeued)  # one submission, requeued
    info = _job_info(jobs[0])
    assert info["Restarts"] == str(len(saves)) and info["JobState"] == "COMPLETED", info
    assert info["MinMemoryNode"] == "1500M" and info["TimeLimit"] == "00:02:00", info
    assert _train_rows(work) == iterations
    assert (work / "results" / "smoke" / "train" / "dmd" / "seed0" / "final" / "tensors.safetensors").is_file()


def test_the_cluster_profile_keeps_training_resources_across_attempts():
    """A resubmitted training (a real failure; time limits requeue themselves) asks for what
    the first attempt asked for: multi-day runs must not grow their memory request."""
    cfg = yaml.safe_load((ROOT / "profiles" / "slurm" / "config.yaml").read_text())
    train = cfg["set-resources"]["train"]
    assert "attempt" not in str(train["mem_mb"]) and "attempt" not in str(train["runtime"]), train
    assert cfg["slurm-requeue"] is True and "--signal=USR1@" in train["slurm_extra"]
    local = yaml.safe_load((PROFILE / "config.yaml").read_text())
    assert local["slurm-requeue"] is True and local["set-resources"]["train"]["slurm_extra"] == train["slurm_extra"]
