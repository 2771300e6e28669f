"""The SD3 backbone, LoRA students, export, on a tiny random-weight SD3 pipeline (conftest's
`tiny_sd3`, built from config dicts and saved; read back through the real loading code)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from gdmd import backbones, checkpoint
from gdmd.io import UserError
from gdmd.prompts import sha256_of
from gdmd.study import run_settings

OPTIONS = {"max_sequence_length": 16}
PROMPTS = ["a photo of a red cube", "two blue balls", "a green cone left of a cat", "a photo of a dog"]
COMMON = dict(iterations=3, batch_size=2, gen_every=1, lr_generator=1e-3, lr_fake=1e-3, real_cfg_scale=3.0,
              generator_lora_rank=4, generator_lora_alpha=8, fake_lora_rank=4, prompts="captions", checkpoint_every=1)  # fmt: skip
CLIP_REWARD = [{"metric": "shapes_clipscore", "weight": 1.0, "margin": 100.0}]
RUNS = {
    "dmd": {"method": "dmd", "steps": 2, "train": {"mixed_precision": "bf16", "gradient_checkpointing": True}},
    "dmd_nft": {"method": "dmd_nft", "steps": 2, "train": {"samples_per_prompt": 2, "rewards": CLIP_REWARD}},
    "dmd_refl": {"method": "dmd_refl", "steps": 2, "train": {"rewards": CLIP_REWARD}},
    "dmdr": {"method": "dmdr", "steps": 2, "train": {"cold_start": 1, "dyn_steps": 2, "rewards": CLIP_REWARD}},
    "gdmd": {"method": "gdmd", "steps": 2, "train": {"targets": 2, "rewards": CLIP_REWARD}},
    # DaGC's fake-score snapshots: adapter copies on the teacher, EMA-updated by the critic step
    "gdmd-both": {
        "method": "gdmd",
        "steps": 2,
        "train": {"group": "both", "targets": 2, "fake_ema_decays": [0.9], "rewards": CLIP_REWARD},
    },
}


@pytest.fixture()
def study(tiny_sd3, tiny_assets, tmp_path):
    captions = tmp_path / "captions.txt"
    captions.write_text("\n".join(PROMPTS) + "\n")
    extra = {"captions": str(captions), "captions_sha256": sha256_of(captions)}
    runs = {k: {**v, "train": {**COMMON, **extra, **v["train"]}} for k, v in RUNS.items()}
    return {
        "study": "sd3tiny",
        "backbone": "sd3",
        "backbone_options": {**OPTIONS, "prompt_cache": str(tmp_path / "cache")},
        "assets": {"teacher": str(tiny_sd3), "text_encoder": str(tiny_sd3)},
        "preference": {"metrics": ["shapes_clipscore"], "weights": {"clip": str(tiny_assets / "clip")}},
        "sampling": {"batch_size": 4},
        "runs": {"teacher": {"method": "teacher", "steps": 4, "cfg_scale": 3.0}, **runs},
    }


def write_run(study, name, tmp_path):
    path = tmp_path / "runs" / f"{name}.json"
    path.parent.mkdir(exist_ok=True)
    path.write_text(json.dumps(run_settings(study, name)))
    return path


def test_teacher_sampler_is_diffusers_pipeline(tiny_sd3):
    """Prompt embeddings, the guided Euler sampler on the shifted grid and the decoded image
    are those of diffusers' StableDiffusion3Pipeline itself."""
    from diffusers import StableDiffusion3Pipeline

    from gdmd.samplers import euler

    bb, teacher = backbones.load("sd3", tiny_sd3, tiny_sd3, options=OPTIONS)
    pipe = StableDiffusion3Pipeline.from_pretrained(tiny_sd3)
    prompt = ["a photo of a red cube"]
    tokens, _, pooled, _ = pipe.encode_prompt(prompt, None, None, do_classifier_free_guidance=False, max_sequence_length=16)
    cond = bb.encode_prompts(prompt)  # under no_grad (other kernels): equal to float32 rounding
    torch.testing.assert_close(cond.tokens, tokens, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(cond.pooled, pooled, rtol=1e-5, atol=1e-6)
    noise = torch.randn(1, *bb.latent_shape(), generator=torch.Generator().manual_seed(0))
    ref = pipe(
        prompt, num_inference_steps=6, guidance_scale=3.0, latents=noise.clone(), output_type="latent", max_sequence_length=16
    )
    ours = euler(bb, teacher, cond, noise.clone(), 6, 3.0)
    torch.testing.assert_close(ours, ref.images, rtol=1e-5, atol=1e-5)
    vae = pipe.vae.config
    image = pipe.image_processor.postprocess(
        pipe.vae.decode(ours / vae.scaling_factor + vae.shift_factor).sample, output_type="pt"
    )
    torch.testing.assert_close(bb.decode(ours), image, rtol=1e-5, atol=1e-5)
    assert bb.shift == 3.0 and bb.latent_shape() == (4, 16, 16) and bb.resolution == 32


def test_decode_is_differentiable_and_encode_inverts_it(tiny_sd3):
    bb, _ = backbones.load("sd3", tiny_sd3, tiny_sd3, options=OPTIONS)
    z = torch.randn(2, *bb.latent_shape(), requires_grad=True)
    bb.decode(z).sum().backward()
    assert z.grad is not None and z.grad.abs().sum() > 0
    assert bb.encode_images(bb.decode(z.detach())).shape == z.shape


def test_prompt_cache_serves_without_the_text_encoders(tiny_sd3, tmp_path, monkeypatch):
    opts = {**OPTIONS, "prompt_cache": str(tmp_path / "cache")}
    bb, _ = backbones.load("sd3", tiny_sd3, tiny_sd3, options=opts)
    first = bb.encode_prompts(PROMPTS)
    assert len(list((tmp_path / "cache").rglob("*.safetensors"))) == len(PROMPTS)
    again, _ = backbones.load("sd3", tiny_sd3, tiny_sd3, options=opts)
    monkeypatch.setattr(again, "text_pipeline", lambda self: pytest.fail("text encoders loaded on a cached prompt"))
    cached = again.encode_prompts(PROMPTS[::-1])
    torch.testing.assert_close(cached.tokens, first.tokens.flip(0), rtol=0, atol=0)
    # another T5 length is another fingerprint: another cache directory
    other, _ = backbones.load("sd3", tiny_sd3, tiny_sd3, options={**opts, "max_sequence_length": 8})
    assert other.encode_prompts(PROMPTS[:1]).tokens.shape[1] == 77 + 8
    assert len(list((tmp_path / "cache").iterdir())) == 2


def test_bad_sd3_inputs_name_the_problem(tiny_sd3, tmp_path):
    with pytest.raises(UserError, match="model_index.json"):
        backbones.load("sd3", tmp_path, tmp_path)
    with pytest.raises(UserError, match="backbone_options.prompt_cache: not an option of backbone 'shapes'"):
        backbones.load("shapes", tmp_path, tmp_path, options={"prompt_cache": "x"})
    with pytest.raises(UserError, match="backbone_options.resolution: must be a multiple of 4"):
        backbones.load("sd3", tiny_sd3, tiny_sd3, options={"resolution": 30})


@pytest.mark.parametrize("method", list(RUNS))
def test_each_method_trains_lora_students_on_sd3(study, method, tmp_path):
    """Two iterations of every method (LoRA generator and fake score, caption-file prompts)
    through the real loading code; checkpoints hold the adapters only."""
    from gdmd.train import train

    out = tmp_path / "final"
    train(write_run(study, method, tmp_path), 0, out, tmp_path / "work", max_iterations=None)
    with open(tmp_path / "work" / "metrics.csv") as f:
        assert len(f.readlines()) == 1 + COMMON["iterations"]
    from safetensors import safe_open

    with safe_open(out / checkpoint.TENSORS, "pt") as f:
        weights = [k for k in f.keys() if k.startswith(("generator.", "fake_score."))]
        assert weights and all("lora_" in k for k in weights)
        b = [f.get_tensor(k) for k in weights if k.startswith("generator.") and "lora_B" in k]
    assert any(t.abs().sum() > 0 for t in b)  # the generator's adapters moved off B = 0


@pytest.mark.parametrize("optimizer", ["adamw", "adamw8bit"])
def test_resume_is_bit_identical_on_sd3(study, tmp_path, optimizer):
    """Also with bitsandbytes' 8-bit AdamW (the SD3 configs' optimizer), whose quantised
    state the checkpoint flattens into its safetensors file and restores."""
    from safetensors.torch import load_file

    from gdmd.train import train

    study["runs"]["dmdr"]["train"]["optimizer"] = optimizer
    if optimizer == "adamw8bit":  # bitsandbytes keeps 32-bit states below 4096 elements: rank 256 x width 16 or 32
        study["runs"]["dmdr"]["train"].update(generator_lora_rank=256, fake_lora_rank=256)
    run = write_run(study, "dmdr", tmp_path)
    train(run, 0, tmp_path / "a" / "final", tmp_path / "a" / "work")
    train(run, 0, tmp_path / "b" / "final", tmp_path / "b" / "work", max_iterations=1)
    train(run, 0, tmp_path / "b" / "final", tmp_path / "b" / "work")
    a, b = load_file(tmp_path / "a" / "final" / checkpoint.TENSORS), load_file(tmp_path / "b" / "final" / checkpoint.TENSORS)
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    if optimizer == "adamw8bit":
        assert any(".__bnb_optimizer_quant_state__.state1" in k and a[k].dtype == torch.uint8 for k in a)


def test_sample_into_geneval_layout_and_export_for_diffusers(study, tiny_sd3, tmp_path):
    """A trained student samples into GenEval's layout, and its export loads into diffusers'
    StableDiffusion3Pipeline with `load_lora_weights` and samples the same images as ours."""
    from gdmd import export, sample
    from gdmd.methods.dmd import few_step, load_generator
    from gdmd.study import load_run
    from gdmd.train import train

    run = write_run(study, "dmd_refl", tmp_path)
    final = tmp_path / "final"
    train(run, 0, final, tmp_path / "work")
    metadata = tmp_path / "meta.jsonl"
    metadata.write_text(
        "".join(
            json.dumps({"tag": "single_object", "include": [{"class": "dog", "count": 1}], "prompt": p}) + "\n"
            for p in PROMPTS[:2]
        )
    )
    sample.main(["--run-config", str(run), "--metadata", str(metadata), "--images-per-prompt", "2", "--checkpoint", str(final),
                 "--out", str(tmp_path / "samples"), "--device", "cpu"])  # fmt: skip
    assert sorted(p.name for p in (tmp_path / "samples" / "00001" / "samples").iterdir()) == ["0000.png", "0001.png"]

    export.main(["--run-config", str(run), "--checkpoint", str(final), "--out", str(tmp_path / "export"), "--device", "cpu"])
    assert json.loads((tmp_path / "export" / "sampling.json").read_text())["num_inference_steps"] == 2
    # diffusers' pipeline with the export samples our latents (export.verify), and the LoRA matters
    assert export.verify(run, final, tmp_path / "export", PROMPTS[0]) <= 1e-4
    r = load_run(run)
    bb, teacher = backbones.load("sd3", tiny_sd3, tiny_sd3, options=r.backbone_options)
    noises = [torch.randn(1, *bb.latent_shape(), generator=torch.Generator().manual_seed(s)) for s in range(r.steps)]
    with torch.no_grad():
        base = few_step(bb, teacher, bb.encode_prompts(PROMPTS[:1]), noises, bb.generator_timesteps(r.steps))
        _, sample_student = load_generator(r, bb, teacher, final)
        student = sample_student(bb.encode_prompts(PROMPTS[:1]), noises)
    assert not torch.allclose(student, base, atol=1e-4)
    # an export that is not this checkpoint's fails the check with one line
    other = tmp_path / "other"
    train(write_run(study, "dmd", tmp_path), 0, other, tmp_path / "work-other")
    with pytest.raises(UserError, match="samples other latents than"):
        export.verify(run, other, tmp_path / "export", PROMPTS[0])


def test_weights_cli_downloads_the_pipeline_layout_and_explains_gating(tmp_path):
    """`python -m gdmd.weights` asks the hub for the diffusers layout only, writes it under
    dest/<model> atomically, and a gated model fails with what to do (no network here: the
    hub call is replaced)."""
    from huggingface_hub.errors import GatedRepoError

    from gdmd import weights

    calls = []

    def fake_download(repo_id, local_dir, allow_patterns):
        calls.append((repo_id, allow_patterns))
        (Path(local_dir) / "transformer").mkdir(parents=True)
        (Path(local_dir) / "model_index.json").write_text("{}")

    out = weights.download("sd35m", tmp_path, fake_download)
    assert out == tmp_path / "sd35m" and (out / "model_index.json").is_file()
    assert calls[0][0] == "stabilityai/stable-diffusion-3.5-medium" and "text_encoder_3/*" in calls[0][1]

    def gated(**kwargs):
        Path(kwargs["local_dir"], "partial").write_text("x")
        raise GatedRepoError.__new__(GatedRepoError)

    with pytest.raises(
        UserError, match="is gated: accept its licence at https://huggingface.co/stabilityai/stable-diffusion-3.5-large"
    ):
        weights.download("sd35l", tmp_path, gated)
    assert not (tmp_path / "sd35l").exists()  # nothing half-written under the final name


def test_caption_prompts_check_the_file(tmp_path):
    from gdmd.prompts import CaptionPrompts

    f = tmp_path / "c.txt"
    f.write_text("a cat\n\n a dog \n")
    src = CaptionPrompts(0, path=str(f), sha256=sha256_of(f))
    assert set(src.batch(20)[0]) == {"a cat", "a dog"}
    with pytest.raises(UserError, match="captions_sha256 is not set; if this is the intended file, set it to"):
        CaptionPrompts(0, path=str(f))
    with pytest.raises(UserError, match="sha256 is"):
        CaptionPrompts(0, path=str(f), sha256="0" * 64)
    with pytest.raises(UserError, match="caption file not found"):
        CaptionPrompts(0, path=str(tmp_path / "none.txt"), sha256="0" * 64)


def test_bf16_backbone_trains_under_autocast_and_samples(study, tmp_path):
    """Frozen networks in bf16 (backbone_options.dtype): training needs mixed_precision bf16
    (a one-line error otherwise); a full-weight float32 generator trained so samples in bf16."""
    from gdmd import sample
    from gdmd.train import train

    study["backbone_options"]["dtype"] = "bf16"
    study["runs"]["dmd"]["train"] = {
        **study["runs"]["dmd"]["train"],
        "generator_lora_rank": 0,
        "mixed_precision": "no",
        "iterations": 1,
    }
    with pytest.raises(UserError, match="train.mixed_precision: a torch.bfloat16 backbone"):
        train(write_run(study, "dmd", tmp_path), 0, tmp_path / "final", tmp_path / "work")
    study["runs"]["dmd"]["train"]["mixed_precision"] = "bf16"
    run = write_run(study, "dmd", tmp_path)
    train(run, 0, tmp_path / "final", tmp_path / "work")
    metadata = tmp_path / "meta.jsonl"
    metadata.write_text(
        json.dumps({"tag": "single_object", "include": [{"class": "dog", "count": 1}], "prompt": PROMPTS[3]}) + "\n"
    )
    sample.main(["--run-config", str(run), "--metadata", str(metadata), "--images-per-prompt", "1", "--checkpoint",
                 str(tmp_path / "final"), "--out", str(tmp_path / "samples"), "--device", "cpu"])  # fmt: skip
    assert (tmp_path / "samples" / "00000" / "samples" / "0000.png").is_file()


def test_8bit_adam_only_when_asked(monkeypatch):
    """`optimizer: adamw8bit` imports bitsandbytes then (a one-line error if it is missing);
    the default never does."""
    import builtins
    import sys

    from gdmd.methods.configs import DMDConfig
    from gdmd.methods.dmd import optimizer

    params = [torch.nn.Parameter(torch.zeros(2))]
    real_import = builtins.__import__

    def no_bnb(name, *args, **kwargs):
        if name == "bitsandbytes":
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_bnb)
    monkeypatch.delitem(sys.modules, "bitsandbytes", raising=False)
    assert isinstance(optimizer(DMDConfig(), [{"params": params, "lr": 1e-3}]), torch.optim.AdamW)
    with pytest.raises(UserError, match="adamw8bit needs bitsandbytes"):
        optimizer(DMDConfig(optimizer="adamw8bit"), [{"params": params, "lr": 1e-3}])
