"""Vision Transformer (Dosovitskiy et al. 2021) with timm's module layout, so that patches
written for timm (ToMe's Block/Attention swap) apply to it unchanged.

Layout: ``.patch_embed`` (Conv2d) -> prepend ``.cls_token`` -> add ``.pos_embed`` ->
optional ``.norm_pre`` (CLIP's ln_pre) -> ``.blocks`` (pre-norm Blocks) -> ``.norm``.
"""

from __future__ import annotations

from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from vlx.encoders.base import IMAGE_ENCODERS, EncoderOutput, construct, resolve_preset

# Sizes as data. B/32 and B/16 follow CLIP's ViT-B (with ln_pre, bias-free patch conv).
VIT_PRESETS: dict[str, dict[str, Any]] = {
    "tiny": dict(image_size=32, patch_size=8, width=64, layers=2, heads=2),
    "small": dict(image_size=224, patch_size=16, width=384, layers=12, heads=6),
    "B/32": dict(image_size=224, patch_size=32, width=768, layers=12, heads=12, pre_norm=True, patch_bias=False),
    "B/16": dict(image_size=224, patch_size=16, width=768, layers=12, heads=12, pre_norm=True, patch_bias=False),
}


class Attention(nn.Module):
    """Multi-head self-attention with one fused qkv projection (timm layout) on
    ``F.scaled_dot_product_attention`` (flash/memory-efficient kernels where available).

    forward(x (B, L, D), attn_mask (B, 1, L, L) or (B, 1, 1, L) bool, True = attend, or None,
    is_causal) -> (B, L, D)."""

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool = True, attn_drop: float = 0.0, proj_drop: float = 0.0):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"width {dim} is not divisible by heads {num_heads}")
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.scale = self.head_dim**-0.5
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.attn_drop = nn.Dropout(attn_drop)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None = None, is_causal: bool = False) -> torch.Tensor:
        B, L, D = x.shape
        # (B, L, 3, H, Dh) -> (3, B, H, L, Dh): one matmul for q, k and v, views not copies.
        q, k, v = self.qkv(x).view(B, L, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4).unbind(0)
        x = F.scaled_dot_product_attention(
            q,
            k,
            v,
            attn_mask=attn_mask,
            is_causal=is_causal and attn_mask is None,
            dropout_p=self.attn_drop.p if self.training else 0.0,
            scale=self.scale,
        )
        x = x.transpose(1, 2).reshape(B, L, D)
        return self.proj_drop(self.proj(x))


class Mlp(nn.Module):
    """fc1 -> GELU -> fc2 (timm names)."""

    def __init__(self, dim: int, hidden: int, drop: float = 0.0):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)
        self.drop = nn.Dropout(drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(self.fc2(self.drop(self.act(self.fc1(x)))))


class Block(nn.Module):
    """Pre-norm transformer block: ``x + attn(norm1(x))`` then ``x + mlp(norm2(x))``."""

    def __init__(
        self,
        dim: int,
        num_heads: int,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        drop: float = 0.0,
        attn_drop: float = 0.0,
    ):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, num_heads, qkv_bias=qkv_bias, attn_drop=attn_drop, proj_drop=drop)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), drop=drop)

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None = None, is_causal: bool = False) -> torch.Tensor:
        x = x + self.attn(self.norm1(x), attn_mask=attn_mask, is_causal=is_causal)
        x = x + self.mlp(self.norm2(x))
        return x


class VisionTransformer(nn.Module):
    """ViT image encoder: ``forward(images (B, C, H, W)) -> EncoderOutput(pooled (B, D),
    tokens (B, 1+N, D) with CLS first, mask None)``.

    Images of another size than ``image_size`` work (H, W multiples of ``patch_size``):
    the position embeddings are bicubically interpolated to the new grid."""

    def __init__(
        self,
        image_size: int = 224,
        patch_size: int = 16,
        width: int = 768,
        layers: int = 12,
        heads: int = 12,
        mlp_ratio: float = 4.0,
        in_channels: int = 3,
        pool: Literal["cls", "mean"] = "cls",
        pre_norm: bool = False,
        patch_bias: bool = True,
        drop: float = 0.0,
    ):
        super().__init__()
        if image_size % patch_size:
            raise ValueError(f"image_size {image_size} is not a multiple of patch_size {patch_size}")
        if pool not in ("cls", "mean"):
            raise ValueError(f"pool must be 'cls' or 'mean', got {pool!r}")
        self.image_size, self.patch_size, self.pool = image_size, patch_size, pool
        self.grid = image_size // patch_size
        self.output_dim = self.embed_dim = width
        self.patch_embed = nn.Conv2d(in_channels, width, kernel_size=patch_size, stride=patch_size, bias=patch_bias)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, width))
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + self.grid**2, width))
        self.norm_pre = nn.LayerNorm(width) if pre_norm else nn.Identity()
        self.blocks = nn.ModuleList([Block(width, heads, mlp_ratio, drop=drop) for _ in range(layers)])
        self.norm = nn.LayerNorm(width)
        self._init_weights()

    def _init_weights(self) -> None:
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        nn.init.normal_(self.cls_token, std=1e-6)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def _pos_embed_for(self, gh: int, gw: int) -> torch.Tensor:
        """(1, 1+gh*gw, D): the learned grid resized to (gh, gw) when it differs."""
        if gh == self.grid and gw == self.grid:
            return self.pos_embed
        cls_pos, grid_pos = self.pos_embed[:, :1], self.pos_embed[:, 1:]
        D = grid_pos.shape[-1]
        grid_pos = grid_pos.reshape(1, self.grid, self.grid, D).permute(0, 3, 1, 2)
        grid_pos = F.interpolate(grid_pos.float(), size=(gh, gw), mode="bicubic", align_corners=False)
        grid_pos = grid_pos.to(self.pos_embed.dtype).permute(0, 2, 3, 1).reshape(1, gh * gw, D)
        return torch.cat([cls_pos, grid_pos], dim=1)

    def forward_features(self, images: torch.Tensor) -> torch.Tensor:
        """images (B, C, H, W) -> tokens (B, 1+N, D), after the final norm."""
        if images.ndim != 4 or images.shape[1] != self.patch_embed.in_channels:
            raise ValueError(
                f"VisionTransformer expects images (B, {self.patch_embed.in_channels}, H, W), got {tuple(images.shape)}"
            )
        x = self.patch_embed(images)  # (B, D, gh, gw)
        gh, gw = x.shape[-2:]
        x = x.flatten(2).transpose(1, 2)  # (B, N, D)
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1).to(x.dtype), x], dim=1)
        x = self.norm_pre(x + self._pos_embed_for(gh, gw))
        for blk in self.blocks:
            x = blk(x)
        return self.norm(x)

    def forward(self, images: torch.Tensor) -> EncoderOutput:
        tokens = self.forward_features(images)
        pooled = tokens[:, 0] if self.pool == "cls" else tokens[:, 1:].mean(dim=1)
        return EncoderOutput(pooled=pooled, tokens=tokens, mask=None)


@IMAGE_ENCODERS.register("vit")
def build_vit(preset: str | None = None, path: str | None = None, **kwargs: Any) -> VisionTransformer:
    """A VisionTransformer from a preset (``tiny``, ``small``, ``B/32``, ``B/16``) + overrides.
    ``path`` is unused: load trained weights through the checkpoint, not the encoder."""
    values = resolve_preset(VIT_PRESETS, preset, kwargs, "image encoder 'vit'")
    return construct(VisionTransformer, "image encoder 'vit'", values)
