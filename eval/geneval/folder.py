"""GenEval's image folder layout, and metadata files.

Layout (as written by GenEval's generation scripts and read by its evaluator):
    <dir>/<index:05d>/metadata.jsonl    one JSON object: the prompt's metadata
    <dir>/<index:05d>/samples/<k:04d>.png
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from gdmd.io import UserError

TAGS = ("single_object", "two_object", "counting", "colors", "position", "color_attr")


def check_metadata(meta, where: str) -> dict:
    """Validate one GenEval-schema metadata object; `where` names it in errors."""
    if not isinstance(meta, dict):
        raise UserError(f"{where}: expected a JSON object, got {type(meta).__name__}")
    for key in ("tag", "prompt", "include"):
        if key not in meta:
            raise UserError(f"{where}: missing key {key!r}")
    if meta["tag"] not in TAGS:
        raise UserError(f"{where}: unknown tag {meta['tag']!r}; known: {', '.join(TAGS)}")
    for kind in ("include", "exclude"):
        clauses = meta.get(kind, [])
        if not isinstance(clauses, list):
            raise UserError(f"{where}: {kind!r} must be a list")
        for c in clauses:
            if not isinstance(c, dict) or "class" not in c or not isinstance(c.get("count"), int):
                raise UserError(f"{where}: malformed {kind} clause {c!r} (needs 'class' and integer 'count')")
            if "position" in c:
                rel, target = c["position"]
                if rel not in ("left of", "right of", "above", "below") or not (0 <= target < len(meta["include"])):
                    raise UserError(f"{where}: malformed position {c['position']!r}")
    return meta


def read_metadata(path: str | Path) -> list[dict]:
    """Read a GenEval metadata jsonl file (one prompt per line); errors give the line number."""
    path = Path(path)
    try:
        lines = path.read_text().splitlines()
    except FileNotFoundError:
        raise UserError(f"{path}: metadata file not found") from None
    rows = []
    for i, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            meta = json.loads(line)
        except json.JSONDecodeError as e:
            raise UserError(f"{path}:{i}: malformed JSON ({e.msg})") from None
        rows.append(check_metadata(meta, f"{path}:{i}"))
    if not rows:
        raise UserError(f"{path}: empty prompt set (no metadata lines)")
    return rows


def prompt_dir(root: Path, index: int) -> Path:
    return Path(root) / f"{index:05d}"


def write_prompt_folder(root: Path, index: int, meta: dict, images: list[np.ndarray]) -> None:
    """Write one prompt's folder (metadata + samples/<k>.png) under `root` (a temp dir)."""
    d = prompt_dir(root, index)
    (d / "samples").mkdir(parents=True, exist_ok=True)
    (d / "metadata.jsonl").write_text(json.dumps(meta) + "\n")
    for k, img in enumerate(images):
        Image.fromarray(img).save(d / "samples" / f"{k:04d}.png")


@dataclass
class Sample:
    path: Path
    metadata: dict

    @property
    def index(self) -> int:
        """The prompt's index (its folder <index:05d>)."""
        return int(self.path.parent.parent.name)

    @property
    def sample(self) -> int:
        """k of samples/<k:04d>.png."""
        return int(self.path.stem)


def list_samples(root: str | Path) -> list[Sample]:
    """Every sample of a GenEval folder, in index then sample order; validates the layout."""
    root = Path(root)
    if not root.is_dir():
        raise UserError(f"{root}: image folder not found")
    expected = None
    if (root / "sampling.json").is_file():  # written by gdmd.sample: how many images each prompt has
        expected = json.loads((root / "sampling.json").read_text()).get("images_per_prompt")
    out = []
    for sub in sorted(p for p in root.iterdir() if p.is_dir() and p.name.isdigit()):
        meta_path = sub / "metadata.jsonl"
        if not meta_path.is_file():
            raise UserError(f"{meta_path}: missing metadata in GenEval folder")
        try:
            meta = json.loads(meta_path.read_text().strip().splitlines()[0])
        except (json.JSONDecodeError, IndexError) as e:
            raise UserError(f"{meta_path}:1: malformed JSON ({getattr(e, 'msg', 'empty file')})") from None
        check_metadata(meta, f"{meta_path}:1")
        samples = sorted(p for p in (sub / "samples").glob("*.png") if re.fullmatch(r"\d+\.png", p.name))
        if not samples:
            raise UserError(f"{sub / 'samples'}: no images (expected samples/<k:04d>.png)")
        if expected is not None and len(samples) != expected:
            raise UserError(f"{sub / 'samples'}: expected {expected} images, found {len(samples)}")
        out.extend(Sample(p, meta) for p in samples)
    if not out:
        raise UserError(f"{root}: no prompt folders (expected <index:05d>/metadata.jsonl and samples/)")
    return out


def load_image(path: Path) -> np.ndarray:
    """An RGB uint8 array; a corrupt or unreadable image is a one-line error naming the file."""
    try:
        with Image.open(path) as im:
            return np.asarray(im.convert("RGB"))
    except (OSError, SyntaxError, ValueError) as e:
        raise UserError(f"{path}: cannot read image ({e.__class__.__name__})") from None
