"""Pretraining of the shapes world's assets: the CLIP, the aesthetic head and the teacher.

The real studies start from downloaded SD3 weights; the shapes study starts from these.
`python -m gdmd.shapes.pretrain {clip,aesthetic,teacher} --config config/pretrain-shapes.yaml
--out DIR [--clip DIR]` trains one asset into DIR (safetensors + JSON: training config,
metrics, provenance and the command); `teacher-finetune --stage K --init TEACHER` is the
teacher's stage K >= 2 (`teacher_finetune[K-2]`), continuing from stage K-1's teacher. The
DAG's `pretrain` target runs them all.
"""

from __future__ import annotations

import csv
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from gdmd import config as cfglib
from gdmd.io import CliParser, UserError, run_cli

from . import clip as shapes_clip
from .detector import truth
from .prompts import TAGS, TrainingCaptions, all_prompts, evaluation_metadata, scene_for, template_prompts
from .world import DEGRADATIONS, degrade, render_batch


@dataclass(frozen=True)
class ClipConfig:
    steps: int = 2000
    batch_size: int = 256
    lr: float = 1e-3
    weight_decay: float = 0.05
    warmup: int = 100
    degrade_prob: float = 0.25  # share of training images degraded (robustness to generated images)
    max_severity: float = 0.4
    eval_pairs: int = 1024


@dataclass(frozen=True)
class AestheticConfig:
    steps: int = 1500
    batch_size: int = 256
    lr: float = 1e-3
    hidden: tuple[int, ...] = (128, 32)
    min_severity: float = 0.1
    eval_images: int = 1024


@dataclass(frozen=True)
class TeacherConfig:
    model: dict = field(default_factory=dict)  # backbone model config (see gdmd.backbones.shapes)
    steps: int = 10000
    batch_size: int = 64
    lr: float = 5e-4
    weight_decay: float = 0.0
    warmup: int = 200
    ema_decay: float = 0.999
    cfg_dropout: float = 0.1  # share of captions replaced by "" (classifier-free guidance)
    time_sampling: str = "logit_normal"  # or "uniform"
    checkpoint_every: int = 1000
    eval_every: int = 0  # steps between quick GenEval checks (0: only at the end)
    eval_cfg_scale: float = 4.0
    eval_per_tag: int = 20  # size of the final quick GenEval check (x 2 images per prompt)


@dataclass(frozen=True)
class PretrainConfig:
    resolution: int = 32
    seed: int = 0
    clip: ClipConfig = ClipConfig()
    aesthetic: AestheticConfig = AestheticConfig()
    teacher: TeacherConfig = TeacherConfig()
    # stages 2, 3, ...: each continues from the previous stage's teacher (its network, so
    # `model` must stay empty) with a fresh optimiser and schedule
    teacher_finetune: tuple[TeacherConfig, ...] = ()


def to_tensor(images: np.ndarray) -> torch.Tensor:
    """(B, H, W, 3) uint8 -> (B, 3, H, W) float in [0, 1]."""
    return torch.from_numpy(images).permute(0, 3, 1, 2).float().div(255)


def cosine_lr(step: int, total: int, warmup: int, base: float) -> float:
    if step < warmup:
        return base * (step + 1) / warmup
    return base * 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(total - warmup, 1)))


class CsvLog:
    """Append-only metrics CSV (one row per step), flushed so a crash loses nothing."""

    def __init__(self, path: Path, fields: list[str], append: bool = False):
        path.parent.mkdir(parents=True, exist_ok=True)
        new = not (append and path.exists())
        self.f = open(path, "w" if new else "a", newline="")
        self.w = csv.DictWriter(self.f, fieldnames=fields)
        if new:
            self.w.writeheader()

    def write(self, row: dict):
        self.w.writerow(row)
        self.f.flush()

    def close(self):
        self.f.close()


def _random_degrade(images: np.ndarray, prob: float, max_severity: float, rng) -> np.ndarray:
    out = images.copy()
    kinds = list(DEGRADATIONS)
    for i in range(len(out)):
        if rng.random() < prob:
            out[i] = degrade(out[i], kinds[rng.integers(len(kinds))], rng.uniform(0, max_severity), rng)
    return out


# ---------------------------------------------------------------------------------------
# CLIP


def clip_loss(logits: torch.Tensor, captions: list[str]) -> torch.Tensor:
    """Symmetric InfoNCE where every pair with an identical caption string is a positive.

    (B, B) image->text logits; the target row of image i is uniform over the texts equal to
    its own caption, so duplicated captions in a batch are not pushed apart.
    """
    ids = {c: i for i, c in enumerate(dict.fromkeys(captions))}
    lab = torch.tensor([ids[c] for c in captions])
    pos = (lab[:, None] == lab[None, :]).float()
    target = pos / pos.sum(1, keepdim=True)
    return 0.5 * (torch.sum(-target * logits.log_softmax(1), 1).mean() + torch.sum(-target * logits.T.log_softmax(1), 1).mean())


@torch.no_grad()
def evaluate_clip(model, tokenizer, n_pairs: int, resolution: int, seed: int) -> dict:
    """Held-out retrieval accuracy, judged by the world's exact truth, not by string equality.

    - i2t / t2i top-1 over `n_pairs` held-out (scene, caption) pairs of the training
      distribution: the top-ranked caption must be true of the image (or the top-ranked
      image must make the caption true), by GenEval's rules on the exact scene;
    - per-tag zero-shot top-1 over the GenEval-template prompts: for renders of evaluation
      prompts, the best-scoring prompt of the same tag must be true of the render.
    """
    sampler = TrainingCaptions(exclude=template_prompts(), resolution=resolution, seed=seed + 10_000)
    scenes, captions, metas = sampler.batch(n_pairs)
    img = shapes_clip.encode_images(model, to_tensor(render_batch(scenes, resolution)))
    txt = shapes_clip.encode_texts(model, tokenizer(captions))
    sim = img @ txt.T
    i2t = np.mean([truth(metas[j], scenes[i]) for i, j in enumerate(sim.argmax(1).tolist())])
    t2i = np.mean([truth(metas[j], scenes[i]) for j, i in enumerate(sim.argmax(0).tolist())])
    rng = np.random.default_rng(seed + 20_000)
    per_tag = {}
    for tag in TAGS:
        pool = all_prompts(tag)
        ptxt = shapes_clip.encode_texts(model, tokenizer([p["prompt"] for p in pool]))
        rows = [m for m in evaluation_metadata(50, seed) if m["tag"] == tag]
        tag_scenes = [scene_for(m, rng, resolution) for m in rows]
        emb = shapes_clip.encode_images(model, to_tensor(render_batch(tag_scenes, resolution)))
        best = (emb @ ptxt.T).argmax(1).tolist()
        per_tag[tag] = float(np.mean([truth(pool[b], s) for b, s in zip(best, tag_scenes)]))
    return {"heldout_i2t_top1": float(i2t), "heldout_t2i_top1": float(t2i), "geneval_prompt_top1": per_tag}


def train_clip(cfg: PretrainConfig, out: Path, command_info: dict) -> dict:
    c = cfg.clip
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    sampler = TrainingCaptions(exclude=template_prompts(), resolution=cfg.resolution, seed=cfg.seed)
    tokenizer = shapes_clip.ShapesTokenizer.default()
    model = shapes_clip.build_clip()
    opt = torch.optim.AdamW(model.parameters(), lr=c.lr, weight_decay=c.weight_decay)
    log_path = out.with_name(f".{out.name}.metrics.csv")
    log = CsvLog(log_path, ["step", "loss", "lr", "logit_scale", "sec"])
    bar = tqdm(range(c.steps), desc="pretrain clip", mininterval=5)
    for step in bar:
        t0 = time.time()
        lr = cosine_lr(step, c.steps, c.warmup, c.lr)
        for g in opt.param_groups:
            g["lr"] = lr
        scenes, captions, _ = sampler.batch(c.batch_size)
        images = _random_degrade(render_batch(scenes, cfg.resolution), c.degrade_prob, c.max_severity, rng)
        img = shapes_clip.encode_images(model, to_tensor(images))
        txt = shapes_clip.encode_texts(model, tokenizer(captions))
        loss = clip_loss(model.logit_scale.exp() * img @ txt.T, captions)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        with torch.no_grad():
            model.logit_scale.clamp_(0, math.log(100))
        log.write(
            dict(
                step=step,
                loss=f"{loss.item():.5f}",
                lr=f"{lr:.3e}",
                logit_scale=f"{model.logit_scale.exp().item():.2f}",
                sec=f"{time.time() - t0:.3f}",
            )
        )
        bar.set_postfix(loss=f"{loss.item():.3f}")
    log.close()
    model.eval()
    metrics = evaluate_clip(model, tokenizer, c.eval_pairs, cfg.resolution, cfg.seed)
    info = {"config": cfglib.to_dict(cfg), "metrics": metrics, **command_info}
    shapes_clip.save_clip(model, tokenizer, out, info=info, extra_files={"metrics.csv": log_path})
    log_path.unlink()
    return metrics


# ---------------------------------------------------------------------------------------
# Aesthetic head


def _quality_batch(n: int, sampler, cfg: PretrainConfig, rng) -> tuple[np.ndarray, np.ndarray]:
    """Half clean renders (target 10), half degraded at severity s (target 10 * (1 - s))."""
    scenes, _, _ = sampler.batch(n)
    images = render_batch(scenes, cfg.resolution)
    target = np.full(n, 10.0)
    kinds = list(DEGRADATIONS)
    for i in range(n):
        if rng.random() < 0.5:
            s = rng.uniform(cfg.aesthetic.min_severity, 1.0)
            images[i] = degrade(images[i], kinds[rng.integers(len(kinds))], s, rng)
            target[i] = 10.0 * (1 - s)
    return images, target


def train_aesthetic(cfg: PretrainConfig, clip_dir: Path, out: Path, command_info: dict) -> dict:
    a = cfg.aesthetic
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed + 1)
    model, _ = shapes_clip.load_clip(clip_dir)
    sampler = TrainingCaptions(exclude=template_prompts(), resolution=cfg.resolution, seed=cfg.seed + 1)
    head = shapes_clip.AestheticHead(model.text_projection.shape[1], a.hidden)
    opt = torch.optim.AdamW(head.parameters(), lr=a.lr)
    log_path = out.with_name(f".{out.name}.metrics.csv")
    log = CsvLog(log_path, ["step", "loss", "lr", "sec"])
    for step in tqdm(range(a.steps), desc="pretrain aesthetic", mininterval=5):
        t0 = time.time()
        lr = cosine_lr(step, a.steps, 50, a.lr)
        for g in opt.param_groups:
            g["lr"] = lr
        images, target = _quality_batch(a.batch_size, sampler, cfg, rng)
        with torch.no_grad():
            emb = shapes_clip.encode_images(model, to_tensor(images))
        loss = F.mse_loss(head(emb), torch.from_numpy(target).float())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        log.write(dict(step=step, loss=f"{loss.item():.5f}", lr=f"{lr:.3e}", sec=f"{time.time() - t0:.3f}"))
    log.close()
    # held-out: correlation with the target, and how often a clean render outscores a
    # degraded render of the same scene at severity >= 0.3
    hrng = np.random.default_rng(cfg.seed + 30_000)
    hs = TrainingCaptions(exclude=template_prompts(), resolution=cfg.resolution, seed=cfg.seed + 30_000)
    images, target = _quality_batch(a.eval_images, hs, cfg, hrng)
    with torch.no_grad():
        pred = head(shapes_clip.encode_images(model, to_tensor(images))).numpy()
        clean = render_batch(hs.batch(a.eval_images)[0], cfg.resolution)
        kinds = list(DEGRADATIONS)
        bad = np.stack([degrade(im, kinds[i % len(kinds)], hrng.uniform(0.3, 1.0), hrng) for i, im in enumerate(clean)])
        pc = head(shapes_clip.encode_images(model, to_tensor(clean)))
        pb = head(shapes_clip.encode_images(model, to_tensor(bad)))
    metrics = {
        "heldout_pearson": float(np.corrcoef(pred, target)[0, 1]),
        "heldout_rmse": float(np.sqrt(np.mean((pred - target) ** 2))),
        "clean_beats_degraded": float((pc > pb).float().mean()),
    }
    info = {"config": cfglib.to_dict(cfg), "metrics": metrics, "clip": str(clip_dir), **command_info}
    shapes_clip.save_aesthetic(head, out, info=info, extra_files={"metrics.csv": log_path})
    log_path.unlink()
    return metrics


# ---------------------------------------------------------------------------------------


def main(argv=None):
    p = CliParser(prog="python -m gdmd.shapes.pretrain", description=__doc__.splitlines()[0])
    p.add_argument("asset", choices=("clip", "aesthetic", "teacher", "teacher-finetune"))
    p.add_argument("--config", required=True, help="pretraining YAML (e.g. config/pretrain-shapes.yaml)")
    p.add_argument("--out", required=True, help="output directory of the asset")
    p.add_argument("--clip", help="trained shapes CLIP directory (aesthetic, teacher, teacher-finetune)")
    p.add_argument("--init", help="the previous stage's teacher directory (teacher-finetune)")
    p.add_argument("--stage", type=int, default=2, help="teacher stage, 2 = teacher_finetune[0] (teacher-finetune)")
    p.add_argument("--device", default="cpu")
    args = p.parse_args(argv)
    cfg = cfglib.load(PretrainConfig, args.config)
    out = Path(args.out)
    info = {"config_file": args.config}
    if args.asset == "clip":
        metrics = train_clip(cfg, out, info)
    elif args.asset == "aesthetic":
        metrics = train_aesthetic(cfg, Path(args.clip), out, info)
    else:
        from gdmd.shapes.teacher import train_teacher

        init, stage = None, 1
        if args.asset == "teacher-finetune":
            n = len(cfg.teacher_finetune)
            if n == 0:
                raise UserError(f"{args.config}: teacher_finetune: the config has no fine-tuning stage")
            if not 2 <= args.stage <= n + 1:
                raise UserError(f"{args.config}: --stage {args.stage}: teacher_finetune has {n} stage(s), so 2..{n + 1}")
            if not args.init:
                raise UserError(f"teacher-finetune: --init <stage-{args.stage - 1} teacher directory> is required")
            if cfg.teacher_finetune[args.stage - 2].model:
                raise UserError(
                    f"{args.config}: teacher_finetune[{args.stage - 2}].model: the fine-tuned network is the --init"
                    " teacher's; remove the key"
                )
            init, stage = Path(args.init), args.stage
        metrics = train_teacher(cfg, Path(args.clip), out, info, device=args.device, init=init, stage=stage)
    print(metrics)


if __name__ == "__main__":
    run_cli(main)
