"""GenEval's official mmdet checkpoint -> transformers Mask2Former, and mmdet's test pipeline.

The key fixture (tests/data/geneval_mmdet_keys.json) is every key and shape of the official
config's model as mmdet 2.28.2 builds it (benchmarks/geneval_mmdet/mmdet_side.py
checkpoint --keys). The comparison with mmdet itself runs where its isolated venv exists
(benchmarks/geneval_mmdet/verify.py builds it).
"""

import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from eval.geneval.convert import build_model, convert, hf_config, relative_position_index, unfold_to_swin
from eval.geneval.mask2former import MEAN, PAD_VALUE, STD, TransformersMask2Former, batches_by_size, map_labels, preprocess
from gdmd.io import UserError

from ..conftest import GENEVAL_DATA, ROOT, run_cli

KEYS = json.loads((ROOT / "tests" / "data" / "geneval_mmdet_keys.json").read_text())
NAMES = [n.strip() for n in (GENEVAL_DATA / "object_names.txt").read_text().splitlines() if n.strip()]
MMDET_VENV = Path(os.environ.get("GDMD_MMDET_VENV", ROOT / ".mmdet" / "venv"))


def official_state(seed: int = 0) -> dict[str, torch.Tensor]:
    """A state dict with the official checkpoint's exact keys and shapes, random values."""
    g = torch.Generator().manual_seed(seed)
    state = {}
    for key, shape in KEYS.items():
        if key.endswith("relative_position_index"):
            state[key] = relative_position_index(7)
        else:
            state[key] = torch.randn(shape, generator=g) * 0.02
    return state


@pytest.fixture(scope="module")
def converted():
    state = official_state()
    return state, build_model(state)


def test_the_layout_generator_gives_the_official_keys_and_a_smaller_model_converts():
    """`mmdet_shapes` at the official sizes is the official checkpoint's key list (mmdet's
    own, tests/data); at other sizes its random state converts into a model of those sizes."""
    from eval.geneval.convert import architecture, mmdet_shapes, random_mmdet_state

    assert {k: list(v) for k, v in mmdet_shapes().items()} == KEYS
    small = {**architecture(), "swin": dict(embed_dim=16, depths=[1, 1, 2, 1], num_heads=[1, 2, 2, 4], window_size=7,
                                            mlp_ratio=2.0), "hidden": 32, "encoder_layers": 1, "decoder_layers": 2,
             "num_queries": 10, "encoder_ffn": 64, "decoder_ffn": 64}  # fmt: skip
    state = random_mmdet_state(small, seed=1)
    assert architecture(state) == small
    model = build_model(state)
    assert model.config.num_queries == 10 and model.config.backbone_config.depths == [1, 1, 2, 1]
    assert sum(p.numel() for p in model.parameters()) < 2e6


def test_every_official_key_is_mapped_and_every_parameter_set(converted):
    state, model = converted
    assert len(KEYS) == 649
    params = model.state_dict()
    out = convert(state)
    # every converted tensor lands on a parameter with its values
    for key, value in out.items():
        assert torch.equal(params[key], value), key
    # parameters come from the checkpoint, except the two kept from the model (see build_model)
    own = {k for k in params if k not in out}
    assert all(k.startswith("model.pixel_level_module.encoder.swin.layernorm.") or k == "criterion.empty_weight" for k in own), (
        own
    )
    # the element count is preserved: only the constant relative position indices are dropped
    dropped = sum(v.numel() for k, v in state.items() if k.endswith("relative_position_index"))
    assert sum(v.numel() for v in out.values()) == sum(v.numel() for v in state.values()) - dropped


def test_fused_projections_are_split_in_order(converted):
    state, model = converted
    qkv = state["backbone.stages.2.blocks.5.attn.w_msa.qkv.weight"]
    attn = model.model.pixel_level_module.encoder.swin.encoder.layers[2].blocks[5].attention
    assert torch.equal(attn.q_proj.weight, qkv[:384]) and torch.equal(attn.v_proj.weight, qkv[768:])
    inproj = state["panoptic_head.transformer_decoder.layers.4.attentions.1.attn.in_proj_weight"]
    self_attn = model.model.transformer_module.decoder.layers[4].self_attn
    assert torch.equal(self_attn.k_proj.weight, inproj[256:512])
    # the decoder's cross-attention is nn.MultiheadAttention on both sides: copied whole
    cross = state["panoptic_head.transformer_decoder.layers.4.attentions.0.attn.in_proj_weight"]
    assert torch.equal(model.model.transformer_module.decoder.layers[4].cross_attn.in_proj_weight, cross)


def test_patch_merging_order_matches_unfold():
    """mmdet's PatchMerging reads 2x2 neighbourhoods with nn.Unfold; transformers concatenates
    Swin's (0,0), (1,0), (0,1), (1,1) slices. The converted weight gives the same output."""
    torch.manual_seed(0)
    c, h, w = 5, 4, 6
    x = torch.randn(1, c, h, w)
    unfolded = torch.nn.Unfold(kernel_size=2, stride=2)(x).transpose(1, 2)  # (1, L, 4C), mmdet's layout
    xs = x.permute(0, 2, 3, 1)
    swin = torch.cat([xs[:, r::2, col::2, :] for col in range(2) for r in range(2)], -1).reshape(1, -1, 4 * c)
    w_mmdet = torch.randn(3, 4 * c)
    assert torch.allclose(unfolded @ w_mmdet.T, swin @ unfold_to_swin(w_mmdet).T, atol=1e-6)
    # as a permutation: Swin's feature j is unfold's feature perm[j]; the LayerNorm's affine
    # parameters follow it
    perm = unfold_to_swin(torch.arange(4 * c, dtype=torch.float64)).long()
    assert torch.equal(swin, unfolded[..., perm])
    norm = torch.randn(4 * c)
    assert torch.equal(swin * unfold_to_swin(norm), (unfolded * norm)[..., perm])


def test_unmapped_key_missing_key_and_bad_index_are_one_line_errors():
    state = official_state()
    with pytest.raises(UserError, match=r"'panoptic_head\.extra\.weight' is neither mapped nor listed as unused"):
        convert({**state, "panoptic_head.extra.weight": torch.zeros(1)})
    del state["panoptic_head.cls_embed.bias"]
    with pytest.raises(UserError, match=r"no value for class_predictor\.bias"):
        build_model(state)
    state = official_state()
    state["backbone.stages.0.blocks.0.attn.w_msa.relative_position_index"] = relative_position_index(12)
    with pytest.raises(UserError, match="not Swin's relative position index for window 7"):
        convert(state)


def test_geneval_convert_cli(tmp_path):
    pth = tmp_path / "official.pth"
    torch.save({"meta": {"CLASSES": NAMES}, "state_dict": official_state()}, pth)
    out = tmp_path / "converted"
    r = run_cli("eval.weights", "geneval-convert", "--mmdet", pth, "--out", out)
    assert r.returncode == 0, r.stderr[-2000:]
    assert (out / "config.json").is_file() and (out / "model.safetensors").is_file()
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["num_queries"] == 100 and len(cfg["id2label"]) == 80 and cfg["id2label"]["64"] == "mouse"
    backend = TransformersMask2Former(str(out), NAMES)  # loads through from_pretrained, labels cover GenEval's
    assert len(backend.labels) == 80
    # bad inputs: a missing file, a checkpoint with a foreign key; no output left behind
    r = run_cli("eval.weights", "geneval-convert", "--mmdet", tmp_path / "nope.pth", "--out", tmp_path / "x")
    assert r.returncode != 0 and "nope.pth: mmdet checkpoint not found" in r.stderr and not (tmp_path / "x").exists()
    torch.save({"state_dict": {**official_state(), "head.foo": torch.zeros(2)}}, pth)
    r = run_cli("eval.weights", "geneval-convert", "--mmdet", pth, "--out", tmp_path / "y")
    assert r.returncode != 0 and "'head.foo' is neither mapped" in r.stderr.strip().splitlines()[-1]
    assert not (tmp_path / "y").exists()


def test_config_matches_the_official_architecture():
    cfg = hf_config()
    assert cfg.backbone_config.depths == [2, 2, 18, 2] and cfg.backbone_config.num_heads == [3, 6, 12, 24]
    assert cfg.decoder_layers - 1 == 9 and cfg.encoder_layers == 6 and cfg.num_queries == 100
    # the sizes read off the official checkpoint's shapes are the official config's
    assert hf_config(official_state()).to_dict() == cfg.to_dict()
    # the checkpoint's label i is line i of GenEval's object_names.txt (mmdet spells three differently)
    assert map_labels(cfg.id2label, NAMES) == dict(enumerate(NAMES))


# -- mmdet's test pipeline ------------------------------------------------------------------


def test_preprocess_pads_grey_before_normalising():
    img = np.full((100, 60, 3), 7, dtype=np.uint8)  # resized to 800 x 480, padded to 800 x 480
    img2 = np.full((90, 100, 3), 7, dtype=np.uint8)  # 800 x 889 -> padded to 800 x 896
    batch, resized, original = preprocess([img2])
    assert resized == [(800, 889)] and original == [(90, 100)] and batch.shape == (1, 3, 800, 896)
    pad = (torch.tensor(float(PAD_VALUE)) - torch.tensor(MEAN)) / torch.tensor(STD)
    assert torch.allclose(batch[0, :, :, 889:], pad.view(3, 1, 1).expand(3, 800, 7))
    inside = (7.0 - torch.tensor(MEAN)) / torch.tensor(STD)
    assert torch.allclose(batch[0, :, :, :889], inside.view(3, 1, 1).expand(3, 800, 889))
    with pytest.raises(ValueError, match="one padded size per batch"):
        preprocess([img, img2])


def test_batches_group_images_by_padded_size():
    a, b = np.zeros((512, 512, 3), np.uint8), np.zeros((512, 768, 3), np.uint8)
    assert batches_by_size([a, b, a, a, b], batch_size=2) == [[0, 2], [3], [1, 4]]


@pytest.mark.skipif(
    not (MMDET_VENV / ".geneval-mmdet-ready").is_file(), reason="no mmdet venv (benchmarks/geneval_mmdet/verify.py builds it)"
)
def test_converted_checkpoint_detects_exactly_as_mmdet(tmp_path):
    sys.path.insert(0, str(ROOT / "benchmarks" / "geneval_mmdet"))
    try:
        import verify
    finally:
        sys.path.pop(0)
    out = tmp_path / "result.json"
    # the first 4 images (the benchmark runs all 24, non-square ones included)
    verify.main(["--venv", str(MMDET_VENV), "--work", str(tmp_path / "work"), "--images", "4", "--out", str(out),
                 "--object-names", str(GENEVAL_DATA / "object_names.txt")])  # fmt: skip
    s = json.loads(out.read_text())["summary"]
    assert s["agree"] and s["detections_mmdet"] == 4 * 100 and s["max_box_px"] <= 1.0
    assert s["rows_same_correct"] == s["rows"] and 0 < s["rows_correct_mmdet"] < s["rows"]
