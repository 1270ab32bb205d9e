"""Temporal pooling of per-frame features: CLIP4Clip's meanP and seqTransf (Luo et al. 2021),
attention pooling with a learned query, and PLLaVA's adaptive average pooling of the
frame-patch grid (Xu et al. 2024) that sets how many visual tokens reach the LM.

Frame-level poolers: ``forward(x (B, T, D), mask (B, T) bool | None) -> (B, D)``.
Grid pooler: ``forward(x (B, T, H, W, D)) -> (B, t, h, w, D)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from vlx.encoders.vit import Block
from vlx.registry import Registry

TEMPORAL_POOLERS: Registry = Registry("temporal pooler")


def _masked_mean(x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    if mask is None:
        return x.mean(dim=1)
    w = mask.to(x.dtype).unsqueeze(-1)
    return (x * w).sum(1) / w.sum(1).clamp_min(1.0)


class MeanPooling(nn.Module):
    """CLIP4Clip meanP: the average of frame embeddings; blind to frame order."""

    def __init__(self, dim: int, **_: object):
        super().__init__()
        self.dim = dim

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        return _masked_mean(x, mask)


class TemporalTransformer(nn.Module):
    """CLIP4Clip seqTransf: learned frame-position embeddings, a few transformer blocks over
    the T frame embeddings, a residual to the input, then the masked mean. The position
    embeddings make it order-aware."""

    def __init__(self, dim: int, layers: int = 2, heads: int = 4, max_frames: int = 64, **_: object):
        super().__init__()
        self.pos = nn.Parameter(torch.zeros(1, max_frames, dim))
        nn.init.normal_(self.pos, std=0.02)
        self.blocks = nn.ModuleList([Block(dim, heads) for _ in range(layers)])
        self.max_frames = max_frames

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        B, T, D = x.shape
        if T > self.max_frames:
            raise ValueError(f"TemporalTransformer: {T} frames > max_frames {self.max_frames}")
        h = x + self.pos[:, :T].to(x.dtype)
        attn_mask = mask[:, None, None, :] if mask is not None else None  # (B, 1, 1, T) keys
        for blk in self.blocks:
            h = blk(h, attn_mask=attn_mask)
        return _masked_mean(h + x, mask)


class AttentionPooling(nn.Module):
    """One learned query attends over the (position-embedded) frames: a weighted average
    whose weights depend on content and position."""

    def __init__(self, dim: int, heads: int = 4, max_frames: int = 64, **_: object):
        super().__init__()
        self.query = nn.Parameter(torch.randn(1, 1, dim) * dim**-0.5)
        self.pos = nn.Parameter(torch.zeros(1, max_frames, dim))
        nn.init.normal_(self.pos, std=0.02)
        self.attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        B, T, D = x.shape
        kv = self.norm(x + self.pos[:, :T].to(x.dtype))
        out, _ = self.attn(
            self.query.expand(B, -1, -1).to(x.dtype), kv, kv, key_padding_mask=None if mask is None else ~mask
        )
        return out[:, 0]


TEMPORAL_POOLERS.register("mean", MeanPooling)
TEMPORAL_POOLERS.register("seqtransf", TemporalTransformer)
TEMPORAL_POOLERS.register("attention", AttentionPooling)


@dataclass
class TemporalPoolingConfig:
    kind: Literal["mean", "seqtransf", "attention"] = "mean"
    layers: int = 2
    heads: int = 4
    max_frames: int = 64


def build_temporal_pooling(cfg: TemporalPoolingConfig, dim: int) -> nn.Module:
    return TEMPORAL_POOLERS.get(cfg.kind)(dim, layers=cfg.layers, heads=cfg.heads, max_frames=cfg.max_frames)


class AdaptiveGridPooling(nn.Module):
    """PLLaVA pooling: adaptive average pooling of the frame-patch feature grid
    ``(B, T, H, W, D) -> (B, t, h, w, D)``; ``output_size`` entries of None keep that axis.
    Cuts the visual tokens the LM sees from T*H*W to t*h*w."""

    def __init__(self, output_size: tuple[int | None, int | None, int | None] = (4, 2, 2)):
        super().__init__()
        self.output_size = tuple(output_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 5:
            raise ValueError(f"AdaptiveGridPooling expects (B, T, H, W, D), got {tuple(x.shape)}")
        y = F.adaptive_avg_pool3d(x.permute(0, 4, 1, 2, 3), self.output_size)  # (B, D, t, h, w)
        return y.permute(0, 2, 3, 4, 1)


def pllava_frame_repeats(total: int, num_frames: int) -> list[int]:
    """How often PLLaVA's projector repeats each of ``total`` frames when ``total < num_frames``
    (``PllavaMultiModalProjector.forward``): every frame ``int(num_frames / total) + 1`` times
    (``repeat_interleave``), then the first ``num_frames`` kept. 4 -> 16 gives [5, 5, 5, 1];
    3 -> 16 gives [6, 6, 4]; 8 -> 16 gives [3, 3, 3, 3, 3, 1, 0, 0] (the last two frames
    dropped: PLLaVA's rule, kept as it is). ``total >= num_frames``: each frame once."""
    if total >= num_frames:
        return [1] * total
    m = int(num_frames / total) + 1
    return [max(0, min(m, num_frames - i * m)) for i in range(total)]


def pllava_repeat_frames(x: torch.Tensor, num_frames: int) -> torch.Tensor:
    """``x (B, T, ...) -> (B, max(T, num_frames), ...)`` with PLLaVA's frame repetition
    (:func:`pllava_frame_repeats`)."""
    T = x.shape[1]
    if T >= num_frames:
        return x
    reps = torch.tensor(pllava_frame_repeats(T, num_frames), device=x.device)
    return x.repeat_interleave(reps, dim=1)


class PLLaVAPooling(nn.Module):
    """PLLaVA's pooling around a projector (passed to ``forward``, so that the checkpoint's
    own projector stays where it is): ``(B, T, N, Dv) -> (B, t*h*w, D_lm)``.

    ``order="project_then_pool"`` is PLLaVA's (``PllavaMultiModalProjector``): the MLP
    projector on every patch token, then ``AdaptiveAvgPool3d`` to ``(t, h, w)`` over the
    (T, H, W) grid. ``"pool_then_project"`` is vlx's earlier order (pool the vision features,
    then project): fewer tokens through the MLP, different numbers (the GELU does not
    commute with averaging). Clips with fewer than ``num_frames`` frames are first repeated
    as PLLaVA does (:func:`pllava_frame_repeats`); ``num_frames=0`` turns that off.

    Shapes: x (B, T, N, Dv) with N = H*W (square grid unless ``grid`` is given).
    """

    def __init__(
        self,
        output_size: tuple[int, int, int],
        order: Literal["project_then_pool", "pool_then_project"] = "project_then_pool",
        num_frames: int = 0,
        grid: tuple[int, int] | None = None,
    ):
        super().__init__()
        if order not in ("project_then_pool", "pool_then_project"):
            raise ValueError(f"pooling_order must be project_then_pool or pool_then_project, got {order!r}")
        self.order, self.num_frames, self.grid = order, num_frames, grid
        self.pool = AdaptiveGridPooling(tuple(output_size))

    def forward(self, x: torch.Tensor, projector: nn.Module) -> torch.Tensor:
        if self.num_frames:
            x = pllava_repeat_frames(x, self.num_frames)
        B, T, N, _ = x.shape
        h, w = self.grid or (int(round(N**0.5)),) * 2
        if h * w != N:
            raise ValueError(f"PLLaVAPooling: {N} tokens per frame do not form a {h}x{w} grid")
        if self.order == "project_then_pool":
            x = projector(x)
            return self.pool(x.reshape(B, T, h, w, -1)).flatten(1, 3)
        return projector(self.pool(x.reshape(B, T, h, w, -1)).flatten(1, 3))
