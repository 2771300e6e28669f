"""Parity of the real preference scorers with reference computations written here from the
original formulas and preprocessing, on tiny random-weight models saved in the official
checkpoint formats. Nothing is downloaded."""

import json
import math

import numpy as np
import open_clip
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from safetensors.torch import save_file
from torchvision import transforms as T

from eval.preference import SCORERS, get_scorer
from eval.preference.offline import (
    BERT_WORDS,
    aesthetic_mlp_state,
    char_clip_tokenizer,
    clip_bpe_tokenizer_files,
    imagereward_state,
    med_config,
    write_bert_vocab,
    write_open_clip_configs,
)

MEAN = (0.48145466, 0.4578275, 0.40821073)
STD = (0.26862954, 0.26130258, 0.27577711)
PROMPTS = ["a photo of a cat", "two red apples on a table", "a dog left of a bench"]


@pytest.fixture()
def images():
    rng = np.random.default_rng(0)
    return [rng.integers(0, 256, (40 + 8 * i, 48, 3), dtype=np.uint8) for i in range(3)]


@pytest.fixture()
def open_clip_registry(tmp_path, monkeypatch):
    """Tiny configs under the real architecture names, for this test only."""
    import open_clip.factory as factory

    saved = dict(factory._MODEL_CONFIGS)
    cfg_dir = write_open_clip_configs(tmp_path / "open_clip_configs")
    monkeypatch.setenv("GDMD_OPEN_CLIP_CONFIGS", str(cfg_dir))
    open_clip.add_model_config(cfg_dir)
    yield cfg_dir
    factory._MODEL_CONFIGS.clear()
    factory._MODEL_CONFIGS.update(saved)


def _ref_clip_features(model, tokenizer, pixels, prompts):
    with torch.no_grad():
        i = F.normalize(model.encode_image(pixels), dim=-1)
        t = F.normalize(model.encode_text(tokenizer(prompts)), dim=-1)
    return (i * t).sum(-1)


# -- HPSv2 / HPSv2.1 ---------------------------------------------------------------------


def _hpsv2_val_transform(size, antialias):
    """hpsv2.score's preprocessing, transcribed from tgxs002/HPSv2 (hpsv2/src/open_clip/
    transform.py, ResizeMaxSize with light_augmentation=True): ToTensor, the longest side
    to `size` on the tensor (bicubic, torchvision's antialias as given), zero pad (floor half
    left/top), normalise."""
    from torchvision.transforms import functional as TF

    def tf(im):
        x = T.ToTensor()(Image.fromarray(im))
        h, w = x.shape[1:]
        scale = size / float(max(h, w))
        nh, nw = (round(d * scale) for d in (h, w))
        x = TF.resize(x, (nh, nw), T.InterpolationMode.BICUBIC, antialias=antialias)
        ph, pw = size - nh, size - nw
        x = TF.pad(x, padding=[pw // 2, ph // 2, pw - pw // 2, ph - ph // 2], fill=0)
        return T.Normalize(MEAN, STD)(x)

    return tf


@pytest.mark.parametrize("name", ["hpsv2", "hpsv21", "hpsv2_noaa", "hpsv21_noaa"])
def test_hps_parity(open_clip_registry, tmp_path, images, name):
    """Non-square images of three sizes: longest side resized, short side padded (HPSv2's
    ResizeMaxSize), not the shorter side resized and cropped."""
    torch.manual_seed(1)
    model = open_clip.create_model("ViT-H-14")
    ckpt = tmp_path / "HPS.pt"
    torch.save({"state_dict": model.state_dict()}, ckpt)  # HPS checkpoints keep the weights under state_dict
    weights = {"hpsv2": str(ckpt), "hpsv21": str(ckpt)}
    scorer = get_scorer(name, weights)
    got = scorer.score(images, PROMPTS)
    tf = _hpsv2_val_transform(32, antialias=not name.endswith("_noaa"))
    pixels = torch.stack([tf(im) for im in images])
    want = 100 * _ref_clip_features(model.eval(), open_clip.get_tokenizer("ViT-H-14"), pixels, PROMPTS).numpy()
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-4)
    # the differentiable path on the same pixels gives the same scores
    x = torch.stack([T.ToTensor()(Image.fromarray(images[1]))])
    np.testing.assert_allclose(scorer.reward(x, PROMPTS[1:2]).detach().numpy(), got[1:2], rtol=0, atol=1e-4)
    # and the antialias choice matters (so the two variants are really two)
    other = get_scorer(name.removesuffix("_noaa") if name.endswith("_noaa") else name + "_noaa", weights).score(images, PROMPTS)
    assert np.abs(other - got).max() > 1e-3


# -- CLIPScore and aesthetic ----------------------------------------------------------------


def _openai_clip(tmp_path):
    torch.manual_seed(2)
    model = open_clip.create_model("ViT-L-14-quickgelu")
    path = tmp_path / "clip.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, path)
    tf = T.Compose(
        [T.Resize(32, interpolation=T.InterpolationMode.BICUBIC), T.CenterCrop(32), T.ToTensor(), T.Normalize(MEAN, STD)]
    )
    return model.eval(), path, tf


def test_clipscore_parity(open_clip_registry, tmp_path, images):
    model, path, tf = _openai_clip(tmp_path)
    got = get_scorer("clipscore", {"clip_l14": str(path)}).score(images, PROMPTS)
    pixels = torch.stack([tf(Image.fromarray(im).convert("RGB")) for im in images])
    cos = _ref_clip_features(model, open_clip.get_tokenizer("ViT-L-14-quickgelu"), pixels, PROMPTS)
    want = np.maximum(100 * cos.numpy(), 0)  # torchmetrics: max(100 * cos, 0)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-4)


def test_aesthetic_parity(open_clip_registry, tmp_path, images):
    model, path, tf = _openai_clip(tmp_path)
    state = aesthetic_mlp_state(16, torch.Generator().manual_seed(3))
    mlp = tmp_path / "sac+logos+ava1-l14-linearMSE.pth"
    torch.save(state, mlp)
    got = get_scorer("aesthetic", {"clip_l14": str(path), "aesthetic_mlp": str(mlp)}).score(images, PROMPTS)
    pixels = torch.stack([tf(Image.fromarray(im).convert("RGB")) for im in images])
    with torch.no_grad():
        x = F.normalize(model.encode_image(pixels), dim=-1)
        for i in [0, 2, 4, 6, 7]:  # the original MLP: linear layers, dropout between, no activations
            x = x @ state[f"layers.{i}.weight"].T + state[f"layers.{i}.bias"]
    np.testing.assert_allclose(got, x[:, 0].numpy(), rtol=0, atol=1e-4)


# -- PickScore ------------------------------------------------------------------------------


@pytest.mark.parametrize("processor_format", ["current", "laion"])
def test_pickscore_parity(tmp_path, images, processor_format):
    """`laion`: the processor directory as laion/CLIP-ViT-H-14-laion2B-s32B-b79K (PickScore's
    processor) ships it, sizes as ints in an old-format preprocessor_config.json, which
    transformers >= 5 reads into a SizeDict (the differentiable path once failed on it)."""
    from transformers import AutoProcessor, CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor

    tok, vocab = char_clip_tokenizer(tmp_path / "tok")
    cfg = CLIPConfig(
        text_config={"vocab_size": vocab, "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
                     "num_attention_heads": 2, "max_position_embeddings": 77, "bos_token_id": 0, "eos_token_id": 1},
        vision_config={"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2,
                       "image_size": 32, "patch_size": 8},
        projection_dim=16,
    )  # fmt: skip
    torch.manual_seed(4)
    model = CLIPModel(cfg).eval()
    with torch.no_grad():
        model.logit_scale.fill_(math.log(100.0))
    model.save_pretrained(tmp_path / "PickScore_v1")
    proc = CLIPProcessor(
        image_processor=CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}), tokenizer=tok
    )
    proc.save_pretrained(tmp_path / "processor")
    if processor_format == "laion":
        (tmp_path / "processor" / "preprocessor_config.json").write_text(json.dumps({
            "crop_size": 32, "do_center_crop": True, "do_normalize": True, "do_resize": True,
            "feature_extractor_type": "CLIPFeatureExtractor", "image_mean": list(MEAN), "image_std": list(STD),
            "resample": 3, "size": 32}))  # fmt: skip
        (tmp_path / "processor" / "config.json").write_text(json.dumps({"model_type": "clip"}))
        proc = AutoProcessor.from_pretrained(str(tmp_path / "processor"))
    scorer = get_scorer(
        "pickscore", {"pickscore": str(tmp_path / "PickScore_v1"), "pickscore_processor": str(tmp_path / "processor")}
    )
    got = scorer.score(images, PROMPTS)
    # the differentiable path on an image at the crop size (no resize on either path) agrees
    square = np.random.default_rng(1).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    x = torch.from_numpy(square).permute(2, 0, 1)[None].float() / 255
    np.testing.assert_allclose(scorer.reward(x, PROMPTS[:1]).numpy(), scorer.score([square], PROMPTS[:1]), rtol=0, atol=1e-4)
    # the PickScore model card's computation: processor, features, logit_scale.exp() * cos
    inputs = proc(images=[Image.fromarray(im) for im in images], text=PROMPTS, padding=True, truncation=True, max_length=77,
                  return_tensors="pt")  # fmt: skip
    with torch.no_grad():
        i = model.vision_model(pixel_values=inputs["pixel_values"]).pooler_output
        i = F.normalize(model.visual_projection(i), dim=-1)
        t = model.text_model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"]).pooler_output
        t = F.normalize(model.text_projection(t), dim=-1)
        want = (model.logit_scale.exp() * (i * t).sum(-1)).numpy()
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-4)


def test_clip_bpe_tokenizer_files_tokenize_as_open_clip(tmp_path):
    """The transformers-format CLIP tokenizer written offline (benchmarks/scorer_parity uses it
    for PickScore) gives open_clip's SimpleTokenizer ids, special tokens included."""
    from transformers import CLIPTokenizer

    tok = CLIPTokenizer.from_pretrained(str(clip_bpe_tokenizer_files(tmp_path / "tok")))
    ref = open_clip.get_tokenizer("ViT-L-14")
    for prompt in PROMPTS + ["A Photo of TWO red apples", "an astronaut riding a horse on mars"]:
        want = ref([prompt])[0]
        assert tok(prompt)["input_ids"] == want[want != 0].tolist(), prompt
    assert len(tok) == 49408


# -- ImageReward ----------------------------------------------------------------------------

DV, DT, HV, HT, PATCH, SIZE, LV, LT, VOCAB = 128, 24, 2, 2, 8, 32, 2, 2, 40  # HV = DV / 64, as BLIP's ViTs


def _ref_imagereward(sd, pixels, ids, mask):
    """ImageReward's forward written out from the BLIP ViT, BLIP's BERT (med.py) and the MLP."""

    def ln(x, p, eps):
        return F.layer_norm(x, x.shape[-1:], sd[p + ".weight"], sd[p + ".bias"], eps)

    def lin(x, p):
        return x @ sd[p + ".weight"].T + sd[p + ".bias"]

    def attend(q, k, v, heads, bias=None):
        b, lq, d = q.shape
        split = lambda x: x.view(b, x.shape[1], heads, d // heads).transpose(1, 2)  # noqa: E731
        s = split(q) @ split(k).transpose(-1, -2) / math.sqrt(d // heads)
        if bias is not None:
            s = s + bias
        return (s.softmax(-1) @ split(v)).transpose(1, 2).reshape(b, lq, d)

    v = "blip.visual_encoder."
    x = (
        F.conv2d(pixels, sd[v + "patch_embed.proj.weight"], sd[v + "patch_embed.proj.bias"], stride=PATCH)
        .flatten(2)
        .transpose(1, 2)
    )
    x = torch.cat([sd[v + "cls_token"].expand(len(x), -1, -1), x], 1) + sd[v + "pos_embed"]
    for i in range(LV):
        p = f"{v}blocks.{i}."
        h = ln(x, p + "norm1", 1e-6)
        q, k, val = lin(h, p + "attn.qkv").chunk(3, dim=-1)
        x = x + lin(attend(q, k, val, HV), p + "attn.proj")
        x = x + lin(F.gelu(lin(ln(x, p + "norm2", 1e-6), p + "mlp.fc1")), p + "mlp.fc2")
    img = ln(x, v + "norm", 1e-6)
    t = "blip.text_encoder."
    h = sd[t + "embeddings.word_embeddings.weight"][ids] + sd[t + "embeddings.position_embeddings.weight"][: ids.shape[1]]
    h = ln(h, t + "embeddings.LayerNorm", 1e-12)
    bias = (1.0 - mask[:, None, None, :].float()) * -10000.0
    for i in range(LT):
        p = f"{t}encoder.layer.{i}."
        a = attend(
            lin(h, p + "attention.self.query"), lin(h, p + "attention.self.key"), lin(h, p + "attention.self.value"), HT, bias
        )
        h = ln(lin(a, p + "attention.output.dense") + h, p + "attention.output.LayerNorm", 1e-12)
        c = attend(lin(h, p + "crossattention.self.query"), lin(img, p + "crossattention.self.key"),
                   lin(img, p + "crossattention.self.value"), HT)  # fmt: skip
        h = ln(lin(c, p + "crossattention.output.dense") + h, p + "crossattention.output.LayerNorm", 1e-12)
        f = lin(F.gelu(lin(h, p + "intermediate.dense")), p + "output.dense")
        h = ln(f + h, p + "output.LayerNorm", 1e-12)
    r = h[:, 0]
    for i in [0, 2, 4, 6, 7]:
        r = lin(r, f"mlp.layers.{i}")
    return ((r[:, 0] - 0.16717362830052426) / 1.0333394966054072).numpy()


@pytest.fixture()
def imagereward_files(tmp_path):
    sd = imagereward_state(DV, DT, PATCH, SIZE, LV, LT, VOCAB)
    torch.save(sd, tmp_path / "ImageReward.pt")
    (tmp_path / "med_config.json").write_text(json.dumps(med_config(DT, LT, VOCAB)))
    tok = write_bert_vocab(tmp_path / "bert")
    assert len(BERT_WORDS) < VOCAB
    weights = {"imagereward": str(tmp_path / "ImageReward.pt"), "imagereward_med_config": str(tmp_path / "med_config.json"),
               "bert_tokenizer": str(tok)}  # fmt: skip
    return sd, weights


def test_imagereward_parity(imagereward_files, images):
    from transformers import BertTokenizer

    sd, weights = imagereward_files
    got = get_scorer("imagereward", weights).score(images, PROMPTS)
    tok = BertTokenizer.from_pretrained(weights["bert_tokenizer"])
    tok.add_special_tokens({"bos_token": "[DEC]"})
    tok.add_special_tokens({"additional_special_tokens": ["[ENC]"]})
    t = tok(PROMPTS, padding="max_length", truncation=True, max_length=35, return_tensors="pt")
    tf = T.Compose(
        [T.Resize(SIZE, interpolation=T.InterpolationMode.BICUBIC), T.CenterCrop(SIZE), T.ToTensor(), T.Normalize(MEAN, STD)]
    )
    pixels = torch.stack([tf(Image.fromarray(im).convert("RGB")) for im in images])
    with torch.no_grad():
        want = _ref_imagereward(sd, pixels, t.input_ids, t.attention_mask)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-4)
    assert np.ptp(got) > 1e-3  # the images are told apart


# -- the differentiable path ----------------------------------------------------------------


def test_every_real_scorer_has_finite_nonzero_gradients(open_clip_registry, tmp_path, imagereward_files):
    torch.manual_seed(1)
    hps = tmp_path / "HPS.pt"
    torch.save({"state_dict": open_clip.create_model("ViT-H-14").state_dict()}, hps)
    _, clip_path, _ = _openai_clip(tmp_path)
    mlp = aesthetic_mlp_state(16, torch.Generator().manual_seed(6))
    torch.save(mlp, tmp_path / "mlp.pth")
    weights = {"hpsv2": str(hps), "hpsv21": str(hps), "clip_l14": str(clip_path), "aesthetic_mlp": str(tmp_path / "mlp.pth"),
               **imagereward_files[1]}  # fmt: skip
    for name in ["hpsv2", "hpsv21", "clipscore", "aesthetic", "imagereward"]:
        x = torch.rand(2, 3, 48, 40, requires_grad=True)
        get_scorer(name, weights).reward(x, PROMPTS[:2]).sum().backward()
        assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0, name


def test_registry_lists_every_scorer():
    assert set(SCORERS) >= {"hpsv2", "hpsv21", "pickscore", "imagereward", "clipscore", "aesthetic"}
