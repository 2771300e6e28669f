"""glibc malloc settings for CPU inference: keep freed activation memory for reuse.

On the CPU, every torch op allocates its output. With glibc's defaults, a block above the
mmap threshold (128 KiB at start, adapted as blocks are freed) is mapped fresh from the
kernel and given back when freed, so the next op's output page-faults on every page it
writes, and a heap that shrinks past the trim threshold is given back too. A few-MB
activation then costs as much to fault in as to compute. `tune()` serves blocks up to
32 MiB from the heap and keeps the freed heap: the teacher's guided call at the sampling
batch takes 204 ms against 214-226 ms, and the study's 50-step teacher sampling job 486-501 s
against 592 s (benchmarks/README.md, "Memory allocator, detector, training order");
training steps, whose autograd graph keeps its buffers alive, gain within noise.

Which memory an op writes to does not change what it computes: the pinned numerics mode
(gdmd/numerics.py) gives the same bits with and without it (MKL's strict CNR mode is
alignment-independent; a test compares a sampling and a training run both ways).

Applied on import of `gdmd` (so by every CLI), before torch loads. Skipped where the user
sets glibc's own malloc variables, where `GDMD_MALLOC=default`, and where the C library
has no `mallopt` (not glibc: macOS, musl). This module must not import torch.
"""

from __future__ import annotations

import ctypes
import os

ENV = "GDMD_MALLOC"
M_TRIM_THRESHOLD = -1  # glibc <malloc.h>
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 32 << 20  # glibc's largest allowed value on 64-bit systems
TRIM_THRESHOLD = 1 << 30
_GLIBC_VARS = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "GLIBC_TUNABLES")

_state: dict = {}


def tune() -> str:
    """Apply the settings once; return what was done ("tuned" or why not)."""
    if _state:
        return _state["result"]
    if os.environ.get(ENV, "tuned") == "default":
        result = f"default ({ENV}=default)"
    elif any(v in os.environ for v in _GLIBC_VARS):
        result = "default (glibc malloc variables set by the user)"
    else:
        result = _mallopt()
    _state["result"] = result
    return result


def _mallopt() -> str:
    try:
        mallopt = ctypes.CDLL(None).mallopt  # the process's own symbols: its C library's
    except (OSError, AttributeError):
        return "default (no mallopt in this C library)"
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    ok = mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1 and mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1
    return "tuned" if ok else "default (mallopt refused the settings)"
