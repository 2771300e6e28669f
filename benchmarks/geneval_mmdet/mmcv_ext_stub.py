"""Stand-in for mmcv's compiled `_ext` module (mmcv 1.7.2 built with MMCV_WITH_OPS=0).

mmcv.ops checks at import time that `_ext` has each kernel it may call; this module
answers every name with a function that raises. GenEval's Mask2Former on CPU calls none
of them (mmcv's MultiScaleDeformableAttention runs its pure-PyTorch reference on CPU), so a
run that completes proves no compiled kernel was needed; one that calls a kernel fails loudly.
"""


def __getattr__(name):
    if name.startswith("__"):
        raise AttributeError(name)

    def kernel(*args, **kwargs):
        raise RuntimeError(f"mmcv compiled kernel {name!r} called; build mmcv-full with its ops to run it")

    return kernel
