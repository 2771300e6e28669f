"""Stand-in tokenizer files for building random-weight scorers without any download.

Tests and benchmarks need a CLIP tokenizer for transformers' CLIPProcessor; the real one
(vocab.json + merges.txt of the released models) is downloaded on the cluster. This writes
a character-level BPE vocabulary with no merges, which tokenises any ASCII text.
"""

from __future__ import annotations

import json
from pathlib import Path


def char_clip_tokenizer(path: Path):
    """Write vocab.json / merges.txt into `path` and return (CLIPTokenizer, vocab size)."""
    from transformers import CLIPTokenizer

    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for c in map(chr, range(33, 127)):
        vocab.setdefault(c, len(vocab))
        vocab.setdefault(c + "</w>", len(vocab))
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    (path / "vocab.json").write_text(json.dumps(vocab))
    (path / "merges.txt").write_text("#version: 0.2\n")
    return CLIPTokenizer(str(path / "vocab.json"), str(path / "merges.txt")), len(vocab)
