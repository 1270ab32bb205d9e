"""FILIP's token-wise late interaction (Yao et al. 2021, "FILIP: Fine-grained Interactive
Language-Image Pre-Training"): the similarity of a pair is the mean over one side's tokens of
each token's best match on the other side, then InfoNCE both ways.

Under torch.distributed each rank scores only its own rows against the gathered columns (the
paper's N x N x La x Lb similarity on every rank is ~4.5 GB in bf16 at 8 x 256), column chunk
by column chunk under activation checkpointing, so memory is one chunk's
n x chunk x La x Lb; the loss value and gradients equal the full version's (see
vlx/losses/clip.py for the convention)."""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

from vlx.losses.clip import gather_batch, host_all_reduce_max, local_rows_loss, shard_sizes, world


def pad_tokens_across_ranks(
    tokens: torch.Tensor, mask: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Pad (N, L, E) tokens (zeros) and their (N, L) mask (False) to the longest L of any rank,
    so the all-gather works when each rank's batch was padded to its own longest caption.
    A no-op when not distributed or when every rank has the same L. The lengths are host ints,
    exchanged on the CPU (no device sync)."""
    _, ws = world()
    if ws == 1:
        return tokens, mask
    extra = host_all_reduce_max(tokens.shape[1]) - tokens.shape[1]
    if extra == 0:
        return tokens, mask
    if mask is None:
        mask = torch.ones(tokens.shape[:2], dtype=torch.bool, device=tokens.device)
    return F.pad(tokens, (0, 0, 0, extra)), F.pad(mask.bool(), (0, extra), value=False)


def _full_mask(x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    return torch.ones(x.shape[:2], dtype=torch.bool, device=x.device) if mask is None else mask.bool()


def late_scores(q: torch.Tensor, k: torch.Tensor, q_mask: torch.Tensor, k_mask: torch.Tensor) -> torch.Tensor:
    """One direction of late interaction, in float32 (at least) with autocast off.

    q (Nq, Lq, E), k (Nk, Lk, E), masks bool (True = real token) -> (Nq, Nk): mean over valid
    tokens of q_i of the max over valid tokens of k_j of their dot product."""
    dtype = torch.promote_types(q.dtype, torch.float32)
    with torch.autocast(q.device.type, enabled=False):
        sim = torch.einsum("ike,jle->ijkl", q.to(dtype), k.to(dtype))  # (Nq, Nk, Lq, Lk)
        # padded k tokens must never be the max; padded q tokens do not enter the mean
        best = sim.masked_fill(~k_mask[None, :, None, :], torch.finfo(dtype).min).amax(dim=3)  # (Nq, Nk, Lq)
        return (best * q_mask[:, None, :]).sum(-1) / q_mask.sum(-1).clamp(min=1)[:, None]


def token_max_similarity(
    a: torch.Tensor, b: torch.Tensor, a_mask: torch.Tensor | None = None, b_mask: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Late-interaction scores of every pair of sequences.

    a (Na, La, E), b (Nb, Lb, E), masks (N, L) bool (True = real token) or None.
    Returns (s_ab (Na, Nb), s_ba (Nb, Na)): s_ab[i, j] = mean over valid tokens k of a_i of
    max over valid tokens l of b_j of <a_ik, b_jl>; s_ba the same with the roles swapped.
    Memory is O(Na Nb La Lb).
    """
    am, bm = _full_mask(a, a_mask), _full_mask(b, b_mask)
    return late_scores(a, b, am, bm), late_scores(b, a, bm, am)


def chunked_late_scores(
    q: torch.Tensor, k: torch.Tensor, q_mask: torch.Tensor, k_mask: torch.Tensor, max_elements: int
) -> torch.Tensor:
    """``late_scores`` over column chunks of at most ``max_elements`` similarity entries each;
    with autograd on, each chunk is recomputed in the backward instead of kept."""
    per_col = max(1, q.shape[0] * q.shape[1] * k.shape[1])
    step = max(1, max_elements // per_col)
    grad = torch.is_grad_enabled() and (q.requires_grad or k.requires_grad)
    out = []
    for s in range(0, k.shape[0], step):
        args = (q, k[s : s + step], q_mask, k_mask[s : s + step])
        out.append(checkpoint(late_scores, *args, use_reentrant=False) if grad else late_scores(*args))
    return torch.cat(out, dim=1)


class FilipLoss(nn.Module):
    """FilipLoss(max_elements=2**26); forward(a_tokens (N, La, E), b_tokens (N, Lb, E),
    a_mask (N, La) | None, b_mask (N, Lb) | None, logit_scale (0-dim, exp'd)) -> 0-dim.

    Tokens are expected L2-normalised (DualEncoder's are). The two directions use their own
    asymmetric scores (image->text averages over image tokens, text->image over text tokens),
    as in the paper. Gathered across ranks like ClipLoss; token lengths may differ between ranks
    (each rank's batch padded to its own longest caption): they are padded to the longest.
    Each rank scores its own rows only (see the module docstring); ``max_elements`` bounds
    one chunk of the similarity tensor.
    """

    def __init__(self, max_elements: int = 2**26):
        super().__init__()
        self.max_elements = int(max_elements)

    def forward(
        self,
        a_tokens: torch.Tensor,
        b_tokens: torch.Tensor,
        a_mask: torch.Tensor | None,
        b_mask: torch.Tensor | None,
        logit_scale: torch.Tensor | float,
    ) -> torch.Tensor:
        if a_tokens.dim() != 3 or b_tokens.dim() != 3 or a_tokens.shape[0] != b_tokens.shape[0]:
            raise ValueError(
                f"FilipLoss expects (N, La, E) and (N, Lb, E) tokens; got {tuple(a_tokens.shape)} and "
                f"{tuple(b_tokens.shape)}"
            )
        rank, ws = world()
        a_tokens, a_mask = pad_tokens_across_ranks(a_tokens, a_mask)
        b_tokens, b_mask = pad_tokens_across_ranks(b_tokens, b_mask)
        a_mask, b_mask = _full_mask(a_tokens, a_mask), _full_mask(b_tokens, b_mask)
        sizes = shard_sizes(a_tokens.shape[0]) if ws > 1 else (a_tokens.shape[0],)
        all_a, all_b, all_am, all_bm = gather_batch(a_tokens, b_tokens, a_mask, b_mask, sizes=sizes)
        s_ab = chunked_late_scores(a_tokens, all_b, a_mask, all_bm, self.max_elements)  # (n, N)
        s_ba = chunked_late_scores(b_tokens, all_a, b_mask, all_am, self.max_elements)  # (n, N)
        start = sum(sizes[:rank])
        labels = torch.arange(start, start + a_tokens.shape[0], device=s_ab.device)
        scale = logit_scale.to(s_ab.dtype) if isinstance(logit_scale, torch.Tensor) else logit_scale
        terms = F.cross_entropy(scale * s_ab, labels, reduction="sum") + F.cross_entropy(
            scale * s_ba, labels, reduction="sum"
        )
        return local_rows_loss(terms / 2, sum(sizes))
