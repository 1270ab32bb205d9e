"""Object tokens: one embedding per object from its points and box.

The default ``pointnet`` is a PointNet (Qi et al. 2017) shared MLP + max-pool over each
object's points, centred and scaled by the object's box, plus an embedding of the box in
scene coordinates. ``pointcloud:<name>`` uses an encoder of the pointcloud sibling instead
(its global embedding from ``pointcloud.encoders.build_point_encoder``; xyz only).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn
from torch_geometric.utils import scatter

from vlx.config import ConfigError


@dataclass
class ObjectEncoderConfig:
    backbone: str = "pointnet"  # or "pointcloud:<encoder name>"
    hidden: int = 64
    use_color: bool = True
    kwargs: dict[str, Any] = field(default_factory=dict)


class PointNetObjects(nn.Module):
    """``points (N, P, 6)`` -> ``(N, D)``: shared MLP on box-normalised xyz (+ rgb), max over P."""

    def __init__(self, dim: int, hidden: int = 64, use_color: bool = True):
        super().__init__()
        self.use_color = use_color
        c = 6 if use_color else 3
        self.mlp = nn.Sequential(
            nn.Linear(c, hidden), nn.GELU(), nn.Linear(hidden, hidden), nn.GELU(), nn.Linear(hidden, dim)
        )

    def forward(self, points: Tensor, box: Tensor) -> Tensor:
        xyz = (points[..., :3] - box[:, None, :3]) / box[:, None, 3:6].clamp(min=1e-3)
        feats = torch.cat([xyz, points[..., 3:6]], -1) if self.use_color else xyz
        return self.mlp(feats).max(dim=1).values


class ObjectEncoder(nn.Module):
    """Points + box -> object tokens ``(N, D)``; boxes are centred on their scene's mean."""

    def __init__(self, cfg: ObjectEncoderConfig, dim: int):
        super().__init__()
        if cfg.backbone == "pointnet":
            self.points = PointNetObjects(dim, cfg.hidden, cfg.use_color)
        elif cfg.backbone.startswith("pointcloud:"):
            try:
                from pointcloud.encoders import PointEncoderConfig, build_point_encoder  # the sibling's factory
            except ImportError as e:
                raise ConfigError(f"model.objects.backbone: {cfg.backbone!r} needs pointcloud.encoders ({e})") from None
            enc = build_point_encoder(PointEncoderConfig(cfg.backbone.split(":", 1)[1], dict(cfg.kwargs)))
            self.points = _PointcloudAdapter(enc, dim)
        else:
            raise ConfigError(f"model.objects.backbone: unknown {cfg.backbone!r}; known: pointnet, pointcloud:<name>")
        self.box = nn.Sequential(nn.Linear(6, dim), nn.GELU(), nn.Linear(dim, dim))
        self.norm = nn.LayerNorm(dim)

    def forward(self, points: Tensor, box: Tensor, node_batch: Tensor) -> Tensor:
        """points ``(N, P, 6)``, box ``(N, 6)``, node_batch ``(N,)`` -> ``(N, D)``."""
        centre = scatter(box[:, :3], node_batch, dim=0, reduce="mean")[node_batch]
        geo = torch.cat([box[:, :3] - centre, box[:, 3:6]], dim=-1)
        return self.norm(self.points(points, box) + self.box(geo))


class _PointcloudAdapter(nn.Module):
    def __init__(self, enc: nn.Module, dim: int):
        super().__init__()
        self.enc = enc
        self.proj = nn.Linear(enc.output_dim, dim)

    def forward(self, points: Tensor, box: Tensor) -> Tensor:
        xyz = (points[..., :3] - box[:, None, :3]) / box[:, None, 3:6].clamp(min=1e-3)
        return self.proj(self.enc(xyz).pooled)  # EncoderOutput.pooled (N, D_enc)
