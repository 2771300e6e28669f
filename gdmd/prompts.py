"""Training prompt sources of real studies: a caption file.

A prompt source is `cls(seed, resolution, **options)` with `.rng` (a numpy Generator,
checkpointed with the run) and `.batch(n, images=False) -> (captions, images or None)`.
`gdmd.methods.configs.PROMPT_SOURCES` names them; the shapes world's own source is
`gdmd.shapes.prompts.ShapesPrompts`.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from .io import UserError


class CaptionPrompts:
    """Captions drawn uniformly with replacement from a text file, one prompt a line (blank
    lines skipped; DMDR trains on such a file of 2M prompts). The file's sha256 must be the
    configured one, so a run never trains on another file than the one it names."""

    def __init__(self, seed: int, resolution: int = 0, path: str | None = None, sha256: str | None = None):
        if path is None:
            raise UserError("train.captions: prompts: captions needs a caption file")
        p = Path(path)
        if not p.is_file():
            raise UserError(f"{p}: caption file not found (train.captions)")
        data = p.read_bytes()
        digest = hashlib.sha256(data).hexdigest()
        if sha256 is None:  # dry runs parse without it; training does not start
            raise UserError(f"{p}: train.captions_sha256 is not set; if this is the intended file, set it to {digest}")
        if digest != sha256.lower():
            raise UserError(f"{p}: sha256 is {digest}, train.captions_sha256 says {sha256}")
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as e:
            raise UserError(f"{p}: not UTF-8 text (byte {e.start})") from None
        self.captions = [line.strip() for line in text.splitlines() if line.strip()]
        if not self.captions:
            raise UserError(f"{p}: no captions (one prompt a line)")
        self.rng = np.random.default_rng(seed)

    def batch(self, n: int, images: bool = False):
        if images:
            raise UserError("prompts: a caption file has no real images (the GAN term needs a source with images)")
        idx = self.rng.integers(len(self.captions), size=n)
        return [self.captions[i] for i in idx], None


def sha256_of(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()
