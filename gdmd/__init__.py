"""gdmd-bench: few-step diffusion distillation (DMD and its RL variants) and its study DAG.

Importing the package fixes the CPU numerics mode before torch loads (gdmd/numerics.py:
pinned unless GDMD_NUMERICS=native), tunes glibc's malloc for CPU inference
(gdmd/allocator.py; same bits, faster) and raises the bitsandbytes logger's level to
errors; those are the only things it does at import time. bitsandbytes is imported by peft
whenever it is installed (the cluster extra, for `optimizer: adamw8bit`), and on CPUs with
AVX512-BF16 it then tries to fetch a 4-bit CPU kernel from the Hugging Face Hub and logs a
warning when it cannot: a line on stderr of every job, before any error message of ours,
about kernels this suite never uses.
"""

import logging as _logging

from . import allocator as _allocator
from . import numerics as _numerics

_numerics.apply()
_allocator.tune()
_logging.getLogger("bitsandbytes").setLevel(_logging.ERROR)
