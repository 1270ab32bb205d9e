"""DGCNN (Wang et al. 2019, "Dynamic Graph CNN"): EdgeConv layers whose kNN graph is rebuilt in
each layer's feature space. The layers are torch-geometric's ``EdgeConv``; its
``DynamicEdgeConv`` needs pyg-lib / torch-cluster for the kNN, which have no wheels for this
torch, so the dynamic graph comes from ``pointcloud.ops.knn`` (same result)."""

from __future__ import annotations

import torch
from torch import nn
from torch_geometric.nn import EdgeConv

from pointcloud import ops
from pointcloud.encoders import POINT_ENCODERS
from vlx.encoders.base import EncoderOutput


def knn_edge_index(x: torch.Tensor, k: int) -> torch.Tensor:
    """x (B, N, C) -> PyG edge_index (2, B*N*k): edges j -> i from each of i's k nearest
    neighbours j (itself included, as in the reference implementation) in feature space."""
    B, N, C = x.shape
    # Feature-space kNN (C up to a few hundred) on small N: the torch backend's one cdist wins here.
    _, idx = ops.knn(x.detach(), x.detach(), k, backend="torch" if C > 3 else "auto", check=False, return_dists=False)
    offset = (torch.arange(B, device=x.device) * N).view(B, 1, 1)
    src = (idx + offset).reshape(-1)
    dst = (torch.arange(N, device=x.device).view(1, N, 1).expand(B, N, k) + offset).reshape(-1)
    return torch.stack([src, dst])


class DGCNN(nn.Module):
    def __init__(self, k: int = 16, dims: tuple[int, ...] = (64, 64, 128, 256), emb_dim: int = 512, out_dim: int = 256):
        super().__init__()
        self.k = k
        self.convs = nn.ModuleList()
        c = 3
        for d in dims:
            self.convs.append(
                EdgeConv(nn.Sequential(nn.Linear(2 * c, d), nn.LayerNorm(d), nn.LeakyReLU(0.2)), aggr="max")
            )
            c = d
        self.fuse = nn.Sequential(nn.Linear(sum(dims), emb_dim), nn.LayerNorm(emb_dim), nn.LeakyReLU(0.2))
        self.head = nn.Linear(2 * emb_dim, out_dim)
        self.token_proj = nn.Linear(emb_dim, out_dim)
        self.output_dim = out_dim
        self.last_centers: torch.Tensor | None = None

    def forward(self, points: torch.Tensor) -> EncoderOutput:
        """points (B, N, 3) -> pooled (B, D) from max+mean pooling, tokens (B, N, D) per point."""
        B, N, _ = points.shape
        x = points
        outs = []
        for conv in self.convs:
            ei = knn_edge_index(x, self.k)
            x = conv(x.reshape(B * N, -1), ei).view(B, N, -1)
            outs.append(x)
        f = self.fuse(torch.cat(outs, -1))  # (B, N, E)
        self.last_centers = points.detach()
        return EncoderOutput(self.head(torch.cat([f.amax(1), f.mean(1)], -1)), self.token_proj(f), None)


@POINT_ENCODERS.register("dgcnn")
def dgcnn(**kw) -> DGCNN:
    return DGCNN(**kw)
