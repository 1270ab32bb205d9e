"""CLIP InfoNCE with softened negative labels, as in PyramidCLIP (Gao et al. 2022) and
LightCLIP (Nie et al. 2023): the one-hot target gives up ``smoothing`` of its mass to the
negatives, so near-duplicate pairs in a noisy web batch are not pushed apart at full force."""

from __future__ import annotations

import torch
import torch.nn as nn

from vlx.config import ConfigError
from vlx.losses.clip import IdScope, check_id_scope, gather_batch, pairwise_logits, positive_mask, scope_ids


def soft_targets(pos: torch.Tensor, smoothing: float, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """(N, M) targets from a positive mask: positives share 1 - smoothing, negatives share
    ``smoothing`` (PyramidCLIP: (1 - a) on the diagonal, a / (N - 1) elsewhere). A row with
    no negatives keeps all its mass on its positives."""
    pos = pos.to(dtype)
    n_pos = pos.sum(-1, keepdim=True)
    n_neg = pos.shape[-1] - n_pos
    eps = torch.where(n_neg > 0, torch.full_like(n_pos, smoothing), torch.zeros_like(n_pos))
    return pos * (1 - eps) / n_pos + (1 - pos) * eps / n_neg.clamp(min=1)


class SoftLabelClipLoss(nn.Module):
    """Symmetric InfoNCE against softened targets (cross-entropy with soft labels).

    SoftLabelClipLoss(smoothing in [0, 1)); forward(a (N, E), b (N, E), logit_scale, ids (N,) |
    None) -> 0-dim. ``smoothing=0`` is exactly ClipLoss. With ``ids``, equal ids are positives.
    Gathered across ranks like ClipLoss; ``id_scope`` as there. Logits and targets are
    float32 (at least) under autocast, so every target row sums to 1.
    """

    def __init__(self, smoothing: float = 0.1, id_scope: IdScope = "global"):
        super().__init__()
        self.id_scope = check_id_scope("SoftLabelClipLoss", id_scope)
        if not 0.0 <= smoothing < 1.0:
            raise ConfigError(f"SoftLabelClipLoss: smoothing must be in [0, 1), got {smoothing}")
        self.smoothing = float(smoothing)

    def forward(
        self, a: torch.Tensor, b: torch.Tensor, logit_scale: torch.Tensor | float, ids: torch.Tensor | None = None
    ) -> torch.Tensor:
        if a.shape != b.shape or a.dim() != 2:
            raise ValueError(
                f"SoftLabelClipLoss expects a and b of the same shape (N, E); got {tuple(a.shape)} and {tuple(b.shape)}"
            )
        a, b, ids = gather_batch(a, b, scope_ids(ids, self.id_scope))
        logits = pairwise_logits(a, b, logit_scale)
        pos = positive_mask(ids, logits.shape[0], logits.device)
        t_ab, t_ba = soft_targets(pos, self.smoothing, logits.dtype), soft_targets(pos.T, self.smoothing, logits.dtype)
        l_ab = -(t_ab * logits.log_softmax(-1)).sum(-1).mean()
        l_ba = -(t_ba * logits.T.log_softmax(-1)).sum(-1).mean()
        return (l_ab + l_ba) / 2
