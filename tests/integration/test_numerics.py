"""The pinned numerics mode (gdmd/numerics.py): the same bits whatever the outside settings
of the knobs it pins - one machine's stand-in for two CPUs.

Each CLI is started twice, once with ATen's and MKL's instruction sets left at (or set to)
the machine's maximum, once with both set to AVX2 from outside. In the pinned mode the
sampled images and a short training run's checkpoint must be identical; in the native mode
(on a machine whose maximum is above AVX2) the same two settings must give different
weights, which shows the knobs matter and the test can fail.
"""

import json
import os
import platform
import subprocess
import sys

import pytest

from gdmd.shapes.prompts import evaluation_metadata, write_metadata

from ..conftest import ROOT, run_cli
from .test_train import _settings, _tensors


def _machine_capability() -> str:
    """torch's CPU capability with nothing pinned: the machine's maximum (e.g. AVX512, AVX2)."""
    env = {k: v for k, v in os.environ.items() if k not in ("ATEN_CPU_CAPABILITY", "MKL_ENABLE_INSTRUCTIONS")}
    code = "import torch; print(torch.backends.cpu.get_cpu_capability())"
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout.strip()


pytestmark = pytest.mark.skipif(
    platform.machine().lower() not in ("x86_64", "amd64"), reason="the pinned mode is defined for x86-64 CPUs"
)
MAX = _machine_capability()
# the same two knobs, at the machine's maximum and at AVX2
OUTSIDE = {
    "max": {"ATEN_CPU_CAPABILITY": MAX.lower(), "MKL_ENABLE_INSTRUCTIONS": MAX.upper()},
    "avx2": {"ATEN_CPU_CAPABILITY": "avx2", "MKL_ENABLE_INSTRUCTIONS": "AVX2"},
}


def _sample(tmp_path, assets, mode, outside, env=None, batch=6):
    meta = tmp_path / "meta.jsonl"
    write_metadata(evaluation_metadata(per_tag=1, seed=0), meta)
    run = tmp_path / "teacher.json"
    run.write_text(
        json.dumps(
            {"study": "t", "run": "teacher", "backbone": "shapes", "method": "teacher", "steps": 3, "cfg_scale": 2.0,
             "assets": {"teacher": str(assets / "teacher"), "text_encoder": str(assets / "clip")}, "batch_size": batch}
        )
    )  # fmt: skip
    out = tmp_path / f"samples-{mode}-{outside}-{len(env or {})}"
    r = run_cli("gdmd.sample", "--run-config", run, "--metadata", meta, "--images-per-prompt", 2, "--out", out,
                env={"GDMD_NUMERICS": mode, **OUTSIDE[outside], **(env or {})})  # fmt: skip
    assert r.returncode == 0, r.stderr
    return out


def _train(tmp_path, assets, mode, outside, env=None):
    run = _settings(tmp_path, assets, train={"iterations": 4, "batch_size": 4, "gen_every": 2, "checkpoint_every": 4,
                                             "lr_generator": 1e-3, "lr_fake": 1e-3})  # fmt: skip
    out = tmp_path / f"train-{mode}-{outside}-{len(env or {})}" / "final"
    env = {"GDMD_NUMERICS": mode, **OUTSIDE[outside], **(env or {})}
    r = run_cli("gdmd.train", "--run-config", run, "--out", out, env=env)
    assert r.returncode == 0, r.stderr
    return out


def test_pinned_sampling_ignores_the_outside_instruction_sets(tiny_assets, tmp_path):
    a, b = (_sample(tmp_path, tiny_assets, "pinned", o) for o in ("max", "avx2"))
    pa, pb = sorted(a.rglob("*.png")), sorted(b.rglob("*.png"))
    assert len(pa) == 12 and [p.relative_to(a) for p in pa] == [p.relative_to(b) for p in pb]
    assert all(x.read_bytes() == y.read_bytes() for x, y in zip(pa, pb))
    numerics = json.loads((a / "sampling.json").read_text())["numerics"]
    assert numerics["mode"] == "pinned" and numerics["torch_cpu_capability"] == "AVX2"
    assert numerics["env"]["MKL_CBWR"] == "AVX2,STRICT"


def test_pinned_training_ignores_the_outside_instruction_sets(tiny_assets, tmp_path):
    a, b = (_train(tmp_path, tiny_assets, "pinned", o) for o in ("max", "avx2"))
    ta, tb = _tensors(a), _tensors(b)
    assert ta.keys() == tb.keys() and all((ta[k] == tb[k]).all() for k in ta)
    assert json.loads((a / "state.json").read_text())["numerics"]["mode"] == "pinned"


def test_the_malloc_settings_change_no_bit(tmp_path):
    """gdmd/allocator.py only changes where op outputs live: sampling and training with the
    committed shapes teacher (activations of MBs, above glibc's default mmap threshold) give
    the same bits with glibc's default malloc and with the tuned one."""
    assets = ROOT / "resources" / "shapes"
    runs = {}
    for name, env in (("tuned", {}), ("default", {"GDMD_MALLOC": "default"})):
        runs[name] = (_sample(tmp_path, assets, "pinned", "avx2", env, batch=8), _train(tmp_path, assets, "pinned", "avx2", env))
    (sa, ta), (sb, tb) = runs["tuned"], runs["default"]
    pa, pb = sorted(sa.rglob("*.png")), sorted(sb.rglob("*.png"))
    assert len(pa) == 12 and all(x.read_bytes() == y.read_bytes() for x, y in zip(pa, pb, strict=True))
    wa, wb = _tensors(ta), _tensors(tb)
    assert wa.keys() == wb.keys() and all((wa[k] == wb[k]).all() for k in wa)
    assert json.loads((sa / "sampling.json").read_text())["malloc"] == "tuned"
    assert json.loads((tb / "state.json").read_text())["malloc"] == "default (GDMD_MALLOC=default)"


@pytest.mark.skipif(MAX == "AVX2", reason="this CPU's maximum is AVX2: both settings are the same kernels natively")
def test_native_training_depends_on_the_instruction_set(tiny_assets, tmp_path):
    a, b = (_train(tmp_path, tiny_assets, "native", o) for o in ("max", "avx2"))
    ta, tb = _tensors(a), _tensors(b)
    assert any(not (ta[k] == tb[k]).all() for k in ta)
    state = json.loads((a / "state.json").read_text())["numerics"]
    assert state["mode"] == "native" and state["torch_cpu_capability"] == MAX


def test_unknown_numerics_mode_is_a_one_line_error(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(ROOT), GDMD_NUMERICS="fast")
    r = subprocess.run([sys.executable, "-m", "gdmd.train", "--help"], env=env, capture_output=True, text=True)
    assert r.returncode == 2 and r.stderr.strip() == "error: GDMD_NUMERICS='fast' is not one of pinned, native"


def test_the_test_process_runs_in_the_requested_mode():
    """conftest imports gdmd before any test module imports torch, so in-process tests run
    in the mode GDMD_NUMERICS asks for (pinned unless told otherwise)."""
    import torch

    from gdmd import numerics

    assert numerics.describe()["mode"] == numerics.requested()
    if numerics.requested() == "pinned":
        assert torch.backends.cpu.get_cpu_capability() == "AVX2"
