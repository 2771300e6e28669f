"""Evaluation: GenEval (`eval.geneval`) and human-preference scorers (`eval.preference`).

Import as `from eval import geneval`; never `import eval`, which shadows the builtin.
"""
