"""Token Merging (ToMe, Bolya et al. ICLR 2023): bipartite soft matching merges the ``r`` most
similar token pairs in every transformer block, keeping a per-token ``size`` (how many input
patches it stands for) for size-weighted averages and proportional attention
(``softmax(q k^T * scale + log size)``). ``apply_patch(model, r)`` swaps the block classes of
the project's ViT (vlx/encoders/vit.py) or of a Hugging Face CLIP vision tower in place.
``r`` means what it means in ToMe (``parse_r``): an int (that many tokens per layer), a
``(r, inflection)`` tuple (ToMe's schedule: inflection -1 is the paper's decreasing schedule)
or a list (one value per layer, missing layers 0).

Also a temporal variant of our own (``temporal_merge``, not in the ToMe paper): the same
matching between the token sets of neighbouring frames, so static background shared by
consecutive frames collapses to one set; each frame's CLS token, when present, is never
merged.

Written here because ToMe's reference package is not on PyPI for this setup; the algorithm
follows the paper's Algorithm 1 (alternating split, max-similarity edges, keep top-r).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

MergeFn = Callable[[torch.Tensor, str], torch.Tensor]


def parse_r(num_layers: int, r: int | tuple[int, float] | Sequence[int]) -> list[int]:
    """Tokens to merge in each of ``num_layers`` layers, as ToMe's ``parse_r`` defines them:

    - int ``r``: ``r`` in every layer;
    - tuple ``(r, inflection)``, inflection in [-1, 1]: a linear schedule from
      ``lo = int(r * (1 - inflection))`` in the first layer to ``hi = 2 r - lo`` in the last,
      each layer ``int(lo + (hi - lo) * i / (num_layers - 1))``; ``(r, 0)`` is constant ``r``,
      ``(r, -1)`` the paper's decreasing schedule (ViT-B/16, ``(8, -1)``: 16, 14, 13, ..., 1, 0);
    - list: one value per layer, padded with 0 for the missing layers.
    """
    if isinstance(r, bool) or not isinstance(r, (int, tuple, list)):
        raise TypeError(f"ToMe r must be an int, an (r, inflection) tuple or a list of ints, got {r!r}")
    if isinstance(r, list):
        if not all(isinstance(v, int) and v >= 0 for v in r):
            raise ValueError(f"ToMe r list must hold ints >= 0, got {r}")
        return list(r) + [0] * (num_layers - len(r))
    inflection = 0.0
    if isinstance(r, tuple):
        if len(r) != 2 or not isinstance(r[0], int) or not -1.0 <= float(r[1]) <= 1.0:
            raise ValueError(f"ToMe r tuple must be (r: int, inflection in [-1, 1]), got {r!r}")
        r, inflection = r[0], float(r[1])
    if r < 0:
        raise ValueError(f"ToMe r must be >= 0, got {r}")
    lo = int(r * (1.0 - inflection))
    hi = 2 * r - lo
    step = (hi - lo) / max(num_layers - 1, 1)
    return [int(lo + step * i) for i in range(num_layers)]


def _match(
    a: torch.Tensor, b: torch.Tensor, r: int, protect_a: bool, protect_b: bool = False
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Edges from set A (B, Na, C) to its most similar token in set B (B, Nb, C) by cosine
    similarity; the ``r`` strongest edges are merged. ``protect_a``: A's first token (a CLS)
    is never merged away; ``protect_b``: nothing merges into B's first token. Returns
    (unm_idx (B, Na-r, 1) kept A tokens in original order, src_idx (B, r, 1) merged A
    tokens, dst_idx (B, r, 1) their B partners)."""
    a = a / a.norm(dim=-1, keepdim=True)
    b = b / b.norm(dim=-1, keepdim=True)
    scores = a @ b.transpose(-1, -2)
    if protect_b:
        scores[..., :, 0] = -math.inf
    if protect_a:  # the CLS token is never merged away
        scores[..., 0, :] = -math.inf
    node_max, node_idx = scores.max(dim=-1)
    edge_idx = node_max.argsort(dim=-1, descending=True)[..., None]
    unm_idx = edge_idx[..., r:, :].sort(dim=-2).values  # keep order (and CLS first)
    src_idx = edge_idx[..., :r, :]
    dst_idx = node_idx[..., None].gather(dim=-2, index=src_idx)
    return unm_idx, src_idx, dst_idx


def bipartite_soft_matching(metric: torch.Tensor, r: int, class_token: bool = True) -> MergeFn:
    """ToMe's matching on metric (B, N, C): even tokens form set A, odd tokens set B; each A
    token points at its most similar B token and the ``r`` best pairs merge. Returns
    ``merge(x (B, N, D), mode="sum"|"mean") -> (B, N - r, D)`` with the kept A tokens first
    (CLS at index 0), then B. ``r`` is capped at half the tokens."""
    N = metric.shape[1]
    r = min(r, (N - int(class_token)) // 2)
    if r <= 0:
        return lambda x, mode="mean": x
    with torch.no_grad():
        unm_idx, src_idx, dst_idx = _match(metric[..., ::2, :], metric[..., 1::2, :], r, protect_a=class_token)

    def merge(x: torch.Tensor, mode: str = "mean") -> torch.Tensor:
        src, dst = x[..., ::2, :], x[..., 1::2, :]
        B, _, D = src.shape
        unm = src.gather(dim=-2, index=unm_idx.expand(B, unm_idx.shape[1], D))
        moved = src.gather(dim=-2, index=src_idx.expand(B, r, D))
        dst = dst.scatter_reduce(-2, dst_idx.expand(B, r, D), moved, reduce=mode)
        return torch.cat([unm, dst], dim=1)

    return merge


def merge_wavg(merge: MergeFn, x: torch.Tensor, size: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Size-weighted average merge: x (B, N, D), size (B, N, 1) -> (x', size'), sizes summed."""
    if size is None:
        size = torch.ones_like(x[..., :1])
    x = merge(x * size, "sum")
    size = merge(size, "sum")
    return x / size, size


def temporal_merge(
    x: torch.Tensor, r: int, size: torch.Tensor | None = None, *, class_token: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """Temporal token merging (ours): for each pair of neighbouring frames (2k, 2k+1), the
    ``r`` tokens of frame 2k+1 most similar to a token of frame 2k merge into it
    (size-weighted). ``class_token=True`` says token 0 of every frame is its CLS: the later
    frame's CLS is never merged and no patch merges into the earlier frame's CLS, so both
    stay as they were (output token 0 is frame 2k's CLS, token N frame 2k+1's); ``r`` is
    then capped at N - 1, otherwise at N.

    x (B, T, N, D), size (B, T, N, 1) or None -> (B, T//2, 2N - r, D), (B, T//2, 2N - r, 1).
    T must be even (an odd T raises ValueError: drop or repeat a frame first)."""
    B, T, N, D = x.shape
    if T % 2:
        raise ValueError(f"temporal_merge needs an even number of frames, got T={T}")
    r = max(0, min(r, N - int(class_token)))
    if size is None:
        size = torch.ones_like(x[..., :1])
    # A = later frame (its tokens get merged away), B = earlier frame; pairs become the batch.
    later = x[:, 1::2].reshape(B * T // 2, N, D)
    earlier = x[:, 0::2].reshape(B * T // 2, N, D)
    s_later = size[:, 1::2].reshape(B * T // 2, N, 1)
    s_earlier = size[:, 0::2].reshape(B * T // 2, N, 1)
    if r == 0:
        out = torch.cat([earlier, later], 1)
        return out.reshape(B, T // 2, 2 * N, D), torch.cat([s_earlier, s_later], 1).reshape(B, T // 2, 2 * N, 1)
    with torch.no_grad():
        unm_idx, src_idx, dst_idx = _match(later, earlier, r, protect_a=class_token, protect_b=class_token)

    def merge(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        C = a.shape[-1]
        unm = a.gather(-2, unm_idx.expand(-1, -1, C))
        moved = a.gather(-2, src_idx.expand(-1, -1, C))
        return torch.cat([b.scatter_reduce(-2, dst_idx.expand(-1, -1, C), moved, reduce="sum"), unm], 1)

    new_size = merge(s_later, s_earlier)
    new_x = merge(later * s_later, earlier * s_earlier) / new_size
    M = 2 * N - r
    return new_x.reshape(B, T // 2, M, D), new_size.reshape(B, T // 2, M, 1)


def proportional_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float, size: torch.Tensor | None
) -> torch.Tensor:
    """softmax(q k^T * scale + log size) v. q, k, v (B, H, N, Dh); size (B, N, 1) or None.
    A token standing for s patches gets the attention mass of s identical keys."""
    bias = None if size is None else size.log()[:, None, None, :, 0].to(q.dtype)  # (B, 1, 1, N)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=bias, scale=scale)


# ---------------------------------------------------------------------------------------
# Patched modules. They read per-forward state from ``self._tome_info`` (a dict shared by
# the model and its blocks): r per layer, size, whether CLS is present, prop_attn.
# ---------------------------------------------------------------------------------------


def _next_r(info: dict) -> int:
    return info["r"].pop(0) if info["r"] else 0


class ToMeAttention(nn.Module):
    """The core ViT's Attention (same parameters) returning (out, keys averaged over heads);
    the keys are ToMe's similarity metric."""

    def forward(self, x: torch.Tensor, size: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:  # type: ignore[override]
        B, L, D = x.shape
        q, k, v = self.qkv(x).view(B, L, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4).unbind(0)
        out = proportional_attention(q, k, v, self.scale, size).transpose(1, 2).reshape(B, L, D)
        return self.proj_drop(self.proj(out)), k.mean(1)


class ToMeBlock(nn.Module):
    """The core ViT's Block with a merge between attention and MLP (ToMe's placement)."""

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None = None, is_causal: bool = False) -> torch.Tensor:  # type: ignore[override]
        info = self._tome_info
        if attn_mask is not None or is_causal:
            raise ValueError("ToMe-patched blocks do not support attention masks")
        x_attn, metric = self.attn(self.norm1(x), info["size"] if info["prop_attn"] else None)
        x = x + x_attn
        r = _next_r(info)
        if r > 0:
            merge = bipartite_soft_matching(metric, r, info["class_token"])
            x, info["size"] = merge_wavg(merge, x, info["size"])
        return x + self.mlp(self.norm2(x))


class ToMeCLIPEncoderLayer(nn.Module):
    """transformers' CLIPEncoderLayer with ToMe (attention recomputed from its own q/k/v
    projections so that proportional attention can be added)."""

    def forward(self, hidden_states: torch.Tensor, attention_mask: torch.Tensor | None = None, *args, **kwargs):  # type: ignore[override]
        info = self._tome_info
        attn = self.self_attn
        h = self.layer_norm1(hidden_states)
        B, L, D = h.shape
        shape = (B, L, attn.num_heads, attn.head_dim)
        q = attn.q_proj(h).view(shape).transpose(1, 2)
        k = attn.k_proj(h).view(shape).transpose(1, 2)
        v = attn.v_proj(h).view(shape).transpose(1, 2)
        out = proportional_attention(q, k, v, attn.scale, info["size"] if info["prop_attn"] else None)
        x = hidden_states + attn.out_proj(out.transpose(1, 2).reshape(B, L, D))
        r = _next_r(info)
        if r > 0:
            merge = bipartite_soft_matching(k.mean(1), r, info["class_token"])
            x, info["size"] = merge_wavg(merge, x, info["size"])
        return x + self.mlp(self.layer_norm2(x))


def _tome_wrapper(cls: type, entry: str) -> type:
    """A subclass of ``cls`` whose ``entry`` method first resets the per-forward ToMe state."""

    def reset_then_call(self, *args, **kwargs):
        self._tome_info["r"] = parse_r(self._tome_num_layers, self.r)
        self._tome_info["size"] = None
        return getattr(super(new_cls, self), entry)(*args, **kwargs)

    new_cls = type(f"ToMe{cls.__name__}", (cls,), {entry: reset_then_call})
    return new_cls


def _is_hf_clip_vision(m: nn.Module) -> bool:
    """transformers' CLIP vision tower (``CLIPVisionTransformer`` in 4.x, ``CLIPVisionModel``
    itself in 5.x): the module that owns CLIPVisionEmbeddings and the encoder layers."""
    emb, enc = getattr(m, "embeddings", None), getattr(m, "encoder", None)
    return type(emb).__name__ == "CLIPVisionEmbeddings" and hasattr(enc, "layers")


def tome_modules(model: nn.Module) -> list[nn.Module]:
    """The patched towers inside ``model`` (set ``.r`` on them; read ``._tome_info``)."""
    return [m for m in model.modules() if hasattr(m, "_tome_info") and hasattr(m, "_tome_num_layers")]


def apply_patch(model: nn.Module, r: int | Sequence[int] = 8, prop_attn: bool = True) -> nn.Module:
    """Patches (in place) every core ``VisionTransformer`` or HF ``CLIPVisionTransformer``
    inside ``model`` to merge tokens in each block, ``r`` as ToMe reads it (``parse_r``: an
    int, an ``(r, inflection)`` schedule or a per-layer list).
    Afterwards ``vit.r`` can be changed freely; ``vit._tome_info["size"]`` holds the last
    forward's token sizes (B, N', 1). ``r=0`` computes exactly the unmerged model."""
    from vlx.encoders.vit import Block, VisionTransformer

    parse_r(12, r)  # a malformed r fails here, not at the first forward
    patched = 0
    for m in list(model.modules()):
        if isinstance(m, VisionTransformer) and not hasattr(m, "_tome_info"):
            blocks, entry = list(m.blocks), "forward_features"
            block_cls, attn_attr, attn_cls = ToMeBlock, "attn", ToMeAttention
            if not all(isinstance(b, Block) for b in blocks):
                raise TypeError("apply_patch: VisionTransformer.blocks must be vlx.encoders.vit.Block")
        elif _is_hf_clip_vision(m) and not hasattr(m, "_tome_info"):
            blocks, entry = list(m.encoder.layers), "forward"
            block_cls, attn_attr, attn_cls = ToMeCLIPEncoderLayer, None, None
        else:
            continue
        info = {"r": [], "size": None, "class_token": True, "prop_attn": prop_attn}
        m.__class__ = _tome_wrapper(type(m), entry)
        m.r, m._tome_info, m._tome_num_layers = r, info, len(blocks)
        for b in blocks:
            b.__class__ = type(f"ToMe{type(b).__name__}", (block_cls, type(b)), {})
            b._tome_info = info
            if attn_attr is not None:
                a = getattr(b, attn_attr)
                a.__class__ = type(f"ToMe{type(a).__name__}", (attn_cls, type(a)), {})
        patched += 1
    if not patched:
        raise TypeError(
            f"apply_patch: no vlx VisionTransformer or HF CLIPVisionTransformer found in {type(model).__name__}"
        )
    return model
