"""Evaluation: GenEval (`eval.geneval`) and human-preference scorers (`eval.preference`).

Import as `from eval import geneval`; never `import eval`, which shadows the builtin.
Importing it fixes the CPU numerics mode before torch loads, as `gdmd` does (gdmd/numerics.py).
"""

import gdmd  # noqa: F401  (gdmd.numerics.apply() runs on import)
