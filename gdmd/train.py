"""The one training loop of every distillation method.

    python -m gdmd.train --run-config results/shapes/runs/dmd.json --seed 0 \
        --out results/shapes/train/dmd/seed0/final

The run's `method` picks its step functions from `gdmd.methods.METHODS`; each iteration
draws a batch of training prompts and runs the steps the method's schedule names.

Files (the work directory defaults to `<out>/../work`, which is not a DAG output):
- `<work>/metrics.csv`: one row per iteration (losses, grad norms, non-finite counts,
  seconds per iteration), read by the reports;
- `<work>/latest/`: the checkpoint (safetensors + JSON: step, optimisers, RNG states,
  resolved config, package versions), replaced atomically every `checkpoint_every`
  iterations and when SIGTERM or SIGUSR1 arrive (what SLURM sends before preemption);
  a restarted run resumes from it, bit for bit;
- `<work>/previous/`: the checkpoint `latest` replaced, kept until the next one is written
  and read back: a run whose latest checkpoint cannot be read (a truncated file) resumes
  from it with a one-line warning (the unreadable one moves to `<work>/latest.unreadable/`);
- `<out>/`: the final checkpoint, with a copy of metrics.csv, written atomically at the end;
- `--metrics-out FILE`: one more copy of metrics.csv (the DAG's training log, which the
  reports read, so they can be rebuilt from logs without checkpoints);
- `--pairs FILE`: the regression loss's teacher pairs, made by `python -m gdmd.pairs` for
  this run and seed (without it a run with `reg_weight` > 0 makes them at set-up).

A non-finite loss or gradient stops training with a one-line error naming the iteration;
the last checkpoint (all finite) is kept. A checkpoint that cannot be written (disk full,
quota) stops training with a one-line error naming the work directory and the last good
checkpoint, which is left as it was.

Under SLURM the loop watches the job's time limit (squeue's time left, read at start): when
less than GDMD_STOP_MARGIN seconds (default 300) plus twice the slowest iteration and the
last checkpoint's write are left, it saves a checkpoint and, if this attempt made progress,
requeues the job (`scontrol requeue`, as PyTorch Lightning's SLURM plugin does on its
warning signal): the same job, with the same resources, starts again and resumes, however
many time limits the run needs, and Snakemake's `retries` count only real failures. The
time-limit warning SIGUSR1 (the profile's `--signal=USR1@120`, for clusters whose jobs
cannot run squeue) does the same. Stopping before the warning matters: SLURM signals every
process of the job step, Snakemake's own wrapper too, which dies of it, so a training that
ended in the warning's last minutes would be reported failed. The margin must therefore
exceed the warning's lead by more than a minute (SLURM may send it up to 60 s early). An
attempt that made no progress, or a requeue SLURM refuses, exits with code 138
(128 + SIGUSR1), and Snakemake's retry (if any) takes over.
"""

from __future__ import annotations

import contextlib
import csv
import functools
import json
import math
import os
import shutil
import signal
import sys
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from . import backbones, checkpoint, distributed
from . import config as cfglib
from .io import CliParser, UserError, atomic_path, run_cli
from .methods import Batch, get_method
from .study import load_run

METRICS = "metrics.csv"
ATTEMPTS = "attempts.log"  # one line per start, resume, preemption save and final save


def prompt_source(cfg, backbone):
    """The run's training prompt source (`cfg.prompts`, gdmd.methods.configs.PROMPT_SOURCES)
    at the backbone's image resolution: `seed -> source` (see gdmd.prompts)."""
    import importlib

    from .methods.configs import PROMPT_SOURCES, source_options

    module, cls = PROMPT_SOURCES[cfg.prompts].split(":")
    cls = getattr(importlib.import_module(module), cls)
    return functools.partial(cls, resolution=backbone.resolution, **source_options(cfg))


class MetricsLog:
    """metrics.csv in the work directory; on resume, rows past the checkpoint are dropped."""

    def __init__(self, path: Path, resume_step: int):
        self.path = path
        self.fields: list[str] | None = None
        rows = []
        if resume_step > 0 and path.exists():
            with open(path, newline="") as f:
                reader = csv.DictReader(f)
                self.fields = reader.fieldnames
                rows = [r for r in reader if int(r["iteration"]) < resume_step]
        self.rows = rows
        self._rewrite()

    def _rewrite(self):
        with open(self.path, "w", newline="") as f:
            if self.fields:
                w = csv.DictWriter(f, fieldnames=self.fields)
                w.writeheader()
                w.writerows(self.rows)

    def write(self, row: dict):
        if self.fields is None:
            self.fields = list(row)
            self._rewrite()
        missing = [k for k in row if k not in self.fields]
        if missing:  # a step that runs only sometimes adds columns: rewrite with them
            self.fields += missing
            self._rewrite()
        with open(self.path, "a", newline="") as f:
            csv.DictWriter(f, fieldnames=self.fields).writerow(row)
        self.rows.append(row)


class Preemption:
    """Turns SIGTERM / SIGUSR1 into a flag the loop checks after each iteration."""

    def __init__(self):
        self.signal: int | None = None
        for s in (signal.SIGTERM, signal.SIGUSR1):
            signal.signal(s, self._handle)

    def _handle(self, signum, frame):
        self.signal = signum


def _finite(metrics: dict) -> bool:
    if metrics.get("nonfinite", 0):
        return False
    return all(math.isfinite(v) for v in metrics.values() if isinstance(v, float))


def load_training(run_config: Path, seed: int, device: str = "cpu"):
    """A run's method, typed config, backbone, teacher and prompt source, with torch's RNG
    seeded as a run's set-up starts: `(run, method, cfg, backbone, teacher, source)`.
    `gdmd.pairs` starts the same way, so the pairs it makes are the run's own."""
    run = load_run(run_config)
    method = get_method(run.method)
    try:
        cfg = cfglib.from_dict(method.Config, run.train, "train")
    except UserError as e:
        raise UserError(f"{run_config}: {e}") from None
    torch.manual_seed(seed)  # the same on every process: replicas start equal
    backbone, teacher = backbones.load(
        run.backbone, run.assets.teacher, run.assets.text_encoder, device=device, options=run.backbone_options
    )
    if backbone.dtype != torch.float32 and cfg.mixed_precision != "bf16":
        raise UserError(
            f"{run_config}: train.mixed_precision: a {backbone.dtype} backbone (backbone_options.dtype) trains under bf16"
        )
    return run, method, cfg, backbone, teacher, prompt_source(cfg, backbone)


def train(
    run_config: Path,
    seed: int,
    out: Path,
    work: Path,
    device: str = "cpu",
    max_iterations: int | None = None,
    metrics_out: Path | None = None,
    pairs: Path | None = None,
) -> None:
    preempt = Preemption()  # first: a signal during set-up is kept, and saved on after one iteration
    device = distributed.init() or device  # several processes: this one's GPU (gdmd.distributed)
    main = distributed.is_main()
    run, method, cfg, backbone, teacher, source = load_training(run_config, seed, device)
    state = method.setup(cfg, run, backbone, teacher, source, pairs_file=pairs)
    prompts = source(distributed.rank_seed(seed, 0))
    needs_real = getattr(state, "needs_real", False)
    repeats = getattr(state, "prompt_repeats", 1)  # rows per caption (a method's sample groups)
    numpy_rngs = {"prompts": prompts.rng}

    work.mkdir(parents=True, exist_ok=True)
    latest, previous = work / "latest", work / "previous"

    def note(message: str) -> None:
        """Print, and append to work/attempts.log: Snakemake replaces the rule's log on every
        attempt, the work directory keeps the history of starts, resumes and preemptions."""
        if not main:
            return
        print(message, flush=True)
        with open(work / ATTEMPTS, "a") as f:
            f.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {message}\n")

    print(f"== {time.strftime('%Y-%m-%d %H:%M:%S')} train {run.run} seed {seed} (work {work})", flush=True)
    start = 0
    ckpt_state = {"run": cfglib.to_dict(run), "seed": seed}
    if main:
        usable_checkpoint(work, note)
    distributed.barrier()
    if latest.exists():
        _check_same_run(latest, run, seed, work)
        meta = checkpoint.load(latest, state.modules, state.optimizers, numpy_rngs)
        start = meta["iteration"]
        note(f"resuming {run.run} seed {seed} from iteration {start} ({latest})")
    else:
        note(f"starting {run.run} seed {seed} from iteration 0")
    if distributed.world_size() > 1:  # each process its own noise and prompts (see gdmd.distributed)
        torch.manual_seed(distributed.rank_seed(seed, start))
        prompts.rng.bit_generator.state = np.random.default_rng(distributed.rank_seed(seed, start)).bit_generator.state
        note(f"data parallel over {distributed.world_size()} processes (batch {cfg.batch_size} each)")
    log = MetricsLog(work / METRICS, start) if main else None

    def last_good() -> str:
        return f"last good checkpoint {latest} (iteration {start_of(latest)})" if latest.exists() else "no checkpoint yet"

    def write(path: Path, iteration: int, **kwargs):
        """checkpoint.save, or one line naming the work directory and the last good checkpoint."""
        try:
            checkpoint.save(path, state.modules, state.optimizers, {"iteration": iteration, **ckpt_state}, numpy_rngs, **kwargs)
        except UserError as e:  # disk full, quota, I/O: nothing was replaced
            raise UserError(f"{e}; training stopped at iteration {iteration} in {work}, {last_good()}") from None

    def save(iteration: int):
        if main:
            write(latest, iteration, previous=previous)
        distributed.barrier()

    deadline = slurm_deadline()  # time.monotonic() at the job's time limit, or None
    slowest = last_write = 0.0
    end = cfg.iterations if max_iterations is None else min(cfg.iterations, max_iterations)
    bar = tqdm(range(start, end), desc=f"train {run.run} seed {seed}", initial=start, total=cfg.iterations, mininterval=5,
               disable=not main)  # fmt: skip
    for it in bar:
        t0 = time.time()
        batch = draw_batch(prompts, backbone, it, cfg.batch_size, repeats, needs_real)
        row: dict = {"iteration": it}
        with autocast(cfg, backbone):
            for name in method.schedule(cfg, it):
                row.update(method.steps[name](state, batch))
        if not _finite(row):
            bad = ", ".join(f"{k}={v}" for k, v in row.items() if k != "iteration")
            raise UserError(f"non-finite values at iteration {it} ({bad}); training stopped, {last_good()}")
        row["sec"] = round(time.time() - t0, 4)
        if main:
            log.write(row)
        bar.set_postfix({k: f"{v:.4g}" for k, v in row.items() if k.endswith("loss")})
        done = it + 1
        slowest = max(slowest, time.time() - t0)
        left = None if deadline is None else deadline - time.monotonic()
        near_limit = left is not None and left < STOP_MARGIN + 2 * slowest + last_write
        stop = distributed.any_flag(preempt.signal is not None or near_limit)  # every process stops at the same iteration
        if done % cfg.checkpoint_every == 0 or stop:
            t_write = time.time()
            save(done)
            last_write = time.time() - t_write
        if stop:
            signum = preempt.signal
            why = f"received signal {signum}" if signum else f"{left:.0f} s left before the job's time limit"
            note(f"{why}: saved {latest} at iteration {done}, exiting")
            if main and signum in (None, signal.SIGUSR1) and done > start:  # the time limit, after progress
                requeue(note)
            sys.exit(128 + (signum or signal.SIGUSR1))
    if end < cfg.iterations:  # --max-iterations: stop early (tests, benchmarks), keep resumable
        if end % cfg.checkpoint_every and end > start:  # (not saved just now)
            save(end)
        return
    distributed.check_in_sync(state.modules)
    if main:
        write(out, cfg.iterations, extra_files={METRICS: work / METRICS})
        if metrics_out is not None:
            with atomic_path(metrics_out, ".csv") as tmp:
                shutil.copyfile(work / METRICS, tmp)
    distributed.barrier()
    note(f"wrote {out}")


def usable_checkpoint(work: Path, note) -> None:
    """Leave in `<work>/latest` a checkpoint that can be read, if there is one: where latest
    cannot be read (a truncated file) or is missing (a crash between the two renames of a
    save), `<work>/previous` takes its place, with a one-line warning; the unreadable one is
    kept as `latest.unreadable` (replacing an older one). Neither readable: a one-line error."""
    latest, previous = work / "latest", work / "previous"
    bad = checkpoint.problem(latest) if latest.exists() else None
    if (latest.exists() and bad is None) or not previous.exists():
        if bad is not None:
            raise UserError(f"{latest}: cannot be read ({bad}) and there is no {previous}; delete {work} to start this run over")
        return
    bad_previous = checkpoint.problem(previous)
    if bad_previous is not None:
        what = f"{latest} cannot be read ({bad})" if bad else f"there is no {latest}"
        raise UserError(f"{what}, nor can {previous} ({bad_previous}); delete {work} to start this run over")
    if bad is not None:
        unreadable = work / "latest.unreadable"
        if unreadable.exists():
            shutil.rmtree(unreadable)
        latest.rename(unreadable)
        message = f"warning: {latest} cannot be read ({bad}): resuming from {previous} (iteration {start_of(previous)}), the unreadable one kept as {unreadable}"
        print(message, file=sys.stderr, flush=True)
        note(message)
    previous.rename(latest)


# seconds before a SLURM job's time limit at which training saves and requeues (see the docstring)
STOP_MARGIN = float(os.environ.get("GDMD_STOP_MARGIN", "300"))


def slurm_deadline() -> float | None:
    """`time.monotonic()` at this SLURM job's time limit (squeue's time left, `%L`), or None:
    outside SLURM, without a limit, or where squeue cannot tell."""
    import subprocess

    job = os.environ.get("SLURM_JOB_ID")
    if not job:
        return None
    try:
        r = subprocess.run(["squeue", "-h", "-j", job, "-o", "%L"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None
    left = parse_slurm_duration(r.stdout.strip()) if r.returncode == 0 else None
    return None if left is None else time.monotonic() + left


def parse_slurm_duration(text: str) -> float | None:
    """Seconds in SLURM's `[days-][hours:]minutes:seconds` (squeue %L), None for anything else
    (UNLIMITED, NOT_SET, INVALID, empty)."""
    days, _, clock = text.rpartition("-")
    parts = clock.split(":")
    if not (1 <= len(parts) <= 3) or not all(p.isdigit() for p in parts) or (days and not days.isdigit()):
        return None
    seconds = 0
    for p in parts:
        seconds = 60 * seconds + int(p)
    return float(seconds + 86400 * int(days or 0))


def requeue(note) -> bool:
    """Put this SLURM job back in the queue (`scontrol requeue $SLURM_JOB_ID`): SLURM stops
    it and starts it again with the same resources, and the run resumes from its checkpoint.
    False, with a note, outside SLURM or where SLURM refuses (the job was submitted without
    --requeue on a cluster with JobRequeue=0, or scontrol is missing)."""
    import subprocess

    job = os.environ.get("SLURM_JOB_ID")
    if not job:
        return False
    try:
        r = subprocess.run(["scontrol", "requeue", job], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as e:
        note(f"could not requeue SLURM job {job} ({e}); the workflow's retry resubmits it")
        return False
    if r.returncode != 0:
        note(f"SLURM refused to requeue job {job} ({r.stderr.strip() or r.returncode}); the workflow's retry resubmits it")
        return False
    note(f"requeued SLURM job {job}: it starts again with the same resources and resumes")
    return True


def autocast(cfg, backbone):
    """bf16 autocast around an iteration's steps (`mixed_precision: bf16`), else nothing."""
    if getattr(cfg, "mixed_precision", "no") == "bf16":
        return torch.autocast(backbone.device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def draw_batch(prompts, backbone, iteration: int, batch_size: int, repeats: int = 1, images: bool = False) -> Batch:
    """One iteration's batch: batch_size / repeats captions from the prompt source, each
    repeated `repeats` times in a row (group ids 0, 0, ..., 1, 1, ...), their condition, and
    their real images in model space if asked for."""
    captions, real = prompts.batch(batch_size // repeats, images=images)
    groups = torch.arange(len(captions)).repeat_interleave(repeats)
    captions = [c for c in captions for _ in range(repeats)]
    if real is not None:
        real = backbone.encode_images(real.repeat_interleave(repeats, 0)).to(backbone.device)
    return Batch(iteration, captions, backbone.encode_prompts(captions), real, groups)


def _differences(a, b, prefix=""):
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b)):
            yield from _differences(a.get(k), b.get(k), f"{prefix}.{k}" if prefix else k)
    elif a != b:
        yield prefix


TRAINING_FIELDS = (
    "backbone",
    "backbone_options",
    "assets",
    "method",
    "steps",
    "train",
    "weights",
)  # what a resumed run must share


def _training_fields(run: dict) -> dict:
    return {k: run.get(k) or None for k in TRAINING_FIELDS}  # an empty section as an absent one


def _check_same_run(latest: Path, run, seed: int, work: Path) -> None:
    """A checkpoint only resumes the run that wrote it (same training settings and seed;
    sampling settings such as the batch size may differ)."""
    saved = json.loads((latest / checkpoint.STATE).read_text())
    was = {"run": _training_fields(saved.get("run") or {}), "seed": saved.get("seed")}
    diff = list(_differences(was, {"run": _training_fields(cfglib.to_dict(run)), "seed": seed}))
    if diff:
        key = diff[0].removeprefix("run.")
        raise UserError(f"{latest}: written by another configuration ({key} differs); delete {work} to start this run over")


def start_of(ckpt: Path) -> int:
    return json.loads((ckpt / checkpoint.STATE).read_text())["iteration"]


def main(argv=None):
    p = CliParser(prog="python -m gdmd.train", description=__doc__.splitlines()[0])
    p.add_argument("--run-config", required=True, type=Path)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True, type=Path, help="final checkpoint directory")
    p.add_argument("--work", type=Path, help="checkpoints and metrics while training (default <out>/../work)")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--max-iterations", type=int, help="stop after this many iterations (keeps the run resumable)")
    p.add_argument("--metrics-out", type=Path, help="a copy of the training log (metrics.csv), written at the end")
    p.add_argument("--pairs", type=Path, help="the regression loss's teacher pairs (python -m gdmd.pairs; default: made here)")
    args = p.parse_args(argv)
    work = args.work or args.out.parent / "work"
    train(args.run_config, args.seed, args.out, work, args.device, args.max_iterations, args.metrics_out, args.pairs)


if __name__ == "__main__":
    run_cli(main)
