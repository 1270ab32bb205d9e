"""A small point transformer in the Point-BERT / Point-MAE style: FPS centres, kNN patches
normalised to their centre, a mini-PointNet per patch as its token, an MLP position
embedding of the centres, a CLS token and a standard transformer encoder."""

from __future__ import annotations

import torch
from torch import nn

from pointcloud import ops
from pointcloud.encoders import POINT_ENCODERS
from vlx.encoders.base import EncoderOutput


class MiniPointNet(nn.Module):
    """(B, G, K, 3) patch offsets -> (B, G, D): shared MLP, max, then a second MLP on
    [point, patch-max] features and max again (Point-BERT's patch embedding)."""

    def __init__(self, dim: int):
        super().__init__()
        self.first = nn.Sequential(nn.Linear(3, dim // 2), nn.LayerNorm(dim // 2), nn.GELU(), nn.Linear(dim // 2, dim))
        self.second = nn.Sequential(nn.Linear(2 * dim, dim), nn.LayerNorm(dim), nn.GELU(), nn.Linear(dim, dim))

    def forward(self, patches: torch.Tensor) -> torch.Tensor:
        f = self.first(patches)
        g = f.amax(dim=2, keepdim=True).expand_as(f)
        return self.second(torch.cat([f, g], -1)).amax(dim=2)


class PointTransformer(nn.Module):
    def __init__(
        self,
        n_patches: int = 64,
        patch_size: int = 32,
        width: int = 128,
        layers: int = 4,
        heads: int = 4,
        out_dim: int = 256,
        mlp_ratio: float = 2.0,
        dropout: float = 0.0,
    ):
        super().__init__()
        self.n_patches, self.patch_size = n_patches, patch_size
        self.embed = MiniPointNet(width)
        self.pos = nn.Sequential(nn.Linear(3, width), nn.GELU(), nn.Linear(width, width))
        self.cls = nn.Parameter(torch.zeros(1, 1, width))
        self.cls_pos = nn.Parameter(torch.randn(1, 1, width) * 0.02)
        layer = nn.TransformerEncoderLayer(
            width, heads, int(width * mlp_ratio), dropout, activation="gelu", batch_first=True, norm_first=True
        )
        self.blocks = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(width)
        self.head = nn.Linear(2 * width, out_dim)
        self.token_proj = nn.Linear(width, out_dim)
        self.output_dim = out_dim
        self.last_centers: torch.Tensor | None = None

    def patchify(self, points: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """points (B, N, 3) -> centres (B, G, 3), patches (B, G, K, 3) relative to their centre."""
        G = min(self.n_patches, points.shape[1])
        K = min(self.patch_size, points.shape[1])
        idx = ops.farthest_point_sample(points.detach(), G, check=False)
        centers = ops.gather_points(points, idx)
        _, nbr = ops.knn(centers.detach(), points.detach(), K, check=False, return_dists=False)
        return centers, ops.group_points(points, centers, nbr)

    def forward(self, points: torch.Tensor) -> EncoderOutput:
        """points (B, N, 3) -> pooled (B, D) from [CLS, max over patches], tokens (B, G, D)."""
        centers, patches = self.patchify(points)
        x = self.embed(patches) + self.pos(centers)
        cls = (self.cls + self.cls_pos).expand(x.shape[0], -1, -1)
        x = self.norm(self.blocks(torch.cat([cls, x], 1)))
        self.last_centers = centers.detach()
        pooled = self.head(torch.cat([x[:, 0], x[:, 1:].amax(1)], -1))
        return EncoderOutput(pooled, self.token_proj(x[:, 1:]), None)


@POINT_ENCODERS.register("point_transformer")
def point_transformer(**kw) -> PointTransformer:
    return PointTransformer(**kw)
