"""Top-k accuracy for (zero-shot) classification."""

from __future__ import annotations

from collections.abc import Sequence

import torch


def topk_accuracy(logits: torch.Tensor, labels: torch.Tensor, ks: Sequence[int] = (1, 5)) -> dict[str, float]:
    """{"top1", "top5", ...}: percent of rows whose label is among the k highest logits.

    logits (N, C), labels (N,) int. A k larger than C counts every row as correct (the label is
    always among all C classes). Ties at the k-th place are broken by torch.topk's order.
    """
    if logits.dim() != 2 or labels.reshape(-1).shape[0] != logits.shape[0]:
        raise ValueError(
            f"topk_accuracy: logits must be (N, C) with one label per row; got {tuple(logits.shape)} and "
            f"{tuple(labels.shape)}"
        )
    labels = labels.reshape(-1).to(logits.device).long()
    if logits.shape[0] == 0:
        raise ValueError("topk_accuracy: no rows to score")
    kmax = min(max(ks), logits.shape[1])
    top = logits.topk(kmax, dim=1).indices  # (N, kmax)
    hit = top == labels[:, None]
    return {f"top{k}": float(hit[:, : min(k, kmax)].any(dim=1).double().mean() * 100) for k in ks}
