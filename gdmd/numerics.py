"""Numerical modes of CPU runs: `pinned` (the default) or `native`.

The reproducibility contract (README, "Reproducibility"): in the pinned mode, every CLI of
the project computes the same bits on any x86-64 CPU with AVX2, whatever its vendor, its
widest vector unit or its thread count, because the libraries under torch are told to
take one code path before torch loads:

- `ATEN_CPU_CAPABILITY=avx2`: ATen's vectorised kernels (reductions, norms, softmax,
  activations, attention) use 8-float vectors; on an AVX-512 CPU they would use 16, which
  changes the order of every vectorised sum;
- `MKL_CBWR=AVX2,STRICT`: MKL's conditional numerical reproducibility, AVX2 branch, strict
  (its GEMMs give the same result whatever the thread count and the alignment);
  `MKL_ENABLE_INSTRUCTIONS=AVX2` as well, for the MKL functions CNR does not cover;
- `ONEDNN_MAX_CPU_ISA=AVX2`: oneDNN (convolutions) generates AVX2 code only.

Without these, the same run on an AVX2-only AMD EPYC and on an AVX-512 CPU diverges in the
last bits at the first GEMM, and a 500-iteration distillation run amplifies that into a
different student (issue 18: dmd overall 0.318 on one machine, 0.368 on another). The cost
of the pinned mode on the shapes study is in benchmarks/README.md (Numerics).

`native` leaves every library at its defaults (fastest kernels of the CPU, results that
depend on it). The mode comes from the environment variable `GDMD_NUMERICS`; `apply()` sets
the variables above for the pinned mode. It must run before torch is imported, so the
packages `gdmd` and `eval` call it when they are imported (the one thing they do at import
time) and every CLI of the project (`python -m gdmd...`, `python -m eval...`) is pinned.
On a CPU without AVX2, or not x86-64, the pinned mode cannot apply: the run is native and
says so in its provenance (`describe()`), as it does when torch was imported first.

This module must not import torch.
"""

from __future__ import annotations

import os
import platform
import sys

ENV = "GDMD_NUMERICS"
MODES = ("pinned", "native")
DEFAULT = "pinned"
PINNED = {
    "ATEN_CPU_CAPABILITY": "avx2",
    "MKL_CBWR": "AVX2,STRICT",
    "MKL_ENABLE_INSTRUCTIONS": "AVX2",
    "ONEDNN_MAX_CPU_ISA": "AVX2",
}

_state: dict = {}


def requested() -> str:
    """The mode the environment asks for (`GDMD_NUMERICS`, default pinned)."""
    mode = os.environ.get(ENV, DEFAULT) or DEFAULT
    if mode not in MODES:
        # apply() runs at import time, before any CLI could catch an error: one line, exit 2
        print(f"error: {ENV}={mode!r} is not one of {', '.join(MODES)}", file=sys.stderr)
        raise SystemExit(2)
    return mode


def _cpu() -> tuple[str, set[str]]:
    """(model name, flags) from /proc/cpuinfo; ('', set()) where it cannot be read."""
    try:
        with open("/proc/cpuinfo") as f:
            text = f.read()
    except OSError:
        return platform.processor(), set()
    model, flags = "", set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "model name" and not model:
            model = value.strip()
        elif key.strip() == "flags" and not flags:
            flags = set(value.split())
    return model, flags


def _why_not_pinnable() -> str | None:
    machine = platform.machine().lower()
    if machine not in ("x86_64", "amd64"):
        return f"not an x86-64 CPU ({machine})"
    _, flags = _cpu()
    if flags and not {"avx2", "fma"} <= flags:
        return "the CPU has no AVX2/FMA"
    if "torch" in sys.modules:
        return "torch was imported before gdmd; import gdmd first or set the variables yourself"
    return None


def apply() -> str:
    """Set the pinned mode's variables (overriding outside values) if it is requested and
    possible; return the mode in effect. Idempotent; call it before torch is imported."""
    if _state:
        return _state["mode"]
    mode = requested()
    reason = None
    if mode == "pinned":
        reason = _why_not_pinnable()
        if reason is None:
            os.environ.update(PINNED)
        else:
            print(f"warning: {ENV}=pinned cannot apply ({reason}); running with native numerics", file=sys.stderr)
            mode = "native"
    _state.update(mode=mode, requested=requested(), reason=reason)
    return mode


def describe() -> dict:
    """What a result's provenance records: the mode in effect, why pinning did not apply
    (if so), the CPU, the variables, and torch's kernel choice and threads once loaded."""
    model, _ = _cpu()
    out = {
        "mode": _state.get("mode", "unset"),
        "requested": _state.get("requested", os.environ.get(ENV, DEFAULT)),
        "cpu": model,
        "env": {k: os.environ.get(k) for k in PINNED},
    }
    if _state.get("reason"):
        out["not_pinned_because"] = _state["reason"]
    torch = sys.modules.get("torch")
    if torch is not None:
        out["torch_cpu_capability"] = torch.backends.cpu.get_cpu_capability()
        out["torch_threads"] = torch.get_num_threads()
    return out
