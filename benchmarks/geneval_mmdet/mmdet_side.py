"""GenEval's detector through mmdet 2.x itself; runs inside the mmdet venv (see verify.py).

    python mmdet_side.py checkpoint --out ckpt.pth --keys keys.json --seed 0
    python mmdet_side.py detect --checkpoint ckpt.pth --images DIR --out detections.json

`checkpoint` builds the official config's model (mmdet 2.28.2's bundled
configs/mask2former/mask2former_swin-s-p4-w7-224_lsj_8x2_50e_coco.py, the file GenEval's
evaluate_images.py loads) with seeded random weights, and saves it as mmcv's
save_checkpoint does ({"meta": ..., "state_dict": ...}), plus every key's shape. Random
class heads give every class about the same probability (1/81), so no detection would
pass GenEval's 0.3 threshold, and a random 9-layer decoder makes all queries alike (one
class, one whole-image mask): the check would be vacuous. So the queries are drawn with
std 1, the decoder's residual branches are scaled by 0.1 (each query keeps its identity),
and the class and last mask-embedding layers are drawn with std 0.5: queries then differ
in class, score and mask, as a trained detector's do.

`detect` runs what GenEval's evaluation/evaluate_images.py runs per image:
`init_detector(config, checkpoint)` then `inference_detector(model, filepath)`, and writes
every returned detection ([x1, y1, x2, y2, score] per class, all 100 of them) as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import torch

CONFIG = "configs/mask2former/mask2former_swin-s-p4-w7-224_lsj_8x2_50e_coco.py"


def config_path() -> str:
    import mmdet

    return os.path.join(os.path.dirname(mmdet.__file__), ".mim", CONFIG)


def make_checkpoint(out: Path, keys: Path, seed: int) -> None:
    import mmcv
    import mmdet
    from mmdet.core import get_classes
    from mmdet.models import build_detector

    cfg = mmcv.Config.fromfile(config_path())
    cfg.model.backbone.init_cfg = None  # no ImageNet download: random weights throughout
    torch.manual_seed(seed)
    model = build_detector(cfg.model)
    model.init_weights()
    head = model.panoptic_head
    with torch.no_grad():  # distinct, confident queries with partial masks (see the docstring)
        for emb in (head.query_feat, head.query_embed):
            emb.weight.normal_(0.0, 1.0)
        head.cls_embed.weight.normal_(0.0, 0.5)
        head.mask_embed[4].weight.normal_(0.0, 0.5)
        head.mask_embed[4].bias.normal_(0.0, 0.5)
        for layer in head.transformer_decoder.layers:  # keep each query's identity through the decoder
            for attn in layer.attentions:
                attn.attn.out_proj.weight.mul_(0.1)
            layer.ffns[0].layers[1].weight.mul_(0.1)
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    meta = {"mmdet_version": mmdet.__version__, "CLASSES": get_classes("coco"), "seed": seed}
    torch.save({"meta": meta, "state_dict": state}, out)
    keys.write_text(json.dumps({k: list(v.shape) for k, v in state.items()}, indent=0) + "\n")


def detect(checkpoint: Path, images: Path, out: Path, double: bool = False) -> None:
    from mmdet.apis import inference_detector, init_detector

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    model = init_detector(config_path(), str(checkpoint), device="cpu")
    if double:  # float64 throughout: the network's input is cast where features are extracted
        model.double()
        extract = model.extract_feat
        model.extract_feat = lambda img: extract(img.double())
    result = {}
    for path in sorted(images.glob("*.png")):
        bbox, segm = inference_detector(model, str(path))
        result[path.name] = {
            "boxes": [[[float(x) for x in row] for row in per_class] for per_class in bbox],
            "mask_pixels": [[int(m.sum()) for m in per_class] for per_class in segm],
        }
        print(path.name, sum(len(c) for c in bbox), flush=True)
    out.write_text(json.dumps(result) + "\n")


def main() -> None:
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("checkpoint")
    c.add_argument("--out", type=Path, required=True)
    c.add_argument("--keys", type=Path, required=True)
    c.add_argument("--seed", type=int, default=0)
    d = sub.add_parser("detect")
    d.add_argument("--checkpoint", type=Path, required=True)
    d.add_argument("--images", type=Path, required=True)
    d.add_argument("--out", type=Path, required=True)
    d.add_argument("--double", action="store_true", help="run the network in float64")
    a = p.parse_args()
    if a.cmd == "checkpoint":
        make_checkpoint(a.out, a.keys, a.seed)
    else:
        detect(a.checkpoint, a.images, a.out, a.double)


if __name__ == "__main__":
    main()
