import pytest
import torch

from vlx.encoders import EncoderConfig, FrozenTextCache, build_text_encoder


def tiny_text(dropout: float = 0.0):
    torch.manual_seed(0)
    return build_text_encoder(EncoderConfig(name="transformer", preset="tiny", kwargs={"vocab_size": 50}))


def batch(rows, width):
    ids = torch.zeros(len(rows), width, dtype=torch.long)
    mask = torch.zeros(len(rows), width, dtype=torch.long)
    for b, r in enumerate(rows):
        ids[b, : len(r)] = torch.tensor(r)
        mask[b, : len(r)] = 1
    return ids, mask


def test_cached_outputs_equal_the_encoder_in_any_batch_and_padding():
    enc = tiny_text().eval()
    cache = FrozenTextCache(enc)
    rows = [[1, 5, 7, 2], [1, 9, 2], [1, 4, 4, 4, 8, 2]]
    ids, mask = batch(rows, 8)
    first = cache(ids, mask)
    assert cache.misses == 3 and cache.hits == 0
    # The same sentences again, in another order and padded wider: all hits, same numbers.
    ids2, mask2 = batch([rows[2], rows[0], [1, 3, 2], rows[1]], 10)
    second = cache(ids2, mask2)
    assert cache.hits == 3 and cache.misses == 4
    with torch.no_grad():
        ref = enc(ids2, mask2)
    real = mask2.bool()
    assert torch.allclose(second.tokens[real], ref.tokens[real], atol=1e-5)
    assert torch.allclose(second.pooled, ref.pooled, atol=1e-5)
    assert torch.equal(second.tokens[~real], torch.zeros_like(second.tokens[~real]))
    assert torch.allclose(first.pooled[0], second.pooled[1]) and second.tokens.shape == (4, 10, enc.output_dim)
    assert not second.pooled.requires_grad


def test_frozen_tower_stays_in_eval_mode_and_the_cache_is_bounded():
    enc = tiny_text()
    cache = FrozenTextCache(enc, max_entries=2)
    cache.train()
    assert not enc.training and cache.training
    assert not any(p.requires_grad for p in enc.parameters())
    for r in ([1, 2], [1, 3, 2], [1, 4, 2]):
        cache(*batch([r], 4))
    assert len(cache._cache) == 2 and (1, 2) not in cache._cache  # least recently used went first
    with pytest.raises(ValueError, match="right"):
        cache(torch.tensor([[0, 1, 2]]), torch.tensor([[0, 1, 1]]))
    with pytest.raises(ValueError, match="max_entries"):
        FrozenTextCache(enc, max_entries=0)


def test_cache_if_frozen_wraps_only_frozen_towers_once():
    from vlx.encoders import cache_if_frozen

    live = tiny_text()
    assert cache_if_frozen(live) is live
    frozen = build_text_encoder(
        EncoderConfig(name="transformer", preset="tiny", freeze=True, kwargs={"vocab_size": 50})
    )
    wrapped = cache_if_frozen(frozen)
    assert isinstance(wrapped, FrozenTextCache) and wrapped.encoder is frozen
    assert cache_if_frozen(wrapped) is wrapped


class CountsHostReads(torch.Tensor):
    """Stands in for a tensor on an accelerator: counts every read back to the host (each one
    a device synchronisation there); ``.cpu()`` hands back a plain tensor."""

    reads = 0

    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        name = getattr(func, "__name__", "")
        if name in ("cpu", "tolist", "item", "__bool__", "numpy", "__int__", "__float__"):
            cls.reads += 1
            if name == "cpu":
                return args[0].as_subclass(torch.Tensor).clone()
        return super().__torch_function__(func, types, args, kwargs or {})


def test_cache_reads_each_batch_back_once():
    cache = FrozenTextCache(tiny_text().eval())
    rows = [[1, 5, 7, 2], [1, 9, 2], [1, 4, 4, 4, 8, 2], [1, 3, 2]]
    ids, mask = batch(rows, 8)
    first = cache(ids, mask)  # fills the cache
    CountsHostReads.reads = 0
    again = cache(ids.as_subclass(CountsHostReads), mask.as_subclass(CountsHostReads))
    assert CountsHostReads.reads == 1  # one .cpu() of the batch, not one .tolist() per row
    assert cache.hits == 4 and torch.equal(again.pooled.as_subclass(torch.Tensor), first.pooled)


def test_text_mask_is_not_read_back_off_the_cpu():
    """On an accelerator (here the meta device) the attention mask is never read on the host:
    bidirectional text gets its mask, causal right-padded text the fused path."""
    enc = tiny_text()
    mask = torch.tensor([[1, 1, 1], [1, 1, 0]], device="meta")
    keep = enc._attn_mask(mask, 3)
    assert keep is not None and keep.shape == (2, 1, 1, 3) and keep.device.type == "meta"
    enc.causal = True
    assert enc._attn_mask(mask, 3) is None
    # on the CPU the exact checks stay: an unpadded batch takes the fused path
    enc.causal = False
    assert enc._attn_mask(torch.ones(2, 3, dtype=torch.long), 3) is None
