"""Our preference scorers against the original packages, each running its own code in its own venv.

    python benchmarks/scorer_parity/parity.py            # builds the venvs under .parity/ once

For each original (ENVS: pinned versions) a venv is built under `--venvs`; `originals.py`
runs inside it, makes seeded random weights through the original code, saves them in the
official checkpoint format and scores the shared images with the original scoring code.
This process (the project's venv) then loads those files with our scorers and scores the
same images on the evaluation path (uint8 images) and on the differentiable path (float
tensors in [0, 1], as the RL rewards call it). Shared between the two sides: only the
checkpoint files, the tokenizer files, the images and the prompts.

Writes `--out` (JSON, every score) and a Markdown table beside it: per scorer the original's
version, the largest absolute difference on square and on non-square images for both
paths, and the spread of the original's scores over the images (a difference is only
meaningful against it). Images: seeded synthetic scenes (smooth colour fields, shapes,
texture) of square and non-square sizes, since no real images may be downloaded here.

Offline workarounds (documented in originals.py): local tokenizer files (a BERT vocabulary
and CLIP's BPE written from open_clip's own vocabulary file), hpsv2's missing BPE file
copied into its venv, and no hub downloads (every original is given local paths).
"""

from __future__ import annotations

import gdmd  # noqa: F401  (fixes the numerics mode before torch loads)

# isort: split
import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

from eval.preference import get_scorer
from eval.preference.offline import clip_bpe_tokenizer_files
from gdmd.io import atomic_write_json, atomic_write_text, provenance

HERE = Path(__file__).resolve().parent
TORCH = [f"torch=={torch.__version__.split('+')[0]}", f"torchvision=={__import__('torchvision').__version__.split('+')[0]}"]
# each original in its own venv, with the versions its issue report used. openai-clip (which
# image-reward imports) needs `pkg_resources.packaging`, gone from setuptools >= 70; torch
# declares setuptools >= 77 but does not use it to run
OLD_SETUPTOOLS = "setuptools<70"
ENVS = {
    "imagereward": ["image-reward==1.5", "transformers==4.52.4", "timm==0.6.13", "fairscale==0.4.13", "openai-clip==1.0.1",
                    OLD_SETUPTOOLS],
    "hpsv2": ["hpsv2==1.2.0"],
    "reference": ["transformers==4.52.4", "openai-clip==1.0.1", OLD_SETUPTOOLS],  # PickScore's model card; OpenAI's clip
}  # fmt: skip
# original -> (venv, the metrics it writes)
ORIGINALS = {"imagereward": ("imagereward", ["imagereward"]), "hpsv2": ("hpsv2", ["hpsv2"]),
             "pickscore": ("reference", ["pickscore"]), "clip": ("reference", ["clipscore", "aesthetic"])}  # fmt: skip
SIZES = [(224, 224), (512, 512), (640, 384), (384, 640), (300, 600), (500, 333)]  # (width, height)
PROMPTS = ["a red apple on a wooden table", "a photo of a cat sitting on a sofa", "a blue car parked left of a tree",
           "two dogs playing in the snow", "a tall lighthouse at sunset", "a bowl of green soup"]  # fmt: skip


def scene(width: int, height: int, rng: np.random.Generator) -> np.ndarray:
    """A synthetic photo-like scene: a smooth two-colour gradient field, a few filled shapes,
    fine texture."""
    yy, xx = np.mgrid[0:height, 0:width] / max(width, height)
    c0, c1 = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
    a = rng.uniform(0, 2 * np.pi)
    t = (np.cos(a) * xx + np.sin(a) * yy + np.sin(6 * xx * rng.uniform(0.5, 2)) * 0.1)[..., None]
    img = Image.fromarray(np.clip(c0 + (c1 - c0) * (t - t.min()) / np.ptp(t), 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(img)
    for _ in range(rng.integers(2, 6)):
        x0, y0 = rng.uniform(0, width), rng.uniform(0, height)
        w, h = rng.uniform(0.1, 0.4) * width, rng.uniform(0.1, 0.4) * height
        fill = tuple(int(v) for v in rng.integers(0, 256, 3))
        (draw.ellipse if rng.random() < 0.5 else draw.rectangle)([x0, y0, x0 + w, y0 + h], fill=fill)
    arr = np.asarray(img).astype(np.float64) + rng.normal(0, 6, (height, width, 3))
    return np.clip(arr, 0, 255).astype(np.uint8)


def bert_vocab(path: Path, words: list[str], size: int = 30522) -> None:
    """A BERT uncased vocabulary with BERT's special-token ids ([PAD] 0, [UNK] 100, [CLS] 101,
    [SEP] 102, [MASK] 103), the prompts' words and single letters, padded to BERT's size."""
    vocab = ["[PAD]"] + [f"[unused{i}]" for i in range(99)] + ["[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    letters = [chr(c) for c in range(ord("a"), ord("z") + 1)]
    for w in sorted(set(words)) + letters + ["##" + c for c in letters]:
        if w not in vocab:
            vocab.append(w)
    vocab += [f"[filler{i}]" for i in range(size - len(vocab))]
    path.mkdir(parents=True, exist_ok=True)
    (path / "vocab.txt").write_text("\n".join(vocab) + "\n")
    (path / "tokenizer_config.json").write_text(json.dumps({"do_lower_case": True}))


# BLIP's configs/med_config.json (salesforce/BLIP, as ImageReward's hub repo ships it)
MED_CONFIG = {"architectures": ["BertModel"], "attention_probs_dropout_prob": 0.1, "hidden_act": "gelu",
              "hidden_dropout_prob": 0.1, "hidden_size": 768, "initializer_range": 0.02, "intermediate_size": 3072,
              "layer_norm_eps": 1e-12, "max_position_embeddings": 512, "model_type": "bert", "num_attention_heads": 12,
              "num_hidden_layers": 12, "pad_token_id": 0, "type_vocab_size": 2, "vocab_size": 30524, "encoder_width": 768,
              "add_cross_attention": True}  # fmt: skip
# laion/CLIP-ViT-H-14-laion2B-s32B-b79K's preprocessor_config.json (PickScore's processor)
PICK_PROCESSOR = {"crop_size": 224, "do_center_crop": True, "do_normalize": True, "do_resize": True,
                  "feature_extractor_type": "CLIPFeatureExtractor", "image_mean": [0.48145466, 0.4578275, 0.40821073],
                  "image_std": [0.26862954, 0.26130258, 0.27577711], "resample": 3, "size": 224}  # fmt: skip


def write_inputs(work: Path) -> None:
    rng = np.random.default_rng(0)
    (work / "images").mkdir(parents=True, exist_ok=True)
    for i, (w, h) in enumerate(SIZES):
        Image.fromarray(scene(w, h, rng)).save(work / "images" / f"{i:02d}_{w}x{h}.png")
    (work / "prompts.json").write_text(json.dumps(PROMPTS))
    bert_vocab(work / "bert", [w for p in PROMPTS for w in p.lower().split()])
    for d in ("imagereward", "hpsv2", "pickscore/processor", "clip"):
        (work / "weights" / d).mkdir(parents=True, exist_ok=True)
    (work / "weights" / "imagereward" / "med_config.json").write_text(json.dumps(MED_CONFIG, indent=2))
    proc = work / "weights" / "pickscore" / "processor"
    clip_bpe_tokenizer_files(proc)
    (proc / "preprocessor_config.json").write_text(json.dumps(PICK_PROCESSOR, indent=2))
    (proc / "config.json").write_text(json.dumps({"model_type": "clip"}))  # the repo's config names the processor class


def venv_python(venvs: Path, name: str) -> Path:
    return venvs / name / "bin" / "python"


def ensure_venv(venvs: Path, name: str) -> None:
    """The venv of one original, built once (a stamp file records its requirements)."""
    reqs = TORCH + ENVS[name]
    stamp = venvs / name / "requirements.json"
    if stamp.exists() and json.loads(stamp.read_text()) == reqs:
        return
    print(f"building venv {venvs / name}: {' '.join(reqs)}", flush=True)
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(venvs / name)], check=True)  # on the base interpreter
    pip = [str(venv_python(venvs, name)), "-m", "pip", "install", "-q", "--no-compile"]
    late = [r for r in reqs if r == OLD_SETUPTOOLS]  # after the rest: pip refuses it beside torch's declared need
    subprocess.run(pip + [r for r in reqs if r not in late], check=True)
    if late:
        subprocess.run(pip + late, check=True)
    if name == "hpsv2":  # the wheel lacks open_clip's BPE vocabulary (its tokenizer cannot load without it)
        import open_clip.tokenizer as oct

        site = subprocess.run([str(venv_python(venvs, name)), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                              check=True, capture_output=True, text=True).stdout.strip()  # fmt: skip
        shutil.copy(oct.default_bpe(), Path(site) / "hpsv2" / "src" / "open_clip")
    stamp.write_text(json.dumps(reqs))


def our_weights(w: Path, work: Path) -> dict:
    return {
        "imagereward": str(w / "imagereward" / "ImageReward.pt"),
        "imagereward_med_config": str(w / "imagereward" / "med_config.json"),
        "bert_tokenizer": str(work / "bert"),
        "hpsv2": str(w / "hpsv2" / "HPS_v2_compressed.pt"),
        "pickscore": str(w / "pickscore" / "PickScore_v1"),
        "pickscore_processor": str(w / "pickscore" / "processor"),
        "clip_l14": str(w / "clip" / "ViT-L-14.pt"),
        "aesthetic_mlp": str(w / "clip" / "sac+logos+ava1-l14-linearMSE.pth"),
    }


def ours(metric: str, weights: dict, images: list[np.ndarray], prompts: list[str]) -> tuple[list[float], list[float]]:
    """Our scores on the evaluation path (uint8 images) and the differentiable path (each
    image as a float tensor in [0, 1])."""
    scorer = get_scorer(metric, weights)
    uint8 = [float(s) for s in scorer.score(images, prompts)]
    with torch.no_grad():
        tensor = [float(scorer.reward(torch.from_numpy(im).permute(2, 0, 1)[None].float() / 255, [p])[0])
                  for im, p in zip(images, prompts)]  # fmt: skip
    return uint8, tensor


def compare(metric: str, label: str, want, uint8, tensor, square) -> dict:
    """One table row: the largest absolute differences per path and image shape. CLIPScore's
    reward is 100 x cos without the evaluation's clip at 0 (by design: the clip would cut the
    gradient), so its differentiable path is compared after clipping."""
    want, uint8, tensor, sq = (np.asarray(v, dtype=np.float64) for v in (want, uint8, tensor, square))
    if metric == "clipscore":
        tensor = np.maximum(tensor, 0)
    d8, dt, sq = np.abs(uint8 - want), np.abs(tensor - want), sq.astype(bool)
    note = {"hpsv2_noaa": " (its antialiased resize; ours without)", "clipscore": " (tensor path clipped at 0 as the score)"}
    return {"metric": metric, "original": label + note.get(metric, ""), "uint8_square": d8[sq].max(),
            "uint8_nonsquare": d8[~sq].max(), "tensor_square": dt[sq].max(), "tensor_nonsquare": dt[~sq].max(),
            "spread": float(want.std())}  # fmt: skip


def table(rows: list[dict]) -> str:
    head = ("| scorer | original | max abs diff, square (uint8) | non-square (uint8) | square (tensor path) | "
            "non-square (tensor path) | spread of the original's scores (std) |\n|---|---|---|---|---|---|---|\n")  # fmt: skip
    return head + "".join(
        f"| `{r['metric']}` | {r['original']} | {r['uint8_square']:.1e} | {r['uint8_nonsquare']:.1e} | "
        f"{r['tensor_square']:.1e} | {r['tensor_nonsquare']:.1e} | {r['spread']:.3g} |\n"
        for r in rows
    )


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--venvs", type=Path, default=Path(".parity"))
    p.add_argument("--work", type=Path, default=Path(".parity/work"))
    p.add_argument("--originals", default=",".join(ORIGINALS), help="which originals to run (comma-separated)")
    p.add_argument("--out", type=Path, default=Path("benchmarks/results/scorer_parity.json"))
    args = p.parse_args()
    unknown = [n for n in args.originals.split(",") if n not in ORIGINALS]
    if unknown:
        p.error(f"--originals: {unknown[0]!r} is not one of {', '.join(ORIGINALS)}")
    args.venvs, args.work = args.venvs.resolve(), args.work.resolve()
    shutil.rmtree(args.work, ignore_errors=True)
    write_inputs(args.work)
    paths = sorted((args.work / "images").glob("*.png"))
    images = [np.array(Image.open(q).convert("RGB")) for q in paths]
    square = [im.shape[0] == im.shape[1] for im in images]
    weights = our_weights(args.work / "weights", args.work)
    rows, scores = [], {}
    for name in args.originals.split(","):
        env, metrics = ORIGINALS[name]
        ensure_venv(args.venvs, env)
        t0 = time.time()
        subprocess.run([str(venv_python(args.venvs, env)), str(HERE / "originals.py"), name, "--work", str(args.work)],
                       check=True, env={**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"})  # fmt: skip
        original = json.loads((args.work / f"original_{name}.json").read_text())
        label = ", ".join(f"{k} {v}" for k, v in original["versions"].items() if k not in ("torch", "torchvision"))
        for metric in metrics + (["hpsv2_noaa"] if name == "hpsv2" else []):
            want = np.asarray(original["scores"][metric.removesuffix("_noaa")])
            uint8, tensor = ours(metric, weights, images, PROMPTS)
            rows.append(compare(metric, label, want, uint8, tensor, square))
            scores[metric] = {"original": want.tolist(), "ours_uint8": uint8, "ours_tensor": tensor}
            print(table(rows[-1:]).splitlines()[-1], flush=True)
        print(f"{name}: {time.time() - t0:.0f} s", flush=True)
        write_result(args, rows, scores, paths)


def write_result(args, rows: list[dict], scores: dict, paths: list[Path]) -> None:
    """The JSON and the Markdown table (after each original, so a failure keeps the rows so far)."""
    if args.originals != ",".join(ORIGINALS) and args.out.exists():  # a partial run keeps the other originals' rows
        before = json.loads(args.out.read_text())
        done = {r["metric"] for r in rows}
        rows = [r for r in before["rows"] if r["metric"] not in done] + rows
        scores = {**{k: v for k, v in before["scores"].items() if k not in done}, **scores}
    result = {"rows": rows, "scores": scores, "images": [q.name for q in paths], "prompts": PROMPTS,
              "originals": dict(ENVS), **provenance()}  # fmt: skip
    atomic_write_json(args.out, result)
    atomic_write_text(args.out.with_suffix(".md"), table(rows))
    print(table(rows))


if __name__ == "__main__":
    main()
