"""Export a trained SD3 student as a diffusers LoRA, with its few-step sampler settings.

    python -m gdmd.export --run-config results/sd35m/runs/gdmd.json \
        --checkpoint results/sd35m/train/gdmd/seed0/final --out exports/sd35m-gdmd

writes `<out>/pytorch_lora_weights.safetensors` (the generator's adapters, with their peft
config as metadata, so alpha survives the trip), `<out>/scheduler/scheduler_config.json`
(the teacher's FlowMatchEulerDiscreteScheduler with `stochastic_sampling: true` and
`shift: 1.0`: the generator's timesteps are written already shifted) and
`<out>/sampling.json` (those `sigmas`, `num_inference_steps`, `guidance_scale` 1). Sampling
then follows DMD2's multi-step generator: x0 = G(x_t), re-noised with fresh noise to the next
timestep, which is what the scheduler's stochastic step does. Sampling from the export
(README, "Sampling from an exported student"):

    pipe = StableDiffusion3Pipeline.from_pretrained(teacher_dir, torch_dtype=torch.bfloat16).to("cuda")
    pipe.load_lora_weights(out); pipe.scheduler = FlowMatchEulerDiscreteScheduler.from_pretrained(out, subfolder="scheduler")
    image = pipe(prompt, **json.load(open(f"{out}/sampling.json"))).images[0]

The student uses the EMA weights where the run kept an EMA, as `gdmd.sample` does.

`--verify PROMPT` then loads the teacher's pipeline with the export, as above, samples the
prompt's latents from a fixed noise, and checks they are the latents this suite's own
sampler draws from the checkpoint (both in float32, so the check is the export's, not the
precision's): a one-line error where they differ. It loads the teacher a second time.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from . import backbones
from .io import CliParser, UserError, atomic_dir, provenance, run_cli
from .lora import is_lora, peft_state_dict
from .methods.dmd import load_generator
from .study import load_run


def sampling_settings(backbone, steps: int) -> dict:
    """The pipeline call's keyword arguments that reproduce the few-step generator."""
    sigmas = [round(float(s), 6) for s in backbone.generator_timesteps(steps)]
    return {"num_inference_steps": steps, "sigmas": sigmas, "guidance_scale": 1.0}


def export(run_config: Path, checkpoint: Path, out: Path, device: str = "cpu") -> None:
    from diffusers import FlowMatchEulerDiscreteScheduler, StableDiffusion3Pipeline

    run = load_run(run_config)
    if run.backbone != "sd3":
        raise UserError(f"{run_config}: export writes diffusers SD3 LoRAs; run {run.run!r} has backbone {run.backbone!r}")
    if run.method == "teacher":
        raise UserError(f"{run_config}: run {run.run!r} is a teacher; export a trained student")
    backbone, teacher = backbones.load(
        run.backbone, run.assets.teacher, run.assets.text_encoder, device=device, options=run.backbone_options
    )
    generator, _ = load_generator(run, backbone, teacher, checkpoint)
    if not is_lora(generator):
        raise UserError(
            f"{run_config}: run {run.run!r} trains a full-weight generator; export needs train.generator_lora_rank > 0"
        )
    state, config = peft_state_dict(generator)
    state = {k: v.to(backbone.dtype) for k, v in state.items()}
    metadata = config.to_dict()
    metadata["target_modules"] = sorted(metadata["target_modules"])
    scheduler = FlowMatchEulerDiscreteScheduler.from_pretrained(run.assets.teacher, subfolder="scheduler")
    scheduler = FlowMatchEulerDiscreteScheduler.from_config(scheduler.config, stochastic_sampling=True, shift=1.0)
    with atomic_dir(out) as tmp:
        StableDiffusion3Pipeline.save_lora_weights(tmp, transformer_lora_layers=state, transformer_lora_adapter_metadata=metadata)
        scheduler.save_config(tmp / "scheduler")
        (tmp / "sampling.json").write_text(json.dumps(sampling_settings(backbone, run.steps), indent=2) + "\n")
        (tmp / "export.json").write_text(
            json.dumps(
                provenance(run=run.run, method=run.method, checkpoint=str(checkpoint), teacher=run.assets.teacher), indent=2
            )
        )
    print(f"wrote {out}")


def verify(run_config: Path, checkpoint: Path, out: Path, prompt: str, device: str = "cpu", seed: int = 0) -> float:
    """The export at `out` sampled by diffusers' StableDiffusion3Pipeline against our own
    sampler on the checkpoint, from the same noises: the largest latent difference (a
    UserError above 1e-3)."""
    from diffusers import FlowMatchEulerDiscreteScheduler, StableDiffusion3Pipeline

    run = load_run(run_config)
    settings = json.loads((Path(out) / "sampling.json").read_text())
    msl = run.backbone_options.get("max_sequence_length", 256)
    pipe = StableDiffusion3Pipeline.from_pretrained(run.assets.teacher, torch_dtype=torch.float32).to(device)
    pipe.load_lora_weights(out)
    pipe.scheduler = FlowMatchEulerDiscreteScheduler.from_pretrained(out, subfolder="scheduler")
    options = {k: v for k, v in run.backbone_options.items() if k != "dtype"}
    side = options.get("resolution")
    size = {"height": side, "width": side} if side else {}
    # the pipeline draws the start from `generator` and, in the scheduler's stochastic step,
    # each re-noising from torch's global RNG: ours draws the same numbers in the same order
    torch.manual_seed(seed)
    theirs = pipe([prompt], generator=torch.Generator().manual_seed(seed), output_type="latent", max_sequence_length=msl,
                  **size, **settings).images  # fmt: skip
    del pipe
    backbone, teacher = backbones.load(run.backbone, run.assets.teacher, run.assets.text_encoder, device=device,
                                       dtype=torch.float32, options=options)  # fmt: skip
    generator, sample = load_generator(run, backbone, teacher, checkpoint)
    torch.manual_seed(seed)
    noises = [torch.randn(1, *backbone.latent_shape(), generator=torch.Generator().manual_seed(seed)).to(device)]
    noises += [torch.randn(1, *backbone.latent_shape()).to(device) for _ in range(run.steps - 1)]
    ours = sample(backbone.encode_prompts([prompt]), noises)
    gap = float((theirs.float().cpu() - ours.float().cpu()).abs().max())
    if not gap <= 1e-3:
        raise UserError(
            f"{out}: StableDiffusion3Pipeline with this export samples other latents than {checkpoint} (max difference {gap:.3g})"
        )
    return gap


def main(argv=None):
    p = CliParser(prog="python -m gdmd.export", description=__doc__.splitlines()[0])
    p.add_argument("--run-config", required=True, type=Path)
    p.add_argument("--checkpoint", required=True, type=Path, help="the run's final checkpoint directory")
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--verify", metavar="PROMPT", help="then sample PROMPT with diffusers' pipeline and this export, and check it")
    args = p.parse_args(argv)
    export(args.run_config, args.checkpoint, args.out, args.device)
    if args.verify:
        gap = verify(args.run_config, args.checkpoint, args.out, args.verify, args.device)
        print(
            f"verified: StableDiffusion3Pipeline + {args.out} samples our latents for {args.verify!r} (max difference {gap:.2g})"
        )


if __name__ == "__main__":
    run_cli(main)
