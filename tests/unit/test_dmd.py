"""DMD's step functions on a tiny random teacher: each touches only its own network."""

import pytest
import torch

from gdmd.backbones.shapes import load_teacher
from gdmd.methods import dmd
from gdmd.study import Assets, RunConfig


@pytest.fixture()
def state(tiny_assets):
    backbone, teacher = load_teacher(tiny_assets / "teacher", tiny_assets / "clip")
    run = RunConfig("t", "dmd", "shapes", Assets("", ""), "dmd", steps=4)
    cfg = dmd.DMDConfig(batch_size=3, lr_generator=1e-3, lr_fake=1e-3)
    torch.manual_seed(0)
    return dmd.setup(cfg, run, backbone, teacher)


def snapshot(m):
    return [p.detach().clone() for p in m.parameters()]


def same(a, b):
    return all(torch.equal(x, y) for x, y in zip(a, b))


def test_generator_and_fake_score_start_as_the_teacher(state):
    t = snapshot(state.teacher)
    assert same(t, snapshot(state.generator)) and same(t, snapshot(state.fake_score))
    assert state.timesteps.tolist() == [1.0, 0.75, 0.5, 0.25]


def test_critic_step_leaves_generator_and_teacher_untouched(state):
    cond = state.backbone.encode_prompts(["a red circle", "two squares", "a triangle"])
    g0, f0, t0 = snapshot(state.generator), snapshot(state.fake_score), snapshot(state.teacher)
    m = dmd.critic_step(state, cond)
    assert same(g0, snapshot(state.generator)) and same(t0, snapshot(state.teacher))
    assert not same(f0, snapshot(state.fake_score))
    assert m["fake_loss"] > 0


def test_generator_step_leaves_fake_score_and_teacher_untouched(state):
    cond = state.backbone.encode_prompts(["a red circle", "two squares", "a triangle"])
    g0, f0, t0 = snapshot(state.generator), snapshot(state.fake_score), snapshot(state.teacher)
    m = dmd.generator_step(state, cond)
    assert same(f0, snapshot(state.fake_score)) and same(t0, snapshot(state.teacher))
    assert not same(g0, snapshot(state.generator))
    assert m["nonfinite"] == 0 and m["dmd_loss"] > 0


def test_two_time_scale_schedule():
    cfg = dmd.DMDConfig(gen_every=3)
    assert [dmd.schedule(cfg, i) for i in range(4)] == [
        ("generator", "critic"),
        ("critic",),
        ("critic",),
        ("generator", "critic"),
    ]


def test_few_step_sampler_uses_each_noise_once(state):
    """K steps: x0 = G(x_t); re-noise with the next noise. Changing noise k changes the output."""
    cond = state.backbone.encode_prompts(["a red circle"])
    noises = [torch.randn(1, 3, 32, 32) for _ in range(4)]
    a = dmd.few_step(state.backbone, state.generator, cond, noises, state.timesteps)
    for k in range(4):
        changed = list(noises)
        changed[k] = torch.randn(1, 3, 32, 32)
        assert not torch.equal(a, dmd.few_step(state.backbone, state.generator, cond, changed, state.timesteps))
    # backward simulation up to step 0 is one generator call on the first noise
    x0 = dmd.few_step(state.backbone, state.generator, cond, noises[:1], state.timesteps, grad_from=0)
    t = torch.ones(1)
    torch.testing.assert_close(x0, dmd.x0_prediction(state.backbone, state.generator, noises[0], t, cond))
