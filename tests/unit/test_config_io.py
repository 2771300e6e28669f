"""Typed configs (unknown keys, wrong types), atomic writes, checkpoints."""

import json
from dataclasses import dataclass, field

import numpy as np
import pytest
import torch

from gdmd import checkpoint
from gdmd import config as cfglib
from gdmd.io import UserError, atomic_dir, atomic_write_text


@dataclass(frozen=True)
class Inner:
    lr: float = 1e-3
    hidden: tuple[int, ...] = (4, 2)


@dataclass(frozen=True)
class Outer:
    name: str
    steps: int = 10
    inner: Inner = Inner()
    extra: dict = field(default_factory=dict)


def test_from_dict_builds_nested_and_converts():
    c = cfglib.from_dict(Outer, {"name": "x", "inner": {"lr": 1, "hidden": [8]}})
    assert c == Outer("x", 10, Inner(1.0, (8,)))
    assert cfglib.to_dict(c) == {"name": "x", "steps": 10, "inner": {"lr": 1.0, "hidden": [8]}, "extra": {}}


@pytest.mark.parametrize(
    "data, message",
    [
        ({"name": "x", "stepz": 3}, "unknown key 'stepz'; known: name, steps, inner, extra"),
        ({"name": "x", "inner": {"lr": "fast"}}, "inner.lr: expected float, got 'fast'"),
        ({"name": "x", "steps": 2.5}, "steps: expected int, got 2.5"),
        ({"name": "x", "steps": True}, "steps: expected int, got True"),
        ({"steps": 3}, "name: required key is missing"),
        ({"name": "x", "inner": {"hidden": [1, "a"]}}, "inner.hidden[1]: expected int, got 'a'"),
    ],
)
def test_bad_config_names_the_key(data, message):
    with pytest.raises(UserError) as e:
        cfglib.from_dict(Outer, data)
    assert message in str(e.value)


def test_load_names_the_file(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("name: x\ninner: {lrr: 1}\n")
    with pytest.raises(UserError, match=r"c.yaml: inner: unknown key 'lrr'"):
        cfglib.load(Outer, p)
    with pytest.raises(UserError, match="config file not found"):
        cfglib.load(Outer, tmp_path / "missing.yaml")


def test_atomic_dir_leaves_nothing_on_failure(tmp_path):
    out = tmp_path / "out"
    with pytest.raises(RuntimeError):
        with atomic_dir(out) as tmp:
            (tmp / "half").write_text("x")
            raise RuntimeError("crash")
    assert list(tmp_path.iterdir()) == []
    with atomic_dir(out) as tmp:
        (tmp / "done").write_text("x")
    assert (out / "done").read_text() == "x" and len(list(tmp_path.iterdir())) == 1


def test_atomic_write_unwritable_path_is_a_user_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(UserError, match="cannot write output"):
        atomic_write_text(blocker / "sub" / "x.txt", "hello")


def test_checkpoint_roundtrip_restores_weights_optimizer_and_rng(tmp_path):
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 2)
    opt = torch.optim.AdamW(model.parameters(), lr=0.1)
    rng = np.random.default_rng(5)
    for _ in range(3):
        model(torch.randn(4, 3)).pow(2).sum().backward()
        opt.step()
    rng.random(7)
    checkpoint.save(tmp_path / "ck", {"model": model}, {"opt": opt}, {"step": 3}, {"data": rng})
    expect_torch, expect_np = torch.randn(5), rng.random(5)

    model2 = torch.nn.Linear(3, 2)
    opt2 = torch.optim.AdamW(model2.parameters(), lr=0.5)
    rng2 = np.random.default_rng(0)
    torch.manual_seed(123)
    meta = checkpoint.load(tmp_path / "ck", {"model": model2}, {"opt": opt2}, {"data": rng2})
    assert meta["step"] == 3 and "versions" in meta
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), model2.state_dict().values()))
    assert opt2.param_groups[0]["lr"] == 0.1
    assert torch.equal(opt2.state_dict()["state"][0]["exp_avg"], opt.state_dict()["state"][0]["exp_avg"])
    assert torch.equal(torch.randn(5), expect_torch) and np.array_equal(rng2.random(5), expect_np)
    assert json.loads((tmp_path / "ck" / "state.json").read_text())["step"] == 3


def test_loading_a_non_checkpoint_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="not a checkpoint"):
        checkpoint.load(tmp_path, {})
