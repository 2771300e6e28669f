"""Stand-in files for building random-weight scorers without any download.

Tests, benchmarks and the rehearsal (`python -m eval.weights random`) need the scorers'
files in their official formats; the real ones are downloaded on the cluster. Tokenizers:
a character-level CLIP BPE vocabulary with no merges, which tokenises any ASCII text
(`char_clip_tokenizer`), or CLIP's own BPE tokenizer in transformers' format, built from
the vocabulary file open_clip ships (`clip_bpe_tokenizer_files`: the same tokens and ids as
the released CLIP tokenizers), and a few-word BERT vocabulary (`write_bert_vocab`). Models:
small open_clip configs under the real architecture names (`write_open_clip_configs`),
ImageReward's checkpoint layout (`imagereward_state`, `med_config`) and the aesthetic MLP's
(`aesthetic_mlp_state`).
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


# -- random-weight scorers in their official file formats (the rehearsal, the tests) --------

# a small open_clip architecture, registered under the real names (ViT-L-14-quickgelu for the
# colour check, CLIPScore and the aesthetic MLP; ViT-H-14 for HPS) through GDMD_OPEN_CLIP_CONFIGS
TINY_CLIP = {
    "embed_dim": 16,
    "vision_cfg": {"image_size": 32, "layers": 2, "width": 32, "patch_size": 8, "head_width": 16},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 2},
}
OPEN_CLIP_NAMES = {"ViT-H-14": TINY_CLIP, "ViT-L-14-quickgelu": {**TINY_CLIP, "quick_gelu": True}}


def write_open_clip_configs(path: Path) -> Path:
    """TINY_CLIP under the real architecture names, one JSON file each, into `path` (the value
    GDMD_OPEN_CLIP_CONFIGS takes)."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    for name, cfg in OPEN_CLIP_NAMES.items():
        (path / f"{name}.json").write_text(json.dumps(cfg))
    return path


def imagereward_state(dv=128, dt=24, patch=8, size=32, lv=2, lt=2, vocab=40, seed=5) -> dict:
    """Random weights under the official ImageReward.pt names (BLIP ViT + BERT med + MLP):
    vision width dv (heads dv / 64, as BLIP's ViTs), text width dt, `lv`/`lt` layers."""
    import torch

    g = torch.Generator().manual_seed(seed)

    def r(*shape, scale=0.2):
        return torch.randn(*shape, generator=g) * scale

    n = (size // patch) ** 2
    sd = {
        "blip.visual_encoder.cls_token": r(1, 1, dv),
        "blip.visual_encoder.pos_embed": r(1, n + 1, dv),
        "blip.visual_encoder.patch_embed.proj.weight": r(dv, 3, patch, patch, scale=0.05),
        "blip.visual_encoder.patch_embed.proj.bias": r(dv),
        "blip.visual_encoder.norm.weight": 1 + r(dv),
        "blip.visual_encoder.norm.bias": r(dv),
    }
    for i in range(lv):
        p = f"blip.visual_encoder.blocks.{i}."
        sd.update({p + "norm1.weight": 1 + r(dv), p + "norm1.bias": r(dv), p + "norm2.weight": 1 + r(dv), p + "norm2.bias": r(dv),
                   p + "attn.qkv.weight": r(3 * dv, dv), p + "attn.qkv.bias": r(3 * dv), p + "attn.proj.weight": r(dv, dv),
                   p + "attn.proj.bias": r(dv), p + "mlp.fc1.weight": r(2 * dv, dv), p + "mlp.fc1.bias": r(2 * dv),
                   p + "mlp.fc2.weight": r(dv, 2 * dv), p + "mlp.fc2.bias": r(dv)})  # fmt: skip
    t = "blip.text_encoder."
    sd.update({t + "embeddings.word_embeddings.weight": r(vocab, dt), t + "embeddings.position_embeddings.weight": r(64, dt),
               t + "embeddings.LayerNorm.weight": 1 + r(dt), t + "embeddings.LayerNorm.bias": r(dt),
               t + "embeddings.position_ids": torch.arange(64)[None]})  # fmt: skip
    for i in range(lt):
        p = f"{t}encoder.layer.{i}."
        for att, kv in (("attention", dt), ("crossattention", dv)):
            sd.update({p + f"{att}.self.query.weight": r(dt, dt), p + f"{att}.self.query.bias": r(dt),
                       p + f"{att}.self.key.weight": r(dt, kv), p + f"{att}.self.key.bias": r(dt),
                       p + f"{att}.self.value.weight": r(dt, kv), p + f"{att}.self.value.bias": r(dt),
                       p + f"{att}.output.dense.weight": r(dt, dt), p + f"{att}.output.dense.bias": r(dt),
                       p + f"{att}.output.LayerNorm.weight": 1 + r(dt), p + f"{att}.output.LayerNorm.bias": r(dt)})  # fmt: skip
        sd.update({p + "intermediate.dense.weight": r(2 * dt, dt), p + "intermediate.dense.bias": r(2 * dt),
                   p + "output.dense.weight": r(dt, 2 * dt), p + "output.dense.bias": r(dt),
                   p + "output.LayerNorm.weight": 1 + r(dt), p + "output.LayerNorm.bias": r(dt)})  # fmt: skip
    sd.update(aesthetic_mlp_state(dt, g, prefix="mlp."))
    return sd


def aesthetic_mlp_state(dim: int, generator, prefix: str = "") -> dict:
    """Random weights of the LAION aesthetic MLP's (and ImageReward's head's) layout: linear
    layers 0, 2, 4, 6, 7 of widths dim -> 1024 -> 128 -> 64 -> 16 -> 1."""
    import math

    import torch

    dims, sd = [dim, 1024, 128, 64, 16, 1], {}
    for i, (a, b) in zip([0, 2, 4, 6, 7], zip(dims[:-1], dims[1:])):
        sd[f"{prefix}layers.{i}.weight"] = torch.randn(b, a, generator=generator) / math.sqrt(a)
        sd[f"{prefix}layers.{i}.bias"] = torch.randn(b, generator=generator) * 0.1
    return sd


# BLIP's med_config.json (configs/med_config.json of salesforce/BLIP, which ImageReward ships)
# with the sizes of `imagereward_state`; its encoder_width (768) is not the vision width: the
# original ignores it, and so does eval.preference.imagereward
def med_config(dt=24, lt=2, vocab=40) -> dict:
    return {"architectures": ["BertModel"], "attention_probs_dropout_prob": 0.1, "hidden_act": "gelu",
            "hidden_dropout_prob": 0.1, "hidden_size": dt, "initializer_range": 0.02, "intermediate_size": 2 * dt,
            "layer_norm_eps": 1e-12, "max_position_embeddings": 64, "model_type": "bert", "num_attention_heads": 2,
            "num_hidden_layers": lt, "pad_token_id": 0, "type_vocab_size": 2, "vocab_size": vocab, "encoder_width": 768,
            "add_cross_attention": True}  # fmt: skip


BERT_WORDS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "photo", "of", "cat", "two", "red", "apples", "on", "table",
              "dog", "left", "bench", "the"]  # fmt: skip


def write_bert_vocab(path: Path) -> Path:
    """A bert-base-uncased-format tokenizer directory (vocab.txt, tokenizer_config.json)
    over a few words; any other word is [UNK]."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    (path / "vocab.txt").write_text("\n".join(BERT_WORDS) + "\n")
    (path / "tokenizer_config.json").write_text(json.dumps({"do_lower_case": True}))
    return path
