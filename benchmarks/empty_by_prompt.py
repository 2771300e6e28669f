"""Where a run's empty images are: the empty-image rate per prompt of one GenEval tag.

    python benchmarks/empty_by_prompt.py --rows results/shapes/geneval/dmd/seed0.jsonl \
        --out benchmarks/results/empty_by_prompt_dmd_seed0.json

Reads the GenEval rows a study wrote (`results/<study>/geneval/<run>/seed<k>.jsonl`) and
counts, per prompt of `--tag`, the images in which nothing was kept (the collapse
diagnostic of eval.geneval.rules.empty_rates, split by prompt).
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=Path, required=True, help="GenEval rows (jsonl) of one run and seed")
    p.add_argument("--tag", default="single_object")
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args()
    if not args.rows.is_file():
        p.error(f"--rows {args.rows}: no such file (a study's results/<study>/geneval/<run>/seed<k>.jsonl)")

    import gdmd  # noqa: F401  (the JSON writer and provenance; no torch)
    from gdmd.io import atomic_write_json, provenance

    empty, total = Counter(), Counter()
    for line in args.rows.read_text().splitlines():
        r = json.loads(line)
        if r["tag"] != args.tag:
            continue
        details = r["details"] if isinstance(r["details"], dict) else json.loads(r["details"])
        total[r["prompt"]] += 1
        empty[r["prompt"]] += not any(details.values())
    if not total:
        p.error(f"--rows {args.rows}: no rows with tag {args.tag!r}")
    per_prompt = {q: {"empty": empty[q], "images": total[q]} for q in sorted(total, key=lambda q: -empty[q])}
    atomic_write_json(args.out, {"rows": str(args.rows), "tag": args.tag, "per_prompt": per_prompt, **provenance()})
    for q, c in per_prompt.items():
        print(f"{c['empty']:4d} / {c['images']:4d}  {q}")


if __name__ == "__main__":
    main()
