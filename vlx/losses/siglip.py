"""SigLIP's pairwise sigmoid loss (Zhai et al. 2023, "Sigmoid Loss for Language Image
Pre-Training"): every (image, text) pair is an independent binary classification."""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from vlx.losses.clip import IdScope, check_id_scope, gather_batch, pairwise_logits, positive_mask, scope_ids


class SigLipLoss(nn.Module):
    """``-1/N sum_ij log sigmoid(z_ij (t a_i.b_j + bias))`` with z_ij = +1 for positives, -1 else.

    forward(a (N, E), b (N, E), logit_scale (0-dim t, already exp'd), logit_bias (0-dim),
    ids (N,) | None) -> 0-dim. The temperature and bias are the model's learnable parameters
    (the paper initialises t = 10, bias = -10); the loss only reads them. Normalised by N, not
    N^2, as in the paper. Across ranks, features are all-gathered like ClipLoss (same scaling
    convention: every rank computes the global loss), instead of big_vision's ring of chunks:
    simpler, and the N x N logits are small next to the encoders at our batch sizes.
    ``id_scope`` as in ClipLoss.
    """

    def __init__(self, id_scope: IdScope = "global"):
        super().__init__()
        self.id_scope = check_id_scope("SigLipLoss", id_scope)

    def forward(
        self,
        a: torch.Tensor,
        b: torch.Tensor,
        logit_scale: torch.Tensor | float,
        logit_bias: torch.Tensor | float,
        ids: torch.Tensor | None = None,
    ) -> torch.Tensor:
        if a.shape != b.shape or a.dim() != 2:
            raise ValueError(
                f"SigLipLoss expects a and b of the same shape (N, E); got {tuple(a.shape)} and {tuple(b.shape)}"
            )
        a, b, ids = gather_batch(a, b, scope_ids(ids, self.id_scope))
        logits = pairwise_logits(a, b, logit_scale)  # (N, N), float32 at least
        logits = logits + (logit_bias.to(logits.dtype) if isinstance(logit_bias, torch.Tensor) else logit_bias)
        sign = positive_mask(ids, logits.shape[0], logits.device).to(logits.dtype) * 2 - 1
        return -F.logsigmoid(sign * logits).sum() / logits.shape[0]
