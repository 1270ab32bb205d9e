"""PointNet++ single-scale grouping (Qi et al. 2017, "PointNet++", the SSG classification net):
two set-abstraction levels (FPS centroids, ball query, shared MLP, max) and a global one."""

from __future__ import annotations

import torch
from torch import nn

from pointcloud import ops
from pointcloud.encoders import POINT_ENCODERS
from vlx.encoders.base import EncoderOutput


def shared_mlp(dims: list[int]) -> nn.Sequential:
    """Pointwise MLP on (..., C) with LayerNorm (BatchNorm in the paper; LayerNorm keeps tiny
    CPU batches stable)."""
    layers: list[nn.Module] = []
    for a, b in zip(dims[:-1], dims[1:]):
        layers += [nn.Linear(a, b), nn.LayerNorm(b), nn.GELU()]
    return nn.Sequential(*layers)


class SetAbstraction(nn.Module):
    """FPS ``n_centers`` centroids, ball-query ``k`` neighbours in ``radius``, MLP, max-pool.
    (B, N, 3), (B, N, C) -> centres (B, M, 3), features (B, M, C_out)."""

    def __init__(self, n_centers: int, radius: float, k: int, in_dim: int, dims: list[int]):
        super().__init__()
        self.n_centers, self.radius, self.k = n_centers, radius, k
        self.mlp = shared_mlp([in_dim + 3, *dims])

    def forward(self, xyz: torch.Tensor, feats: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        idx = ops.farthest_point_sample(xyz.detach(), self.n_centers, check=False)
        centers = ops.gather_points(xyz, idx)
        nbr = ops.ball_query(centers.detach(), xyz.detach(), self.radius, self.k, check=False)
        grouped = ops.group_points(xyz, centers, nbr, feats)  # (B, M, K, 3 + C)
        grouped[..., :3] /= self.radius  # offsets in units of the ball, as in the reference code
        return centers, self.mlp(grouped).amax(dim=2)


class PointNet2SSG(nn.Module):
    def __init__(
        self,
        width: int = 64,
        out_dim: int = 256,
        n_centers: tuple[int, int] = (256, 64),
        k: tuple[int, int] = (32, 32),
        radius: tuple[float, float] = (0.2, 0.4),
    ):
        super().__init__()
        w = width
        self.sa1 = SetAbstraction(n_centers[0], radius[0], k[0], 0, [w, w, 2 * w])
        self.sa2 = SetAbstraction(n_centers[1], radius[1], k[1], 2 * w, [2 * w, 2 * w, 4 * w])
        self.sa3 = shared_mlp([4 * w + 3, 4 * w, 8 * w])
        self.head = nn.Linear(8 * w, out_dim)
        self.token_proj = nn.Linear(4 * w, out_dim)
        self.output_dim = out_dim
        self.last_centers: torch.Tensor | None = None

    def forward(self, points: torch.Tensor) -> EncoderOutput:
        """points (B, N, 3) -> pooled (B, D), tokens (B, M2, D) at the level-2 centroids."""
        c1, f1 = self.sa1(points, None)
        c2, f2 = self.sa2(c1, f1)
        g = self.sa3(torch.cat([c2, f2], -1)).amax(dim=1)
        self.last_centers = c2.detach()
        return EncoderOutput(self.head(g), self.token_proj(f2), None)


@POINT_ENCODERS.register("pointnet2")
def pointnet2(**kw) -> PointNet2SSG:
    return PointNet2SSG(**kw)
