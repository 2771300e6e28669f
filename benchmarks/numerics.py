"""The pinned numerics mode against the native one: cost, batch independence, and what changes.

    python benchmarks/numerics.py --out benchmarks/results/numerics.json

Each measurement runs in a fresh process per setting (the mode has to be fixed before torch
loads, gdmd/numerics.py), on the committed shapes teacher:
- speed: ms per image per Euler step of the teacher (batch 200, CFG 3, the study's
  sampling), and seconds per DMD critic / generator update (the study's `dmd` recipe);
- batching: for which row counts M in 1..64 a linear layer's rows differ from the same rows
  computed in a batch of 64, and how far 50-step teacher images (24 prompts) move when
  sampled in batches of 5 and 7 instead of 24 (grey levels of 255, pixels that differ);
- fingerprint: sha256 of the generator after 20 iterations of the `dmd` recipe, per mode
  and per outside setting of ATEN_CPU_CAPABILITY / MKL_ENABLE_INSTRUCTIONS (machine
  maximum vs AVX2): pinned must give one hash, native may give two.
The study-level cost (a ratio of `make study` times) is measured separately; see
benchmarks/README.md (Numerics).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TEACHER, CLIP = ROOT / "resources/shapes/teacher", ROOT / "resources/shapes/clip"


def _speed() -> dict:
    import statistics

    import torch

    from gdmd import backbones
    from gdmd.samplers import euler

    bb, teacher = backbones.load("shapes", str(TEACHER), str(CLIP))
    noise = bb.noise_like(200, torch.Generator().manual_seed(0))
    cond = bb.encode_prompts(["a photo of a red circle"] * 200)
    euler(bb, teacher, cond, noise, 1, 3.0)  # warm-up
    t0 = time.perf_counter()
    euler(bb, teacher, cond, noise, 10, 3.0)
    sample_ms = 1000 * (time.perf_counter() - t0) / (10 * 200)
    steps = _dmd_state(bb, teacher)
    state, method, cond16 = steps
    out = {"teacher_ms_per_image_step": sample_ms}
    for name in ("critic", "generator"):
        method.steps[name](state, cond16, None)  # warm-up
        secs = []
        for _ in range(10):
            t0 = time.perf_counter()
            method.steps[name](state, cond16, None)
            secs.append(time.perf_counter() - t0)
        out[f"dmd_{name}_s"] = statistics.median(secs)
    return out


def _dmd_state(bb, teacher, seed: int = 0):
    import torch
    import yaml

    from gdmd import config as cfglib
    from gdmd.methods import get_method
    from gdmd.study import RunConfig, run_settings
    from gdmd.train import prompt_source

    study = yaml.safe_load((ROOT / "config/shapes.yaml").read_text())
    run = cfglib.from_dict(RunConfig, run_settings(study, "dmd"))
    method = get_method("dmd")
    cfg = cfglib.from_dict(method.Config, run.train, "train")
    torch.manual_seed(seed)
    state = method.setup(cfg, run, bb, teacher, prompt_source(cfg, bb))
    captions, _ = prompt_source(cfg, bb)(seed).batch(cfg.batch_size)
    return state, method, bb.encode_prompts(captions)


def _batching() -> dict:
    import torch

    from gdmd import backbones
    from gdmd.samplers import euler, to_uint8
    from gdmd.shapes.prompts import evaluation_metadata

    torch.manual_seed(0)
    w, b, x = torch.randn(256, 128), torch.randn(256), torch.randn(64, 128)
    full = torch.nn.functional.linear(x, w, b)
    rows = [m for m in range(1, 65) if not torch.equal(torch.nn.functional.linear(x[:m], w, b), full[:m])]
    bb, teacher = backbones.load("shapes", str(TEACHER), str(CLIP))
    prompts = [m["prompt"] for m in evaluation_metadata(per_tag=4, seed=0)][:24]
    cond, noise = bb.encode_prompts(prompts), bb.noise_like(24, torch.Generator().manual_seed(0))

    def images(batch):
        parts = [euler(bb, teacher, cond.index(slice(i, i + batch)), noise[i : i + batch], 50, 3.0) for i in range(0, 24, batch)]
        return to_uint8(bb.decode(torch.cat(parts))).astype(int)

    ref = images(24)
    moved = {}
    for batch in (5, 7):
        d = abs(images(batch) - ref)
        moved[f"batch{batch}"] = {"max_grey_levels": int(d.max()), "pixels_differing": int((d > 0).sum())}
    return {"linear_rows_differing_from_batch64": rows, "teacher50_images_vs_batch24": moved}


def _fingerprint() -> dict:
    from gdmd import backbones

    bb, teacher = backbones.load("shapes", str(TEACHER), str(CLIP))
    state, method, _ = _dmd_state(bb, teacher)
    from gdmd.methods.configs import DMDConfig
    from gdmd.train import prompt_source

    prompts = prompt_source(DMDConfig(), bb)(0)
    for it in range(20):
        captions, _ = prompts.batch(state.cfg.batch_size)
        cond = bb.encode_prompts(captions)
        for name in method.schedule(state.cfg, it):
            method.steps[name](state, cond, None)
    h = hashlib.sha256()
    for _, p in sorted(state.generator.state_dict().items()):
        h.update(p.numpy().tobytes())
    return {"generator_sha256_after_20_iterations": h.hexdigest()}


TASKS = {"speed": _speed, "batching": _batching, "fingerprint": _fingerprint}
KNOBS = ("ATEN_CPU_CAPABILITY", "MKL_ENABLE_INSTRUCTIONS")


def _worker(task: str) -> dict:
    import gdmd  # noqa: F401  (fixes the mode before torch loads)
    from gdmd import numerics

    result = TASKS[task]()
    return {**result, "numerics": numerics.describe()}


def _spawn(task: str, mode: str, outside: dict | None = None) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in KNOBS}
    env.update(GDMD_NUMERICS=mode, PYTHONPATH=str(ROOT), **(outside or {}))
    r = subprocess.run([sys.executable, __file__, "--worker", task], env=env, capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit(f"{task} ({mode}) failed:\n{r.stderr[-3000:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=Path("benchmarks/results/numerics.json"))
    p.add_argument("--worker", choices=list(TASKS), help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        print(json.dumps(_worker(args.worker)))
        return

    sys.path.insert(0, str(ROOT))
    from gdmd.io import atomic_write_json, provenance

    result = {"speed": {}, "batching": {}, "fingerprint": {}}
    for mode in ("native", "pinned"):
        result["speed"][mode] = _spawn("speed", mode)
        result["batching"][mode] = _spawn("batching", mode)
        top = result["speed"][mode]["numerics"].get("torch_cpu_capability", "")
        for label, outside in (("machine_max", {}), ("avx2", {"ATEN_CPU_CAPABILITY": "avx2", "MKL_ENABLE_INSTRUCTIONS": "AVX2"})):
            result["fingerprint"][f"{mode}/{label}"] = _spawn("fingerprint", mode, outside)
        print(mode, top, json.dumps({k: v for k, v in result["speed"][mode].items() if k != "numerics"}), flush=True)
    s = result["speed"]
    result["pinned_over_native"] = {k: s["pinned"][k] / s["native"][k] for k in s["native"] if k != "numerics"}
    hashes = {k: v["generator_sha256_after_20_iterations"][:16] for k, v in result["fingerprint"].items()}
    result["summary"] = {"fingerprints": hashes, "pinned_identical": hashes["pinned/machine_max"] == hashes["pinned/avx2"]}
    atomic_write_json(args.out, {**result, **provenance()})
    print(json.dumps({"pinned_over_native": result["pinned_over_native"], **result["summary"]}, indent=1))


if __name__ == "__main__":
    main()
