"""ViT / text transformer: shapes, attention against a naive reference, masking, presets."""

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from vlx.config import ConfigError
from vlx.encoders import (
    Attention,
    Block,
    EncoderConfig,
    EncoderOutput,
    TextTransformer,
    VisionTransformer,
    build_image_encoder,
    build_text_encoder,
)
from vlx.encoders.vit import VIT_PRESETS


def naive_attention(attn: Attention, x, keep=None):
    """softmax(q k^T * scale) v written out with explicit loops over heads."""
    B, L, D = x.shape
    H, Dh = attn.num_heads, D // attn.num_heads
    qkv = x @ attn.qkv.weight.T + attn.qkv.bias
    q, k, v = qkv[..., :D], qkv[..., D : 2 * D], qkv[..., 2 * D :]
    outs = []
    for h in range(H):
        sl = slice(h * Dh, (h + 1) * Dh)
        scores = q[..., sl] @ k[..., sl].transpose(1, 2) * attn.scale  # (B, L, L)
        if keep is not None:
            scores = scores.masked_fill(~keep, float("-inf"))
        outs.append(scores.softmax(-1) @ v[..., sl])
    return torch.cat(outs, -1) @ attn.proj.weight.T + attn.proj.bias


def test_attention_matches_naive_reference_with_padding_and_causal_masks():
    torch.manual_seed(0)
    attn = Attention(16, 4).eval()
    x = torch.randn(3, 5, 16)
    assert torch.allclose(attn(x), naive_attention(attn, x), atol=1e-5)
    pad = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0], [1, 0, 0, 0, 0]]).bool()
    keep = pad[:, None, :].expand(3, 5, 5)
    assert torch.allclose(attn(x, attn_mask=pad[:, None, None, :]), naive_attention(attn, x, keep), atol=1e-5)
    causal = torch.ones(5, 5).tril().bool()
    assert torch.allclose(attn(x, is_causal=True), naive_attention(attn, x, causal.expand(3, 5, 5)), atol=1e-5)


def test_block_has_timm_layout_and_forward():
    """ToMe patches rely on these names; Block = x + attn(norm1 x); x + mlp(norm2 x)."""
    torch.manual_seed(0)
    vit = VisionTransformer(**VIT_PRESETS["tiny"]).eval()
    blk = vit.blocks[0]
    assert isinstance(vit.patch_embed, nn.Conv2d) and isinstance(vit.blocks, nn.ModuleList)
    assert isinstance(blk.attn, Attention) and blk.attn.num_heads == 2
    assert blk.attn.qkv.in_features == 64 and blk.attn.qkv.out_features == 192
    assert isinstance(blk.attn.proj, nn.Linear) and math.isclose(blk.attn.scale, 32**-0.5)
    x = torch.randn(2, 17, 64)
    y = x + blk.attn(blk.norm1(x))
    assert torch.allclose(blk(x), y + blk.mlp(blk.norm2(y)), atol=1e-6)
    # Class swapping (how ToMe applies itself) takes effect in forward.
    calls = []

    class Recording(Block):
        def forward(self, x, attn_mask=None, is_causal=False):
            calls.append(x.shape)
            return super().forward(x, attn_mask, is_causal)

    for b in vit.blocks:
        b.__class__ = Recording
    vit(torch.randn(1, 3, 32, 32))
    assert calls == [torch.Size([1, 17, 64])] * 2


def test_vit_tiny_shapes_cls_first_and_manual_forward():
    torch.manual_seed(0)
    vit = build_image_encoder(EncoderConfig(name="vit", preset="tiny")).eval()
    images = torch.randn(2, 3, 32, 32)
    out = vit(images)
    assert isinstance(out, EncoderOutput) and out.mask is None
    assert out.tokens.shape == (2, 17, 64) and out.pooled.shape == (2, 64) and vit.output_dim == 64
    assert torch.equal(out.pooled, out.tokens[:, 0])
    # The same computation by hand: patches via unfold + matmul instead of the conv.
    patches = F.unfold(images, kernel_size=8, stride=8).transpose(1, 2)  # (B, 16, 3*8*8)
    x = patches @ vit.patch_embed.weight.reshape(64, -1).T + vit.patch_embed.bias
    x = torch.cat([vit.cls_token.expand(2, -1, -1), x], 1) + vit.pos_embed
    for blk in vit.blocks:
        x = blk(x)
    assert torch.allclose(vit.norm(x), out.tokens, atol=1e-5)
    assert torch.equal(vit.forward_features(images), out.tokens)


def test_vit_depth_input_mean_pool_and_other_image_size():
    torch.manual_seed(0)
    vit = build_image_encoder(
        EncoderConfig(name="vit", preset="tiny", kwargs={"in_channels": 1, "pool": "mean"})
    ).eval()
    out = vit(torch.randn(2, 1, 32, 32))
    assert torch.allclose(out.pooled, out.tokens[:, 1:].mean(1))
    big = vit(torch.randn(2, 1, 64, 48))  # 8x6 grid: interpolated position embeddings
    assert big.tokens.shape == (2, 1 + 8 * 6, 64) and torch.isfinite(big.tokens).all()
    # Interpolating to the trained grid size changes nothing.
    same = F.interpolate(vit.pos_embed[:, 1:].reshape(1, 4, 4, 64).permute(0, 3, 1, 2), size=(4, 4), mode="bicubic")
    assert torch.allclose(same.permute(0, 2, 3, 1).reshape(1, 16, 64), vit._pos_embed_for(4, 4)[:, 1:], atol=1e-6)
    with pytest.raises(ValueError, match=r"\(B, 1, H, W\)"):
        vit(torch.randn(2, 3, 32, 32))


@pytest.mark.parametrize("pool,causal", [("mean", False), ("cls", False), ("eot", True), ("mean", True)])
def test_text_padding_does_not_change_real_tokens(pool, causal):
    torch.manual_seed(0)
    enc = TextTransformer(
        vocab_size=50, context_length=12, width=32, layers=2, heads=4, causal=causal, pool=pool
    ).eval()
    ids = torch.randint(1, 50, (1, 5))
    alone = enc(ids, torch.ones_like(ids))
    padded_ids = torch.cat([ids, torch.zeros(1, 4, dtype=torch.long)], 1)
    mask = torch.tensor([[1] * 5 + [0] * 4])
    padded = enc(padded_ids, mask)
    assert torch.allclose(padded.pooled, alone.pooled, atol=1e-5)
    assert torch.allclose(padded.tokens[:, :5], alone.tokens, atol=1e-5)
    assert padded.mask.dtype == torch.bool and padded.mask.tolist() == [[True] * 5 + [False] * 4]
    if pool == "eot":
        assert torch.equal(alone.pooled, alone.tokens[:, 4])


def test_text_causal_tokens_ignore_the_future_and_bidirectional_ones_do_not():
    torch.manual_seed(0)
    ids = torch.randint(1, 50, (1, 6))
    changed = ids.clone()
    changed[0, -1] = (ids[0, -1] % 49) + 1
    for causal in (True, False):
        enc = TextTransformer(vocab_size=50, context_length=8, width=32, layers=2, heads=2, causal=causal).eval()
        a, b = enc(ids).tokens, enc(changed).tokens
        assert torch.allclose(a[:, :5], b[:, :5], atol=1e-6) == causal
    with pytest.raises(ValueError, match="context_length 8"):
        enc(torch.ones(1, 9, dtype=torch.long))


def test_presets_aliases_and_config_errors():
    a = build_image_encoder(EncoderConfig(name="vit", preset="B-32", kwargs={"layers": 1}))
    assert a.output_dim == 768 and a.patch_size == 32 and len(a.blocks) == 1 and a.patch_embed.bias is None
    t = build_text_encoder(EncoderConfig(name="transformer", preset="tiny"))
    assert t.vocab_size == 30522 and t.output_dim == 64
    with pytest.raises(ConfigError, match="unknown preset 'huge'.*tiny"):
        build_image_encoder(EncoderConfig(name="vit", preset="huge"))
    with pytest.raises(ConfigError, match="widht"):
        build_image_encoder(EncoderConfig(name="vit", preset="tiny", kwargs={"widht": 3}))
    with pytest.raises(ConfigError, match="'vitt' is not registered.*vit"):
        build_image_encoder(EncoderConfig(name="vitt"))
    with pytest.raises(ConfigError, match="not a multiple"):
        build_image_encoder(EncoderConfig(name="vit", preset="tiny", kwargs={"patch_size": 7}))


def test_freeze_stops_gradients():
    enc = build_text_encoder(EncoderConfig(name="transformer", preset="tiny", freeze=True))
    assert enc.is_frozen and not any(p.requires_grad for p in enc.parameters())
    enc2 = build_text_encoder(EncoderConfig(name="transformer", preset="tiny"))
    assert all(p.requires_grad for p in enc2.parameters())


def test_causal_fast_path_equals_explicit_mask_on_real_tokens():
    """Causal + right padding skips the mask (SDPA's causal kernel); any other padding uses it.
    Reference: the blocks run with the full explicit (padding & causal) mask."""
    torch.manual_seed(0)
    enc = TextTransformer(vocab_size=50, context_length=8, width=32, layers=2, heads=4, causal=True, pool="mean").eval()
    ids = torch.randint(1, 50, (3, 6))
    masks = torch.tensor([[1, 1, 1, 1, 0, 0], [1, 1, 1, 1, 1, 1], [1, 1, 0, 1, 1, 0]])

    def reference(ids, m):
        keep = m.bool()[:, None, None, :] & torch.ones(6, 6, dtype=torch.bool).tril()
        keep = keep | torch.eye(6, dtype=torch.bool)  # pad rows attend to themselves: no NaN
        x = enc.token_embedding(ids) + enc.pos_embed[:, :6]
        for blk in enc.blocks:
            x = blk(x, attn_mask=keep)
        return enc.norm(x)

    assert enc._attn_mask(masks[:2], 6) is None and enc._attn_mask(masks, 6) is not None
    for m in (masks[:2], masks):
        out, ref = enc(ids[: len(m)], m), reference(ids[: len(m)], m)
        real = m.bool()
        assert torch.allclose(out.tokens[real], ref[real], atol=1e-5)
