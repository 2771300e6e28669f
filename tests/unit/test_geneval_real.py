"""GenEval on real images: prompts, Mask2Former post-processing, colour check, parity with the official rules."""

import json
import random

import numpy as np
import pytest
import torch

from eval.geneval import Detection, judge, select, summarize
from eval.geneval.folder import read_metadata, write_prompt_folder
from eval.geneval.mask2former import instances, map_labels, mask_boxes, resized_size
from gdmd.io import UserError

from ..conftest import GENEVAL_DATA as GENEVAL
from ..conftest import run_cli

NAMES = [n.strip() for n in (GENEVAL / "object_names.txt").read_text().splitlines() if n.strip()]
COCO_HF = [{"computer mouse": "mouse", "tv remote": "remote", "computer keyboard": "keyboard"}.get(n, n) for n in NAMES]


def test_all_553_official_prompts_parse():
    rows = read_metadata(GENEVAL / "evaluation_metadata.jsonl")
    assert len(rows) == 553
    counts = {t: sum(r["tag"] == t for r in rows) for t in {r["tag"] for r in rows}}
    assert counts == {"single_object": 80, "two_object": 99, "counting": 80, "colors": 94, "position": 100, "color_attr": 100}
    assert {c["class"] for r in rows for c in r["include"]} <= set(NAMES)


def test_malformed_metadata_names_the_line(tmp_path):
    p = tmp_path / "m.jsonl"
    p.write_text(
        '{"tag": "single_object", "prompt": "a photo of a cat", "include": [{"class": "cat", "count": 1}]}\n{"tag": oops}\n'
    )
    with pytest.raises(UserError, match=r"m.jsonl:2: malformed JSON"):
        read_metadata(p)
    p.write_text("\n")
    with pytest.raises(UserError, match="empty prompt set"):
        read_metadata(p)


def test_prompts_check_sha256(tmp_path):
    """The package's own copy by default (no network, no folder outside the clone), or
    another copy; either is checked against the pinned hashes."""
    out = tmp_path / "p" / "evaluation_metadata.jsonl"
    r = run_cli("eval.geneval.prompts", "--source", "geneval", "--out", out)
    assert r.returncode == 0, r.stderr
    assert out.read_bytes() == (GENEVAL / "evaluation_metadata.jsonl").read_bytes()
    assert (out.parent / "object_names.txt").read_text().splitlines() == NAMES
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "evaluation_metadata.jsonl").write_bytes((GENEVAL / "evaluation_metadata.jsonl").read_bytes() + b"\n")
    (bad / "object_names.txt").write_bytes((GENEVAL / "object_names.txt").read_bytes())
    r = run_cli("eval.geneval.prompts", "--source", "geneval", "--geneval-dir", bad, "--out", tmp_path / "q.jsonl")
    assert r.returncode == 2 and "does not match the pinned 5c48e08" in r.stderr and not (tmp_path / "q.jsonl").exists()
    r = run_cli("eval.geneval.prompts", "--source", "geneval", "--geneval-dir", tmp_path / "none", "--out", tmp_path / "q.jsonl")
    assert r.returncode == 2 and "none/evaluation_metadata.jsonl: GenEval file not found" in r.stderr


def test_shipped_prompt_files_are_geneval_s():
    """The package's copies are the pinned files, with GenEval's licence notice beside them."""
    import hashlib

    from eval.geneval.prompts import GENEVAL_DIR, GENEVAL_FILES

    for name, sha in GENEVAL_FILES.items():
        assert hashlib.sha256((GENEVAL_DIR / name).read_bytes()).hexdigest() == sha, name
    assert "Copyright (c) 2023 Dhruba Ghosh" in (GENEVAL_DIR / "LICENSE-geneval").read_text()


def test_labels_map_onto_object_names():
    labels = map_labels(dict(enumerate(COCO_HF)), NAMES)
    assert len(labels) == 80 and labels[COCO_HF.index("mouse")] == "computer mouse"
    with pytest.raises(UserError, match="do not cover 1 GenEval classes: toothbrush"):
        map_labels(dict(enumerate(COCO_HF[:-1])), NAMES)


def test_resized_size_follows_mmcv_keep_ratio():
    assert resized_size(512, 512) == (800, 800)
    assert resized_size(480, 640) == (800, 1067)
    assert resized_size(100, 1000) == (133, 1333)


def test_mask2former_postprocess_known_answer():
    # 2 queries, 2 classes (+ no-object). Query 0: class 1 with prob 0.5; query 1: class 0 with prob 0.25.
    logits = torch.log(torch.tensor([[0.25, 0.5, 0.25], [0.25, 0.125, 0.625]]))
    masks = torch.full((2, 2, 2), -20.0)  # logits at 1/4 of the padded input (8 x 8)
    masks[0, 0, 0] = 20.0  # top-left quarter of query 0
    mask_logits = masks
    out = instances(logits, mask_logits, resized=(8, 8), original=(8, 8), labels={0: "cat", 1: "dog"}, top_k=2)
    # top-2 (query, class) pairs by probability: (0, dog) 0.5 and (0, cat) 0.25 / (1, cat) 0.25
    dog = out["dog"][0]
    m = torch.nn.functional.interpolate(masks[None], size=(8, 8), mode="bilinear", align_corners=False)[0].sigmoid()
    binary = m[0] > 0.5
    want = 0.5 * float((m[0] * binary).sum() / binary.sum())
    assert dog.score == pytest.approx(want, rel=1e-5)
    ys, xs = np.nonzero(binary.numpy())
    assert dog.box == (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)
    assert mask_boxes(torch.zeros(1, 4, 4, dtype=torch.bool)).tolist() == [[0, 0, 0, 0]]


# -- parity with a transcription of the official rules ------------------------------------


def official_iou(a, b):
    def area(x):
        return max(x[2] - x[0] + 1, 0) * max(x[3] - x[1] + 1, 0)

    i = area([max(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), min(a[3], b[3])])
    u = area(a) + area(b) - i
    return i / u if u else 0


def official_relative(a, b, thr=0.1):
    boxes = np.array([a, b])[:, :4].reshape(2, 2, 2)
    ca, cb = boxes.mean(axis=-2)
    da, db = np.abs(np.diff(boxes, axis=-2))[..., 0, :]
    off = ca - cb
    rev = np.maximum(np.abs(off) - thr * (da + db), 0) * np.sign(off)
    if np.all(np.abs(rev) < 1e-3):
        return set()
    dx, dy = rev / np.linalg.norm(off)
    rel = set()
    if dx < -0.5:
        rel.add("left of")
    if dx > 0.5:
        rel.add("right of")
    if dy < -0.5:
        rel.add("above")
    if dy > 0.5:
        rel.add("below")
    return rel


def official(meta, raw, nms):
    """GenEval's evaluate_image + evaluate, written out plainly: raw = {class: [(box5, colour)]}."""
    thr = 0.9 if meta["tag"] == "counting" else 0.3
    detected = {}
    for cls, dets in raw.items():
        scores = np.array([d[0][4] for d in dets])
        order = np.argsort(scores, kind="stable")[::-1]
        order = [i for i in order if scores[i] > thr][:16]
        kept = []
        while order:
            top = order.pop(0)
            kept.append(dets[top])
            order = [o for o in order if nms == 1 or official_iou(dets[top][0], dets[o][0]) < nms]
        if kept:
            detected[cls] = kept
    correct, groups = True, []
    for req in meta.get("include", []):
        found = detected.get(req["class"], [])[: req["count"]]
        ok = len(found) >= req["count"]
        if ok and "color" in req:
            ok = [d[1] for d in found].count(req["color"]) >= req["count"]
        if ok and "position" in req:
            rel, tgt = req["position"]
            if groups[tgt] is None:
                ok = False
            else:
                ok = all(rel in official_relative(d[0], t[0]) for d in found for t in groups[tgt])
        correct = correct and ok
        groups.append(found if ok else None)
    for req in meta.get("exclude", []):
        if len(detected.get(req["class"], [])) >= req["count"]:
            correct = False
    return correct


def test_pipeline_agrees_with_official_rules_on_random_scenes():
    rows = read_metadata(GENEVAL / "evaluation_metadata.jsonl")
    rng = random.Random(0)
    colors = ["red", "orange", "yellow", "green", "blue", "purple", "pink", "brown", "black", "white"]
    n_correct = 0
    for trial in range(1500):
        meta = rng.choice(rows)
        classes = [c["class"] for c in meta["include"]] + [rng.choice(NAMES)]
        raw = {}
        for cls in classes:
            for _ in range(rng.randint(0, 6)):
                x, y = rng.uniform(0, 400), rng.uniform(0, 400)
                w, h = rng.uniform(5, 200), rng.uniform(5, 200)
                score = rng.choice([rng.random(), 0.3, 0.9, rng.uniform(0.85, 1.0)])
                color = rng.choice(colors)
                raw.setdefault(cls, []).append(([x, y, x + w, y + h, score], color))
        nms = rng.choice([1.0, 0.5])
        want = official(meta, raw, nms)
        dets = {k: [Detection(b[:4], b[4], color=c) for b, c in v] for k, v in raw.items()}
        got = judge(meta, select(dets, meta["tag"], max_overlap=nms))[0]
        assert got == want, (trial, meta, raw)
        n_correct += got
    assert 50 < n_correct < 1450  # both outcomes are exercised


def test_summary_of_a_hand_checked_results_file():
    # 3 tags; per-tag accuracy: single 2/3, counting 1/2, position 0/1 -> overall (2/3 + 1/2 + 0) / 3
    rows = [
        {"tag": "single_object", "correct": True},
        {"tag": "single_object", "correct": False},
        {"tag": "single_object", "correct": True},
        {"tag": "counting", "correct": True},
        {"tag": "counting", "correct": False},
        {"tag": "position", "correct": False},
    ]
    s = summarize(rows)
    assert s["tags"] == {"single_object": pytest.approx(2 / 3), "counting": 0.5, "position": 0.0}
    assert s["overall"] == pytest.approx((2 / 3 + 0.5 + 0.0) / 3)


# -- the full evaluator on tiny random-weight models --------------------------------------


@pytest.fixture(scope="module")
def tiny_real_models(tmp_path_factory):
    import open_clip
    from safetensors.torch import save_file
    from transformers import Mask2FormerConfig, Mask2FormerForUniversalSegmentation, SwinConfig

    root = tmp_path_factory.mktemp("real")
    torch.manual_seed(0)
    swin = SwinConfig(
        embed_dim=16, depths=[1, 1, 1, 1], num_heads=[1, 1, 1, 1], out_features=["stage1", "stage2", "stage3", "stage4"]
    )
    cfg = Mask2FormerConfig(
        backbone_config=swin, hidden_dim=32, mask_feature_size=32, feature_size=32, num_queries=8, encoder_layers=1,
        decoder_layers=2, dim_feedforward=64, num_attention_heads=2, encoder_feedforward_dim=64,
        id2label=dict(enumerate(COCO_HF)), label2id={n: i for i, n in enumerate(COCO_HF)},
    )  # fmt: skip
    Mask2FormerForUniversalSegmentation(cfg).save_pretrained(root / "mask2former")
    clip_cfg = {
        "embed_dim": 16,
        "quick_gelu": True,
        "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "patch_size": 8, "head_width": 16},
        "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
    }
    (root / "tiny-quickgelu.json").write_text(json.dumps(clip_cfg))
    open_clip.add_model_config(root / "tiny-quickgelu.json")
    model = open_clip.create_model("tiny-quickgelu")
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, root / "clip.safetensors")
    return root


def test_full_evaluator_runs_through_the_real_loading_code(tiny_real_models, tmp_path):
    rows = read_metadata(GENEVAL / "evaluation_metadata.jsonl")
    picks = [next(r for r in rows if r["tag"] == t) for t in ("colors", "position", "counting")]
    rng = np.random.default_rng(0)
    images = tmp_path / "images"
    for i, meta in enumerate(picks):
        write_prompt_folder(images, i, meta, [rng.integers(0, 256, (64, 48, 3), dtype=np.uint8) for _ in range(2)])
    out = tmp_path / "results.jsonl"
    r = run_cli(
        "eval.geneval", "--images", images, "--out", out, "--backend", "transformers",
        "--detector-weights", tiny_real_models / "mask2former", "--object-names", GENEVAL / "object_names.txt",
        "--color-weights", tiny_real_models / "clip.safetensors", "--color-arch", "tiny-quickgelu",
        "--threshold", "0.0", "--counting-threshold", "0.0",
        env={"GDMD_OPEN_CLIP_CONFIGS": str(tiny_real_models / "tiny-quickgelu.json")},
    )  # fmt: skip
    assert r.returncode == 0, r.stderr[-3000:]
    res = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(res) == 6 and {x["tag"] for x in res} == {"colors", "position", "counting"}
    summary = json.loads(out.with_suffix(".summary.json").read_text())
    assert summary["backend"] == "transformers" and summary["color_model"] == "tiny-quickgelu"
    assert summary["tf32"] == {"matmul": False, "cudnn": False}
    # with every detection kept, colour clauses were checked by the CLIP head
    colors = [x for x in res if x["tag"] == "colors"]
    assert all(x["correct"] or "expected" in x["reason"] for x in colors)
    details = json.loads(res[0]["details"])
    assert details and all(len(b) == 5 for v in details.values() for b in v)


def test_mmdet_backend_without_mmdet_is_a_one_line_error(monkeypatch):
    import sys

    from eval.geneval.backends import get_backend

    monkeypatch.setitem(sys.modules, "mmdet", None)  # import mmdet -> ImportError
    with pytest.raises(UserError, match="backend 'mmdet' needs mmdet"):
        get_backend("mmdet", weights="x.pth", object_names=["dog"])
