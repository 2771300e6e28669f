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
`hf_config(state)` reads the sizes (Swin's width, depths, heads and window, the decoders'
widths, layers and queries) from the checkpoint's shapes, so the same conversion takes a
Swin Mask2Former of another size in mmdet's layout (the rehearsal's small random one,
gdmd.rehearsal); the attention heads (8), levels, points and the 80 classes are fixed.

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
COCO_NAMES = Path(__file__).parent / "data" / "coco_names.txt"

SWIN_S = dict(embed_dim=96, depths=[2, 2, 18, 2], num_heads=[3, 6, 12, 24], window_size=7, mlp_ratio=4.0)
DECODER_LAYERS = 9  # transformer_decoder.num_layers
ENCODER_LAYERS = 6  # pixel_decoder.encoder.num_layers
NUM_QUERIES = 100

# checkpoint entries transformers does not store: Swin's relative position index (a
# constant it recomputes from the window size; `convert` checks it equals that)
UNUSED = (re.compile(r"backbone\.stages\.\d+\.blocks\.\d+\.attn\.w_msa\.relative_position_index"),)


def coco_names() -> list[str]:
    return [n.strip() for n in COCO_NAMES.read_text().splitlines() if n.strip()]


def architecture(state: dict[str, torch.Tensor] | None = None) -> dict:
    """The model's sizes: the official ones, or those read off a checkpoint's shapes."""
    if state is None:
        return dict(swin=SWIN_S, encoder_layers=ENCODER_LAYERS, decoder_layers=DECODER_LAYERS, num_queries=NUM_QUERIES,
                    hidden=256, encoder_ffn=1024, decoder_ffn=2048)  # fmt: skip

    def count(pattern: str) -> int:
        return len({m[1] for k in state if (m := re.fullmatch(pattern, k))})

    def shape(key: str) -> torch.Size:
        if key not in state:
            raise UserError(f"the checkpoint has no {key!r}: not GenEval's Mask2Former layout")
        return state[key].shape

    stages = count(r"backbone\.stages\.(\d+)\..*")
    depths = [count(rf"backbone\.stages\.{i}\.blocks\.(\d+)\..*") for i in range(stages)]
    table = [shape(f"backbone.stages.{i}.blocks.0.attn.w_msa.relative_position_bias_table") for i in range(stages)]
    embed = shape("backbone.patch_embed.projection.weight")[0]
    swin = dict(embed_dim=embed, depths=depths, num_heads=[t[1] for t in table], window_size=(round(table[0][0] ** 0.5) + 1) // 2,
                mlp_ratio=shape("backbone.stages.0.blocks.0.ffn.layers.0.0.weight")[0] / embed)  # fmt: skip
    return dict(
        swin=swin,
        encoder_layers=count(r"panoptic_head\.pixel_decoder\.encoder\.layers\.(\d+)\..*"),
        decoder_layers=count(r"panoptic_head\.transformer_decoder\.layers\.(\d+)\..*"),
        num_queries=shape("panoptic_head.query_feat.weight")[0],
        hidden=shape("panoptic_head.query_feat.weight")[1],
        encoder_ffn=shape("panoptic_head.pixel_decoder.encoder.layers.0.ffns.0.layers.0.0.weight")[0],
        decoder_ffn=shape("panoptic_head.transformer_decoder.layers.0.ffns.0.layers.0.0.weight")[0],
    )


def hf_config(state: dict[str, torch.Tensor] | None = None):
    """The model's architecture as a transformers `Mask2FormerConfig`: the official one, or
    the sizes of the checkpoint `state` (see `architecture`)."""
    from transformers import Mask2FormerConfig, SwinConfig

    a = architecture(state)
    names = coco_names()
    backbone = SwinConfig(**a["swin"], qkv_bias=True, drop_path_rate=0.3, out_features=["stage1", "stage2", "stage3", "stage4"])
    return Mask2FormerConfig(
        backbone_config=backbone,
        num_labels=len(names),
        id2label=dict(enumerate(names)),
        label2id={n: i for i, n in enumerate(names)},
        num_queries=a["num_queries"],
        feature_size=a["hidden"],
        mask_feature_size=a["hidden"],
        hidden_dim=a["hidden"],
        encoder_feedforward_dim=a["encoder_ffn"],
        dim_feedforward=a["decoder_ffn"],
        encoder_layers=a["encoder_layers"],
        decoder_layers=a["decoder_layers"] + 1,  # transformers builds decoder_layers - 1 layers
        num_attention_heads=8,
        common_stride=4,
        feature_strides=[4, 8, 16, 32],
        no_object_weight=0.1,  # loss_cls class_weight of the no-object class
    )


def mmdet_shapes(arch: dict | None = None) -> dict[str, tuple[int, ...]]:
    """Every key and shape of a Swin Mask2Former checkpoint in mmdet's layout, for the sizes
    `arch` (`architecture`'s form; default the official ones, which give exactly the
    official checkpoint's keys: tests/unit/test_geneval_convert.py)."""
    a = arch or architecture()
    sw, h = a["swin"], a["hidden"]
    out: dict[str, tuple[int, ...]] = {}

    def linear(key, n_out, n_in, bias=True):
        out[f"{key}.weight"] = (n_out, n_in)
        if bias:
            out[f"{key}.bias"] = (n_out,)

    def norm(key, n):
        out[f"{key}.weight"], out[f"{key}.bias"] = (n,), (n,)

    c, w = sw["embed_dim"], sw["window_size"]
    out["backbone.patch_embed.projection.weight"], out["backbone.patch_embed.projection.bias"] = (c, 3, 4, 4), (c,)
    norm("backbone.patch_embed.norm", c)
    widths = [c * 2**i for i in range(len(sw["depths"]))]
    for i, (depth, heads, d) in enumerate(zip(sw["depths"], sw["num_heads"], widths)):
        for j in range(depth):
            b = f"backbone.stages.{i}.blocks.{j}."
            norm(b + "norm1", d)
            out[b + "attn.w_msa.relative_position_bias_table"] = ((2 * w - 1) ** 2, heads)
            out[b + "attn.w_msa.relative_position_index"] = (w * w, w * w)
            linear(b + "attn.w_msa.qkv", 3 * d, d)
            linear(b + "attn.w_msa.proj", d, d)
            norm(b + "norm2", d)
            linear(b + "ffn.layers.0.0", int(sw["mlp_ratio"] * d), d)
            linear(b + "ffn.layers.1", d, int(sw["mlp_ratio"] * d))
        if i < len(widths) - 1:
            norm(f"backbone.stages.{i}.downsample.norm", 4 * d)
            linear(f"backbone.stages.{i}.downsample.reduction", 2 * d, 4 * d, bias=False)
    for i, d in enumerate(widths):
        norm(f"backbone.norm{i}", d)
    pd = "panoptic_head.pixel_decoder."
    for i, d in enumerate(reversed(widths[1:])):  # the three coarsest levels, coarsest first
        out[f"{pd}input_convs.{i}.conv.weight"], out[f"{pd}input_convs.{i}.conv.bias"] = (h, d, 1, 1), (h,)
        norm(f"{pd}input_convs.{i}.gn", h)
    for i in range(a["encoder_layers"]):
        e = f"{pd}encoder.layers.{i}."
        linear(e + "attentions.0.sampling_offsets", 8 * 3 * 4 * 2, h)  # heads x levels x points x (x, y)
        linear(e + "attentions.0.attention_weights", 8 * 3 * 4, h)
        linear(e + "attentions.0.value_proj", h, h)
        linear(e + "attentions.0.output_proj", h, h)
        linear(e + "ffns.0.layers.0.0", a["encoder_ffn"], h)
        linear(e + "ffns.0.layers.1", h, a["encoder_ffn"])
        norm(e + "norms.0", h), norm(e + "norms.1", h)
    out[pd + "level_encoding.weight"] = (3, h)
    out[pd + "lateral_convs.0.conv.weight"] = (h, widths[0], 1, 1)
    norm(pd + "lateral_convs.0.gn", h)
    out[pd + "output_convs.0.conv.weight"] = (h, h, 3, 3)
    norm(pd + "output_convs.0.gn", h)
    out[pd + "mask_feature.weight"], out[pd + "mask_feature.bias"] = (h, h, 1, 1), (h,)
    td = "panoptic_head.transformer_decoder."
    for i in range(a["decoder_layers"]):
        t = f"{td}layers.{i}."
        for k in (0, 1):
            out[f"{t}attentions.{k}.attn.in_proj_weight"], out[f"{t}attentions.{k}.attn.in_proj_bias"] = (3 * h, h), (3 * h,)
            linear(f"{t}attentions.{k}.attn.out_proj", h, h)
        linear(t + "ffns.0.layers.0.0", a["decoder_ffn"], h)
        linear(t + "ffns.0.layers.1", h, a["decoder_ffn"])
        for k in range(3):
            norm(f"{t}norms.{k}", h)
    norm(td + "post_norm", h)
    q = a["num_queries"]
    out["panoptic_head.query_embed.weight"], out["panoptic_head.query_feat.weight"] = (q, h), (q, h)
    out["panoptic_head.level_embed.weight"] = (3, h)
    linear("panoptic_head.cls_embed", len(coco_names()) + 1, h)  # 80 classes + no-object
    for k in (0, 2, 4):
        linear(f"panoptic_head.mask_embed.{k}", h, h)
    return out


def random_mmdet_state(arch: dict | None = None, seed: int = 0) -> dict[str, torch.Tensor]:
    """A checkpoint state in mmdet's layout with random values (Swin's constant relative
    position indices exact, normalisation scales near 1): the official layout at the sizes
    `arch`."""
    g = torch.Generator().manual_seed(seed)
    window = (arch or architecture())["swin"]["window_size"]
    state = {}
    for key, shape in mmdet_shapes(arch).items():
        if key.endswith("relative_position_index"):
            state[key] = relative_position_index(window)
        elif re.search(r"(norm\d?|gn|norms\.\d)\.weight$", key):
            state[key] = 1 + torch.randn(shape, generator=g) * 0.02
        else:
            state[key] = torch.randn(shape, generator=g) * 0.02
    return state


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

    model = Mask2FormerForUniversalSegmentation(hf_config(state)).eval()
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
