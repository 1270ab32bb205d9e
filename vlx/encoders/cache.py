"""``FrozenTextCache``: run a frozen text encoder once per distinct sentence.

A frozen tower gives the same output for the same token ids every epoch, so recipes that
train on a fixed set of sentences (grounding expressions, QA questions, class prompts) need
not run it again. Rows are keyed by their real (unpadded) ids; a batch runs the encoder only
on the rows it has not seen, then rebuilds the padded ``EncoderOutput``. Written by hand:
neither transformers nor torch caches module outputs by input.

Real-token outputs do not depend on right padding (the attention mask hides it), so a row
cached from one batch is valid in any other; padded positions come back as zeros.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.rnn import pad_sequence

from vlx.encoders.base import EncoderOutput


class FrozenTextCache(nn.Module):
    """Wrap a frozen text ``encoder``; ``forward(input_ids (B, L), attention_mask (B, L))``
    returns its ``EncoderOutput`` (tokens ``(B, L, D)``, pooled ``(B, D)``, mask ``(B, L)``).

    At most ``max_entries`` sentences are kept (least recently used go first). The encoder is
    kept in eval mode and run without autograd; ``hits``/``misses`` count rows."""

    def __init__(self, encoder: nn.Module, max_entries: int = 50_000):
        super().__init__()
        if max_entries < 1:
            raise ValueError(f"max_entries must be >= 1, got {max_entries}")
        self.encoder = encoder
        self.output_dim = encoder.output_dim
        self.is_frozen = True
        encoder.requires_grad_(False)
        self.max_entries = max_entries
        self._cache: OrderedDict[tuple, tuple[torch.Tensor, torch.Tensor]] = OrderedDict()
        self.hits = self.misses = 0

    def train(self, mode: bool = True) -> FrozenTextCache:
        super().train(mode)
        self.encoder.eval()  # no dropout in a frozen tower
        return self

    def clear(self) -> None:
        self._cache.clear()

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> EncoderOutput:
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        real = attention_mask.bool()
        # One device -> host copy per batch: keys, lengths and the padding check all read it.
        host = torch.stack([input_ids, real.to(input_ids.dtype)]).cpu()
        ids_h, real_h = host[0], host[1].bool()
        if not bool((real_h[:, 1:] <= real_h[:, :-1]).all()):  # a real token after a pad
            raise ValueError("FrozenTextCache: padding must be on the right of each row")
        lengths = real_h.sum(1).tolist()
        rows_h = ids_h.tolist()
        keys = [tuple(r[:n]) for r, n in zip(rows_h, lengths)]
        missing = [b for b, k in enumerate(keys) if k not in self._cache]
        self.hits += len(keys) - len(missing)
        self.misses += len(missing)
        if missing:
            rows = torch.tensor(missing, device=input_ids.device)
            width = max(lengths[b] for b in missing)
            with torch.no_grad():
                out = self.encoder(input_ids[rows, :width], attention_mask[rows, :width])
            for k, b in enumerate(missing):
                self._cache[keys[b]] = (out.tokens[k, : lengths[b]].detach(), out.pooled[k].detach())
        toks, pooled = [], []
        for key in keys:
            tok, pool = self._cache[key]
            self._cache.move_to_end(key)
            toks.append(tok)
            pooled.append(pool)
        L = input_ids.shape[1]
        tokens = pad_sequence(toks, batch_first=True)  # (B, longest, D), zeros after each row
        tokens = F.pad(tokens, (0, 0, 0, L - tokens.shape[1]))
        while len(self._cache) > self.max_entries:
            self._cache.popitem(last=False)
        return EncoderOutput(pooled=torch.stack(pooled), tokens=tokens, mask=real)


def cache_if_frozen(encoder: nn.Module) -> nn.Module:
    """``FrozenTextCache(encoder)`` when the text tower was built frozen (``freeze: true``:
    ``freeze_module`` marks it ``is_frozen``), else the tower itself."""
    if getattr(encoder, "is_frozen", False) and not isinstance(encoder, FrozenTextCache):
        return FrozenTextCache(encoder)
    return encoder
