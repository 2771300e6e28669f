"""Random-weight StableDiffusion3 pipelines of a given shape, built offline from config dicts.

For tests (`TINY`, seconds on a CPU) and benchmarks (`SD35M`: SD3.5-Medium's transformer
and VAE shapes, for step time and memory on a GPU) where no checkpoint can be downloaded.
The pipeline is saved with `save_pretrained`, so the real loading code reads it back: the
transformer, the VAE, two CLIP text encoders and a T5 encoder with tokenizers over a
letters-only vocabulary (CLIP's byte-pair files and a T5 unigram model written here), and
the flow-matching scheduler. The text encoders are small whatever the shape; only their
output widths follow the transformer (joint_attention_dim, pooled_projection_dim).
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

# a few-second model: 4x16x16 latents of 32 px images, 2 blocks
TINY = {
    "transformer": dict(
        sample_size=16,
        patch_size=2,
        in_channels=4,
        out_channels=4,
        num_layers=2,
        attention_head_dim=8,
        num_attention_heads=2,
        joint_attention_dim=32,
        caption_projection_dim=16,
        pooled_projection_dim=32,
        pos_embed_max_size=16,
    ),  # fmt: skip
    "vae": dict(block_out_channels=(8, 8), latent_channels=4, norm_num_groups=4, sample_size=32),
}
# the rehearsal's teachers (`python -m gdmd.weights <model> --random`): each model's
# architecture (SD3-M: plain joint blocks; SD3.5: RMS-normed q/k, SD3.5-M's dual-attention
# blocks) and latent layout (16 channels, the VAE's factor 8) at a width and depth a CPU
# trains in seconds; 64 px images, 8 x 8 latents
_SMALL = dict(sample_size=8, patch_size=2, in_channels=16, out_channels=16, num_layers=2, attention_head_dim=16,
              num_attention_heads=2, joint_attention_dim=64, caption_projection_dim=32, pooled_projection_dim=64,
              pos_embed_max_size=16)  # fmt: skip
_SMALL_VAE = dict(block_out_channels=(8, 8, 8, 8), latent_channels=16, norm_num_groups=4, sample_size=64)
SMALL = {
    "sd3m": {"transformer": _SMALL, "vae": _SMALL_VAE},
    "sd35m": {"transformer": {**_SMALL, "qk_norm": "rms_norm", "dual_attention_layers": (0,)}, "vae": _SMALL_VAE},
    "sd35l": {"transformer": {**_SMALL, "qk_norm": "rms_norm"}, "vae": _SMALL_VAE},
}
# SD3.5-Medium's shapes (stabilityai/stable-diffusion-3.5-medium transformer/ and vae/ config.json)
SD35M = {
    "transformer": dict(
        sample_size=128,
        patch_size=2,
        in_channels=16,
        out_channels=16,
        num_layers=24,
        attention_head_dim=64,
        num_attention_heads=24,
        joint_attention_dim=4096,
        caption_projection_dim=1536,
        pooled_projection_dim=2048,
        pos_embed_max_size=384,
        qk_norm="rms_norm",
        dual_attention_layers=tuple(range(13)),
    ),  # fmt: skip
    "vae": dict(
        block_out_channels=(128, 256, 512, 512), latent_channels=16, norm_num_groups=32, sample_size=1024, layers_per_block=2
    ),
}


def save_random_pipeline(out: Path, transformer: dict, vae: dict, shift: float = 3.0, seed: int = 0) -> Path:
    import tokenizers
    import torch
    from diffusers import AutoencoderKL, FlowMatchEulerDiscreteScheduler, SD3Transformer2DModel, StableDiffusion3Pipeline
    from tokenizers import decoders, models, pre_tokenizers
    from transformers import CLIPTextConfig, CLIPTextModelWithProjection, CLIPTokenizer, T5Config, T5EncoderModel, T5TokenizerFast

    torch.manual_seed(seed)
    out = Path(out)
    letters = [chr(c) for c in range(ord("a"), ord("z") + 1)]
    vocab = {c: i for i, c in enumerate(letters)} | {c + "</w>": 26 + i for i, c in enumerate(letters)}
    vocab |= {"<|startoftext|>": 52, "<|endoftext|>": 53}
    with tempfile.TemporaryDirectory() as words:  # the tokenizer's source files; it saves its own
        (Path(words) / "vocab.json").write_text(json.dumps(vocab))
        (Path(words) / "merges.txt").write_text("#version: 0.2\n")
        clip_tok = CLIPTokenizer(f"{words}/vocab.json", f"{words}/merges.txt", model_max_length=77)
    pieces = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0)] + [(c, -1.0) for c in letters] + [("\u2581", -1.0)]
    t5 = tokenizers.Tokenizer(models.Unigram(pieces, unk_id=2))
    t5.pre_tokenizer, t5.decoder = pre_tokenizers.Metaspace(), decoders.Metaspace()
    t5_tok = T5TokenizerFast(tokenizer_object=t5, eos_token="</s>", pad_token="<pad>", unk_token="<unk>", extra_ids=0)

    # SD3 concatenates the two CLIPs' token states (padded to T5's width) and pooled outputs
    width = transformer["pooled_projection_dim"] // 2

    def clip():
        return CLIPTextModelWithProjection(CLIPTextConfig(
            vocab_size=54, bos_token_id=52, eos_token_id=53, pad_token_id=53, hidden_size=width, intermediate_size=24,
            projection_dim=width, num_attention_heads=2, num_hidden_layers=2, max_position_embeddings=77))  # fmt: skip

    t5_model = T5EncoderModel(
        T5Config(vocab_size=32, d_model=transformer["joint_attention_dim"], d_ff=40, d_kv=8, num_heads=4, num_layers=2)
    )
    n = len(vae["block_out_channels"])
    autoencoder = AutoencoderKL(
        in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * n, up_block_types=("UpDecoderBlock2D",) * n,
        layers_per_block=vae.get("layers_per_block", 1), shift_factor=0.0609, scaling_factor=1.5305, use_quant_conv=False,
        use_post_quant_conv=False, **{k: v for k, v in vae.items() if k != "layers_per_block"})  # fmt: skip
    pipe = StableDiffusion3Pipeline(
        transformer=SD3Transformer2DModel(**transformer), scheduler=FlowMatchEulerDiscreteScheduler(shift=shift), vae=autoencoder,
        text_encoder=clip(), tokenizer=clip_tok, text_encoder_2=clip(), tokenizer_2=clip_tok,
        text_encoder_3=t5_model, tokenizer_3=t5_tok)  # fmt: skip
    pipe.save_pretrained(out)
    return out
