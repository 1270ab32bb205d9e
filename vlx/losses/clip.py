"""CLIP's symmetric InfoNCE (Radford et al. 2021) with a multi-process all-gather, and the
gather helper the other contrastive losses share.

Scaling convention (all losses in vlx.losses): under torch.distributed every rank gathers the
whole global batch and computes the *global* loss (the mean over all N = sum of the ranks'
batch sizes), so the loss value on every rank equals the single-process loss on the
concatenated batch. The gather's backward sums every rank's gradient into the local shard, so
a rank's local features get ``world_size x`` the single-process gradient of their slice, and
DDP's gradient *averaging* over ranks then reproduces the single-process parameter gradient
exactly (tests/vlx/test_distributed_loss.py checks both statements).
"""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn as nn
import torch.nn.functional as F


def world() -> tuple[int, int]:
    """(rank, world_size) of the default process group, (0, 1) when not distributed."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


class _GatherWithGrad(torch.autograd.Function):
    """all_gather along dim 0 whose backward sums the gradients of all ranks into the local
    shard. Written here rather than using torch.distributed.nn.functional.all_gather because
    that one needs equal shard sizes (a last partial batch has other sizes) and its backward
    needs all_to_all / reduce_scatter, which gloo on the CPU lacks; all_reduce works
    everywhere."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, sizes: tuple[int, ...]) -> torch.Tensor:
        rank, _ = world()
        ctx.sizes, ctx.rank = sizes, rank
        return _gather_padded(x, sizes)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        grad = grad.contiguous().clone()
        dist.all_reduce(grad)  # sum over ranks of d(loss_r)/d(gathered)
        start = sum(ctx.sizes[: ctx.rank])
        return grad[start : start + ctx.sizes[ctx.rank]], None


def _gather_padded(x: torch.Tensor, sizes: tuple[int, ...]) -> torch.Tensor:
    """Plain all_gather of shards whose dim-0 sizes are ``sizes``: pad to the largest, gather,
    trim, concatenate in rank order."""
    m = max(sizes)
    xp = x.contiguous()
    if x.shape[0] < m:
        xp = torch.cat([xp, xp.new_zeros((m - x.shape[0], *x.shape[1:]))])
    bufs = [torch.empty_like(xp) for _ in sizes]
    dist.all_gather(bufs, xp)
    return torch.cat([b[:s] for b, s in zip(bufs, sizes)])


def shard_sizes(n: int, device: torch.device) -> tuple[int, ...]:
    """Every rank's local batch size (one small all_gather)."""
    _, ws = world()
    t = torch.tensor([n], device=device, dtype=torch.long)
    out = [torch.zeros_like(t) for _ in range(ws)]
    dist.all_gather(out, t)
    return tuple(int(o) for o in out)


def gather_batch(*tensors: torch.Tensor | None) -> tuple[torch.Tensor | None, ...]:
    """All-gather each tensor along dim 0 over the default group (a no-op when not
    distributed). Tensors that require grad keep a path to the local shard; others (ids,
    masks) are gathered without grad; ``None`` stays ``None``. bool tensors travel as uint8
    (gloo cannot all_gather bool). All tensors must share dim 0."""
    _, ws = world()
    if ws == 1:
        return tensors
    first = next(t for t in tensors if t is not None)
    sizes = shard_sizes(first.shape[0], first.device)
    out = []
    for t in tensors:
        if t is None:
            out.append(None)
        elif t.requires_grad:
            out.append(_GatherWithGrad.apply(t, sizes))
        elif t.dtype == torch.bool:
            out.append(_gather_padded(t.to(torch.uint8), sizes).bool())
        else:
            out.append(_gather_padded(t, sizes))
    return tuple(out)


def positive_mask(ids: torch.Tensor | None, n: int, device: torch.device) -> torch.Tensor:
    """(N, N) bool: True where row and column are a positive pair (equal ids, or the diagonal)."""
    if ids is None:
        return torch.eye(n, dtype=torch.bool, device=device)
    ids = ids.reshape(-1)
    if ids.shape[0] != n:
        raise ValueError(f"ids has {ids.shape[0]} entries, expected one per row ({n})")
    return ids[:, None] == ids[None, :]


def multi_positive_nce(logits: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
    """Mean over rows of ``-mean_{j in P(i)} log softmax(logits_i)_j``.

    logits (N, M), pos (N, M) bool with at least one True per row."""
    logp = logits.log_softmax(dim=-1)
    per_row = -(logp * pos).sum(-1) / pos.sum(-1)
    return per_row.mean()


class ClipLoss(nn.Module):
    """Symmetric InfoNCE over L2-normalised features.

    forward(a (N, E), b (N, E), logit_scale (0-dim, already exp'd), ids (N,) int | None) -> 0-dim.
    Row i of ``a`` and row i of ``b`` are a pair. With ``ids``, every pair (i, j) with
    ``ids[i] == ids[j]`` is a positive (several captions of one video, duplicate captions); the
    loss averages the log-probability over a row's positives. Across ranks, features and ids
    are all-gathered first (see the module docstring for the gradient scaling).
    """

    def forward(
        self, a: torch.Tensor, b: torch.Tensor, logit_scale: torch.Tensor | float, ids: torch.Tensor | None = None
    ) -> torch.Tensor:
        if a.shape != b.shape or a.dim() != 2:
            raise ValueError(
                f"ClipLoss expects a and b of the same shape (N, E); got {tuple(a.shape)} and {tuple(b.shape)}"
            )
        a, b, ids = gather_batch(a, b, ids)
        logits = logit_scale * a @ b.T  # (N, N): rows are a, columns b
        if ids is None:  # the usual one-positive case: plain cross-entropy is faster
            labels = torch.arange(logits.shape[0], device=logits.device)
            return (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)) / 2
        pos = positive_mask(ids, logits.shape[0], logits.device)
        return (multi_positive_nce(logits, pos) + multi_positive_nce(logits.T, pos.T)) / 2
