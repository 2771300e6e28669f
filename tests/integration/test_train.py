"""`python -m gdmd.train`: logs, final checkpoint, exact resume after SIGKILL and SIGTERM."""

import contextlib
import csv
import json
import math
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import time

import pytest
import torch
from safetensors.torch import load_file

from ..conftest import ROOT, run_cli

TRAIN = {"iterations": 12, "batch_size": 3, "gen_every": 2, "checkpoint_every": 3, "lr_generator": 1e-3, "lr_fake": 1e-3}


# the training rewards of the RL runs (tiny random shapes CLIP and aesthetic head)
REWARDS = [
    {"metric": "shapes_clipscore", "weight": 0.01, "margin": 70.0},
    {"metric": "shapes_aesthetic", "weight": 0.1, "margin": 10.0},
]


def _settings(tmp_path, assets, train=TRAIN, method="dmd"):
    path = tmp_path / "dmd.json"
    path.write_text(
        json.dumps(
            {
                "study": "t",
                "run": "dmd",
                "backbone": "shapes",
                "assets": {"teacher": str(assets / "teacher"), "text_encoder": str(assets / "clip")},
                "method": method,
                "steps": 4,
                "train": train,
                "weights": {"clip": str(assets / "clip"), "aesthetic_head": str(assets / "aesthetic")},
            }
        )
    )
    return path


def _rows(path):
    if not path.exists():
        return []
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _tensors(ckpt):
    t = load_file(ckpt / "tensors.safetensors")
    return {k: v for k, v in t.items() if not k.startswith("rng.")}


def _assert_identical(a, b):
    ta, tb = _tensors(a), _tensors(b)
    assert ta.keys() == tb.keys()
    different = [k for k in ta if not (ta[k] == tb[k]).all()]
    assert not different, different[:5]


@pytest.fixture(scope="module")
def reference(tiny_assets, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ref")
    run = _settings(tmp, tiny_assets)
    out = tmp / "seed0" / "final"
    r = run_cli("gdmd.train", "--run-config", run, "--seed", 0, "--out", out)
    assert r.returncode == 0, r.stderr
    return run, out


def test_final_checkpoint_and_metrics(reference):
    _, out = reference
    rows = _rows(out / "metrics.csv")
    assert [int(r["iteration"]) for r in rows] == list(range(12))
    assert {"fake_loss", "dmd_loss", "nonfinite", "grad_norm_generator", "grad_norm_fake", "sec"} <= set(rows[0])
    assert rows[1]["dmd_loss"] == ""  # the generator updates every 2nd iteration
    state = json.loads((out / "state.json").read_text())
    assert state["iteration"] == 12 and state["run"]["train"]["gen_every"] == 2 and "torch" in state["versions"]
    assert any(k.startswith("generator.") for k in _tensors(out))


def _start(run, out):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    cmd = [sys.executable, "-m", "gdmd.train", "--run-config", str(run), "--seed", "0", "--out", str(out)]
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for_rows(proc, metrics, n, timeout=300):
    t0 = time.time()
    while len(_rows(metrics)) < n:
        assert proc.poll() is None, proc.communicate()[1][-2000:]
        assert time.time() - t0 < timeout
        time.sleep(0.01)


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
def test_resume_is_bit_identical(reference, tmp_path, sig):
    run, ref_out = reference
    out = tmp_path / "seed0" / "final"
    metrics = tmp_path / "seed0" / "work" / "metrics.csv"
    kill_at = random.Random(sig).randint(2, 10)
    proc = _start(run, out)
    _wait_for_rows(proc, metrics, kill_at)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    if sig == signal.SIGTERM:
        assert proc.returncode == 128 + signal.SIGTERM
        saved = json.loads((tmp_path / "seed0" / "work" / "latest" / "state.json").read_text())["iteration"]
        assert saved >= kill_at and f"saved {tmp_path / 'seed0' / 'work' / 'latest'} at iteration {saved}" in err + _
    else:
        assert proc.returncode == -signal.SIGKILL
    assert not out.exists()
    r = run_cli("gdmd.train", "--run-config", run, "--seed", 0, "--out", out)
    assert r.returncode == 0, r.stderr
    assert "resuming dmd seed 0 from iteration" in r.stdout
    _assert_identical(out, ref_out)
    assert [int(x["iteration"]) for x in _rows(out / "metrics.csv")] == list(range(12))


def test_unknown_train_key_is_named(tiny_assets, tmp_path):
    run = _settings(tmp_path, tiny_assets, {**TRAIN, "gen_evry": 3})
    r = run_cli("gdmd.train", "--run-config", run, "--out", tmp_path / "final")
    assert r.returncode == 2 and "train: unknown key 'gen_evry'" in r.stderr and "gen_every" in r.stderr
    assert not (tmp_path / "final").exists()


def test_nonfinite_loss_stops_and_keeps_the_last_good_checkpoint(tiny_assets, tmp_path):
    # a fake-score learning rate of 1e30: iteration 0 is finite, its update is not
    run = _settings(tmp_path, tiny_assets, {**TRAIN, "lr_fake": 1e30, "checkpoint_every": 1})
    out = tmp_path / "seed0" / "final"
    r = run_cli("gdmd.train", "--run-config", run, "--out", out)
    assert r.returncode == 2
    line = r.stderr.strip().splitlines()[-1]
    assert "non-finite values at iteration" in line and "training stopped, last good checkpoint" in line
    assert not out.exists()
    latest = tmp_path / "seed0" / "work" / "latest"
    assert line.startswith("error: non-finite values at iteration 1 (")
    assert line.endswith(f"last good checkpoint {latest} (iteration 1)")
    assert json.loads((latest / "state.json").read_text())["iteration"] == 1


def test_resume_refuses_a_changed_config(reference, tiny_assets, tmp_path):
    run = _settings(tmp_path, tiny_assets)
    out = tmp_path / "seed0" / "final"
    r = run_cli("gdmd.train", "--run-config", run, "--out", out, "--max-iterations", 3)
    assert r.returncode == 0, r.stderr
    _settings(tmp_path, tiny_assets, {**TRAIN, "lr_fake": 5e-4})
    r = run_cli("gdmd.train", "--run-config", run, "--out", out)
    assert r.returncode == 2 and "train.lr_fake differs" in r.stderr and "delete" in r.stderr


def _stopped_at_6(run, tmp_path):
    """The reference run stopped at iteration 6 (checkpoints every 3): latest at 6, previous at 3."""
    work = tmp_path / "seed0" / "work"
    r = run_cli("gdmd.train", "--run-config", run, "--seed", 0, "--out", tmp_path / "seed0" / "final", "--max-iterations", 6)
    assert r.returncode == 0, r.stderr[-3000:]
    assert [json.loads((work / d / "state.json").read_text())["iteration"] for d in ("latest", "previous")] == [6, 3]
    return work


def _size(directory):
    return sum(f.stat().st_size for f in directory.rglob("*") if f.is_file())


@contextlib.contextmanager
def _full_disk(directory, room):
    """Run what the block starts with `room` bytes of disk beside what `directory` holds: a
    tmpfs mounted over it (root; the contents copied in), else a file-size limit of `room`
    on the processes (EFBIG instead of ENOSPC). Yields the preexec_fn for subprocess."""
    import resource

    saved = directory.with_name(directory.name + ".orig")
    directory.rename(saved)
    directory.mkdir()
    mounted = (
        os.geteuid() == 0
        and subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={_size(saved) + room}", "tmpfs", str(directory)], capture_output=True
        ).returncode
        == 0
    )
    shutil.copytree(saved, directory, dirs_exist_ok=True)
    try:
        yield None if mounted else (lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (room, room)))
    finally:
        if mounted:
            keep = directory.with_name(directory.name + ".after")
            shutil.copytree(directory, keep)
            subprocess.run(["umount", str(directory)], check=True)
            directory.rmdir()
            keep.rename(directory)


def test_full_disk_during_a_checkpoint_stops_with_one_line_and_keeps_the_last_good_one(reference, tmp_path):
    """The disk fills while the checkpoint of iteration 9 is written: one line naming the
    work directory and the last good checkpoint (iteration 6), no half-written directory
    left, latest and previous intact; with room again the run resumes to the same bits."""
    run, ref_out = reference
    work = _stopped_at_6(run, tmp_path)
    latest = work / "latest"
    room = _size(latest) // 2  # less than one more checkpoint
    with _full_disk(work, room) as limit:
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        cmd = [
            sys.executable,
            "-m",
            "gdmd.train",
            "--run-config",
            str(run),
            "--seed",
            "0",
            "--out",
            str(tmp_path / "seed0" / "final"),
        ]
        r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600, preexec_fn=limit)
    assert r.returncode == 2, r.stderr[-3000:]
    line = r.stderr.strip().splitlines()[-1]
    assert re.fullmatch(
        rf"error: {re.escape(str(latest))}: cannot write the checkpoint \((No space left on device|File too large).*\); "
        rf"training stopped at iteration 9 in {re.escape(str(work))}, last good checkpoint {re.escape(str(latest))} \(iteration 6\)",
        line,
    ), line
    assert sorted(p.name for p in work.iterdir()) == ["attempts.log", "latest", "metrics.csv", "previous"]
    assert [json.loads((work / d / "state.json").read_text())["iteration"] for d in ("latest", "previous")] == [6, 3]
    r = run_cli("gdmd.train", "--run-config", run, "--seed", 0, "--out", tmp_path / "seed0" / "final")
    assert r.returncode == 0 and "resuming dmd seed 0 from iteration 6" in r.stdout, r.stderr[-3000:]
    _assert_identical(tmp_path / "seed0" / "final", ref_out)


def test_an_unreadable_latest_checkpoint_falls_back_to_the_previous_one(reference, tmp_path):
    run, ref_out = reference
    work = _stopped_at_6(run, tmp_path)
    tensors = work / "latest" / "tensors.safetensors"
    tensors.write_bytes(tensors.read_bytes()[: tensors.stat().st_size // 2])  # a copy cut short
    r = run_cli("gdmd.train", "--run-config", run, "--seed", 0, "--out", tmp_path / "seed0" / "final")
    assert r.returncode == 0, r.stderr[-3000:]
    warning = (
        f"warning: {work / 'latest'} cannot be read (tensors.safetensors: incomplete metadata, file not fully covered): "
        f"resuming from {work / 'previous'} (iteration 3), the unreadable one kept as {work / 'latest.unreadable'}"
    )
    assert warning in r.stderr.splitlines() and "resuming dmd seed 0 from iteration 3" in r.stdout
    _assert_identical(tmp_path / "seed0" / "final", ref_out)
    # with both unreadable, one line, and nothing is started over silently
    work2 = _stopped_at_6(run, tmp_path / "b")
    for d in ("latest", "previous"):
        (work2 / d / "state.json").write_text("{")
    r = run_cli("gdmd.train", "--run-config", run, "--seed", 0, "--out", tmp_path / "b" / "seed0" / "final")
    assert r.returncode == 2 and r.stderr.count("\n") == 1, r.stderr
    assert (
        f"{work2 / 'latest'} cannot be read (state.json: " in r.stderr
        and f"nor can {work2 / 'previous'} (state.json: " in r.stderr
    )


def _straight_and_resumed(tmp_path, assets, train, method="dmd"):
    """Train the run straight through, and again stopped at iteration 3 and resumed; assert
    the two final checkpoints are bit-identical; return the straight run's directory."""
    run = _settings(tmp_path, assets, train, method)
    straight = tmp_path / "a" / "final"
    r = run_cli("gdmd.train", "--run-config", run, "--seed", 0, "--out", straight)
    assert r.returncode == 0, r.stderr[-3000:]
    resumed = tmp_path / "b" / "final"
    r = run_cli("gdmd.train", "--run-config", run, "--seed", 0, "--out", resumed, "--max-iterations", 3)
    assert r.returncode == 0 and not resumed.exists(), r.stderr[-3000:]
    r = run_cli("gdmd.train", "--run-config", run, "--seed", 0, "--out", resumed)
    assert r.returncode == 0 and "resuming dmd seed 0 from iteration 3" in r.stdout, r.stderr[-3000:]
    _assert_identical(straight, resumed)
    return straight


def test_gan_run_gets_real_images_and_resumes_exactly(tiny_assets, tmp_path):
    """With DMD2's GAN term on, the loop hands the steps real images; the classifier head is
    checkpointed with its optimiser, and a stop/resume ends bit-identical to a straight run."""
    train = {**TRAIN, "iterations": 6, "gan_generator_weight": 1.0, "gan_critic_weight": 1.0, "gan_t_max": 0.3}
    straight = _straight_and_resumed(tmp_path, tiny_assets, train)
    assert any(k.startswith("discriminator_head.") for k in _tensors(straight))
    rows = _rows(straight / "metrics.csv")
    assert len(rows) == 6 and all(0 <= float(r["d_real_acc"]) <= 1 for r in rows)
    assert all(float(r["gan_generator_loss"]) > 0 for r in rows if r["gan_generator_loss"])


def test_regression_run_rebuilds_its_pairs_and_resumes_exactly(tiny_assets, tmp_path):
    """With DMD's regression loss on, the teacher pairs come from the run's seed: a
    stop/resume (which rebuilds them at set-up) ends bit-identical to a straight run, and so
    does a run that reads them from the file `gdmd.pairs` made (the DAG's shared pairs)."""
    train = {**TRAIN, "iterations": 6, "reg_weight": 0.5, "reg_pairs": 6, "reg_steps": 3}
    straight = _straight_and_resumed(tmp_path, tiny_assets, train)
    rows = _rows(straight / "metrics.csv")
    assert all(float(r["reg_loss"]) > 0 for r in rows if r["reg_loss"])
    assert sum(bool(r["reg_loss"]) for r in rows) == 3  # generator steps at 0, 2, 4

    run, pairs = tmp_path / "dmd.json", tmp_path / "pairs" / "seed0.safetensors"
    r = run_cli("gdmd.pairs", "--run-config", run, "--seed", 0, "--out", pairs)
    assert r.returncode == 0 and pairs.is_file(), r.stderr[-3000:]
    shared = tmp_path / "c" / "final"
    r = run_cli("gdmd.train", "--run-config", run, "--seed", 0, "--out", shared, "--pairs", pairs)
    assert r.returncode == 0 and "regression pairs (teacher ODE)" not in r.stderr, r.stderr[-3000:]
    _assert_identical(straight, shared)
    # the seed-0 pairs refused by a seed-1 run, in one line naming the file
    r = run_cli("gdmd.train", "--run-config", run, "--seed", 1, "--out", tmp_path / "d" / "final", "--pairs", pairs)
    assert r.returncode == 2 and f"{pairs}: made for another seed" in r.stderr and "Traceback" not in r.stderr


def test_pairs_of_a_run_without_regression_are_refused(tiny_assets, tmp_path):
    run = _settings(tmp_path, tiny_assets)
    r = run_cli("gdmd.pairs", "--run-config", run, "--seed", 0, "--out", tmp_path / "p.safetensors")
    assert r.returncode == 2 and "train.reg_weight is 0" in r.stderr and not (tmp_path / "p.safetensors").exists()


RL_RUNS = {
    "dmd_nft": {"samples_per_prompt": 2, "nft_weight": 1.0},
    "dmd_refl": {},
    # a LoRA fake score shared with the real score (DynaDG), cold start ending mid-run
    "dmdr": {"cold_start": 2, "dyn_steps": 4, "fake_lora_rank": 4},
    # both target groups: fake-score snapshots (EMAs, checkpointed) and re-noise times
    "gdmd": {"group": "both", "targets": 2, "fake_ema_decays": [0.5]},
}


@pytest.mark.parametrize("method", list(RL_RUNS))
def test_rl_run_resumes_exactly(tiny_assets, tmp_path, method):
    """Every RL method: a stop at iteration 3 and a resume end bit-identical to a straight
    run (rewards, schedules, LoRA and snapshot state included); its rewards are logged."""
    train = {**TRAIN, "iterations": 6, "batch_size": 4, "rewards": REWARDS, **RL_RUNS[method]}
    straight = _straight_and_resumed(tmp_path, tiny_assets, train, method)
    rows = _rows(straight / "metrics.csv")
    logged = [r for r in rows if r.get("reward_shapes_clipscore") or r.get("reward_x_shapes_clipscore")]
    assert logged and all(
        math.isfinite(float(r.get("reward_shapes_clipscore") or r["reward_x_shapes_clipscore"])) for r in logged
    )
    tensors = _tensors(straight)
    if method == "gdmd":
        assert any(k.startswith("fake_snapshots.0.") for k in tensors)
    if method == "dmdr":
        assert any("lora_A" in k for k in tensors if k.startswith("fake_score."))
        assert [float(r["cold_start"]) for r in rows] == [1, 1, 0, 0, 0, 0]


def test_data_parallel_over_two_processes(tmp_path, tiny_assets):
    """`torchrun --nproc_per_node 2` (what `accelerate launch` does on a GPU node; Gloo on CPU):
    both processes train, averaging gradients, rank 0 alone writes; the replicas end equal
    (the loop checks it before the final save) and the run is not the one-process run."""
    from gdmd import distributed

    assert distributed.world_size() == 1 and distributed.rank_seed(7, 5) == 7  # one process: untouched
    run = _settings(tmp_path, tiny_assets, {**TRAIN, "iterations": 4, "checkpoint_every": 2})
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "gdmd.train",
           "--run-config", str(run), "--out", str(tmp_path / "dp" / "final"), "--device", "cpu"]  # fmt: skip
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "data parallel over 2 processes" in (tmp_path / "dp" / "work" / "attempts.log").read_text()
    assert len(_rows(tmp_path / "dp" / "work" / "metrics.csv")) == 4  # rank 0's log, once
    one = run_cli("gdmd.train", "--run-config", run, "--out", tmp_path / "one" / "final", "--device", "cpu")
    assert one.returncode == 0, one.stderr[-2000:]
    a, b = _tensors(tmp_path / "dp" / "final"), _tensors(tmp_path / "one" / "final")
    assert not all(torch.equal(a[k], b[k]) for k in a if k.startswith("generator."))


def test_gradient_average_is_the_mean_over_processes(tmp_path):
    """average_gradients in a real 2-process Gloo group: every process ends with the mean."""
    script = tmp_path / "avg.py"
    script.write_text(
        "import torch, torch.distributed as dist\n"
        "from gdmd import distributed\n"
        "distributed.init()\n"
        "r = dist.get_rank()\n"
        "p = [torch.nn.Parameter(torch.zeros(3)), torch.nn.Parameter(torch.zeros(2, 2))]\n"
        "p[0].grad = torch.full((3,), float(r + 1)); p[1].grad = torch.full((2, 2), 10.0 * r)\n"
        "distributed.average_gradients(p)\n"
        "assert torch.equal(p[0].grad, torch.full((3,), 1.5)) and torch.equal(p[1].grad, torch.full((2, 2), 5.0))\n"
        "assert distributed.any_flag(r == 1) and not distributed.any_flag(False)\n"
    )
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", str(script)]
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]


def test_slurm_time_left_is_parsed_in_every_squeue_form():
    from gdmd.train import parse_slurm_duration

    assert parse_slurm_duration("3:00") == 180 and parse_slurm_duration("00:00:05") == 5
    assert parse_slurm_duration("1-02:03:04") == 86400 + 2 * 3600 + 3 * 60 + 4
    assert all(parse_slurm_duration(t) is None for t in ("UNLIMITED", "NOT_SET", "INVALID", "", "1-x:00", "1:2:3:4"))
