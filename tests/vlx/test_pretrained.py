"""Users' own checkpoints through open_clip's API: a tiny random CLIPModel and SiglipModel saved
with save_pretrained (with non-default image processors and their tokenizers) give the same
logits as the HF model fed by the HF processor and tokenizer; presets keep vlx's defaults; bad
directories are one-line errors."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

import vlx
from tests.vlx._hf_ckpt import save_tiny_clip, save_tiny_siglip
from vlx.config import ConfigError
from vlx.data.transforms import pil_to_tensor
from vlx.models import DualEncoderConfig, build_dual_encoder
from vlx.models.clip import CLIP

TEXTS = [
    "a photo of the cat",
    "a red circle",
    "a blue square on the left and a big green triangle above the car",
    "dog",
]


def images():
    rs = np.random.RandomState(0)
    sizes = [(48, 96), (70, 33), (20, 25), (32, 32)]  # non-square, one smaller than the crop
    out = [Image.fromarray(rs.randint(0, 255, (h, w, 3), dtype=np.uint8)) for h, w in sizes]
    out.append(Image.fromarray(rs.randint(0, 255, (40, 60), dtype=np.uint8)))  # greyscale
    return out


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory):
    root = tmp_path_factory.mktemp("ckpts")
    return {"clip": save_tiny_clip(root / "clip"), "siglip": save_tiny_siglip(root / "siglip")}


def hf_pipeline(path, kind, imgs, texts):
    from transformers import AutoImageProcessor, AutoModel, AutoTokenizer

    model = AutoModel.from_pretrained(str(path)).eval()
    tok = AutoTokenizer.from_pretrained(str(path))
    proc = AutoImageProcessor.from_pretrained(str(path))
    # SigLIP's documented usage pads to the max length; CLIP's pads to the longest text.
    enc = tok(texts, padding="max_length" if kind == "siglip" else True, return_tensors="pt")
    pixels = proc(imgs, return_tensors="pt")["pixel_values"]
    return model, enc, pixels


@pytest.mark.parametrize("kind", ["clip", "siglip"])
@torch.no_grad()
def test_logits_equal_the_hf_model_on_pil_images_and_raw_strings(ckpts, kind):
    imgs = images()
    model, pre_train, pre_val = vlx.create_model_and_transforms(ckpts[kind])
    tok = vlx.get_tokenizer(ckpts[kind])
    ours, ours_t = model.get_logits(pre_val.batch(imgs), tok(TEXTS))
    hf, enc, pixels = hf_pipeline(ckpts[kind], kind, imgs, TEXTS)
    ref = hf(**enc, pixel_values=pixels)
    assert ours.shape == (len(imgs), len(TEXTS))
    assert torch.allclose(ours, ref.logits_per_image, atol=1e-4), (ours - ref.logits_per_image).abs().max()
    assert torch.allclose(ours_t, ref.logits_per_text, atol=1e-4)
    # the transform alone equals the HF processor's tensors (resize, crop, mean/std)
    assert torch.allclose(pre_val.batch(imgs), pixels, atol=1e-5)
    assert pre_train(imgs[0]).shape == pixels.shape[1:]
    # unnormalised features are the checkpoint's projections, not new random ones
    hf_feats = hf.get_image_features(pixel_values=pixels).pooler_output
    assert torch.allclose(model.encode_image(pixels), hf_feats, atol=1e-5)
    # the scale (and SigLIP's bias) are the checkpoint's, exposed as open_clip does
    assert isinstance(model.logit_scale, torch.nn.Parameter)
    assert model.logit_scale.item() == pytest.approx(hf.logit_scale.item())
    if kind == "siglip":
        assert model.logit_bias.item() == pytest.approx(hf.logit_bias.item()) == pytest.approx(-4.0)
    else:
        assert model.logit_bias is None


def test_tokenizer_keeps_the_checkpoints_length_padding_and_end_token(ckpts):
    long = " ".join(["cat"] * 200)
    clip = vlx.get_tokenizer(ckpts["clip"])
    t = clip([long, "dog"])
    assert t["input_ids"].shape == (2, 77) and clip.max_length == 77
    eot = clip.tokenizer.eos_token_id
    assert t["input_ids"][0, -1] == eot  # truncated with the end token kept
    assert t["attention_mask"][1].sum() == 3  # <start> dog <end>, right padding
    sig = vlx.get_tokenizer(ckpts["siglip"])
    s = sig(["dog", long])
    assert s["input_ids"].shape == (2, 64)  # always padded to 64, as SigLIP trains
    assert s["input_ids"][0, :2].tolist() == [sig.tokenizer.convert_tokens_to_ids("▁dog"), 1]
    assert s["input_ids"][1, -1] == 1 and sig.tokenizer.padding_side == "right"


@torch.no_grad()
def test_recipes_name_or_path_builds_the_same_model(ckpts):
    dual = build_dual_encoder(DualEncoderConfig(name_or_path=str(ckpts["siglip"]))).eval()
    model, _, pre = vlx.create_model_and_transforms(ckpts["siglip"])
    tok = vlx.get_tokenizer(ckpts["siglip"])(TEXTS)
    x = pre.batch(images())
    assert torch.allclose(dual.encode_image(x), model.encode_image(x, normalize=True), atol=1e-6)
    assert torch.allclose(dual.encode_text(tok["input_ids"], tok["attention_mask"]), model.encode_text(tok, True))
    out = dual(x, tok["input_ids"], tok["attention_mask"])
    assert out.logit_bias is not None and out.logit_scale.item() == pytest.approx(np.exp(2.3), rel=1e-6)


@torch.no_grad()
def test_presets_keep_vlx_defaults():
    assert {"tiny", "B-32", "B-16"} <= set(vlx.list_models())
    model, _, pre = vlx.create_model_and_transforms("tiny", embed_dim=48)
    assert isinstance(model, CLIP) and model.kind == "preset" and model.logit_bias is None
    img = images()[0]
    assert torch.allclose(pre(img), pil_to_tensor(img, 32), atol=1e-6)  # vlx's own direct resize + CLIP mean/std
    tok = vlx.get_tokenizer("tiny")
    assert tok.max_length == 32
    feats = model.encode_text(tok(TEXTS))
    assert feats.shape == (4, 48) and not torch.allclose(feats.norm(dim=-1), torch.ones(4))
    assert torch.allclose(model.encode_text(tok(TEXTS), normalize=True).norm(dim=-1), torch.ones(4))
    assert model.logit_scale.exp().item() == pytest.approx(1 / 0.07, rel=1e-5)
    _, _, pre64 = vlx.create_model_and_transforms("tiny", image_size=64, image_mean=[0.5] * 3, image_std=[0.5] * 3)
    assert pre64(img).shape == (3, 64, 64) and pre64.mean == (0.5, 0.5, 0.5)


def _one_line(excinfo) -> str:
    msg = str(excinfo.value)
    assert "\n" not in msg
    return msg


def test_bad_checkpoints_are_one_line_errors(ckpts, tmp_path):
    bert = tmp_path / "bert"
    bert.mkdir()
    (bert / "config.json").write_text(json.dumps({"model_type": "bert"}))
    (bert / "model.safetensors").write_bytes(b"")
    with pytest.raises(ConfigError) as e:
        vlx.create_model_and_transforms(bert)
    assert "'bert' is not a CLIP or SigLIP checkpoint" in _one_line(e)
    with pytest.raises(ConfigError) as e:
        vlx.get_tokenizer(bert)
    assert "CLIP or SigLIP" in _one_line(e)
    noproc = tmp_path / "noproc"
    noproc.mkdir()
    for f in ckpts["clip"].iterdir():
        if f.name != "preprocessor_config.json":
            (noproc / f.name).write_bytes(f.read_bytes())
    with pytest.raises(ConfigError) as e:
        vlx.create_model_and_transforms(noproc)
    assert "preprocessor_config.json: not found" in _one_line(e)
    with pytest.raises(ConfigError) as e:
        vlx.create_model_and_transforms(tmp_path / "nowhere")
    assert "neither a vlx preset" in _one_line(e) and "tiny" in str(e.value)
    with pytest.raises(ConfigError) as e:
        vlx.create_model_and_transforms(ckpts["clip"], embed_dim=8)
    assert "cannot be overridden" in _one_line(e)
    with pytest.raises(ConfigError) as e:
        vlx.create_model_and_transforms("tiny", bogus=1)
    assert "unknown override 'bogus'" in _one_line(e)
