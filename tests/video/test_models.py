from __future__ import annotations

import pytest
import torch

from video.models.captioner import LMConfig, LoraSettings, VideoCaptionerConfig, build_video_captioner
from video.models.video_clip import VideoCLIPConfig, build_video_clip
from video.pooling import TemporalPoolingConfig
from vlx.encoders import EncoderConfig
from vlx.models.dual_encoder import DualEncoderConfig

TINY_LM = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=2)


def clip_model(kind: str):
    torch.manual_seed(0)
    cfg = VideoCLIPConfig(
        dual=DualEncoderConfig(
            image=EncoderConfig("vit", "tiny"), text=EncoderConfig("transformer", "tiny"), embed_dim=32
        ),
        pooling=TemporalPoolingConfig(kind, layers=1, heads=2),
    )
    return build_video_clip(cfg).eval()


def test_video_clip_order_awareness_and_features_path():
    frames = torch.randint(0, 256, (3, 6, 32, 32, 3), dtype=torch.uint8)
    for kind, order_aware in (("mean", False), ("seqtransf", True), ("attention", True)):
        m = clip_model(kind)
        with torch.no_grad():
            v = m.encode_video(frames)
            flipped = m.encode_video(frames.flip(1))
        assert v.shape == (3, 32)
        torch.testing.assert_close(v.norm(dim=-1), torch.ones(3))
        assert ((v - flipped).abs().max() > 1e-3) == order_aware, kind
    # cached image-tower features give the same video embedding as pixels
    from video.io import frames_to_model
    from vlx.data.transforms import IMAGE_MEAN, IMAGE_STD

    with torch.no_grad():
        feats = m.dual.image_encoder(frames_to_model(frames, IMAGE_MEAN, IMAGE_STD).flatten(0, 1)).pooled.view(3, 6, -1)
        torch.testing.assert_close(m.encode_video(feats), v, rtol=1e-4, atol=1e-5)


def test_video_clip_loss_with_several_captions_per_video():
    m = clip_model("seqtransf").train()
    frames = torch.randint(0, 256, (4, 4, 32, 32, 3), dtype=torch.uint8)
    batch = {
        "frames": frames,
        "input_ids": torch.randint(5, 200, (4, 7)),
        "attention_mask": torch.ones(4, 7, dtype=torch.long),
        "ids": torch.tensor([0, 0, 1, 2]),
    }
    out = m(batch)
    out["loss"].backward()
    assert torch.isfinite(out["loss"]) and m.pooling.pos.grad is not None
    # rows 0 and 1 show the same video: with ids they are positives, so the loss differs
    batch2 = dict(batch, ids=torch.arange(4))
    assert abs(float(m(batch2)["loss"].detach()) - float(out["loss"].detach())) > 1e-4


@pytest.fixture(scope="module")
def tiny_lm_dir(tmp_path_factory):
    from video.models.captioner import build_tiny_lm

    corpus = ["the red square moves left, then the blue circle moves right", "what moves? a cat a dog"]
    return str(build_tiny_lm(tmp_path_factory.mktemp("lm") / "tiny_lm", TINY_LM, corpus))


def captioner(lm_dir, lora=False):
    torch.manual_seed(0)
    cfg = VideoCaptionerConfig(
        vision=EncoderConfig("vit", "tiny"),
        pool_size=[2, 2, 2],
        lm=LMConfig(path=lm_dir, lora=LoraSettings(enabled=lora, r=4, alpha=8, dropout=0.0)),
    )
    return build_video_captioner(cfg)


def test_captioner_targets_mask_prompt_and_padding(tiny_lm_dir):
    m = captioner(tiny_lm_dir)
    b = m.make_targets(["what moves?", ""], ["the red square", "blue"])
    tok = m.tokenizer
    row0 = b["input_ids"][0][b["attention_mask"][0].bool()].tolist()
    assert row0[0] == m.bos_id and row0[-1] == m.eos_id
    n_prompt = 1 + len(tok("what moves?", add_special_tokens=False)["input_ids"])
    assert (b["labels"][0, :n_prompt] == -100).all()
    assert b["labels"][0, n_prompt : len(row0)].tolist() == row0[n_prompt:]
    assert (b["labels"][1][b["attention_mask"][1] == 0] == -100).all()
    assert tok.decode(tok("The red square, then", add_special_tokens=False)["input_ids"]) == "the red square , then"
    assert tok("zebra", add_special_tokens=False)["input_ids"] == [tok.unk_token_id]
    assert m.visual_tokens(torch.zeros(2, 4, 32, 32, 3, dtype=torch.uint8)).shape == (2, 8, 32)


def test_captioner_overfits_two_clips_and_decodes_them(tiny_lm_dir):
    """Teacher forcing works end to end: after a short fit greedy decoding reproduces each
    clip's caption (the two differ only after their common prefix)."""
    m = captioner(tiny_lm_dir).train()
    torch.manual_seed(1)
    frames = torch.zeros(2, 4, 32, 32, 3, dtype=torch.uint8)
    frames[0, :, :, :16] = 255  # left half lit
    frames[1, :, :, 16:] = 255  # right half lit
    caps = ["the red square moves left", "the red square moves right"]
    batch = {"frames": frames, **m.make_targets(["", ""], caps)}
    opt = torch.optim.AdamW([p for p in m.parameters() if p.requires_grad], lr=1e-2)
    for _ in range(100):
        loss = m(batch)["loss"]
        loss.backward()
        opt.step()
        opt.zero_grad()
    m.eval()
    assert float(loss) < 0.2
    assert m.generate(frames) == caps
    assert m.generate(frames, num_beams=2) == caps
    short = m.generate(frames, max_new_tokens=2)
    assert short == ["the red", "the red"]
    sampled = m.generate(frames, do_sample=True, temperature=0.7, top_p=0.9)
    assert all(isinstance(s, str) and s for s in sampled)


def test_lora_trains_adapters_only(tiny_lm_dir):
    m = captioner(tiny_lm_dir, lora=True)
    trainable = {n for n, p in m.named_parameters() if p.requires_grad}
    lm_trainable = {n for n in trainable if n.startswith("lm.")}
    assert lm_trainable and all("lora_" in n for n in lm_trainable)
    assert any(n.startswith("projector.") for n in trainable) and any(n.startswith("vision.") for n in trainable)
    base = {n: p.detach().clone() for n, p in m.lm.named_parameters() if "lora_" not in n}
    batch = {
        "frames": torch.randint(0, 256, (2, 4, 32, 32, 3), dtype=torch.uint8),
        **m.make_targets(["", ""], ["a cat", "a dog"]),
    }
    opt = torch.optim.SGD([p for p in m.parameters() if p.requires_grad], lr=0.5)
    m(batch)["loss"].backward()
    opt.step()
    assert all(torch.equal(p, base[n]) for n, p in m.lm.named_parameters() if "lora_" not in n)
    assert len(m.generate(batch["frames"], max_new_tokens=3)) == 2


def test_captioner_cls_tokens_and_vision_init(tiny_lm_dir, tmp_path):
    """use_cls appends one token per frame; vision_init loads a retrieval tower's weights."""
    from safetensors.torch import save_file

    from vlx.data.errors import DataError

    src = clip_model("mean")
    save_file({k: v.contiguous() for k, v in src.state_dict().items()}, str(tmp_path / "model.safetensors"))
    cfg = VideoCaptionerConfig(
        vision=EncoderConfig("vit", "tiny"),
        pool_size=[2, 2, 2],
        use_cls=True,
        vision_init=str(tmp_path / "model.safetensors"),
        lm=LMConfig(path=tiny_lm_dir),
    )
    m = build_video_captioner(cfg)
    assert m.visual_tokens(torch.zeros(2, 4, 32, 32, 3, dtype=torch.uint8)).shape == (2, 8 + 4, 32)
    torch.testing.assert_close(m.vision.pos_embed, src.dual.image_encoder.pos_embed)
    cfg.vision_init_prefix = "nothing."
    with pytest.raises(DataError, match="no weights under the prefix 'nothing.'"):
        build_video_captioner(cfg)


def test_captioner_visual_pos_embed_marks_each_token_slot(tiny_lm_dir):
    """visual_pos_embed: identical frames give the same visual tokens in every frame without it
    (a token's frame is only implicit in its sequence position), distinct tokens per (t, h, w) slot
    and per frame CLS with it; the embeddings are trained by the caption loss."""
    frames = torch.full((2, 4, 32, 32, 3), 128, dtype=torch.uint8)
    base = VideoCaptionerConfig(
        vision=EncoderConfig("vit", "tiny"), pool_size=[4, 2, 2], use_cls=True, lm=LMConfig(path=tiny_lm_dir)
    )
    with torch.no_grad():
        plain = build_video_captioner(base).visual_tokens(frames)
    assert plain.shape == (2, 16 + 4, 32)
    cells = plain[:, :16].reshape(2, 4, 4, 32)  # (B, t, h*w, D): a cell looks the same in every frame
    torch.testing.assert_close(cells, cells[:, :1].expand(-1, 4, -1, -1))
    torch.testing.assert_close(plain[:, 16:], plain[:, 16:17].expand(-1, 4, -1))  # and so do the CLS tokens
    base.visual_pos_embed = True
    m = build_video_captioner(base)
    assert m.visual_pos.shape == (1, 20, 32)
    with torch.no_grad():
        vis = m.visual_tokens(frames)
    assert vis.shape == (2, 20, 32)
    d = torch.cdist(vis[0], vis[0])
    assert d[~torch.eye(20, dtype=torch.bool)].min() > 1e-3  # every slot distinct
    torch.testing.assert_close(vis[0], vis[1])  # same frames, same tokens
    m(dict(frames=frames, **m.make_targets(["", ""], ["the red square", "the blue circle"])))["loss"].backward()
    assert m.visual_pos.grad is not None and m.visual_pos.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="visual_pos_embed: 22 visual tokens"):  # 6 frames vs t = 4
        m.visual_tokens(torch.zeros(1, 6, 32, 32, 3, dtype=torch.uint8))
