"""Write a study's GenEval prompt metadata: `python -m eval.geneval.prompts --source ... --out FILE`.

Sources:
- `shapes`: the shapes world's fixed evaluation set (`gdmd.shapes.prompts`), `--per-tag`
  entries for each of GenEval's six tags, chosen with `--seed`.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from gdmd.io import UserError, run_cli

SOURCES = ("shapes",)


def shapes_metadata(per_tag: int, seed: int) -> list[dict]:
    from gdmd.shapes.prompts import evaluation_metadata

    return evaluation_metadata(per_tag, seed)


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m eval.geneval.prompts", description=__doc__.splitlines()[0])
    p.add_argument("--source", required=True, choices=SOURCES)
    p.add_argument("--per-tag", type=int, default=50)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True, type=Path)
    args = p.parse_args(argv)
    if args.per_tag < 1:
        raise UserError(f"--per-tag must be >= 1, got {args.per_tag}")
    from gdmd.shapes.prompts import write_metadata

    rows = shapes_metadata(args.per_tag, args.seed)
    write_metadata(rows, args.out)
    print(f"wrote {len(rows)} prompts to {args.out}")


if __name__ == "__main__":
    run_cli(main)
