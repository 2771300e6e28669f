"""The RL methods' step functions on tiny random models: what each reward touches, DMDR's
schedules, the naive baseline and GDMD against DMD, exactly."""

import copy
import math

import pytest
import torch

from gdmd import config as cfglib
from gdmd.backbones.shapes import load_teacher
from gdmd.losses import optimality
from gdmd.methods import dmd, dmdr, get_method
from gdmd.methods import gdmd as gdmd_method
from gdmd.shapes.prompts import ShapesPrompts
from gdmd.study import Assets, RunConfig

from .test_dmd import batch, same, snapshot

REWARDS = [
    {"metric": "shapes_clipscore", "weight": 0.01, "margin": 70.0},
    {"metric": "shapes_aesthetic", "weight": 0.1, "margin": 10.0},
]
CAPTIONS = ["a red circle", "a red circle", "two squares", "two squares"]


def make(assets, method, **train):
    backbone, teacher = load_teacher(assets / "teacher", assets / "clip")
    weights = {"clip": str(assets / "clip"), "aesthetic_head": str(assets / "aesthetic")}
    run = RunConfig("t", method, "shapes", Assets("", ""), method, steps=4, weights=weights)
    m = get_method(method)
    rewards = {} if method == "dmd" else {"rewards": REWARDS}
    cfg = cfglib.from_dict(m.Config, {"batch_size": 4, "lr_generator": 1e-3, "lr_fake": 1e-3, **rewards, **train}, "train")
    torch.manual_seed(0)
    return m.setup(cfg, run, backbone, teacher, ShapesPrompts)


class Spy:
    """A reward that records its inputs and returns `value(images, prompts)`."""

    def __init__(self, value):
        self.value, self.calls = value, []

    def reward(self, images, prompts):
        self.calls.append((images.detach().clone(), list(prompts), images.requires_grad, torch.is_grad_enabled()))
        return self.value(images, prompts)


def spy_on(state, value):
    spy = Spy(value)
    state.rewards.scorers = {name: spy for name in state.rewards.scorers}
    return spy


def grads(model):
    return [p.grad.clone() for p in model.parameters()]


# -- dmd_refl / dmdr: reward backprop into the generator only ----------------------------


@pytest.mark.parametrize("method", ["dmd_refl", "dmdr"])
def test_reward_gradient_reaches_the_generator_only(tiny_assets, method):
    state = make(tiny_assets, method)
    b = batch(state, CAPTIONS, iteration=10)  # past DMDR's (default 0) cold start
    reference = make(tiny_assets, "dmd")  # same generator, no reward
    torch.manual_seed(1)
    dmd.generator_step(reference, batch(reference, CAPTIONS))
    f0 = snapshot(state.fake_score)
    rewards = [p for s in state.rewards.scorers.values() for m in vars(s).values() if isinstance(m, torch.nn.Module)
               for p in m.parameters()]  # fmt: skip
    w0 = [p.detach().clone() for p in rewards]
    torch.manual_seed(1)
    m = get_method(method).steps["generator"](state, b)
    assert m["reward_loss"] > 0
    assert not all(torch.equal(a, b) for a, b in zip(grads(state.generator), grads(reference.generator)))
    assert same(f0, snapshot(state.fake_score)) and all(p.grad is None for p in state.fake_score.parameters())
    assert all(p.grad is None and not p.requires_grad for p in rewards) and same(w0, rewards)


def test_dmdr_cold_start_never_calls_the_reward(tiny_assets):
    state = make(tiny_assets, "dmdr", cold_start=3, dyn_steps=4)
    spy = spy_on(state, lambda images, prompts: images.mean((1, 2, 3)))
    for it in range(3):
        m = dmdr.generator_step(state, batch(state, CAPTIONS, iteration=it))
        assert m["cold_start"] == 1.0 and "reward_loss" not in m
    assert spy.calls == []
    m = dmdr.generator_step(state, batch(state, CAPTIONS, iteration=3))
    assert m["cold_start"] == 0.0 and len(spy.calls) == 2 and spy.calls[0][2]  # both metrics, with gradient


def test_dmdr_schedules():
    cfg = dmdr.DMDRConfig(dyn_steps=100, real_lora_scale=0.5, dynars_a=4.0, dynars_b=1.5, cold_start=30)
    assert [dmdr.cosine(cfg, k) for k in (0, 50, 100, 250)] == pytest.approx([1.0, 0.5, 0.0, 0.0], abs=1e-15)
    assert [dmdr.real_scale(cfg, k) for k in (0, 50, 100, 250)] == pytest.approx([0.5, 0.25, 0.0, 0.0], abs=1e-15)
    assert dmdr.dynars_beta(cfg, 0) == (4.0, 1.5)
    assert dmdr.dynars_beta(cfg, 50) == pytest.approx((2.5, 1.25))
    assert dmdr.dynars_beta(cfg, 100) == dmdr.dynars_beta(cfg, 250) == (1.0, 1.0)
    assert [dmdr.in_cold_start(cfg, k) for k in (0, 29, 30)] == [True, True, False]
    # DynaRS: the mean of Beta(4, 1.5) is 4 / 5.5 early, of Beta(1, 1) 1/2 late
    torch.manual_seed(0)
    cfg = dmdr.DMDRConfig(dyn_steps=100, tau_min=0.0, tau_max=1.0)
    assert dmdr.dynars_times(cfg, 0, 20000, "cpu").mean().item() == pytest.approx(4 / 5.5, abs=0.01)
    assert dmdr.dynars_times(cfg, 100, 20000, "cpu").mean().item() == pytest.approx(0.5, abs=0.01)
    # the real CFG is drawn from U(w +- jitter) per update
    draws = [dmdr.real_cfg(dmdr.DMDRConfig(real_cfg_scale=3.0, real_cfg_jitter=0.5)) for _ in range(500)]
    assert 2.5 <= min(draws) < 2.6 and 3.4 < max(draws) <= 3.5


def test_dynadg_full_weight_fake_equals_the_lora_fake(tiny_assets):
    """teacher + (s / s_fake)(fake - teacher), with fake = the LoRA merged at s_fake, is the
    LoRA'd network at scale s."""
    from peft.tuners.lora import LoraLayer

    state = make(tiny_assets, "dmdr", fake_lora_rank=4, fake_lora_scale=2.0)
    adapter = state.fake_score.name
    torch.manual_seed(2)
    with torch.no_grad():
        for layer in state.teacher.modules():
            if isinstance(layer, LoraLayer):
                layer.lora_B[adapter].weight.normal_(0, 0.1)  # a trained-looking, non-zero LoRA
    merged = copy.deepcopy(state.teacher)  # the teacher holds the adapter: merge it, then drop it
    for name, module in state.teacher.named_modules():
        if isinstance(module, LoraLayer):
            merged.get_submodule(name).base_layer.weight.data += module.get_delta_weight(adapter)
    merged.delete_adapters([adapter])
    bb = state.backbone
    x, t, cond = bb.noise_like(3), torch.tensor([0.2, 0.5, 0.9]), bb.encode_prompts(CAPTIONS[:3])
    with torch.no_grad():
        fake_lora = dmd.x0_prediction(bb, state.fake_score, x, t, cond)
        torch.testing.assert_close(fake_lora, dmd.x0_prediction(bb, merged, x, t, cond), rtol=1e-5, atol=1e-5)
        for s in (0.5, 0.25):
            with dmdr.real_score(state, s) as real:
                lora = dmd.x0_prediction(bb, real, x, t, cond, 3.0)
            full = dmd.x0_prediction(bb, dmdr.Interpolated(state.teacher, merged, s / 2.0), x, t, cond, 3.0)
            torch.testing.assert_close(lora, full, rtol=1e-5, atol=1e-5)
            assert not torch.allclose(lora, dmd.x0_prediction(bb, state.teacher, x, t, cond, 3.0), atol=1e-4)
        # the fake score is back at its own scale after the real query
        torch.testing.assert_close(dmd.x0_prediction(bb, state.fake_score, x, t, cond), fake_lora, rtol=0, atol=0)


# -- dmd_nft ---------------------------------------------------------------------------


def test_dmd_nft_batches_are_groups_of_samples_per_prompt(tiny_assets):
    state = make(tiny_assets, "dmd_nft", samples_per_prompt=2)
    assert state.prompt_repeats == 2


def test_dmd_nft_with_a_constant_reward_is_dmd_exactly(tiny_assets):
    state, reference = make(tiny_assets, "dmd_nft", samples_per_prompt=2), make(tiny_assets, "dmd")
    spy = spy_on(state, lambda images, prompts: torch.full((len(prompts),), 3.0))
    b = batch(state, CAPTIONS)
    b.groups = torch.tensor([0, 0, 1, 1])
    torch.manual_seed(1)
    m = get_method("dmd_nft").steps["generator"](state, b)
    torch.manual_seed(1)
    m_ref = dmd.generator_step(reference, batch(reference, CAPTIONS))
    assert spy.calls and m["nft_r_mean"] == 0.5 and m["dmd_loss"] == m_ref["dmd_loss"]
    assert all(torch.equal(a, b) for a, b in zip(grads(state.generator), grads(reference.generator)))
    assert same(snapshot(state.generator), snapshot(reference.generator))


def test_dmd_nft_scores_raw_samples_without_gradient(tiny_assets):
    state = make(tiny_assets, "dmd_nft", samples_per_prompt=2)
    spy = spy_on(state, lambda images, prompts: images.mean((1, 2, 3)))
    b = batch(state, CAPTIONS)
    b.groups = torch.tensor([0, 0, 1, 1])
    m = get_method("dmd_nft").steps["generator"](state, b)
    images, prompts, requires_grad, grad_enabled = spy.calls[0]
    assert prompts == CAPTIONS and not requires_grad and not grad_enabled and images.shape == (4, 3, 32, 32)
    assert m["nft_r_mean"] == pytest.approx(0.5) and m["nft_loss"] > 0


# -- gdmd ------------------------------------------------------------------------------


def test_gdmd_with_lambda_zero_is_dmd_exactly(tiny_assets):
    state, reference = make(tiny_assets, "gdmd", napo_weight=0.0), make(tiny_assets, "dmd")
    torch.manual_seed(1)
    m = gdmd_method.generator_step(state, batch(state, CAPTIONS))
    torch.manual_seed(1)
    m_ref = dmd.generator_step(reference, batch(reference, CAPTIONS))
    assert m["dmd_loss"] == m_ref["dmd_loss"]
    assert all(torch.equal(a, b) for a, b in zip(grads(state.generator), grads(reference.generator)))


def test_igs_scores_exactly_the_decoded_targets_without_gradient(tiny_assets, monkeypatch):
    state = make(tiny_assets, "gdmd", targets=3)
    spy = spy_on(state, lambda images, prompts: images.mean((1, 2, 3)))
    seen = {}
    dagc = gdmd_method.dagc

    def recording(*args):
        seen["group"] = dagc(*args)
        return seen["group"]

    monkeypatch.setattr(gdmd_method, "dagc", recording)
    gdmd_method.generator_step(state, batch(state, CAPTIONS))
    group = seen["group"]
    assert group.targets.shape == (12, 3, 32, 32) and not group.targets.requires_grad
    targets_call, x_call = spy.calls[0], spy.calls[2]  # one call per metric: targets, targets, x, x
    assert torch.equal(targets_call[0], state.backbone.decode(group.targets))
    assert targets_call[1] == [c for c in CAPTIONS for _ in range(3)]
    # no gradient reaches the reward (inputs without grad, called under no_grad)
    assert not targets_call[2] and not targets_call[3] and not x_call[2] and not x_call[3]
    assert x_call[0].shape == (4, 3, 32, 32) and x_call[1] == CAPTIONS  # and the raw samples, for the log


@pytest.mark.parametrize("norm", [False, True])
def test_gdmd_targets_are_the_implicit_targets_of_distinct_gradients(tiny_assets, norm):
    state = make(tiny_assets, "gdmd", targets=3, target_step=0.5, target_norm=norm)
    torch.manual_seed(1)
    term = dmd.dmd_term(state, batch(state, CAPTIONS))
    group = gdmd_method.dagc(state, term, batch(state, CAPTIONS))
    x = term.x.detach().repeat_interleave(3, 0)
    d = group.g / group.g.abs().mean((1, 2, 3), keepdim=True) if norm else group.g
    torch.testing.assert_close(group.step, 0.5 * d, rtol=0, atol=0)
    torch.testing.assert_close(group.targets, x - group.step, rtol=0, atol=0)
    if norm:  # every target the same mean distance from its sample
        torch.testing.assert_close(group.step.abs().mean((1, 2, 3)), torch.full((12,), 0.5), rtol=1e-5, atol=0)
    g = group.g.view(4, 3, -1)
    torch.testing.assert_close(g[:, 0], term.query.g.flatten(1), rtol=1e-6, atol=1e-6)  # target 1 is DMD's own
    assert not torch.allclose(g[:, 0], g[:, 1]) and group.tau[:, 0].tolist() == term.query.tau.tolist()


def test_advantages_are_within_each_samples_group(tiny_assets):
    """A reward that differs only across samples (by prompt) gives every target of a sample
    the same reward: all advantages 0, all optimalities 1/2."""
    state = make(tiny_assets, "gdmd", targets=3)
    spy_on(state, lambda images, prompts: torch.tensor([float(len(p)) for p in prompts]))
    m = gdmd_method.generator_step(state, batch(state, ["a red circle", "two squares", "a blue triangle", "x"]))
    assert m["napo_r_min"] == m["napo_r_max"] == 0.5 and m["reward_group_std"] == 0.0
    spy_on(state, lambda images, prompts: images.mean((1, 2, 3)))  # differs between targets
    m = gdmd_method.generator_step(state, batch(state, CAPTIONS))
    assert m["napo_r_min"] < 0.5 < m["napo_r_max"]


def test_napo_on_policy_gradient_is_the_closed_form(tiny_assets):
    """docs/methods.md: d L_NaPO / dx_i = sum_j 2 (2 r_ij - 1) (x_i - xhat_ij) / (w_ij CHW B G)."""
    state = make(tiny_assets, "gdmd", targets=3, napo_weight=1.0, nft_beta=0.5)
    gen = torch.Generator().manual_seed(7)
    B, G = 2, 3
    x = torch.randn(B, 3, 4, 4, generator=gen, dtype=torch.float64, requires_grad=True)
    xhat = x.detach().repeat_interleave(G, 0) - torch.randn(B * G, 3, 4, 4, generator=gen, dtype=torch.float64)
    adv = torch.randn(B * G, generator=gen, dtype=torch.float64) * 3
    term = dmd.Term(x, torch.zeros((), dtype=torch.float64), {}, None)
    step = x.detach().repeat_interleave(G, 0) - xhat
    group = gdmd_method.Group(xhat, step, step, torch.zeros(B, G), 0)
    loss, _ = gdmd_method.napo(state, term, group, adv)
    (grad,) = torch.autograd.grad(loss, x)
    r = optimality(adv, state.cfg.adv_clip_max).view(B, G, 1, 1, 1)
    d = x.detach()[:, None] - xhat.view(B, G, 3, 4, 4)
    w = d.abs().mean((2, 3, 4), keepdim=True)
    want = (2 * (2 * r - 1) * d / (w * 48 * B * G)).sum(1)
    torch.testing.assert_close(grad, want, rtol=1e-12, atol=1e-15)


def test_gdmd_fake_snapshots_are_distinct_emas(tiny_assets):
    state = make(tiny_assets, "gdmd", group="fake", fake_ema_decays=[0.5, 0.9])
    assert "fake_snapshots" in state.modules and state.cfg.group_size == 3
    for it in range(3):
        gdmd_method.critic_step(state, batch(state, CAPTIONS, iteration=it))
    fake, s1, s2 = (snapshot(m) for m in (state.fake_score, *state.fake_snapshots))
    assert not same(fake, s1) and not same(s1, s2) and not same(s2, snapshot(state.teacher))
    # one more update, by hand: snapshot <- d snapshot + (1 - d) fake
    before = snapshot(state.fake_snapshots[1])
    gdmd_method.critic_step(state, batch(state, CAPTIONS, iteration=3))
    want = [0.9 * b + 0.1 * f for b, f in zip(before, snapshot(state.fake_score))]
    assert all(torch.allclose(a, w, rtol=0, atol=1e-6) for a, w in zip(snapshot(state.fake_snapshots[1]), want))
    m = gdmd_method.generator_step(state, batch(state, CAPTIONS))
    assert "best_not_smallest_tau" not in m and math.isfinite(m["napo_loss"])


def test_generator_ema_is_the_moving_average(tiny_assets):
    state = make(tiny_assets, "dmd", ema_decay=0.75)
    assert "generator_ema" in state.modules
    start = snapshot(state.generator)
    dmd.generator_step(state, batch(state, CAPTIONS))
    want = [0.75 * a + 0.25 * b for a, b in zip(start, snapshot(state.generator))]
    assert all(torch.allclose(e, w, rtol=0, atol=1e-7) for e, w in zip(snapshot(state.generator_ema), want))


def test_every_method_draws_the_same_regression_pairs(tiny_assets):
    """The regression pairs depend on the seed, the teacher and the pair settings, not on the
    method (what lets the study make them once per seed and share them): every method's
    set-up draws them first, before its reward models or LoRAs draw from the RNG."""
    reg = {"reg_weight": 0.5, "reg_pairs": 4, "reg_steps": 2}
    ref = make(tiny_assets, "dmd", **reg).pairs
    for method in ("dmd_nft", "dmd_refl", "dmdr", "gdmd"):
        extra = {"fake_lora_rank": 2} if method == "dmdr" else {}
        pairs = make(tiny_assets, method, **reg, **extra).pairs
        assert pairs.captions == ref.captions, method
        assert torch.equal(pairs.noise, ref.noise) and torch.equal(pairs.images, ref.images), method
