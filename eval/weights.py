"""Download evaluator weights into the documented local layout (on a machine with internet).

    python -m eval.weights geneval --dest weights      # GenEval's Mask2Former (official + converted), CLIP ViT-L/14
    python -m eval.weights geneval-convert --mmdet official.pth --out DIR   # convert a local official checkpoint
    python -m eval.weights preference --dest weights   # HPSv2/2.1, PickScore, ImageReward, aesthetic, CLIP
    python -m eval.weights hps-prompts --dest data     # HPSv2's benchmark prompts (4 styles x 800)
    python -m eval.weights list --dest weights         # what is there, what is missing
    python -m eval.weights random --dest DIR           # random-weight stand-ins, offline (the rehearsal)

Layout under --dest (the study configs point at these paths):

    geneval/mmdet/mask2former_swin-s-p4-w7-224_lsj_8x2_50e_coco.pth   GenEval's official mmdet checkpoint
    geneval/mask2former-swin-s-geneval/             the same weights converted for transformers (default backend)
    clip/ViT-L-14-quickgelu-openai.bin              open_clip OpenAI weights (colour check, CLIPScore, aesthetic)
    preference/HPS_v2_compressed.pt, preference/HPS_v2.1_compressed.pt
    preference/PickScore_v1/                        transformers CLIPModel
    preference/CLIP-ViT-H-14-laion2B-s32B-b79K/     its processor (PickScore's preprocessing)
    preference/ImageReward/ImageReward.pt, preference/ImageReward/med_config.json
    preference/bert-base-uncased/                   BLIP's tokenizer files
    preference/sac+logos+ava1-l14-linearMSE.pth     LAION aesthetic MLP

Evaluators only ever read these local paths; tests never download. `random` writes the
same layout offline with random weights in each official file format, at sizes a CPU runs
in seconds, for `make rehearsal` (gdmd.rehearsal): GenEval's detector is a small Swin
Mask2Former in mmdet's checkpoint layout (convert it with `geneval-convert`, as a user
does), and the open_clip models (ViT-L-14-quickgelu, ViT-H-14) use small configs under
their real names, in `open_clip_configs/`: set GDMD_OPEN_CLIP_CONFIGS to that directory.
"""

from __future__ import annotations

import json
import shutil
import urllib.request
from pathlib import Path

from gdmd.io import CliParser, UserError, atomic_dir, atomic_path, run_cli

# the checkpoint GenEval's evaluation/download_models.sh fetches (djghosh13/geneval at af4902f):
# mmdet 2.x's release of Mask2Former Swin-S on COCO instance segmentation
MMDET_URL = (
    "https://download.openmmlab.com/mmdetection/v2.0/mask2former/mask2former_swin-s-p4-w7-224_lsj_8x2_50e_coco/"
    "mask2former_swin-s-p4-w7-224_lsj_8x2_50e_coco_20220504_001756-743b7d99.pth"
)

AESTHETIC_URL = "https://github.com/christophschuhmann/improved-aesthetic-predictor/raw/main/sac+logos+ava1-l14-linearMSE.pth"
HPS_PROMPT_FILES = ("anime.json", "concept-art.json", "paintings.json", "photo.json")  # dataset zhwang/HPDv2, benchmark/

LAYOUT = {
    "mask2former": Path("geneval/mask2former-swin-s-geneval"),
    "mmdet": Path("geneval/mmdet/mask2former_swin-s-p4-w7-224_lsj_8x2_50e_coco.pth"),
    "clip_l14": Path("clip/ViT-L-14-quickgelu-openai.bin"),
    "hpsv2": Path("preference/HPS_v2_compressed.pt"),
    "hpsv21": Path("preference/HPS_v2.1_compressed.pt"),
    "pickscore": Path("preference/PickScore_v1"),
    "pickscore_processor": Path("preference/CLIP-ViT-H-14-laion2B-s32B-b79K"),
    "imagereward": Path("preference/ImageReward/ImageReward.pt"),
    "imagereward_med_config": Path("preference/ImageReward/med_config.json"),
    "bert_tokenizer": Path("preference/bert-base-uncased"),
    "aesthetic_mlp": Path("preference/sac+logos+ava1-l14-linearMSE.pth"),
}


def download_geneval(dest: Path) -> None:
    """GenEval's official checkpoint, and the same weights converted for the transformers backend."""
    from .geneval.convert import convert_checkpoint

    official = dest / LAYOUT["mmdet"]
    with atomic_path(official, ".pth") as tmp:
        urllib.request.urlretrieve(MMDET_URL, tmp)
    convert_checkpoint(official, dest / LAYOUT["mask2former"])
    download_clip_l14(dest)


def download_clip_l14(dest: Path) -> None:
    from open_clip.pretrained import download_pretrained, get_pretrained_cfg

    cached = download_pretrained(get_pretrained_cfg("ViT-L-14-quickgelu", "openai"), cache_dir=str(dest / ".cache"))
    with atomic_path(dest / LAYOUT["clip_l14"], ".bin") as tmp:
        shutil.copyfile(cached, tmp)


def _hf_file(repo: str, name: str, target: Path, repo_type: str | None = None) -> None:
    from huggingface_hub import hf_hub_download

    cached = hf_hub_download(repo, name, repo_type=repo_type)
    with atomic_path(target, target.suffix) as tmp:
        shutil.copyfile(cached, tmp)


def download_preference(dest: Path) -> None:
    from huggingface_hub import snapshot_download

    _hf_file("xswu/HPSv2", "HPS_v2_compressed.pt", dest / LAYOUT["hpsv2"])
    _hf_file("xswu/HPSv2", "HPS_v2.1_compressed.pt", dest / LAYOUT["hpsv21"])
    snapshot_download(
        "yuvalkirstain/PickScore_v1", local_dir=dest / LAYOUT["pickscore"], allow_patterns=["*.json", "*.safetensors"]
    )
    snapshot_download(
        "laion/CLIP-ViT-H-14-laion2B-s32B-b79K", local_dir=dest / LAYOUT["pickscore_processor"],
        allow_patterns=["*.json", "*.txt", "merges.txt", "vocab.json"], ignore_patterns=["*config.json.bak"],
    )  # fmt: skip
    _hf_file("THUDM/ImageReward", "ImageReward.pt", dest / LAYOUT["imagereward"])
    _hf_file("THUDM/ImageReward", "med_config.json", dest / LAYOUT["imagereward_med_config"])
    snapshot_download(
        "bert-base-uncased", local_dir=dest / LAYOUT["bert_tokenizer"], allow_patterns=["vocab.txt", "tokenizer_config.json"]
    )
    with atomic_path(dest / LAYOUT["aesthetic_mlp"], ".pth") as tmp:
        urllib.request.urlretrieve(AESTHETIC_URL, tmp)
    download_clip_l14(dest)


def download_hps_prompts(dest: Path) -> None:
    for name in HPS_PROMPT_FILES:
        _hf_file("zhwang/HPDv2", f"benchmark/{name}", dest / "hpsv2" / "benchmark" / name, repo_type="dataset")


# GenEval's detector in the rehearsal: the official layout at these sizes (eval.geneval.convert)
SMALL_MASK2FORMER = dict(
    swin=dict(embed_dim=16, depths=[1, 1, 1, 1], num_heads=[1, 1, 2, 2], window_size=7, mlp_ratio=2.0),
    encoder_layers=1, decoder_layers=2, num_queries=100, hidden=32, encoder_ffn=64, decoder_ffn=64,
)  # fmt: skip


def write_random(dest: Path, seed: int = 0) -> Path:
    """Random-weight stand-ins of every file in LAYOUT but the converted detector, offline;
    returns the directory of the small open_clip configs (for GDMD_OPEN_CLIP_CONFIGS)."""
    import open_clip
    import torch
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor, CLIPTokenizer

    from .geneval.convert import random_mmdet_state
    from .preference import offline

    configs = offline.write_open_clip_configs(dest / "open_clip_configs")
    open_clip.add_model_config(configs)
    torch.manual_seed(seed)

    def save(obj, rel: Path) -> None:
        with atomic_path(dest / rel, rel.suffix) as tmp:
            torch.save(obj, tmp)

    detector = random_mmdet_state(SMALL_MASK2FORMER, seed)
    # a class head 50x the random scale: peaked class probabilities, so that the random detector
    # finds objects above GenEval's thresholds and the judge's rules and the colour check run
    detector["panoptic_head.cls_embed.weight"] *= 50
    save({"state_dict": detector, "meta": {"note": "random weights (rehearsal)"}}, LAYOUT["mmdet"])
    clip = open_clip.create_model("ViT-L-14-quickgelu")
    save(clip.state_dict(), LAYOUT["clip_l14"])
    for name in ("hpsv2", "hpsv21"):  # HPS checkpoints keep the weights under state_dict
        save({"state_dict": open_clip.create_model("ViT-H-14").state_dict()}, LAYOUT[name])
    save(offline.aesthetic_mlp_state(clip.text_projection.shape[1], torch.Generator().manual_seed(seed)), LAYOUT["aesthetic_mlp"])
    save(offline.imagereward_state(seed=seed), LAYOUT["imagereward"])
    with atomic_path(dest / LAYOUT["imagereward_med_config"], ".json") as tmp:
        tmp.write_text(json.dumps(offline.med_config()))
    with atomic_dir(dest / LAYOUT["bert_tokenizer"]) as tmp:
        offline.write_bert_vocab(tmp)
    # PickScore: a transformers CLIPModel and, as laion's repository ships it, CLIP's BPE tokenizer
    # with its image processor (at the small model's image size)
    with atomic_dir(dest / LAYOUT["pickscore_processor"]) as tmp:
        tokenizer = CLIPTokenizer.from_pretrained(str(offline.clip_bpe_tokenizer_files(tmp / "tokenizer")))
        image = CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
        CLIPProcessor(image_processor=image, tokenizer=tokenizer).save_pretrained(tmp)
        shutil.rmtree(tmp / "tokenizer")
    config = CLIPConfig(
        text_config={"vocab_size": len(tokenizer), "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
                     "num_attention_heads": 2, "max_position_embeddings": 77},
        vision_config={"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2,
                       "image_size": 32, "patch_size": 8},
        projection_dim=16,
    )  # fmt: skip
    with atomic_dir(dest / LAYOUT["pickscore"]) as tmp:
        CLIPModel(config).save_pretrained(tmp)
    return configs


def main(argv=None):
    p = CliParser(prog="python -m eval.weights", description=__doc__.splitlines()[0])
    p.add_argument("what", choices=("geneval", "geneval-convert", "preference", "hps-prompts", "list", "random"))
    p.add_argument("--dest", type=Path, default=Path("weights"))
    p.add_argument("--mmdet", type=Path, help="geneval-convert: the official mmdet checkpoint (.pth)")
    p.add_argument("--out", type=Path, help=f"geneval-convert: output directory (default DEST/{LAYOUT['mask2former']})")
    args = p.parse_args(argv)
    if args.what == "list":
        for name, rel in LAYOUT.items():
            path = args.dest / rel
            print(f"{'ok     ' if path.exists() else 'missing'} {name:12s} {path}")
        return
    if args.what == "random":
        configs = write_random(args.dest)
        print(f"random-weight evaluators in {args.dest}; set GDMD_OPEN_CLIP_CONFIGS={configs} where they are used")
        return
    if args.what == "geneval-convert":
        from .geneval.convert import convert_checkpoint

        if args.mmdet is None:
            raise UserError("geneval-convert needs --mmdet <official checkpoint .pth>")
        out = convert_checkpoint(args.mmdet, args.out or args.dest / LAYOUT["mask2former"])
        print(f"converted {args.mmdet} -> {out}")
        return
    fetch = {"geneval": download_geneval, "preference": download_preference, "hps-prompts": download_hps_prompts}[args.what]
    try:
        fetch(args.dest)
    except OSError as e:
        raise UserError(f"download failed ({e}); run this on a machine with internet access") from None
    print(f"{args.what} files in {args.dest}")


if __name__ == "__main__":
    run_cli(main)
