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
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from . import backbones
from .io import CliParser, UserError, atomic_dir, provenance, run_cli
from .lora import is_lora
from .methods.dmd import load_generator
from .study import load_run


def sampling_settings(backbone, steps: int) -> dict:
    """The pipeline call's keyword arguments that reproduce the few-step generator."""
    sigmas = [round(float(s), 6) for s in backbone.generator_timesteps(steps)]
    return {"num_inference_steps": steps, "sigmas": sigmas, "guidance_scale": 1.0}


def export(run_config: Path, checkpoint: Path, out: Path, device: str = "cpu") -> None:
    from diffusers import FlowMatchEulerDiscreteScheduler, StableDiffusion3Pipeline
    from peft.utils import get_peft_model_state_dict

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
    state = {k: v.to(backbone.dtype) for k, v in get_peft_model_state_dict(generator).items()}
    metadata = generator.peft_config["default"].to_dict()
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


def main(argv=None):
    p = CliParser(prog="python -m gdmd.export", description=__doc__.splitlines()[0])
    p.add_argument("--run-config", required=True, type=Path)
    p.add_argument("--checkpoint", required=True, type=Path, help="the run's final checkpoint directory")
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = p.parse_args(argv)
    export(args.run_config, args.checkpoint, args.out, args.device)


if __name__ == "__main__":
    run_cli(main)
