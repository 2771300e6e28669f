"""LoRA networks as adapters on one shared frozen teacher (gdmd.lora): calls, gradients under
gradient checkpointing, frozen copies, checkpoints, and one teacher's worth of weights per run."""

from __future__ import annotations

import json

import pytest
import torch

from gdmd import lora
from gdmd.io import UserError

from .test_sd3 import COMMON, study, write_run  # noqa: F401 (the study fixture)


@pytest.fixture()
def base(tiny_sd3):
    from diffusers import SD3Transformer2DModel

    return SD3Transformer2DModel.from_pretrained(tiny_sd3, subfolder="transformer").eval().requires_grad_(False)


def _inputs(seed=0):
    g = torch.Generator().manual_seed(seed)
    return dict(
        hidden_states=torch.randn(2, 4, 16, 16, generator=g),
        encoder_hidden_states=torch.randn(2, 5, 32, generator=g),
        pooled_projections=torch.randn(2, 32, generator=g),
        timestep=torch.tensor([700.0, 200.0]),
    )


def _call(model, inputs):
    return model(**inputs).sample


def _nonzero(net: lora.LoraNetwork, seed: int):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.2)


def test_adapters_share_the_base_and_run_alone(base):
    """Each network is the base plus its own adapter only; the base alone is the teacher; the
    base's weights exist once."""
    teacher = _call(base, _inputs())
    a = lora.add_lora(base, "a", 4, 4)
    b = lora.add_lora(base, "b", 2, 4)
    assert torch.equal(_call(a, _inputs()), teacher)  # B = 0: starts as the teacher
    _nonzero(a, 1), _nonzero(b, 2)
    with torch.no_grad():
        out_a, out_b, out_t = _call(a, _inputs()), _call(b, _inputs()), _call(base, _inputs())
    assert torch.equal(out_t, teacher) and not torch.allclose(out_a, teacher) and not torch.allclose(out_b, out_a)
    # b's adapter alone: a at scale 0 changes nothing of b's output
    with lora.lora_scale(a, 0.0), torch.no_grad():
        assert torch.equal(_call(b, _inputs()), out_b) and torch.equal(_call(a, _inputs()), teacher)
    assert torch.equal(_call(a, _inputs()), out_a)  # a's scale back after the block
    # parameters: the adapter's tensors only, all trainable, none of the base's
    base_ids = {id(p) for n, p in base.named_parameters() if "lora_" not in n}
    assert all(id(p) not in base_ids and p.requires_grad for p in a.parameters())
    assert sum(p.numel() for p in a.parameters()) == sum(v.numel() for v in lora.adapter_state_dict(a).values())
    assert not any(p.requires_grad for n, p in base.named_parameters() if "lora_" not in n)


def test_gradient_checkpointing_recomputes_under_the_adapter_that_ran(base):
    """The generator's forward, then other adapters and the teacher (as a DMD step queries
    them), then the backward pass: the gradient is the one without checkpointing. diffusers'
    default checkpointing would recompute under whatever adapter is active at backward time;
    the test shows that it would differ, so the check can fail."""
    gen, fake = lora.add_lora(base, "generator", 4, 4), lora.add_lora(base, "fake", 4, 4)
    _nonzero(gen, 1), _nonzero(fake, 2)

    def grads():
        y = _call(gen, _inputs())
        with lora.active_adapters(base, ["fake"]):  # left active while the backward pass runs
            (y * _call(fake, _inputs()).detach()).sum().backward()
        out = [p.grad.clone() for p in gen.parameters()]
        gen.zero_grad(set_to_none=True)
        return out

    plain = grads()
    gen.enable_gradient_checkpointing()
    for p, q in zip(plain, grads()):
        torch.testing.assert_close(q, p, rtol=1e-5, atol=1e-6)
    base.enable_gradient_checkpointing()  # diffusers' own function: no adapter context
    assert any(not torch.allclose(p, q, rtol=1e-3, atol=1e-5) for p, q in zip(plain, grads()))


def test_frozen_copy_is_an_adapter_copy_and_draws_no_random_numbers(base):
    gen = lora.add_lora(base, "generator", 4, 4)
    _nonzero(gen, 1)
    with lora.lora_scale(gen, 2.0):
        torch.manual_seed(0)
        ema = lora.frozen_copy(gen, "generator_ema")
        after = torch.rand(3)
        torch.manual_seed(0)
        assert torch.equal(torch.rand(3), after)  # the RNG as if no adapter had been made
        assert all(torch.equal(p, q) for p, q in zip(ema.parameters(), gen.parameters()))
        with torch.no_grad():  # at the same scale (the same function; the last bit may differ with memory alignment)
            torch.testing.assert_close(_call(ema, _inputs()), _call(gen, _inputs()), rtol=1e-6, atol=1e-6)
            assert not torch.allclose(_call(base, _inputs()), _call(gen, _inputs()), atol=1e-3)
    assert ema.base is base and not any(p.requires_grad for p in ema.parameters())
    assert all(p.data_ptr() != q.data_ptr() for p, q in zip(ema.parameters(), gen.parameters()))


def test_adapter_state_loads_into_another_adapter_and_refuses_a_misfit(base):
    gen = lora.add_lora(base, "generator", 4, 4)
    _nonzero(gen, 1)
    other = lora.add_lora(base, "generator_ema", 4, 4)
    state = lora.adapter_state_dict(gen)
    assert all(".lora_A.weight" in k or ".lora_B.weight" in k for k in state)
    lora.load_adapter_state_dict(other, state)
    assert all(torch.equal(p, q) for p, q in zip(other.parameters(), gen.parameters()))
    small = lora.add_lora(base, "small", 2, 2)
    with pytest.raises(UserError, match="LoRA weight .* has shape"):
        lora.load_adapter_state_dict(small, state)
    with pytest.raises(UserError, match="unexpected"):
        lora.load_adapter_state_dict(gen, {**state, "x.lora_A.weight": torch.zeros(1)})


@pytest.mark.parametrize("method", ["dmd", "gdmd"])
def test_a_lora_run_holds_one_teacher(study, method, tmp_path):  # noqa: F811
    """Generator, fake score, EMA and GDMD's snapshots are adapters on the teacher: the run's
    networks hold the teacher's weights once (their storage shared), plus adapters."""
    from gdmd.train import load_training

    study["runs"][method]["train"].update({"ema_decay": 0.9, **({"group": "both", "targets": 2} if method == "gdmd" else {})})
    run, m, cfg, backbone, teacher, source = load_training(write_run(study, method, tmp_path), 0)
    state = m.setup(cfg, run, backbone, teacher, source)
    nets = dict(state.modules)
    if method == "gdmd":
        nets.update({f"snapshot{i}": s for i, s in enumerate(nets.pop("fake_snapshots"))})
    assert set(nets) >= {"generator", "fake_score", "generator_ema"} and len(nets) >= 3
    assert all(n.base is teacher for n in nets.values())
    # the teacher's own weights plus each network's adapter is every weight the run holds
    teacher_numel = sum(p.numel() for n, p in teacher.named_parameters() if "lora_" not in n)
    adapters = sum(p.numel() for net in nets.values() for p in net.parameters())
    assert sum(p.numel() for p in teacher.parameters()) == teacher_numel + adapters


def test_ema_and_snapshots_do_not_change_the_generator_s_training(study, tmp_path):  # noqa: F811
    """A LoRA run trains the same generator bits with or without an EMA (frozen copies draw
    no random numbers and take no part in the updates)."""
    from safetensors.torch import load_file

    from gdmd.train import train

    finals = []
    for ema in (0.0, 0.9):
        study["runs"]["dmd"]["train"]["ema_decay"] = ema
        out = tmp_path / f"ema{ema}" / "final"
        out.parent.mkdir()
        train(write_run(study, "dmd", tmp_path / f"ema{ema}"), 0, out, out.parent / "work")
        finals.append({k: v for k, v in load_file(out / "tensors.safetensors").items() if k.startswith("generator.")})
    assert finals[0].keys() == finals[1].keys() and finals[0]
    assert all(torch.equal(finals[0][k], finals[1][k]) for k in finals[0])
    assert json.loads((out / "state.json").read_text())["iteration"] == COMMON["iterations"]
