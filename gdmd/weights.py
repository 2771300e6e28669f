"""Download an SD3-family teacher into the layout the study configs expect.

    python -m gdmd.weights sd3m --dest weights     # -> weights/sd3m   (config/sd3m.yaml)
    python -m gdmd.weights sd35m --dest weights    # -> weights/sd35m  (config/sd35m.yaml)
    python -m gdmd.weights sd35l --dest weights    # -> weights/sd35l  (config/sd35l.yaml)

    python -m gdmd.weights sd3m --dest weights --random   # a random-weight stand-in, offline

Run it on a machine with internet; configs never download. `--random` writes the same
layout without any download: the model's architecture at a small size with random weights
(gdmd.backbones.random_sd3.SMALL), for `make rehearsal`. The models are gated on the
Hugging Face Hub: accept each model's licence on its page, then log in (`hf auth login`,
or set HF_TOKEN). The diffusers-format files only (no single-file checkpoints) are fetched,
into a temporary directory renamed into place when complete.
"""

from __future__ import annotations

from pathlib import Path

from .io import CliParser, UserError, atomic_dir, run_cli

MODELS = {
    "sd3m": "stabilityai/stable-diffusion-3-medium-diffusers",
    "sd35m": "stabilityai/stable-diffusion-3.5-medium",
    "sd35l": "stabilityai/stable-diffusion-3.5-large",
}
# diffusers' pipeline layout (model_index.json, one folder per component)
PATTERNS = ["model_index.json", "scheduler/*", "transformer/*", "vae/*", "text_encoder/*", "text_encoder_2/*",
            "text_encoder_3/*", "tokenizer/*", "tokenizer_2/*", "tokenizer_3/*"]  # fmt: skip


def download(name: str, dest: Path, snapshot_download=None) -> Path:
    """`MODELS[name]` into `dest/name`; a gated or missing model fails with what to do."""
    if snapshot_download is None:
        from huggingface_hub import snapshot_download
    from huggingface_hub.errors import GatedRepoError, RepositoryNotFoundError

    repo, out = MODELS[name], dest / name
    if (out / "model_index.json").is_file():
        print(f"{out}: already there")
        return out
    try:
        with atomic_dir(out) as tmp:
            snapshot_download(repo_id=repo, local_dir=tmp, allow_patterns=PATTERNS)
    except GatedRepoError:
        raise UserError(
            f"{repo} is gated: accept its licence at https://huggingface.co/{repo}, then `hf auth login` (or set HF_TOKEN)"
        ) from None
    except RepositoryNotFoundError:
        raise UserError(f"{repo}: not found, or not visible without logging in (`hf auth login`)") from None
    print(f"wrote {out}")
    return out


def main(argv=None):
    p = CliParser(prog="python -m gdmd.weights", description=__doc__.splitlines()[0])
    p.add_argument("model", choices=sorted(MODELS))
    p.add_argument("--dest", type=Path, default=Path("weights"))
    p.add_argument("--random", action="store_true", help="a small random-weight stand-in of the model, offline")
    args = p.parse_args(argv)
    if args.random:
        from .backbones.random_sd3 import SMALL, save_random_pipeline

        with atomic_dir(args.dest / args.model) as tmp:
            save_random_pipeline(tmp, **SMALL[args.model])
        print(f"{args.dest / args.model}: random weights, {args.model}'s architecture at a small size")
        return
    download(args.model, args.dest)


if __name__ == "__main__":
    run_cli(main)
