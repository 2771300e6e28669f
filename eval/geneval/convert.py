"""GenEval's official detector checkpoint (mmdet 2.x) as a transformers Mask2Former.

GenEval (djghosh13/geneval, evaluation/download_models.sh) scores images with mmdet's
`mask2former_swin-s-p4-w7-224_lsj_8x2_50e_coco` (Swin-S backbone, 80 COCO thing classes,
100 queries). `convert(state_dict)` maps that checkpoint's state dict onto transformers'
`Mask2FormerForUniversalSegmentation`, so the `transformers` backend runs GenEval's own
weights without mmdet/mmcv. Every key of the checkpoint is either mapped or listed in
`UNUSED` (buffers transformers recomputes); anything else is an error naming the key.

The architecture values come from the official config (mmdet 2.28.2,
configs/mask2former/mask2former_swin-s-p4-w7-224_lsj_8x2_50e_coco.py and the configs it
inherits): Swin-S (embed 96, depths 2-2-18-2, heads 3-6-12-24, window 7), a 6-layer
multi-scale deformable-attention pixel decoder (256 channels, FFN 1024, 8 heads, 3 levels,
4 points), a 9-layer masked-attention decoder (FFN 2048), 100 queries, 80 classes + no-object.

Two layouts differ beyond names (both verified against mmdet itself:
benchmarks/geneval_mmdet/):
- mmdet fuses attention projections (Swin `qkv`, the decoder's self-attention
  `in_proj_weight`); transformers splits them into q/k/v;
- mmdet's Swin patch merging concatenates the 2x2 neighbours in `nn.Unfold` order
  (channel-major, positions (0,0), (0,1), (1,0), (1,1)); transformers keeps Swin's original
  order (position-major: (0,0), (1,0), (0,1), (1,1)). mmdet converts original Swin weights
  with `correct_unfold_reduction_order` (mmdet/models/utils/ckpt_convert.py); we apply its
  inverse, `unfold_to_swin`.
"""

from __future__ import annotations

import re
from pathlib import Path

import torch

from gdmd.io import UserError

# COCO's 80 thing classes in mmdet's CocoDataset.CLASSES order and spelling (the checkpoint's
# label i); GenEval's evaluation/object_names.txt is the same list with three names spelled
# out ("computer mouse", "tv remote", "computer keyboard"), which mask2former.map_labels maps
COCO_NAMES = Path(__file__).with_name("coco_names.txt")

SWIN_S = dict(embed_dim=96, depths=[2, 2, 18, 2], num_heads=[3, 6, 12, 24], window_size=7, mlp_ratio=4.0)
DECODER_LAYERS = 9  # transformer_decoder.num_layers
ENCODER_LAYERS = 6  # pixel_decoder.encoder.num_layers
NUM_QUERIES = 100

# checkpoint entries transformers does not store: Swin's relative position index (a
# constant it recomputes from the window size; `convert` checks it equals that)
UNUSED = (re.compile(r"backbone\.stages\.\d+\.blocks\.\d+\.attn\.w_msa\.relative_position_index"),)


def hf_config():
    """The official model's architecture as a transformers `Mask2FormerConfig`."""
    from transformers import Mask2FormerConfig, SwinConfig

    names = [n.strip() for n in COCO_NAMES.read_text().splitlines() if n.strip()]
    backbone = SwinConfig(**SWIN_S, qkv_bias=True, drop_path_rate=0.3, out_features=["stage1", "stage2", "stage3", "stage4"])
    return Mask2FormerConfig(
        backbone_config=backbone,
        num_labels=len(names),
        id2label=dict(enumerate(names)),
        label2id={n: i for i, n in enumerate(names)},
        num_queries=NUM_QUERIES,
        feature_size=256,
        mask_feature_size=256,
        hidden_dim=256,
        encoder_feedforward_dim=1024,
        dim_feedforward=2048,
        encoder_layers=ENCODER_LAYERS,
        decoder_layers=DECODER_LAYERS + 1,  # transformers builds decoder_layers - 1 layers
        num_attention_heads=8,
        common_stride=4,
        feature_strides=[4, 8, 16, 32],
        no_object_weight=0.1,  # loss_cls class_weight of the no-object class
    )


def unfold_to_swin(w: torch.Tensor) -> torch.Tensor:
    """Patch-merging weight (or norm vector) from mmdet's unfold order to Swin's original order
    (the inverse of mmdet's correct_unfold_reduction_order / correct_unfold_norm_order;
    tests/unit/test_geneval_convert.py checks it against nn.Unfold itself)."""
    vector = w.dim() == 1
    x = w[None] if vector else w
    out, cin = x.shape
    x = x.reshape(out, cin // 4, 4).transpose(1, 2)  # (out, 4 unfold positions, C)
    x = x[:, [0, 2, 1, 3], :].reshape(out, cin)  # unfold (0,0),(0,1),(1,0),(1,1) -> Swin's order
    return x[0] if vector else x


def _split3(prefix: str, names: tuple[str, str, str], weight: torch.Tensor, bias: torch.Tensor | None) -> dict:
    out = {}
    for name, w in zip(names, weight.chunk(3, dim=0)):
        out[f"{prefix}.{name}.weight"] = w
    if bias is not None:
        for name, b in zip(names, bias.chunk(3, dim=0)):
            out[f"{prefix}.{name}.bias"] = b
    return out


_BB = "model.pixel_level_module.encoder"
_PD = "model.pixel_level_module.decoder"
_TD = "model.transformer_module"


def _under(src: str, dst: str, pairs: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """Renames sharing a source and a target prefix (the groups number across both parts)."""
    return [(src + a, dst + b) for a, b in pairs]


_W = r"(weight|bias)"
# (mmdet regex, transformers key template): plain renames, the groups carry indices;
# None: the target is computed in `convert`
RENAMES = [
    (r"backbone\.patch_embed\.projection\." + _W, _BB + r".swin.embeddings.patch_embeddings.projection.\1"),
    (r"backbone\.patch_embed\.norm\." + _W, _BB + r".swin.embeddings.norm.\1"),
    *_under(r"backbone\.stages\.(\d+)\.blocks\.(\d+)\.", _BB + r".swin.encoder.layers.\1.blocks.\2.", [
        (r"norm1\." + _W, r"layernorm_before.\3"),
        (r"norm2\." + _W, r"layernorm_after.\3"),
        (r"attn\.w_msa\.relative_position_bias_table", r"attention.relative_position_bias.relative_position_bias_table"),
        (r"attn\.w_msa\.proj\." + _W, r"attention.o_proj.\3"),
        (r"ffn\.layers\.0\.0\." + _W, r"mlp.fc1.\3"),
        (r"ffn\.layers\.1\." + _W, r"mlp.fc2.\3"),
    ]),
    (r"backbone\.norm(\d)\." + _W, None),  # stage{i+1}'s output norm
    *_under(r"panoptic_head\.pixel_decoder\.", _PD + ".", [
        (r"input_convs\.(\d+)\.conv\." + _W, r"input_projections.\1.0.\2"),
        (r"input_convs\.(\d+)\.gn\." + _W, r"input_projections.\1.1.\2"),
        (r"level_encoding\.weight", "level_embed"),
        (r"lateral_convs\.0\.conv\.weight", "adapter_1.0.weight"),
        (r"lateral_convs\.0\.gn\." + _W, r"adapter_1.1.\1"),
        (r"output_convs\.0\.conv\.weight", "layer_1.0.weight"),
        (r"output_convs\.0\.gn\." + _W, r"layer_1.1.\1"),
        (r"mask_feature\." + _W, r"mask_projection.\1"),
    ]),
    # pixel decoder encoder layer: operation_order (self_attn, norm, ffn, norm)
    *_under(r"panoptic_head\.pixel_decoder\.encoder\.layers\.(\d+)\.", _PD + r".encoder.layers.\1.", [
        (r"attentions\.0\.(sampling_offsets|attention_weights|value_proj|output_proj)\." + _W, r"self_attn.\2.\3"),
        (r"ffns\.0\.layers\.0\.0\." + _W, r"fc1.\2"),
        (r"ffns\.0\.layers\.1\." + _W, r"fc2.\2"),
        (r"norms\.0\." + _W, r"self_attn_layer_norm.\2"),
        (r"norms\.1\." + _W, r"final_layer_norm.\2"),
    ]),
    # decoder layer: operation_order (cross_attn, norm, self_attn, norm, ffn, norm)
    *_under(r"panoptic_head\.transformer_decoder\.layers\.(\d+)\.", _TD + r".decoder.layers.\1.", [
        (r"attentions\.0\.attn\.(in_proj_weight|in_proj_bias)", r"cross_attn.\2"),
        (r"attentions\.0\.attn\.out_proj\." + _W, r"cross_attn.out_proj.\2"),
        (r"attentions\.1\.attn\.out_proj\." + _W, r"self_attn.out_proj.\2"),
        (r"ffns\.0\.layers\.0\.0\." + _W, r"fc1.\2"),
        (r"ffns\.0\.layers\.1\." + _W, r"fc2.\2"),
        (r"norms\.0\." + _W, r"cross_attn_layer_norm.\2"),
        (r"norms\.1\." + _W, r"self_attn_layer_norm.\2"),
        (r"norms\.2\." + _W, r"final_layer_norm.\2"),
    ]),
    (r"panoptic_head\.transformer_decoder\.post_norm\." + _W, _TD + r".decoder.layernorm.\1"),
    (r"panoptic_head\.query_embed\.weight", _TD + ".queries_embedder.weight"),
    (r"panoptic_head\.query_feat\.weight", _TD + ".queries_features.weight"),
    (r"panoptic_head\.level_embed\.weight", _TD + ".level_embed.weight"),
    (r"panoptic_head\.cls_embed\." + _W, r"class_predictor.\1"),
    # mask_embed = Sequential(Linear, ReLU, Linear, ReLU, Linear): modules 0, 2, 4
    (r"panoptic_head\.mask_embed\.([024])\." + _W, None),
]  # fmt: skip
RENAMES = [(re.compile(pattern), target) for pattern, target in RENAMES]
QKV = re.compile(r"backbone\.stages\.(\d+)\.blocks\.(\d+)\.attn\.w_msa\.qkv\.weight")
SELF_ATTN = re.compile(r"panoptic_head\.transformer_decoder\.layers\.(\d+)\.attentions\.1\.attn\.in_proj_weight")
MERGE = re.compile(r"backbone\.stages\.(\d+)\.downsample\.(reduction|norm)\.(weight|bias)")


def relative_position_index(window: int) -> torch.Tensor:
    """Swin's (window^2, window^2) index into the relative position bias table."""
    coords = torch.stack(torch.meshgrid(torch.arange(window), torch.arange(window), indexing="ij")).flatten(1)
    rel = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0) + (window - 1)
    return rel[..., 0] * (2 * window - 1) + rel[..., 1]


def convert(state: dict[str, torch.Tensor], window: int = SWIN_S["window_size"]) -> dict[str, torch.Tensor]:
    """mmdet Mask2Former state dict -> transformers Mask2FormerForUniversalSegmentation keys.

    Raises UserError naming the first key that is neither mapped nor listed as unused, and
    any relative position index that is not Swin's (a checkpoint of another window size).
    """
    out: dict[str, torch.Tensor] = {}
    for key in sorted(state):
        v = state[key]
        if m := QKV.fullmatch(key):
            prefix = f"{_BB}.swin.encoder.layers.{m[1]}.blocks.{m[2]}.attention"
            out.update(_split3(prefix, ("q_proj", "k_proj", "v_proj"), v, state.get(key[: -len("weight")] + "bias")))
            continue
        if m := SELF_ATTN.fullmatch(key):
            prefix = f"{_TD}.decoder.layers.{m[1]}.self_attn"
            out.update(_split3(prefix, ("q_proj", "k_proj", "v_proj"), v, state.get(key.replace("_weight", "_bias"))))
            continue
        if key.endswith(("attn.w_msa.qkv.bias", "attentions.1.attn.in_proj_bias")):
            continue  # split together with its weight above
        if m := MERGE.fullmatch(key):
            target = f"{_BB}.swin.encoder.layers.{m[1]}.downsample.{m[2]}.{m[3]}"
            out[target] = unfold_to_swin(v)
            continue
        if any(p.fullmatch(key) for p in UNUSED):
            if not torch.equal(v.long(), relative_position_index(window)):
                raise UserError(f"{key}: not Swin's relative position index for window {window}")
            continue
        for pattern, target in RENAMES:
            if m := pattern.fullmatch(key):
                if key.startswith("backbone.norm"):
                    target = f"{_BB}.hidden_states_norms.stage{int(m[1]) + 1}.{m[2]}"
                elif key.startswith("panoptic_head.mask_embed"):
                    target = f"{_TD}.decoder.mask_predictor.mask_embedder.{int(m[1]) // 2}.0.{m[2]}"
                else:
                    target = m.expand(target)
                out[target] = v
                break
        else:
            raise UserError(f"checkpoint key {key!r} is neither mapped nor listed as unused (eval/geneval/convert.py)")
    return out


def load_mmdet_checkpoint(path: Path) -> dict[str, torch.Tensor]:
    """An mmdet .pth: {"state_dict": ..., "meta": ...} or a bare state dict (weights only)."""
    if not path.is_file():
        raise UserError(f"{path}: mmdet checkpoint not found")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unreadable file is the user's input error
        raise UserError(f"{path}: not a readable torch checkpoint ({type(e).__name__}: {e})") from None
    state = ckpt.get("state_dict", ckpt) if isinstance(ckpt, dict) else None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise UserError(f"{path}: no state dict of tensors inside")
    return state


def build_model(state: dict[str, torch.Tensor]):
    """The converted weights in a transformers model (strict: every parameter set)."""
    from transformers import Mask2FormerForUniversalSegmentation

    model = Mask2FormerForUniversalSegmentation(hf_config()).eval()
    converted = convert(state, window=model.config.backbone_config.window_size)
    expected = model.state_dict()
    # the stem's final norm is never used by the backbone's outputs (transformers ignores it
    # on load too) and the no-object loss weight is a loss buffer: keep the model's own values
    for key in expected:
        if key.startswith(f"{_BB}.swin.layernorm.") or key == "criterion.empty_weight":
            converted.setdefault(key, expected[key])
    missing = sorted(set(expected) - set(converted))
    if missing:
        raise UserError(f"the checkpoint has no value for {missing[0]} ({len(missing)} parameters missing)")
    for key, v in converted.items():
        if key not in expected:
            raise UserError(f"converted key {key} is not a parameter of transformers' Mask2Former")
        if v.shape != expected[key].shape:
            raise UserError(f"{key}: shape {tuple(v.shape)} in the checkpoint, {tuple(expected[key].shape)} expected")
    model.load_state_dict(converted, strict=True)
    return model


def convert_checkpoint(mmdet_path: Path, out_dir: Path) -> Path:
    """Official .pth -> a `from_pretrained` directory (config.json + model.safetensors)."""
    from gdmd.io import atomic_dir

    model = build_model(load_mmdet_checkpoint(mmdet_path))
    with atomic_dir(out_dir) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        (Path(tmp) / "SOURCE.txt").write_text(
            f"converted by eval.geneval.convert from {Path(mmdet_path).name} (GenEval's official mmdet checkpoint)\n"
        )
    return out_dir
