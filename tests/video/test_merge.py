"""ToMe correctness against naive references."""

from __future__ import annotations

import copy

import pytest
import torch

from video.merge import (
    apply_patch,
    bipartite_soft_matching,
    merge_wavg,
    parse_r,
    proportional_attention,
    temporal_merge,
    tome_modules,
)
from vlx.encoders.vit import VisionTransformer


def small_vit(**kw):
    torch.manual_seed(0)
    return VisionTransformer(image_size=64, patch_size=8, width=64, layers=4, heads=4, **kw).eval()


def naive_merge(x, metric, r, class_token=True):
    """Loop version of ToMe's matching + size-weighted average (sizes start at 1)."""
    B, N, D = x.shape
    outs, sizes = [], []
    for bi in range(B):
        m = metric[bi] / metric[bi].norm(dim=-1, keepdim=True)
        A, Bset = list(range(0, N, 2)), list(range(1, N, 2))
        best = []
        for ai in A:
            s = torch.stack([m[ai] @ m[bj] for bj in Bset])
            if class_token and ai == 0:
                s = torch.full_like(s, -float("inf"))
            best.append((s.max().item(), ai, Bset[int(s.argmax())]))
        order = sorted(best, key=lambda t: -t[0])
        merged = order[:r]
        acc = {bj: (x[bi, bj].clone(), 1.0) for bj in Bset}
        for _, ai, bj in merged:
            v, s = acc[bj]
            acc[bj] = (v + x[bi, ai], s + 1)
        kept = sorted(ai for _, ai, _ in order[r:])
        rows = [x[bi, ai] for ai in kept] + [acc[bj][0] / acc[bj][1] for bj in Bset]
        outs.append(torch.stack(rows))
        sizes.append(torch.tensor([1.0] * len(kept) + [acc[bj][1] for bj in Bset]))
    return torch.stack(outs), torch.stack(sizes)[..., None]


def test_bipartite_matching_matches_naive_loop():
    torch.manual_seed(1)
    x = torch.randn(3, 17, 8)
    metric = torch.randn(3, 17, 5)
    for r in (1, 4, 8):
        got, size = merge_wavg(bipartite_soft_matching(metric, r, class_token=True), x)
        ref, ref_size = naive_merge(x, metric, r)
        assert got.shape == (3, 17 - r, 8)
        torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(size, ref_size)
        torch.testing.assert_close(got[:, 0], x[:, 0])  # CLS untouched, still first


def test_proportional_attention_matches_naive_and_duplicates():
    torch.manual_seed(2)
    B, H, N, Dh = 2, 3, 6, 4
    q, k, v = (torch.randn(B, H, N, Dh) for _ in range(3))
    size = torch.tensor([[1.0, 2, 3, 1, 1, 4], [5, 1, 1, 2, 1, 1]])[..., None]
    got = proportional_attention(q, k, v, 0.5, size)
    logits = (q @ k.transpose(-1, -2)) * 0.5 + size[:, None, None, :, 0].log()
    ref = logits.softmax(-1) @ v
    torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-6)
    # A key of size s acts exactly like s identical copies of it.
    reps = size[0, :, 0].long()
    k_dup, v_dup = k[:1].repeat_interleave(reps, dim=2), v[:1].repeat_interleave(reps, dim=2)
    dup = torch.nn.functional.scaled_dot_product_attention(q[:1], k_dup, v_dup, scale=0.5)
    torch.testing.assert_close(got[:1], dup, rtol=1e-5, atol=1e-6)


def test_r0_equals_unmerged_model():
    vit = small_vit()
    ref = copy.deepcopy(vit)
    apply_patch(vit, r=0)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(vit.forward_features(x), ref.forward_features(x), rtol=1e-5, atol=1e-5)
    assert type(vit).__name__.startswith("ToMe")


def test_sizes_sum_to_input_count_and_tokens_shrink():
    vit = small_vit()
    apply_patch(vit, r=8)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        out = vit(x)
    assert out.tokens.shape == (2, 1 + 64 - 4 * 8, 64)
    size = vit._tome_info["size"]
    assert size.shape == (2, 33, 1)
    torch.testing.assert_close(size.sum(dim=(1, 2)), torch.full((2,), 65.0))
    assert size[:, 0].eq(1).all()  # CLS never merged
    vit.r = [16, 8, 0, 0]  # per-layer schedule; capped at half the tokens
    with torch.no_grad():
        out = vit(x)
    assert out.tokens.shape[1] == 65 - 24


def test_patch_hf_clip_vision_r0_and_sizes():
    from transformers import CLIPVisionConfig, CLIPVisionModel

    torch.manual_seed(0)
    cfg = CLIPVisionConfig(
        hidden_size=32, intermediate_size=64, num_hidden_layers=3, num_attention_heads=4, image_size=32, patch_size=8
    )
    model = CLIPVisionModel(cfg).eval()
    ref = copy.deepcopy(model)
    apply_patch(model, r=0)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(
            model(pixel_values=x).pooler_output, ref(pixel_values=x).pooler_output, rtol=1e-4, atol=1e-5
        )
        (tower,) = tome_modules(model)
        tower.r = 4
        out = model(pixel_values=x)
    assert out.last_hidden_state.shape == (2, 17 - 12, 32)
    assert tower._tome_info["size"].sum(dim=(1, 2)).tolist() == [17.0, 17.0]


def test_temporal_merge():
    torch.manual_seed(3)
    B, T, N, D = 2, 4, 9, 8
    x = torch.randn(B, T, N, D)
    x[:, 1] = x[:, 0]  # frame 1 repeats frame 0: merging it loses nothing
    out, size = temporal_merge(x, r=N, class_token=False)
    assert out.shape == (B, 2, N, D) and size.shape == (B, 2, N, 1)
    torch.testing.assert_close(out[:, 0], x[:, 0])
    assert size[:, 0].eq(2).all()
    out, size = temporal_merge(x, r=3, class_token=False)
    assert out.shape == (B, 2, 2 * N - 3, D)
    torch.testing.assert_close(size.sum(dim=(2, 3)), torch.full((B, 2), 2.0 * N))
    # weighted mean of the merged token values equals the mean of the inputs (mass conserved)
    torch.testing.assert_close((out * size).sum(2), x.reshape(B, 2, 2 * N, D).sum(2), rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="even"):
        temporal_merge(x[:, :3], 2, class_token=False)  # odd T: refused, as the docstring says
    with pytest.raises(TypeError):
        temporal_merge(x, 2)  # whether token 0 is a CLS must be said


def naive_temporal(x, r, cls):
    """Loop version of temporal_merge from its definition (sizes start at 1)."""
    B, T, N, D = x.shape
    out = []
    for b in range(B):
        pairs = []
        for k in range(0, T, 2):
            e, l = x[b, k], x[b, k + 1]
            en, ln = e / e.norm(dim=-1, keepdim=True), l / l.norm(dim=-1, keepdim=True)
            cand = []
            for i in range(int(cls), N):
                sims = [(float(ln[i] @ en[j]), j) for j in range(int(cls), N)]
                s, j = max(sims)
                cand.append((s, i, j))
            cand.sort(key=lambda t: -t[0])
            acc = {j: [e[j].clone(), 1.0] for j in range(N)}
            for _, i, j in cand[:r]:
                acc[j][0] += l[i]
                acc[j][1] += 1
            kept = sorted(set(range(N)) - {i for _, i, _ in cand[:r]})
            pairs.append(torch.stack([acc[j][0] / acc[j][1] for j in range(N)] + [l[i] for i in kept]))
        out.append(torch.stack(pairs))
    return torch.stack(out)


@pytest.mark.parametrize("r", [1, 5, 8])
def test_temporal_merge_protects_each_frames_cls(r):
    torch.manual_seed(4)
    B, T, N, D = 2, 4, 9, 8
    x = torch.randn(B, T, N, D)
    # the later frames' CLS copies a patch of the earlier frame, and an earlier CLS equals a
    # later patch: unprotected, both would be the first pairs merged
    x[:, 1, 0] = x[:, 0, 3]
    x[:, 2, 0] = x[:, 3, 5]
    out, size = temporal_merge(x, r=r, class_token=True)
    M = 2 * N - r
    assert out.shape == (B, 2, M, D)
    torch.testing.assert_close(out[:, :, 0], x[:, 0::2, 0])  # earlier CLS untouched
    torch.testing.assert_close(out[:, :, N], x[:, 1::2, 0])  # later CLS kept, first of the kept
    assert size[:, :, 0].eq(1).all() and size[:, :, N].eq(1).all()
    torch.testing.assert_close(out, naive_temporal(x, r, cls=True), rtol=1e-5, atol=1e-5)
    # without protection the planted CLS pair is merged
    out_unprot, size_unprot = temporal_merge(x, r=1, class_token=False)
    assert size_unprot[:, 0, 3].eq(2).all()
    # r is capped at the N - 1 patches
    assert temporal_merge(x, r=100, class_token=True)[0].shape == (B, 2, N + 1, D)


def test_parse_r_follows_tome():
    # worked out from ToMe's definition: lo = int(r (1 - inflection)), hi = 2 r - lo,
    # layer i gets int(lo + (hi - lo) i / (L - 1))
    assert parse_r(12, 8) == [8] * 12
    assert parse_r(12, (8, 0.0)) == [8] * 12
    assert parse_r(12, (8, -1.0)) == [16, 14, 13, 11, 10, 8, 7, 5, 4, 2, 1, 0]
    assert parse_r(12, (8, 1.0)) == [0, 1, 2, 4, 5, 7, 8, 10, 11, 13, 14, 16]
    assert parse_r(12, (8, -0.5)) == [12, 11, 10, 9, 9, 8, 7, 6, 6, 5, 4, 4]
    assert parse_r(4, [3, 1]) == [3, 1, 0, 0]
    for bad in ((8, -2.0), (8,), (8.0, 0.0), 8.5, -1, [1, -1], True):
        with pytest.raises((TypeError, ValueError)):
            parse_r(12, bad)


@pytest.mark.parametrize("r,kept", [(8, 197 - 96), ((8, -1.0), 106), ((8, 1.0), 106), ([16, 8], 197 - 24)])
def test_vit_b16_token_counts_match_tome(r, kept):
    """A 12-layer, 224 px, patch-16 ViT (ViT-B/16's token grid, narrow): ToMe keeps 106
    tokens with (8, -1.0) (197 - 91), 101 with r=8."""
    torch.manual_seed(0)
    vit = VisionTransformer(image_size=224, patch_size=16, width=32, layers=12, heads=2).eval()
    apply_patch(vit, r=r)
    with torch.no_grad():
        out = vit(torch.randn(1, 3, 224, 224))
    assert out.tokens.shape[1] == kept
    assert vit._tome_info["size"].sum().item() == 197


def test_apply_patch_rejects_malformed_r():
    with pytest.raises(ValueError, match="inflection"):
        apply_patch(small_vit(), r=(8, -2.0))
