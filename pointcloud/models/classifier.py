"""Supervised point-cloud classification: any registered point encoder + a linear head,
with PointNet++-style augmentation (z rotation, anisotropic scale, jitter) in training."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from pointcloud import ops


class PointClassifier(nn.Module):
    def __init__(self, encoder: nn.Module, n_classes: int, augment: bool = True, label_smoothing: float = 0.1):
        super().__init__()
        self.encoder = encoder
        self.head = nn.Sequential(
            nn.LayerNorm(encoder.output_dim), nn.Dropout(0.2), nn.Linear(encoder.output_dim, n_classes)
        )
        self.augment = augment
        self.label_smoothing = label_smoothing

    def logits(self, points: torch.Tensor) -> torch.Tensor:
        """points (B, N, 3) -> (B, C)."""
        return self.head(self.encoder(ops.normalize_points(points)).pooled)

    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        pts = batch["points"]
        if self.training and self.augment:
            pts = ops.jitter(ops.random_scale(ops.random_rotation(pts, "z")), sigma=0.01)
        logits = self.logits(pts)
        loss = F.cross_entropy(logits, batch["label"], label_smoothing=self.label_smoothing)
        acc = (logits.argmax(-1) == batch["label"]).float().mean()
        return {"loss": loss, "train_acc": acc.detach()}
