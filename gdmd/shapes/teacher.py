"""Pretraining of the shapes teacher: text-to-image flow matching on rendered scenes.

The recipe (config/pretrain-shapes.yaml, `teacher:`): captions from the training caption
distribution, 10% replaced by "" for classifier-free guidance; t ~ logit-normal(0, 1) as in
SD3 (Esser et al. 2024, Sec. 3.1) or uniform; AdamW with warm-up and cosine decay; gradient
clipping at 1; EMA of the weights, which is what gets saved. A checkpoint every
`checkpoint_every` steps next to the output lets an interrupted run resume.

Later stages (the list `teacher_finetune:`; stage K >= 2 is `python -m gdmd.shapes.pretrain
teacher-finetune --stage K --init <stage K-1 teacher>`) continue from the previous stage's
EMA weights with a fresh optimiser and schedule, typically a lower learning rate and uniform
t: logit-normal t rarely visits t < 0.1, where the edges and corners of small shapes are
decided.
"""

from __future__ import annotations

import copy
import json
import shutil
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from gdmd import checkpoint
from gdmd import config as cfglib
from gdmd.backbones.shapes import ShapesBackbone, load_teacher, save_teacher
from gdmd.io import UserError
from gdmd.losses import flow_matching_loss
from gdmd.samplers import euler, to_uint8

from .prompts import TrainingCaptions, template_prompts
from .world import render_batch


def sample_t(n: int, how: str, generator=None) -> torch.Tensor:
    if how == "logit_normal":
        return torch.sigmoid(torch.randn(n, generator=generator))
    if how == "uniform":
        return torch.rand(n, generator=generator)
    raise ValueError(f"unknown time sampling {how!r}; known: logit_normal, uniform")


@torch.no_grad()
def ema_update(ema: torch.nn.Module, model: torch.nn.Module, decay: float) -> None:
    for e, p in zip(ema.parameters(), model.parameters()):
        e.lerp_(p, 1 - decay)


@torch.no_grad()
def quick_geneval(backbone, model, per_tag: int, images_per_prompt: int, steps: int = 50, cfg_scale: float = 4.0) -> dict:
    """GenEval-shapes summary of a model on a small evaluation set (progress checks only;
    the study's numbers come from the DAG's sampling and scoring rules)."""
    from eval.geneval import judge as geneval_judge
    from eval.geneval import select, summarize

    from .detector import detect
    from .prompts import evaluation_metadata

    metas = [m for m in evaluation_metadata(per_tag, seed=1) for _ in range(images_per_prompt)]
    gen = torch.Generator().manual_seed(0)
    rows = []
    for i in range(0, len(metas), 128):
        chunk = metas[i : i + 128]
        cond = backbone.encode_prompts([m["prompt"] for m in chunk])
        x = euler(backbone, model, cond, backbone.noise_like(len(chunk), gen), steps, cfg_scale)
        for m, img in zip(chunk, to_uint8(backbone.decode(x))):
            rows.append({"tag": m["tag"], "correct": geneval_judge(m, select(detect(img), m["tag"]))[0]})
    s = summarize(rows)
    return {"overall": round(s["overall"], 4), **{k: round(v, 4) for k, v in s["tags"].items()}}


def _init_networks(cfg, c, clip_dir: Path, init: Path | None, device: str):
    """Stage 1: a fresh network from `c.model`. Later stages: the trained teacher in `init`."""
    if init is None:
        arch = c.model.get("arch", "sd3")
        model_cfg = {k: v for k, v in c.model.items() if k != "arch"}
        backbone = ShapesBackbone(clip_dir, arch=arch, resolution=cfg.resolution, device=device)
        model = backbone.build(model_cfg)
    else:
        backbone, model = load_teacher(init, clip_dir, device=device)
        if backbone.resolution != cfg.resolution:
            raise UserError(f"{init}: teacher resolution {backbone.resolution} != config resolution {cfg.resolution}")
    model = model.train().requires_grad_(True)
    return backbone, model, copy.deepcopy(model).eval().requires_grad_(False)


def train_teacher(
    cfg, clip_dir: Path, out: Path, command_info: dict, device: str = "cpu", init: Path | None = None, stage: int = 1
) -> dict:
    """Train the teacher (stage 1, `cfg.teacher`) or fine-tune the one in `init` (stage K >= 2,
    `cfg.teacher_finetune[K - 2]`); the EMA weights go to `out`."""
    from .pretrain import CsvLog, cosine_lr, to_tensor

    if (init is None) != (stage == 1) or not 1 <= stage <= len(cfg.teacher_finetune) + 1:
        raise ValueError(f"teacher stage {stage} with init {init}: stage 1 trains from scratch, stage K >= 2 needs init")
    c = cfg.teacher if stage == 1 else cfg.teacher_finetune[stage - 2]
    # each stage draws its own captions, dropout and noise (not a replay of an earlier one's)
    seed = cfg.seed + 100 * (stage - 1)
    torch.manual_seed(seed)
    backbone, model, ema = _init_networks(cfg, c, clip_dir, init, device)
    opt = torch.optim.AdamW(model.parameters(), lr=c.lr, weight_decay=c.weight_decay)
    sampler = TrainingCaptions(exclude=template_prompts(), resolution=cfg.resolution, seed=seed + 2)
    drop_rng = np.random.default_rng(seed + 3)
    ckpt = out.with_name(f".{out.name}.ckpt")
    log_path = out.with_name(f".{out.name}.metrics.csv")
    start = 0
    if ckpt.exists():
        saved = json.loads((ckpt / checkpoint.STATE).read_text()).get("config")
        if saved != cfglib.to_dict(cfg):
            raise UserError(f"{ckpt}: written by another pretraining config; delete it to start over")
        st = checkpoint.load(ckpt, {"model": model, "ema": ema}, {"opt": opt}, {"captions": sampler.rng, "drop": drop_rng})
        start = st["step"]
        print(f"resuming teacher stage {stage} from step {start} ({ckpt})", flush=True)
    log = CsvLog(log_path, ["step", "loss", "grad_norm", "lr", "sec"], append=start > 0)
    n_params = sum(p.numel() for p in model.parameters())
    name = "teacher" if stage == 1 else f"teacher stage {stage}"
    bar = tqdm(range(start, c.steps), desc=f"pretrain {name} ({n_params / 1e6:.2f}M params)", mininterval=10)
    for step in bar:
        t0 = time.time()
        lr = cosine_lr(step, c.steps, c.warmup, c.lr)
        for g in opt.param_groups:
            g["lr"] = lr
        scenes, captions, _ = sampler.batch(c.batch_size)
        captions = ["" if drop_rng.random() < c.cfg_dropout else s for s in captions]
        x0 = backbone.encode_images(to_tensor(render_batch(scenes, cfg.resolution))).to(device)
        cond = backbone.encode_prompts(captions)
        t = sample_t(len(captions), c.time_sampling).to(device)
        noise = torch.randn_like(x0)
        v = backbone.raw_velocity(model, backbone.add_noise(x0, t, noise), t, cond)
        loss, _ = flow_matching_loss(v, x0, noise)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        gn = torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        ema_update(ema, model, min(c.ema_decay, (1 + step) / (10 + step)))
        log.write(
            dict(
                step=step, loss=f"{loss.item():.5f}", grad_norm=f"{gn.item():.4f}", lr=f"{lr:.3e}", sec=f"{time.time() - t0:.3f}"
            )
        )
        bar.set_postfix(loss=f"{loss.item():.4f}")
        done = step + 1
        if done % c.checkpoint_every == 0 and done < c.steps:
            checkpoint.save(
                ckpt,
                {"model": model, "ema": ema},
                {"opt": opt},
                {"step": done, "config": cfglib.to_dict(cfg)},
                {"captions": sampler.rng, "drop": drop_rng},
            )
        if c.eval_every and done % c.eval_every == 0 and done < c.steps:
            print(
                f"step {done}: {quick_geneval(backbone, ema, per_tag=c.eval_per_tag, images_per_prompt=1, cfg_scale=c.eval_cfg_scale)}",
                flush=True,
            )
    log.close()
    metrics = {
        "geneval_quick": quick_geneval(backbone, ema, per_tag=c.eval_per_tag, images_per_prompt=2, cfg_scale=c.eval_cfg_scale),
        "params": n_params,
    }
    info = {"config": cfglib.to_dict(cfg), "metrics": metrics, "clip": str(clip_dir), "stage": stage, **command_info}
    if init is not None:
        # the chain of earlier stages: each one's directory, stage, metrics and its own init
        prev = json.loads((Path(init) / "info.json").read_text())
        info["init"] = {
            "path": str(init),
            "stage": prev.get("stage", 1),
            "metrics": prev.get("metrics"),
            "init": prev.get("init"),
        }
    save_teacher(ema, backbone, out, info, extra_files={"metrics.csv": log_path})
    log_path.unlink()
    if ckpt.exists():
        shutil.rmtree(ckpt)
    return metrics
