"""gdmd-bench: few-step diffusion distillation (DMD and its RL variants) and its study DAG.

Importing the package fixes the CPU numerics mode before torch loads (gdmd/numerics.py:
pinned unless GDMD_NUMERICS=native) and tunes glibc's malloc for CPU inference
(gdmd/allocator.py; same bits, faster); those are the only things it does at import time.
"""

from . import allocator as _allocator
from . import numerics as _numerics

_numerics.apply()
_allocator.tune()
