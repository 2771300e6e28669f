"""Stand-in tokenizer files for building random-weight scorers without any download.

Tests and benchmarks need a CLIP tokenizer for transformers' CLIPProcessor; the real one
(vocab.json + merges.txt of the released models) is downloaded on the cluster. This writes
either a character-level BPE vocabulary with no merges, which tokenises any ASCII text
(`char_clip_tokenizer`), or CLIP's own BPE tokenizer in transformers' format, built from
the vocabulary file open_clip ships (`clip_bpe_tokenizer_files`: the same tokens and ids as
the released CLIP tokenizers).
"""

from __future__ import annotations

import gzip
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


def clip_bpe_tokenizer_files(path: Path) -> Path:
    """Write CLIP's BPE tokenizer (vocab.json, merges.txt, special tokens) into `path`, from
    open_clip's `bpe_simple_vocab_16e6.txt.gz`, built as open_clip's SimpleTokenizer builds
    its vocabulary (OpenAI's CLIP tokenizer: 49408 tokens)."""
    import open_clip.tokenizer as oct

    lines = gzip.open(oct.default_bpe()).read().decode("utf-8").split("\n")
    merges = [tuple(m.split()) for m in lines[1 : 49152 - 256 - 2 + 1]]
    byte_chars = list(oct.bytes_to_unicode().values())
    vocab = byte_chars + [v + "</w>" for v in byte_chars] + ["".join(m) for m in merges]
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    (path / "vocab.json").write_text(json.dumps({v: i for i, v in enumerate(vocab)}, ensure_ascii=False), encoding="utf-8")
    (path / "merges.txt").write_text("#version: 0.2\n" + "\n".join(" ".join(m) for m in merges) + "\n", encoding="utf-8")
    special = {
        "bos_token": "<|startoftext|>",
        "eos_token": "<|endoftext|>",
        "unk_token": "<|endoftext|>",
        "pad_token": "<|endoftext|>",
    }
    (path / "special_tokens_map.json").write_text(json.dumps(special))
    config = {**special, "model_max_length": 77, "do_lower_case": True, "tokenizer_class": "CLIPTokenizer"}
    (path / "tokenizer_config.json").write_text(json.dumps(config))
    return path
