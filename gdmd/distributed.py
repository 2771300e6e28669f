"""Data parallelism across processes (one per GPU), for `accelerate launch` / `torchrun`.

The train rule launches `accelerate launch --multi_gpu --num_processes N -m gdmd.train ...`
where its job has N > 1 GPUs; the launcher sets RANK, WORLD_SIZE, LOCAL_RANK and the
rendezvous address, and `init()` joins the process group (NCCL on GPUs, Gloo on CPUs).
Every process holds the whole model (replicas start equal: same seed at set-up), draws its
own batch (its own RNG streams), and before every optimiser step the gradients are averaged
over processes (`average_gradients`), so the replicas take identical steps: an effective
batch of N x batch_size. Rank 0 writes checkpoints and logs. With one process (no
WORLD_SIZE, or 1) nothing here does anything, and training is bit for bit what it was.

Resuming a multi-process run restores the weights, optimisers and rank 0's state; each
rank's RNG streams are re-derived from (seed, rank, iteration), so a resumed run is
reproducible for the same number of processes but is not bit-identical to an
uninterrupted one (one process is).
"""

from __future__ import annotations

import atexit
import os

import torch
import torch.distributed as dist


def world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def rank() -> int:
    return dist.get_rank() if world_size() > 1 else 0


def is_main() -> bool:
    return rank() == 0


def init() -> str | None:
    """Join the process group if launched with WORLD_SIZE > 1; return this process's device
    (cuda:<LOCAL_RANK> on GPUs), or None when single-process."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return None
    if not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
        # a process that exits with its group alive can abort in Gloo's threads ("terminate
        # called without an active exception", exit -6) after its work is done
        atexit.register(close)
    if torch.cuda.is_available():
        local = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local)
        return f"cuda:{local}"
    return "cpu"


def close() -> None:
    """Leave the process group (registered at exit by `init`; a no-op when there is none)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def average_gradients(params) -> None:
    """Average each parameter's gradient over processes (one flat all-reduce)."""
    if world_size() == 1:
        return
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    flat /= world_size()
    offset = 0
    for g in grads:
        g.copy_(flat[offset : offset + g.numel()].view_as(g))
        offset += g.numel()


def any_flag(flag: bool) -> bool:
    """True on every process if it is true on any (e.g. a preemption signal one rank got)."""
    if world_size() == 1:
        return flag
    t = torch.tensor([float(flag)], device="cuda" if torch.cuda.is_available() else "cpu")
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())


def check_in_sync(modules: dict) -> None:
    """Raise if the replicas' trainable weights differ (they must take identical steps)."""
    if world_size() == 1:
        return
    device = "cuda" if torch.cuda.is_available() else "cpu"
    with torch.no_grad():
        sums = torch.stack([p.double().sum() for m in modules.values() for p in m.parameters() if p.requires_grad]).to(device)
    lo, hi = sums.clone(), sums.clone()
    dist.all_reduce(lo, op=dist.ReduceOp.MIN)
    dist.all_reduce(hi, op=dist.ReduceOp.MAX)
    if not torch.equal(lo, hi):
        raise RuntimeError("data-parallel replicas diverged (their weights differ); this is a bug")


def barrier() -> None:
    if world_size() > 1:
        dist.barrier()


def rank_seed(seed: int, iteration: int) -> int:
    """A rank's RNG seed: the run's seed on one process; otherwise one per (seed, rank, iteration)."""
    if world_size() == 1:
        return seed
    return (seed * 1_000_003 + rank() * 7_919 + iteration) % (2**31 - 1)
