"""The shapes CLIP (tokenizer, open_clip loading), its scorers, and the backbone adapter."""

import json

import numpy as np
import pytest
import torch

from eval.preference import SCORERS, get_scorer
from gdmd.backbones.flow import FlowBackbone
from gdmd.backbones.shapes import ShapesBackbone, load_teacher
from gdmd.io import UserError
from gdmd.samplers import euler, uniform_timesteps
from gdmd.shapes import clip as shapes_clip

from ..conftest import ROOT, run_cli


def test_tokenizer_puts_eot_last_and_highest():
    tok = shapes_clip.ShapesTokenizer.default()
    ids = tok(["a photo of a red circle", "", "an unknownword"])
    assert ids.shape == (3, 16)
    assert ids[0, 0] == 2 and ids[0].argmax() == 7 and ids[0, 7] == tok.eot
    assert ids[1, :2].tolist() == [2, tok.eot]
    assert ids[2, 2] == 1  # <unk>
    assert tok.vocab_size == shapes_clip.model_config()["text_cfg"]["vocab_size"]


def test_clip_roundtrip_through_open_clip_local_dir(tiny_assets):
    model, tok = shapes_clip.load_clip(tiny_assets / "clip")
    fresh = shapes_clip.build_clip()
    torch.manual_seed(0)
    assert any(not torch.equal(a, b) for a, b in zip(model.state_dict().values(), fresh.state_dict().values()))
    tokens = tok(["a red circle", "two squares"])
    states, pooled = shapes_clip.text_states(model, tokens)
    assert states.shape == (2, 16, 128)
    torch.testing.assert_close(pooled, model.encode_text(tokens), rtol=1e-5, atol=1e-6)


def test_missing_weights_are_a_one_line_user_error(tmp_path):
    with pytest.raises(UserError, match="shapes CLIP weights not found"):
        shapes_clip.load_clip(tmp_path)
    with pytest.raises(UserError, match="teacher weights not found"):
        load_teacher(tmp_path, tmp_path)


def test_clipscore_is_100_cos(tiny_assets):
    scorer = get_scorer("shapes_clipscore", {"clip": str(tiny_assets / "clip")})
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (32, 32, 3), dtype=np.uint8) for _ in range(3)]
    prompts = ["a red circle", "a square", "two triangles"]
    got = scorer.score(images, prompts)
    model, tok = shapes_clip.load_clip(tiny_assets / "clip")
    x = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float() / 255
    i = model.encode_image((x - 0.5) / 0.5)
    t = model.encode_text(tok(prompts))
    want = 100 * torch.nn.functional.cosine_similarity(i, t).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("name", sorted(n for n in SCORERS if n.startswith("shapes_")))
def test_reward_gradients_are_finite_and_nonzero(tiny_assets, name):
    scorer = get_scorer(name, {"clip": str(tiny_assets / "clip"), "aesthetic_head": str(tiny_assets / "aesthetic")})
    x = torch.rand(2, 3, 32, 32, requires_grad=True)
    scorer.reward(x, ["a red circle", "a square"]).sum().backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


def test_unknown_metric_and_missing_weight_name_the_problem():
    with pytest.raises(UserError, match="unknown preference metric 'hps'; known: shapes_clipscore, shapes_aesthetic"):
        get_scorer("hps", {})
    with pytest.raises(UserError, match="needs weight path 'aesthetic_head'"):
        get_scorer("shapes_aesthetic", {"clip": "x"})


def test_cfg_velocity_combines_conditional_and_unconditional(tiny_assets):
    backbone, model = load_teacher(tiny_assets / "teacher", tiny_assets / "clip")
    cond = backbone.encode_prompts(["a red circle", "a square"])
    x = torch.randn(2, 3, 32, 32)
    t = torch.tensor([0.3, 0.8])
    v_c = backbone.velocity(model, x, t, cond, 1.0)
    v_u = backbone.velocity(model, x, t, backbone.empty_cond(2), 1.0)
    torch.testing.assert_close(backbone.velocity(model, x, t, cond, 3.0), v_u + 3.0 * (v_c - v_u), rtol=1e-4, atol=1e-5)
    x0 = torch.randn(2, 3, 32, 32)
    eps = torch.randn(2, 3, 32, 32)
    xt = backbone.add_noise(x0, t, eps)
    torch.testing.assert_close(backbone.x0_from_velocity(xt, t, eps - x0), x0, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("shift", [1.0, 3.0])
def test_euler_is_exact_for_a_straight_flow(shift):
    """With the true velocity of a single data point (v = (x - x0) / t), Euler lands on x0,
    on the uniform grid and on SD3's time-shifted one."""

    class Point(FlowBackbone):
        def velocity(self, model, x, t, cond, cfg_scale):
            return (x - cond) / t.view(-1, 1, 1, 1)

    point = Point()
    point.shift = shift
    x0 = torch.randn(2, 3, 4, 4)
    out = euler(point, None, x0, torch.randn(2, 3, 4, 4), steps=5)
    torch.testing.assert_close(out, x0, rtol=1e-5, atol=1e-5)
    assert uniform_timesteps(4).tolist() == [1.0, 0.75, 0.5, 0.25, 0.0]


def test_time_shift_matches_diffusers_scheduler():
    """The shifted grids are diffusers' FlowMatchEulerDiscreteScheduler's sigmas (shift 3)."""
    from diffusers import FlowMatchEulerDiscreteScheduler

    point = FlowBackbone()
    point.shift = 3.0
    sched = FlowMatchEulerDiscreteScheduler(shift=3.0)
    sched.set_timesteps(sigmas=torch.linspace(1.0, 0.0, 11)[:-1].numpy())
    torch.testing.assert_close(point.sampling_times(10), sched.sigmas.float(), rtol=0, atol=1e-6)
    assert point.generator_timesteps(4).tolist() == pytest.approx([1.0, 0.9, 0.75, 0.5])


def test_teacher_refuses_a_different_clip(tiny_assets, tmp_path):
    other = tmp_path / "clip"
    torch.manual_seed(1)
    shapes_clip.save_clip(shapes_clip.build_clip(), shapes_clip.ShapesTokenizer.default(), other)
    with pytest.raises(UserError, match="not the one the teacher"):
        load_teacher(tiny_assets / "teacher", other)
    assert isinstance(load_teacher(tiny_assets / "teacher", tiny_assets / "clip")[0], ShapesBackbone)


def test_teacher_finetune_starts_from_the_init_teacher(tiny_assets, tmp_path):
    """Stage 2 loads the stage-1 network: with lr 0 its output is the init teacher exactly,
    with a positive lr it moves; both record where they started."""
    from gdmd.shapes.pretrain import PretrainConfig, TeacherConfig
    from gdmd.shapes.teacher import train_teacher

    _, init = load_teacher(tiny_assets / "teacher", tiny_assets / "clip")
    for lr, moved in [(0.0, False), (1e-2, True)]:
        stage2 = TeacherConfig(steps=2, batch_size=4, lr=lr, warmup=0, checkpoint_every=1, eval_per_tag=1)
        cfg = PretrainConfig(teacher_finetune=(stage2,))
        out = tmp_path / f"ft{lr}"
        train_teacher(cfg, tiny_assets / "clip", out, {}, init=tiny_assets / "teacher", stage=2)
        _, tuned = load_teacher(out, tiny_assets / "clip")
        same = all(torch.equal(a, b) for a, b in zip(init.parameters(), tuned.parameters()))
        assert same != moved
        info = json.loads((out / "info.json").read_text())
        assert info["stage"] == 2 and info["init"]["path"] == str(tiny_assets / "teacher")
    # a third stage continues from the second and records the whole chain
    stage3 = TeacherConfig(steps=1, batch_size=4, lr=1e-2, warmup=0, checkpoint_every=1, eval_per_tag=1)
    cfg = PretrainConfig(teacher_finetune=(stage2, stage3))
    train_teacher(cfg, tiny_assets / "clip", tmp_path / "ft3", {}, init=tmp_path / "ft0.01", stage=3)
    info = json.loads((tmp_path / "ft3" / "info.json").read_text())
    assert info["stage"] == 3 and info["init"]["path"] == str(tmp_path / "ft0.01") and info["init"]["stage"] == 2
    assert info["init"]["init"]["path"] == str(tiny_assets / "teacher")
    with pytest.raises(ValueError, match="stage 4"):
        train_teacher(cfg, tiny_assets / "clip", tmp_path / "ft4", {}, init=tmp_path / "ft3", stage=4)


def test_teacher_finetune_cli_needs_init_and_no_model(tiny_assets, tmp_path):
    r = run_cli("gdmd.shapes.pretrain", "teacher-finetune", "--config", "config/pretrain-smoke.yaml",
                "--clip", tiny_assets / "clip", "--out", tmp_path / "t", cwd=ROOT)  # fmt: skip
    assert r.returncode != 0 and "--init" in r.stderr.strip().splitlines()[-1]
    bad = tmp_path / "bad.yaml"
    # the smoke config has two fine-tuning stages (2 and 3); the model key goes into the last
    bad.write_text((ROOT / "config/pretrain-smoke.yaml").read_text() + "    model: {arch: sd3}\n")
    r = run_cli("gdmd.shapes.pretrain", "teacher-finetune", "--stage", "3", "--config", bad, "--clip", tiny_assets / "clip",
                "--init", tiny_assets / "teacher", "--out", tmp_path / "t", cwd=ROOT)  # fmt: skip
    assert r.returncode != 0 and "teacher_finetune[1].model" in r.stderr.strip().splitlines()[-1]
    r = run_cli("gdmd.shapes.pretrain", "teacher-finetune", "--stage", "4", "--config", "config/pretrain-smoke.yaml",
                "--clip", tiny_assets / "clip", "--init", tiny_assets / "teacher", "--out", tmp_path / "t", cwd=ROOT)  # fmt: skip
    assert r.returncode != 0 and "--stage 4: teacher_finetune has 2 stage(s), so 2..3" in r.stderr.strip().splitlines()[-1]
    empty = tmp_path / "empty.yaml"
    empty.write_text((ROOT / "config/pretrain-smoke.yaml").read_text().split("teacher_finetune:")[0])
    r = run_cli("gdmd.shapes.pretrain", "teacher-finetune", "--config", empty, "--clip", tiny_assets / "clip",
                "--init", tiny_assets / "teacher", "--out", tmp_path / "t", cwd=ROOT)  # fmt: skip
    assert r.returncode != 0 and "teacher_finetune: the config has no fine-tuning stage" in r.stderr.strip().splitlines()[-1]
    assert not (tmp_path / "t").exists()
