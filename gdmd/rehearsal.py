"""The cluster run rehearsed on one machine: a paper study's whole DAG on the local SLURM,
every asset a random-weight model in its official on-disk format.

    python -m gdmd.rehearsal --config config/rehearsal.yaml --work rehearsal     # `make rehearsal`

The study (config/rehearsal.yaml) is config/sd3m.yaml at other sizes only: the teacher's
shape, the image side, iterations, batches, a subset of GenEval's prompts and a small
caption file; every method, metric, rule and recipe key is sd3m's
(tests/unit/test_study.py checks it). The work directory is a miniature of a user's
project directory, and the run takes the user's path through it:

1. `prepare`: `config/` (a link to the project's), `weights/` written offline by
   `python -m gdmd.weights sd3m --random` (the SD3 pipeline directory) and
   `python -m eval.weights random` (GenEval's mmdet checkpoint, the colour CLIP, HPSv2.1,
   PickScore with its processor, ImageReward, the aesthetic MLP), GenEval's detector
   converted by `python -m eval.weights geneval-convert` as a user converts it,
   `data/train_prompts.txt` (its sha256 is the config's `captions_sha256`), and
   `profile/`: profiles/slurm with this machine's sizes (`derive_profile`).
2. `snakemake --profile profile --configfile config/rehearsal.yaml`: every non-local rule
   a job on the local SLURM (profiles/local-slurm/cluster.sh start), GPU rules asking
   for the fake GPUs as the cluster's ask for real ones.
3. one student exported by `python -m gdmd.export ... --verify`, which samples it with
   diffusers' StableDiffusion3Pipeline and `load_lora_weights` and checks the latents
   are ours; then Snakemake's HTML report.
4. `<work>/rehearsal.json`: the wall time of each phase, and every job's seconds and
   their sum per rule (from the DAG's benchmark files: the job's own command, without
   the queue and Snakemake's start in the job), for benchmarks/.

Where an official architecture is too big for a CPU, the stand-in keeps the official file
format and loading code at a smaller size: the open_clip models (the colour check's and
CLIPScore's ViT-L-14-quickgelu, HPSv2.1's ViT-H-14) are one small config under the real
names (eval/preference/offline.py TINY_CLIP, through GDMD_OPEN_CLIP_CONFIGS), GenEval's
Swin-S Mask2Former a Swin of width 16 in mmdet's layout (eval.weights.SMALL_MASK2FORMER),
PickScore a small transformers CLIP, ImageReward's BLIP a small one in its checkpoint's
names, the SD3 transformer and VAE gdmd.backbones.random_sd3.SMALL.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

from .io import CliParser, UserError, atomic_path, atomic_write_json, provenance, run_cli

ROOT = Path(__file__).resolve().parents[1]

# the training captions: GenEval-unlike scenes (GenEval's prompts are the evaluation set)
_SUBJECTS = ("a red fox", "an old bicycle", "two paper boats", "a glass teapot", "a wooden chair", "three green apples",
             "a sleeping cat", "a blue umbrella")  # fmt: skip
_PLACES = ("on a beach at dawn", "in a quiet library", "under heavy rain", "on a snowy mountain")
CAPTIONS = [f"{s} {p}" for s in _SUBJECTS for p in _PLACES]


def captions_text() -> str:
    return "".join(c + "\n" for c in CAPTIONS)


def derive_profile(source: Path, out: Path, mem_mb: int = 3000) -> dict:
    """The cluster profile `source` (profiles/slurm) with this machine's sizes, written to
    `out`/config.yaml: no account, the local partition (`debug`), GPUs without a model
    (the local GPUs are untyped), `mem_mb` per job (keeping a retry's `* attempt`), one
    thread per job, status checks from 2 s. Every other option (GPU counts, runtimes,
    retries, requeue, the USR1 warning) stays the cluster's. Returns the profile."""
    import yaml

    cfg = yaml.safe_load((source / "config.yaml").read_text())

    def local(resources: dict) -> dict:
        res = {k: v for k, v in resources.items() if k not in ("slurm_account", "gpu_model")}
        if "slurm_partition" in res:
            res["slurm_partition"] = "debug"
        if isinstance(res.get("mem_mb"), int):
            res["mem_mb"] = mem_mb
        elif "mem_mb" in res:  # an expression: `64000 * attempt`
            res["mem_mb"] = re.sub(r"^\s*\d+", str(mem_mb), res["mem_mb"])
        return res

    cfg["default-resources"] = local(cfg.get("default-resources", {}))
    cfg["set-resources"] = {rule: local(res) for rule, res in cfg.get("set-resources", {}).items()}
    cfg["set-threads"] = {rule: 1 for rule in cfg.get("set-threads", {})}
    cfg.update({"slurm-no-account": True, "slurm-status-command": "squeue", "slurm-init-seconds-before-status-checks": 2,
                "slurm-keep-successful-logs": True})  # fmt: skip
    out.mkdir(parents=True, exist_ok=True)
    with atomic_path(out / "config.yaml", ".yaml") as tmp:
        tmp.write_text(f"# derived from {source}/config.yaml by gdmd.rehearsal.derive_profile: this machine's sizes\n"
                       + yaml.safe_dump(cfg, sort_keys=False))  # fmt: skip
    return cfg


def study_config(config: Path) -> dict:
    from .config import read_yaml
    from .study import resolve

    return resolve(read_yaml(config), str(config))


def prepare(work: Path, config: Path) -> dict:
    """Step 1 (see the module docstring); what exists already is kept. Returns the
    environment the jobs need."""
    from eval import weights as eval_weights

    from . import weights as gdmd_weights

    work.mkdir(parents=True, exist_ok=True)
    link = work / "config"
    if not link.exists():
        link.symlink_to(ROOT / "config", target_is_directory=True)
    study = study_config(ROOT / config)
    teacher = work / study["assets"]["teacher"]
    if not (teacher / "model_index.json").is_file():
        gdmd_weights.main([teacher.name, "--dest", str(teacher.parent), "--random"])
    dest = work / "weights"
    configs = dest / "open_clip_configs"
    if not (dest / eval_weights.LAYOUT["mmdet"]).is_file():
        configs = eval_weights.write_random(dest)
    detector = work / study["geneval"]["detector_weights"]
    if not (detector / "config.json").is_file():
        eval_weights.main(["geneval-convert", "--mmdet", str(dest / eval_weights.LAYOUT["mmdet"]), "--out", str(detector)])
    missing = [f"{k}: {v}" for k, v in study["preference"]["weights"].items() if not (work / v).exists()]
    if missing:
        raise UserError(f"{config}: preference.weights not written by eval.weights random: {missing[0]}")
    for name, run in study["runs"].items():
        train = run.get("train") or {}
        if "captions" in train:
            path = work / train["captions"]
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(captions_text())
            got = hashlib.sha256(path.read_bytes()).hexdigest()
            if train.get("captions_sha256") != got:
                raise UserError(f"{config}: runs.{name}.train.captions_sha256 must be {got} (the rehearsal's caption file)")
    derive_profile(ROOT / "profiles" / "slurm", work / "profile")
    return {"GDMD_OPEN_CLIP_CONFIGS": str(configs.resolve()), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}


def _snakemake(work: Path, env: dict, *args: str) -> None:
    cmd = [str(Path(sys.executable).with_name("snakemake")), "-s", str(ROOT / "workflow" / "Snakefile"), "--directory", str(work),
           *args]  # fmt: skip
    print("+", " ".join(cmd), flush=True)
    r = subprocess.run(
        cmd, cwd=work, env={**os.environ, **env, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    )
    if r.returncode != 0:
        raise UserError(f"rehearsal: snakemake {' '.join(args)} failed (exit {r.returncode}); see {work}/.snakemake/log/")


def job_seconds(results: Path) -> dict[str, float]:
    """Every job's wall seconds from the DAG's benchmark files (`benchmarks/<rule>/...tsv`)."""
    out = {}
    for f in sorted((results / "benchmarks").rglob("*.tsv")):
        lines = f.read_text().splitlines()
        if len(lines) >= 2:
            out[str(f.relative_to(results / "benchmarks").with_suffix(""))] = float(lines[1].split("\t")[0])
    return out


def rehearse(work: Path, config: Path, export_run: str = "gdmd") -> dict:
    """Steps 1-4; returns the timings it writes to <work>/rehearsal.json."""
    times, t0 = {}, time.time()
    env = prepare(work, config)
    times["prepare"] = round(time.time() - t0, 1)
    cfg = str(config)
    t = time.time()
    _snakemake(work, env, "--profile", "profile", "--configfile", cfg)
    times["snakemake"] = round(time.time() - t, 1)
    study = study_config(ROOT / config)
    results = work / "results" / study["study"]
    seed = study["seeds"][0]
    t = time.time()
    rel = results.relative_to(work)
    export = [sys.executable, "-m", "gdmd.export", "--run-config", f"{rel}/runs/{export_run}.json", "--checkpoint",
              f"{rel}/train/{export_run}/seed{seed}/final", "--out", f"exports/{export_run}", "--device", "cpu",
              "--verify", "a photo of a cat"]  # fmt: skip
    print("+", " ".join(export), flush=True)
    if subprocess.run(export, cwd=work, env={**os.environ, **env}).returncode != 0:
        raise UserError(f"rehearsal: exporting {export_run} failed (see above)")
    times["export_and_verify"] = round(time.time() - t, 1)
    t = time.time()
    _snakemake(work, env, "--profile", "profile", "--configfile", cfg, "--report", str(results / "report.html"))
    times["report"] = round(time.time() - t, 1)
    times["total"] = round(time.time() - t0, 1)
    jobs = job_seconds(results)
    rules: dict[str, dict] = {}
    for name, sec in jobs.items():
        r = rules.setdefault(name.split("/")[0], {"jobs": 0, "total_s": 0.0, "max_s": 0.0})
        r["jobs"], r["total_s"], r["max_s"] = r["jobs"] + 1, round(r["total_s"] + sec, 2), max(r["max_s"], sec)
    summary = {"config": cfg, "phases_s": times, "rules_s": rules, "jobs_s": jobs, **provenance()}
    atomic_write_json(work / "rehearsal.json", summary)
    print(json.dumps(times))
    return summary


def main(argv=None):
    p = CliParser(prog="python -m gdmd.rehearsal", description=__doc__.splitlines()[0])
    p.add_argument(
        "--config", type=Path, default=Path("config/rehearsal.yaml"), help="the rehearsal study (relative to the project)"
    )
    p.add_argument("--work", type=Path, default=Path("rehearsal"), help="the work directory (a miniature project)")
    p.add_argument("--prepare-only", action="store_true", help="step 1 only: weights, captions, profile")
    args = p.parse_args(argv)
    work = args.work.resolve()
    if args.prepare_only:
        env = prepare(work, args.config)
        print(" ".join(f"{k}={v}" for k, v in env.items()))
        return
    rehearse(work, args.config)


if __name__ == "__main__":
    run_cli(main)
