"""Sample a run's images into GenEval's folder layout.

    python -m gdmd.sample --run-config results/shapes/runs/teacher-50step.json \
        --metadata results/shapes/prompts/evaluation_metadata.jsonl --images-per-prompt 4 \
        --seed 0 --out results/shapes/samples/teacher-50step/seed0

Teacher runs integrate the teacher's ODE with guided Euler steps; student runs (with
--checkpoint) run their few-step generator. Every image's starting noise is drawn from its
own generator seeded by (seed, prompt index, sample index), so an image's noise does not
depend on the batch size or on which other prompts are sampled. Its pixels do not either in
the pinned numerics mode (gdmd/numerics.py), with one more measure: MKL multiplies matrices
of 1-3 rows with other kernels than larger ones (they round differently), so a batch of
fewer than `MIN_ROWS` images is padded with copies of its last image, whose outputs are
dropped. In the native mode an image may differ across batch sizes in the last bits of its
floats (and then by a grey level). The folder is written under a temporary name and renamed
when complete.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import torch
from tqdm import tqdm

from eval.geneval.folder import read_metadata, write_prompt_folder

from . import backbones
from .io import CliParser, atomic_dir, atomic_write_json, provenance, run_cli
from .methods import noises_per_image
from .methods.dmd import load_generator
from .samplers import euler, to_uint8
from .study import load_run

MIN_ROWS = 4  # smallest batch the network sees (see the module docstring)


def image_noise(backbone, seed: int, index: int, k: int, count: int = 1) -> list[torch.Tensor]:
    """The noises of image k of prompt `index`: `count` tensors (1, C, H, W) (the start, then
    one per re-noising step of a few-step generator), from the image's own generator."""
    digest = hashlib.sha256(f"{seed}/{index}/{k}".encode()).digest()
    g = torch.Generator().manual_seed(int.from_bytes(digest[:8], "little") >> 1)
    return [backbone.noise_like(1, g) for _ in range(count)]


def main(argv=None):
    p = CliParser(prog="python -m gdmd.sample", description=__doc__.splitlines()[0])
    p.add_argument("--run-config", required=True, type=Path)
    p.add_argument("--metadata", required=True, type=Path, help="GenEval metadata jsonl")
    p.add_argument("--images-per-prompt", type=int, default=4)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--checkpoint", type=Path, help="trained generator (student runs)")
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = p.parse_args(argv)

    run = load_run(args.run_config)
    metas = read_metadata(args.metadata)
    backbone, teacher = backbones.load(
        run.backbone, run.assets.teacher, run.assets.text_encoder, device=args.device, options=run.backbone_options
    )
    n_noise = noises_per_image(run)
    if run.method == "teacher":

        def sample_fn(cond, noises):
            return euler(backbone, teacher, cond, noises[0], run.steps, run.cfg_scale)

    else:
        _, sample_fn = load_generator(run, backbone, teacher, args.checkpoint)

    jobs = [(i, k) for i in range(len(metas)) for k in range(args.images_per_prompt)]
    images: dict[int, list] = {i: [] for i in range(len(metas))}
    with atomic_dir(args.out) as tmp:
        for b in tqdm(range(0, len(jobs), run.batch_size), desc=f"sample {run.run}", mininterval=5):
            chunk = jobs[b : b + run.batch_size]
            padded = chunk + chunk[-1:] * (MIN_ROWS - len(chunk))  # see MIN_ROWS
            cond = backbone.encode_prompts([metas[i]["prompt"] for i, _ in padded])
            per_image = [image_noise(backbone, args.seed, i, k, n_noise) for i, k in padded]
            noises = [torch.cat([p[j] for p in per_image]) for j in range(n_noise)]
            with torch.no_grad():
                x = sample_fn(cond, noises)[: len(chunk)]
            for (i, _), img in zip(chunk, to_uint8(backbone.decode(x))):
                images[i].append(img)
            # write finished prompts as we go, so memory stays flat
            for i in sorted({i for i, _ in chunk}):
                if len(images[i]) == args.images_per_prompt:
                    write_prompt_folder(tmp, i, metas[i], images.pop(i))
        atomic_write_json(
            tmp / "sampling.json",
            provenance(
                run=run.run,
                method=run.method,
                steps=run.steps,
                nfe=run.nfe,
                cfg_scale=run.cfg_scale,
                seed=args.seed,
                images_per_prompt=args.images_per_prompt,
                device=args.device,
            ),
        )
    print(f"wrote {len(jobs)} images of {len(metas)} prompts to {args.out}")


if __name__ == "__main__":
    run_cli(main)
