"""Intra-modal contrastive terms: TCL's intra-modal InfoNCE (Yang et al. 2022, "Vision-Language
Pre-Training with Triple Contrastive Learning") between two embeddings of the same modality,
and SimCLR's NT-Xent (Chen et al. 2020; CLIP2Point's intra-modal term) as a function."""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from vlx.losses.clip import gather_batch, pairwise_logits


class IntraModalLoss(nn.Module):
    """Symmetric InfoNCE between two views of one modality (an image and its augmented view,
    or online vs momentum embeddings), optionally with extra negatives from a momentum queue.

    forward(a (N, E), b (N, E), logit_scale (0-dim, exp'd), queue_a (K, E) | None,
    queue_b (K, E) | None) -> 0-dim. Row i of ``a`` is positive with row i of ``b``; a->b
    scores a_i against [b; queue_b], b->a scores b_i against [a; queue_a] (TCL's IMC with the
    MoCo-style queue of momentum features). Features are expected L2-normalised; queues are
    treated as constants. Gathered across ranks like ClipLoss (queues are not: they are
    usually already global).
    """

    def forward(
        self,
        a: torch.Tensor,
        b: torch.Tensor,
        logit_scale: torch.Tensor | float,
        queue_a: torch.Tensor | None = None,
        queue_b: torch.Tensor | None = None,
    ) -> torch.Tensor:
        if a.shape != b.shape or a.dim() != 2:
            raise ValueError(
                f"IntraModalLoss expects a and b of the same shape (N, E); got {tuple(a.shape)} and {tuple(b.shape)}"
            )
        a, b = gather_batch(a, b)
        keys_b = b if queue_b is None else torch.cat([b, queue_b.detach()])
        keys_a = a if queue_a is None else torch.cat([a, queue_a.detach()])
        labels = torch.arange(a.shape[0], device=a.device)
        return (
            F.cross_entropy(pairwise_logits(a, keys_b, logit_scale), labels)
            + F.cross_entropy(pairwise_logits(b, keys_a, logit_scale), labels)
        ) / 2


def nt_xent(a: torch.Tensor, b: torch.Tensor, temperature: float = 0.1) -> torch.Tensor:
    """SimCLR's normalised-temperature cross-entropy over the 2N views [a; b].

    a (N, E), b (N, E) (normalised here: cosine similarity) -> 0-dim. Each of the 2N rows
    has its other view as the positive and the other 2N - 2 rows as negatives (itself is
    excluded); mean over the 2N rows. Gathered across ranks like ClipLoss.
    """
    if a.shape != b.shape or a.dim() != 2:
        raise ValueError(f"nt_xent expects a and b of the same shape (N, E); got {tuple(a.shape)} and {tuple(b.shape)}")
    a, b = gather_batch(a, b)
    n = a.shape[0]
    z = torch.cat([a, b])
    z = F.normalize(z.to(torch.promote_types(z.dtype, torch.float32)), dim=-1)
    sim = pairwise_logits(z, z, 1.0 / temperature)  # (2N, 2N), float32 at least
    sim = sim.masked_fill(torch.eye(2 * n, dtype=torch.bool, device=z.device), float("-inf"))
    target = torch.arange(2 * n, device=z.device).roll(n)  # row i's other view
    return F.cross_entropy(sim, target)
