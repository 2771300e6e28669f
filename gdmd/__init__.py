"""gdmd-bench: few-step diffusion distillation (DMD and its RL variants) and its study DAG.

Importing the package fixes the CPU numerics mode before torch loads (gdmd/numerics.py:
pinned unless GDMD_NUMERICS=native); that is the only thing it does at import time.
"""

from . import numerics as _numerics

_numerics.apply()
