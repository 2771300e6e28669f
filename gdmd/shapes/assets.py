"""Install freshly pretrained shapes assets into resources/ (what the study reads).

    python -m gdmd.shapes.assets install results/pretrain/shapes resources/shapes

Checks that every asset loads through the same code the study uses (the teacher against
the CLIP it was trained with), then replaces each asset directory atomically and writes
MANIFEST.json: the sha256 of every file and each asset's pretraining metrics.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from gdmd.io import CliParser, UserError, atomic_dir, atomic_write_json, run_cli

ASSETS = ("clip", "aesthetic", "teacher")


def verify(src: Path) -> None:
    from gdmd.backbones.shapes import load_teacher

    from .clip import load_aesthetic, load_clip

    for a in ASSETS:
        if not (src / a).is_dir():
            raise UserError(f"{src / a}: missing pretrained asset (run `snakemake pretrain` first)")
    load_clip(src / "clip")
    load_aesthetic(src / "aesthetic")
    load_teacher(src / "teacher", src / "clip")


def manifest(root: Path) -> dict:
    from gdmd.backbones.shapes import file_digest

    out = {}
    for a in ASSETS:
        files = {str(p.relative_to(root)): file_digest(p) for p in sorted((root / a).rglob("*")) if p.is_file()}
        info = json.loads((root / a / "info.json").read_text())
        out[a] = {"files": files, "metrics": info.get("metrics"), "command": info.get("command")}
    return out


def install(src: Path, dst: Path) -> None:
    verify(src)
    for a in ASSETS:
        with atomic_dir(dst / a) as tmp:
            shutil.copytree(src / a, tmp, dirs_exist_ok=True)
    atomic_write_json(dst / "MANIFEST.json", manifest(dst))


def main(argv=None):
    p = CliParser(prog="python -m gdmd.shapes.assets", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    i = sub.add_parser("install", help="verify and install pretrained assets")
    i.add_argument("src", type=Path)
    i.add_argument("dst", type=Path)
    args = p.parse_args(argv)
    install(args.src, args.dst)
    print(f"installed {', '.join(ASSETS)} from {args.src} into {args.dst}")


if __name__ == "__main__":
    run_cli(main)
