"""The rehearsal of the real path (gdmd.rehearsal, `make rehearsal`): config/sd3m.yaml's whole
DAG through the local SLURM on random-weight models in the official formats, reduced for CI
(config/rehearsal-ci.yaml: one seed, two images per prompt; every run, method, metric and rule).

Needs Debian's SLURM and root, as tests/slurm/test_local_slurm.py (whose fixture starts it).
"""

import json

import pandas as pd

from ..conftest import ROOT, run_cli
from .test_local_slurm import cluster  # noqa: F401 (the fixture)

# sd3m's non-local rules and their job counts at one seed (10 runs, 9 of them students)
JOBS = {"prompts": 1, "train": 9, "sample": 10, "geneval": 10, "preference": 10}


def test_the_rehearsal_runs_sd3m_s_whole_dag_through_slurm(cluster, tmp_path):  # noqa: F811
    work = tmp_path / "rehearsal"
    r = run_cli("gdmd.rehearsal", "--config", "config/rehearsal-ci.yaml", "--work", work, cwd=ROOT, timeout=1800)
    out = r.stdout + r.stderr
    assert r.returncode == 0, out[-5000:]
    # every non-local job was a SLURM job (Snakemake keeps one log per SLURM job and rule)
    logs = work / ".snakemake" / "slurm_logs"
    jobs = {d.name.removeprefix("rule_"): len(list(d.rglob("*.log"))) for d in logs.iterdir()}
    assert jobs == JOBS, jobs
    res = work / "results" / "sd3m"
    sd3m = ["teacher", "dmd", "dmd_nft", "dmdr", "gdmd", "gdmd-fake", "gdmd-both", "gdmd-G2", "gdmd-G8", "gdmd-raw"]
    assert all((res / "train" / run / "seed0" / "final" / "tensors.safetensors").is_file() for run in sd3m[1:])
    for run in sd3m:  # each GPU job was given one of the fake GPUs
        assert json.loads((res / "samples" / run / "seed0" / "sampling.json").read_text())["cuda_visible_devices"] in {"0", "1"}
    # GenEval's converted detector found objects, so its rules ran; five preference metrics
    rows = [json.loads(line) for line in (res / "geneval" / "dmd" / "seed0.jsonl").read_text().splitlines()]
    assert len(rows) == 12 and any(json.loads(row["details"]) for row in rows), rows[0]
    table = pd.read_csv(res / "tables" / "main.csv")
    assert set(sd3m) <= set(table["run"]) and table["run"].str.startswith("rtdmd-sd3m-").any()  # published rows beside ours
    assert {"clipscore", "hpsv21", "pickscore", "imagereward", "aesthetic"} <= set(table.columns)
    assert all((res / "figures" / f"{f}.png").is_file() for f in ("geneval_tags", "metrics_by_run", "training_curves", "samples"))
    assert (res / "tables" / "ablations.md").is_file() and (res / "report.html").stat().st_size > 10_000
    # a student exported, sampled by diffusers' pipeline with load_lora_weights, and checked against ours
    assert "verified: StableDiffusion3Pipeline + exports/gdmd samples our latents" in out
    assert (work / "exports" / "gdmd" / "pytorch_lora_weights.safetensors").is_file()
    timings = json.loads((work / "rehearsal.json").read_text())
    assert timings["phases_s"]["snakemake"] > 0 and len(timings["jobs_s"]) >= sum(JOBS.values())


def test_the_rehearsal_profile_is_the_cluster_s_at_this_machine_s_sizes(tmp_path):
    """profiles/slurm with the local partition, no account or GPU model, this machine's
    memory and one thread a job; every GPU count, runtime, retry, requeue and the USR1
    option as the cluster's."""
    import yaml

    from gdmd.rehearsal import derive_profile

    derived = derive_profile(ROOT / "profiles" / "slurm", tmp_path)
    assert yaml.safe_load((tmp_path / "config.yaml").read_text()) == derived
    on_cluster = yaml.safe_load((ROOT / "profiles" / "slurm" / "config.yaml").read_text())
    for key in ("executor", "retries", "slurm-requeue", "latency-wait"):
        assert derived[key] == on_cluster[key], key
    assert set(derived["set-threads"]) == set(on_cluster["set-threads"]) and set(derived["set-threads"].values()) == {1}
    assert set(derived["set-resources"]) == set(on_cluster["set-resources"])
    for rule, res in on_cluster["set-resources"].items():
        local = derived["set-resources"][rule]
        assert local["slurm_partition"] == "debug" and "gpu_model" not in local and "slurm_account" not in local
        assert {k: v for k, v in local.items() if k not in ("slurm_partition", "mem_mb")} == {
            k: v for k, v in res.items() if k not in ("slurm_partition", "mem_mb", "gpu_model")
        }, rule
        assert str(local["mem_mb"]).startswith("3000") and ("attempt" in str(local["mem_mb"])) == (
            "attempt" in str(res["mem_mb"])
        )
    assert "slurm_account" not in derived["default-resources"] and derived["slurm-no-account"] is True
