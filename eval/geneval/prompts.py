"""Write a study's GenEval prompt metadata: `python -m eval.geneval.prompts --source ... --out FILE`.

Sources:
- `geneval`: GenEval's official prompts (553, six tags) as shipped with this package
  (eval/geneval/data/, copied from djghosh13/geneval at a pinned commit), or read from
  `--geneval-dir` (another local copy); either way both files must match their pinned
  sha256. Nothing is downloaded, so the job runs on a compute node without internet.
  Writes evaluation_metadata.jsonl and, beside it, object_names.txt (the detector's 80
  class names).
- `shapes`: the shapes world's fixed evaluation set (`gdmd.shapes.prompts`), `--per-tag`
  entries for each of GenEval's six tags, chosen with `--seed`; object_names.txt lists
  the shape classes.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from gdmd.io import CliParser, UserError, atomic_write_text, run_cli

from .folder import check_metadata

SOURCES = ("geneval", "shapes")

# djghosh13/geneval, prompts/ (MIT License: data/LICENSE-geneval); unchanged since the first
# code release. The files are in data/ (data/README.md); these are their pinned hashes.
GENEVAL_COMMIT = "af4902f24d3ca90ebbb446dd9891a59e0f82725f"
GENEVAL_DIR = Path(__file__).parent / "data"
GENEVAL_FILES = {
    "evaluation_metadata.jsonl": "5c48e0813e812e3c373fa5c8ed07a8f0a483be30272b4427b0559c8048e67c13",
    "object_names.txt": "608f6a0e5c8ca1c7a92b818430141fe268c85b7930b50f4160f1d65893b5bacd",
}


def geneval_files(local_dir: Path | None = None) -> dict[str, bytes]:
    """GenEval's metadata and class names (the package's copy, or `local_dir`'s), each
    checked against its pinned sha256."""
    out = {}
    for name, want in GENEVAL_FILES.items():
        path = Path(local_dir or GENEVAL_DIR) / name
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise UserError(f"{path}: GenEval file not found") from None
        got = hashlib.sha256(data).hexdigest()
        if got != want:
            raise UserError(f"{path}: sha256 {got} does not match the pinned {want} (djghosh13/geneval at {GENEVAL_COMMIT[:7]})")
        out[name] = data
    return out


def main(argv=None):
    p = CliParser(prog="python -m eval.geneval.prompts", description=__doc__.splitlines()[0])
    p.add_argument("--source", required=True, choices=SOURCES)
    p.add_argument("--per-tag", type=int, default=50, help="shapes: entries per tag")
    p.add_argument("--seed", type=int, default=0, help="shapes: which entries")
    p.add_argument("--geneval-dir", type=Path, help="geneval: another copy of GenEval's prompts/ (default: the package's own)")
    p.add_argument("--limit", type=int, help="geneval: keep only the first N prompts of each tag (smoke tests)")
    p.add_argument("--out", required=True, type=Path, help="evaluation_metadata.jsonl to write")
    args = p.parse_args(argv)
    names_out = args.out.with_name("object_names.txt")
    if args.source == "geneval":
        files = geneval_files(args.geneval_dir)
        text = files["evaluation_metadata.jsonl"].decode()
        if args.limit is not None:
            import json

            kept, seen = [], {}
            for i, line in enumerate(text.splitlines(), 1):
                meta = check_metadata(json.loads(line), f"evaluation_metadata.jsonl:{i}")
                seen[meta["tag"]] = seen.get(meta["tag"], 0) + 1
                if seen[meta["tag"]] <= args.limit:
                    kept.append(line)
            text = "\n".join(kept) + "\n"
        atomic_write_text(names_out, files["object_names.txt"].decode())
        atomic_write_text(args.out, text)
        n = len(text.splitlines())
    else:
        if args.per_tag < 1:
            raise UserError(f"--per-tag must be >= 1, got {args.per_tag}")
        from gdmd.shapes.prompts import evaluation_metadata, write_metadata
        from gdmd.shapes.world import SHAPES

        rows = evaluation_metadata(args.per_tag, args.seed)
        atomic_write_text(names_out, "".join(s + "\n" for s in SHAPES))
        write_metadata(rows, args.out)
        n = len(rows)
    print(f"wrote {n} prompts to {args.out}")


if __name__ == "__main__":
    run_cli(main)
