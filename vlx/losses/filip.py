"""FILIP's token-wise late interaction (Yao et al. 2021, "FILIP: Fine-grained Interactive
Language-Image Pre-Training"): the similarity of a pair is the mean over one side's tokens of
each token's best match on the other side, then InfoNCE both ways."""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn as nn
import torch.nn.functional as F

from vlx.losses.clip import gather_batch, world


def pad_tokens_across_ranks(
    tokens: torch.Tensor, mask: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Pad (N, L, E) tokens (zeros) and their (N, L) mask (False) to the longest L of any rank,
    so the all-gather works when each rank's batch was padded to its own longest caption.
    A no-op when not distributed or when every rank has the same L."""
    _, ws = world()
    if ws == 1:
        return tokens, mask
    length = torch.tensor([tokens.shape[1]], device=tokens.device)
    dist.all_reduce(length, op=dist.ReduceOp.MAX)
    extra = int(length) - tokens.shape[1]
    if extra == 0:
        return tokens, mask
    if mask is None:
        mask = torch.ones(tokens.shape[:2], dtype=torch.bool, device=tokens.device)
    return F.pad(tokens, (0, 0, 0, extra)), F.pad(mask.bool(), (0, extra), value=False)


def token_max_similarity(
    a: torch.Tensor, b: torch.Tensor, a_mask: torch.Tensor | None = None, b_mask: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Late-interaction scores of every pair of sequences.

    a (Na, La, E), b (Nb, Lb, E), masks (N, L) bool (True = real token) or None.
    Returns (s_ab (Na, Nb), s_ba (Nb, Na)): s_ab[i, j] = mean over valid tokens k of a_i of
    max over valid tokens l of b_j of <a_ik, b_jl>; s_ba the same with the roles swapped.
    Memory is O(Na Nb La Lb).
    """
    sim = torch.einsum("ike,jle->ijkl", a, b)  # (Na, Nb, La, Lb)
    neg = torch.finfo(sim.dtype).min
    am = torch.ones(a.shape[:2], dtype=torch.bool, device=a.device) if a_mask is None else a_mask.bool()
    bm = torch.ones(b.shape[:2], dtype=torch.bool, device=b.device) if b_mask is None else b_mask.bool()
    # a -> b: padded b tokens must never be the max; padded a tokens do not enter the mean.
    best_b = sim.masked_fill(~bm[None, :, None, :], neg).amax(dim=3)  # (Na, Nb, La)
    s_ab = (best_b * am[:, None, :]).sum(-1) / am.sum(-1).clamp(min=1)[:, None]
    best_a = sim.masked_fill(~am[:, None, :, None], neg).amax(dim=2)  # (Na, Nb, Lb)
    s_ba = ((best_a * bm[None, :, :]).sum(-1) / bm.sum(-1).clamp(min=1)[None, :]).T
    return s_ab, s_ba


class FilipLoss(nn.Module):
    """forward(a_tokens (N, La, E), b_tokens (N, Lb, E), a_mask (N, La) | None,
    b_mask (N, Lb) | None, logit_scale (0-dim, exp'd)) -> 0-dim.

    Tokens are expected L2-normalised (DualEncoder's are). The two directions use their own
    asymmetric scores (image->text averages over image tokens, text->image over text tokens),
    as in the paper. Gathered across ranks like ClipLoss; token lengths may differ between ranks
    (each rank's batch padded to its own longest caption): they are padded to the longest.
    """

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
        a_tokens, a_mask = pad_tokens_across_ranks(a_tokens, a_mask)
        b_tokens, b_mask = pad_tokens_across_ranks(b_tokens, b_mask)
        a_tokens, b_tokens, a_mask, b_mask = gather_batch(a_tokens, b_tokens, a_mask, b_mask)
        s_ab, s_ba = token_max_similarity(a_tokens, b_tokens, a_mask, b_mask)
        labels = torch.arange(s_ab.shape[0], device=s_ab.device)
        return (F.cross_entropy(logit_scale * s_ab, labels) + F.cross_entropy(logit_scale * s_ba, labels)) / 2
