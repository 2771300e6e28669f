"""DMD's step functions on a tiny random teacher: each touches only its own network."""

import pytest
import torch

from gdmd.backbones.shapes import load_teacher
from gdmd.io import UserError
from gdmd.methods import Batch, dmd
from gdmd.samplers import euler
from gdmd.shapes.prompts import ShapesPrompts
from gdmd.study import Assets, RunConfig

__all__ = ["batch", "snapshot", "same"]


def _setup(assets, pairs_file=None, seed=0, **overrides):
    backbone, teacher = load_teacher(assets / "teacher", assets / "clip")
    run = RunConfig("t", "dmd", "shapes", Assets("", ""), "dmd", steps=4)
    cfg = dmd.DMDConfig(batch_size=3, lr_generator=1e-3, lr_fake=1e-3, **overrides)
    torch.manual_seed(seed)
    return dmd.setup(cfg, run, backbone, teacher, ShapesPrompts, pairs_file=pairs_file)


@pytest.fixture()
def state(tiny_assets):
    return _setup(tiny_assets)


def batch(state, captions=("a red circle", "two squares", "a triangle"), real=None, iteration=0):
    captions = list(captions)
    return Batch(iteration, captions, state.backbone.encode_prompts(captions), real, torch.arange(len(captions)))


def snapshot(m):
    return [p.detach().clone() for p in m.parameters()]


def same(a, b):
    return all(torch.equal(x, y) for x, y in zip(a, b))


def test_generator_and_fake_score_start_as_the_teacher(state):
    t = snapshot(state.teacher)
    assert same(t, snapshot(state.generator)) and same(t, snapshot(state.fake_score))
    assert state.timesteps.tolist() == [1.0, 0.75, 0.5, 0.25]


def test_critic_step_leaves_generator_and_teacher_untouched(state):
    g0, f0, t0 = snapshot(state.generator), snapshot(state.fake_score), snapshot(state.teacher)
    m = dmd.critic_step(state, batch(state))
    assert same(g0, snapshot(state.generator)) and same(t0, snapshot(state.teacher))
    assert not same(f0, snapshot(state.fake_score))
    assert m["fake_loss"] > 0


@pytest.mark.parametrize("gan", [False, True])
def test_generator_step_leaves_fake_score_head_and_teacher_untouched(tiny_assets, gan):
    state = _setup(tiny_assets, gan_generator_weight=float(gan), gan_critic_weight=float(gan))
    assert state.pairs is None
    others = [state.fake_score, state.teacher] + ([state.head] if gan else [])
    g0, before = snapshot(state.generator), [snapshot(m) for m in others]
    m = dmd.generator_step(state, batch(state))
    assert all(same(b, snapshot(o)) for b, o in zip(before, others))
    assert not same(g0, snapshot(state.generator))
    assert m["nonfinite"] == 0 and m["dmd_loss"] > 0
    assert (m["gan_generator_loss"] > 0) if gan else ("gan_generator_loss" not in m)


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


@pytest.fixture()
def gan_state(tiny_assets):
    return _setup(tiny_assets, gan_generator_weight=1.0, gan_critic_weight=1.0, lr_discriminator=5e-3)


def test_features_come_from_the_same_call_as_the_velocity(gan_state):
    s = gan_state
    cond = s.backbone.encode_prompts(["a red circle", "two squares"])
    x, t = s.backbone.noise_like(2), torch.tensor([0.3, 0.8])
    v, feats = s.backbone.velocity_and_features(s.fake_score, x, t, cond)
    assert torch.equal(v, s.backbone.raw_velocity(s.fake_score, x, t, cond))
    tokens = (32 // s.fake_score.config.patch_size) ** 2
    assert feats.shape == (2, tokens, s.backbone.feature_width(s.fake_score))
    # the hook is removed after the call
    assert not s.fake_score.norm_out._forward_hooks


def test_gan_critic_step_trains_head_and_fake_score_only(gan_state):
    s = gan_state
    assert s.needs_real and "discriminator_head" in s.modules
    fake_group, head_group = s.opt_fake.param_groups
    assert [id(p) for p in head_group["params"]] == [id(p) for p in s.head.parameters()]
    assert (fake_group["lr"], head_group["lr"]) == (1e-3, 5e-3)
    real = s.backbone.noise_like(3).clamp(-1, 1)
    g0, f0, h0 = snapshot(s.generator), snapshot(s.fake_score), snapshot(s.head)
    m = dmd.critic_step(s, batch(s, real=real))
    assert same(g0, snapshot(s.generator))
    assert not same(f0, snapshot(s.fake_score)) and not same(h0, snapshot(s.head))
    assert m["gan_critic_loss"] > 0 and 0 <= m["d_real_acc"] <= 1
    with pytest.raises(ValueError, match="real images"):
        dmd.critic_step(s, batch(s))


def test_gan_generator_loss_pushes_samples_toward_real_logits(gan_state):
    """The non-saturating generator loss: d softplus(-D(x)) / dD = -sigmoid(-D) < 0, so a
    gradient step on x raises D(x) (checked on the head alone, with autograd)."""
    s = gan_state
    feats = torch.randn(4, 16, s.backbone.feature_width(s.fake_score), requires_grad=True)
    logit = s.head(feats)
    torch.nn.functional.softplus(-logit).mean().backward()
    with torch.no_grad():
        assert (s.head(feats - 1e-2 * feats.grad) > logit).all()


@pytest.fixture()
def reg_state(tiny_assets):
    return _setup(tiny_assets, reg_weight=0.5, reg_pairs=5, reg_steps=3)


def test_regression_pairs_are_the_teachers_ode_solutions(reg_state):
    """Each pair: a training caption, a noise, and the teacher's guided Euler solution from it."""
    p, bb = reg_state.pairs, reg_state.backbone
    assert len(p.captions) == 5 and p.noise.shape == p.images.shape == (5, 3, 32, 32)
    expected = euler(bb, reg_state.teacher, bb.encode_prompts(p.captions), p.noise, 3, reg_state.cfg.real_cfg_scale)
    torch.testing.assert_close(p.images, expected)
    assert len(set(p.captions)) > 1  # drawn from the caption distribution, not one prompt


def test_pairs_from_a_file_are_the_pairs_made_in_the_run(tiny_assets, tmp_path):
    """A run given pairs saved by `save_pairs` ends its set-up exactly as one that made them:
    the same pairs, and torch's RNG where making them would have left it."""
    reg = {"reg_weight": 0.5, "reg_pairs": 5, "reg_steps": 3}
    made = _setup(tiny_assets, **reg)
    after_made = torch.get_rng_state()
    path = tmp_path / "pairs.safetensors"
    dmd.save_pairs(
        made.pairs, path, dmd.pairs_settings(made.cfg, RunConfig("t", "dmd", "shapes", Assets("", ""), "dmd", steps=4))
    )
    loaded = _setup(tiny_assets, pairs_file=path, **reg)
    assert torch.equal(torch.get_rng_state(), after_made)
    assert loaded.pairs.captions == made.pairs.captions
    assert torch.equal(loaded.pairs.noise, made.pairs.noise) and torch.equal(loaded.pairs.images, made.pairs.images)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"seed": 1}, "made for another seed or prompt source"),
        ({"reg_steps": 4}, "made with reg_steps 3, this run has 4"),
        ({"real_cfg_scale": 5.0}, "made with real_cfg_scale 3.0, this run has 5.0"),
        ({"reg_pairs": 4}, "made with reg_pairs 5, this run has 4"),
    ],
)
def test_pairs_made_for_another_run_are_refused(tiny_assets, tmp_path, change, message):
    reg = {"reg_weight": 0.5, "reg_pairs": 5, "reg_steps": 3, "real_cfg_scale": 3.0}
    made = _setup(tiny_assets, **reg)
    path = tmp_path / "pairs.safetensors"
    dmd.save_pairs(
        made.pairs, path, dmd.pairs_settings(made.cfg, RunConfig("t", "dmd", "shapes", Assets("", ""), "dmd", steps=4))
    )
    with pytest.raises(UserError, match=message) as e:
        _setup(tiny_assets, pairs_file=path, **{**reg, **change})
    assert str(path) in str(e.value)


def test_a_file_that_is_not_pairs_is_refused(tiny_assets, tmp_path):
    path = tmp_path / "pairs.safetensors"
    path.write_bytes(b"not safetensors")
    with pytest.raises(UserError, match="cannot read the regression pairs"):
        _setup(tiny_assets, pairs_file=path, reg_weight=0.5, reg_pairs=5, reg_steps=3)


def test_regression_is_the_first_steps_error_on_the_pairs(reg_state):
    """Known answer: with targets = the generator's own first step + 0.25, the loss on any
    batch is 0.5 * 0.25^2 (a mean over pixels) and its gradient moves the output toward them."""
    s, bb = reg_state, reg_state.backbone
    with torch.no_grad():
        t = torch.ones(5)
        x0 = dmd.x0_prediction(bb, s.generator, s.pairs.noise, t, bb.encode_prompts(s.pairs.captions))
    s.pairs = dmd.RegressionPairs(s.pairs.captions, s.pairs.noise, x0 + 0.25)
    loss, m = dmd.regression(s)
    assert loss.item() == pytest.approx(0.5 * 0.0625, rel=1e-4) and m["reg_loss"] == loss.item()
    s.pairs = dmd.RegressionPairs(s.pairs.captions, s.pairs.noise, x0)
    assert dmd.regression(s)[0].item() == pytest.approx(0.0, abs=1e-9)


def test_generator_step_with_regression_trains_only_the_generator(reg_state):
    s = reg_state
    g0, f0, t0 = snapshot(s.generator), snapshot(s.fake_score), snapshot(s.teacher)
    m = dmd.generator_step(s, batch(s))
    assert same(f0, snapshot(s.fake_score)) and same(t0, snapshot(s.teacher))
    assert not same(g0, snapshot(s.generator))
    assert m["reg_loss"] > 0 and m["dmd_loss"] > 0


def test_regression_needs_a_prompt_source(tiny_assets):
    backbone, teacher = load_teacher(tiny_assets / "teacher", tiny_assets / "clip")
    run = RunConfig("t", "dmd", "shapes", Assets("", ""), "dmd", steps=4)
    with pytest.raises(ValueError, match="prompt source"):
        dmd.setup(dmd.DMDConfig(reg_weight=1.0, reg_pairs=2), run, backbone, teacher)


def test_multi_tensor_adamw_computes_the_single_tensor_bits(tiny_assets):
    """The optimisers run torch's multi-tensor AdamW (faster on CPU); three iterations of
    clipped DMD updates end with the same weights, to the bit, as one tensor at a time."""
    states = [_setup(tiny_assets, gen_every=1, grad_clip=0.003) for _ in range(2)]
    slow = states[1]
    kw = {"lr": 1e-3, "betas": slow.cfg.betas, "weight_decay": slow.cfg.weight_decay, "foreach": False}
    slow.opt_generator = torch.optim.AdamW(slow.generator.parameters(), **kw)
    slow.opt_fake = torch.optim.AdamW(slow.fake_score.parameters(), **kw)
    assert states[0].opt_generator.defaults["foreach"] is True
    for s in states:
        torch.manual_seed(1)
        for it in range(3):
            for name in dmd.schedule(s.cfg, it):
                dmd.STEPS[name](s, batch(s, iteration=it))
    for a, b in zip(states[0].modules.values(), states[1].modules.values()):
        assert same(snapshot(a), snapshot(b))
    assert not same(snapshot(states[0].generator), snapshot(states[0].teacher))  # it did train
