from __future__ import annotations

import torch

from video.pooling import AdaptiveGridPooling, TemporalPoolingConfig, build_temporal_pooling


def test_mean_pooling_masked_and_order_blind():
    pool = build_temporal_pooling(TemporalPoolingConfig("mean"), 8)
    x = torch.randn(2, 5, 8)
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]], dtype=torch.bool)
    out = pool(x, mask)
    torch.testing.assert_close(out[0], x[0, :3].mean(0))
    torch.testing.assert_close(pool(x.flip(1)), pool(x))


def test_temporal_poolers_see_order_and_respect_mask():
    torch.manual_seed(0)
    x = torch.randn(2, 6, 16)
    for kind in ("seqtransf", "attention"):
        pool = build_temporal_pooling(TemporalPoolingConfig(kind, layers=1, heads=2), 16).eval()
        out = pool(x)
        assert out.shape == (2, 16)
        assert (pool(x.flip(1)) - out).abs().max() > 1e-4  # order-aware
        mask = torch.tensor([[1, 1, 1, 1, 0, 0]] * 2, dtype=torch.bool)
        y = x.clone()
        y[:, 4:] = 100.0  # padded frames must not matter
        torch.testing.assert_close(pool(y, mask), pool(x, mask), rtol=1e-5, atol=1e-5)


def test_adaptive_grid_pooling_matches_naive_block_means():
    x = torch.randn(2, 8, 4, 6, 3)
    out = AdaptiveGridPooling((4, 2, 3))(x)
    assert out.shape == (2, 4, 2, 3, 3)
    ref = x.reshape(2, 4, 2, 2, 2, 3, 2, 3).mean(dim=(2, 4, 6))
    torch.testing.assert_close(out, ref)
    assert AdaptiveGridPooling((None, 1, 1))(x).shape == (2, 8, 1, 1, 3)
