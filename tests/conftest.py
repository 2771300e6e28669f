"""Shared fixtures: tiny random-weight shapes assets built from config dicts and saved to a temp dir.

Nothing here downloads anything; the real loading code (open_clip local-dir,
diffusers from_pretrained) reads these files back.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

# gdmd before torch (test modules import torch after this file): fixes the numerics mode
import gdmd  # noqa: F401

ROOT = Path(__file__).resolve().parents[1]
# GenEval's prompt files as the package ships them (eval/geneval/data/)
GENEVAL_DATA = ROOT / "eval" / "geneval" / "data"

TINY_SD3 = dict(
    sample_size=32,
    patch_size=4,
    in_channels=3,
    out_channels=3,
    num_layers=1,
    attention_head_dim=16,
    num_attention_heads=2,
    joint_attention_dim=128,
    caption_projection_dim=32,
    pooled_projection_dim=64,
    pos_embed_max_size=8,
)


@pytest.fixture(scope="session")
def tiny_assets(tmp_path_factory):
    """Random shapes CLIP, aesthetic head and SD3 teacher, saved like the real assets."""
    import torch

    from gdmd.backbones.shapes import ShapesBackbone, save_teacher
    from gdmd.shapes import clip as shapes_clip

    root = tmp_path_factory.mktemp("assets")
    torch.manual_seed(0)
    shapes_clip.save_clip(shapes_clip.build_clip(), shapes_clip.ShapesTokenizer.default(), root / "clip")
    shapes_clip.save_aesthetic(shapes_clip.AestheticHead(64), root / "aesthetic")
    backbone = ShapesBackbone(root / "clip", arch="sd3")
    save_teacher(backbone.build(TINY_SD3), backbone, root / "teacher", info={"note": "random tiny teacher for tests"})
    return root


def run_cli(*args, cwd=None, env=None, timeout=600):
    """Run `python -m ...` as a user would; returns the CompletedProcess."""
    e = dict(os.environ, PYTHONPATH=str(ROOT), **(env or {}))
    return subprocess.run(
        [sys.executable, "-m", *map(str, args)], cwd=cwd, env=e, capture_output=True, text=True, timeout=timeout
    )


@pytest.fixture(scope="session")
def tiny_sd3(tmp_path_factory):
    """A tiny random-weight SD3 pipeline directory (gdmd.backbones.random_sd3: transformer, VAE,
    two CLIP text encoders and a T5 with tokenizers built offline, saved with save_pretrained)."""
    from gdmd.backbones.random_sd3 import TINY, save_random_pipeline

    return save_random_pipeline(tmp_path_factory.mktemp("sd3") / "pipeline", **TINY)


@pytest.fixture(scope="session")
def smoke(tmp_path_factory):
    """The smoke study (config/smoke.yaml), run once locally through the DAG, for the DAG
    tests and as the SLURM tests' reference."""
    from .integration.test_dag import _copy_project, snakemake

    work = _copy_project(tmp_path_factory.mktemp("smoke"))
    r = snakemake(work, "--cores", "2", "--configfile", "config/smoke.yaml")
    assert r.returncode == 0, (r.stdout + r.stderr)[-5000:]
    return work
