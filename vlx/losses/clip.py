"""CLIP's symmetric InfoNCE (Radford et al. 2021) with a multi-process all-gather, and the
gather helpers the other contrastive losses share.

Scaling convention (all losses in vlx.losses): under torch.distributed every rank gathers the
whole global batch and computes the *global* loss (the mean over all N = sum of the ranks'
batch sizes), so the loss value on every rank equals the single-process loss on the
concatenated batch. The gather's backward sums every rank's gradient into the local shard, so
a rank's local features get ``world_size x`` the single-process gradient of their slice, and
DDP's gradient *averaging* over ranks then reproduces the single-process parameter gradient
exactly (tests/vlx/test_distributed_loss.py checks both statements). ``ClipLoss(local_loss=
True)`` and ``FilipLoss`` reach the same value and gradients computing only their own rows.

Precision: logits are computed in float32 (or the inputs' float64) with autocast off, so a
bf16 autocast step neither rounds them (bf16 steps are 0.5 near 100) nor soft targets.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.distributed as dist
import torch.nn as nn
import torch.nn.functional as F


def world() -> tuple[int, int]:
    """(rank, world_size) of the default process group, (0, 1) when not distributed."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


_HOST_GROUPS: dict[int, object] = {}


def host_group():
    """A process group for small host-side (CPU tensor) exchanges such as shard sizes, so
    they never wait for the accelerator: the default group when its backend runs CPU tensors
    (gloo, or ``cpu:gloo,cuda:nccl``), else one gloo group over the same ranks, created on
    first use (every rank reaches its first loss call together, as ``new_group`` needs)."""
    if "gloo" in str(dist.get_backend()):
        return None
    key = id(dist.group.WORLD)
    if key not in _HOST_GROUPS:
        _HOST_GROUPS[key] = dist.new_group(backend="gloo")
    return _HOST_GROUPS[key]


def host_all_reduce_max(value: int) -> int:
    """The largest of every rank's ``value`` (a host-side int exchange)."""
    t = torch.tensor([value], dtype=torch.long)
    dist.all_reduce(t, op=dist.ReduceOp.MAX, group=host_group())
    return int(t)


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


def shard_sizes(n: int, device: torch.device | None = None) -> tuple[int, ...]:
    """Every rank's local batch size. Exchanged as CPU tensors over ``host_group()``: the
    sizes are host ints already, so reading them back needs no device synchronisation.
    ``device`` is ignored (kept for callers of the old signature)."""
    _, ws = world()
    t = torch.tensor([n], dtype=torch.long)
    out = [torch.zeros_like(t) for _ in range(ws)]
    dist.all_gather(out, t, group=host_group())
    return tuple(int(o) for o in out)


def gather_batch(
    *tensors: torch.Tensor | None, sizes: tuple[int, ...] | None = None
) -> tuple[torch.Tensor | None, ...]:
    """All-gather each tensor along dim 0 over the default group (a no-op when not
    distributed). Tensors that require grad keep a path to the local shard; others (ids,
    masks) are gathered without grad; ``None`` stays ``None``. bool tensors travel as uint8
    (gloo cannot all_gather bool). All tensors must share dim 0 (``sizes``: every rank's
    dim 0 when the caller already has them)."""
    _, ws = world()
    if ws == 1:
        return tensors
    if sizes is None:
        sizes = shard_sizes(next(t for t in tensors if t is not None).shape[0])
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


IdScope = Literal["global", "local"]


def check_id_scope(owner: str, scope: str) -> str:
    if scope not in ("global", "local"):
        raise ValueError(f"{owner}: id_scope must be 'global' or 'local', got {scope!r}")
    return scope


def scope_ids(ids: torch.Tensor | None, scope: IdScope) -> torch.Tensor | None:
    """Make ``ids`` comparable across ranks before they are gathered. ``"global"``: the ids
    already mean the same thing on every rank (dataset indices, hashes of a caption): kept.
    ``"local"``: unique only within this rank's batch (row offsets, per-batch phrase
    numbers): mapped to ``id * world_size + rank``, one-to-one, so equal ids on different
    ranks stop matching (they would be false positives). Single-process: unchanged."""
    if ids is None or scope == "global":
        return ids
    rank, ws = world()
    return ids if ws == 1 else ids * ws + rank


def pairwise_logits(a: torch.Tensor, b: torch.Tensor, logit_scale: torch.Tensor | float) -> torch.Tensor:
    """``logit_scale * a @ b.T`` in at least float32 with autocast off: a (N, E), b (M, E) -> (N, M).
    Evaluated as ``(logit_scale * a) @ b.T``, Python's left-to-right order and the order every
    seeded result in docs/results was trained with: scaling after the matmul rounds differently,
    and over hundreds of steps that changes the numbers (clip_shapes_relation_tiny: swap
    accuracy and R@1 moved by up to 3.5 points)."""
    dtype = torch.promote_types(torch.promote_types(a.dtype, b.dtype), torch.float32)
    with torch.autocast(a.device.type, enabled=False):
        s = logit_scale.to(dtype) if isinstance(logit_scale, torch.Tensor) else logit_scale
        return (s * a.to(dtype)) @ b.to(dtype).T


def positive_mask(ids: torch.Tensor | None, n: int, device: torch.device) -> torch.Tensor:
    """(N, N) bool: True where row and column are a positive pair (equal ids, or the diagonal)."""
    if ids is None:
        return torch.eye(n, dtype=torch.bool, device=device)
    ids = ids.reshape(-1)
    if ids.shape[0] != n:
        raise ValueError(f"ids has {ids.shape[0]} entries, expected one per row ({n})")
    return ids[:, None] == ids[None, :]


def multi_positive_nce(logits: torch.Tensor, pos: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """Mean (or sum) over rows of ``-mean_{j in P(i)} log softmax(logits_i)_j``.

    logits (N, M), pos (N, M) bool with at least one True per row."""
    logp = logits.log_softmax(dim=-1)
    per_row = -(logp * pos).sum(-1) / pos.sum(-1)
    return per_row.sum() if reduction == "sum" else per_row.mean()


def local_rows_loss(local_sum: torch.Tensor, n_total: int) -> torch.Tensor:
    """Turn this rank's share of a global loss (``local_sum`` = the sum of its rows' terms)
    into the all-gather convention: the value is the global mean on every rank (a scalar
    all_reduce, no host sync), the gradient is ``world_size x`` that of the local share, which
    after the gather's backward and DDP's averaging is the single-process gradient."""
    _, ws = world()
    local = local_sum / n_total
    if ws == 1:
        return local
    total = local.detach().clone()
    dist.all_reduce(total)
    scaled = local * ws
    return scaled + (total - scaled).detach()


class ClipLoss(nn.Module):
    """Symmetric InfoNCE over L2-normalised features.

    ClipLoss(local_loss=False, id_scope="global"); forward(a (N, E), b (N, E), logit_scale
    (0-dim, already exp'd), ids (N,) int | None) -> 0-dim.
    Row i of ``a`` and row i of ``b`` are a pair. With ``ids``, every pair (i, j) with
    ``ids[i] == ids[j]`` is a positive (several captions of one video, duplicate captions); the
    loss averages the log-probability over a row's positives; ``id_scope`` says whether ids
    are unique across ranks or only within a rank's batch (see ``scope_ids``). Across ranks,
    features and ids are all-gathered first (see the module docstring for the gradient
    scaling). ``local_loss`` (open_clip's option): each rank computes only its own rows
    against the gathered columns, n x N logits instead of N x N, with the same loss value and
    gradients as the full path.
    """

    def __init__(self, local_loss: bool = False, id_scope: IdScope = "global"):
        super().__init__()
        self.local_loss, self.id_scope = bool(local_loss), check_id_scope("ClipLoss", id_scope)

    def forward(
        self, a: torch.Tensor, b: torch.Tensor, logit_scale: torch.Tensor | float, ids: torch.Tensor | None = None
    ) -> torch.Tensor:
        if a.shape != b.shape or a.dim() != 2:
            raise ValueError(
                f"ClipLoss expects a and b of the same shape (N, E); got {tuple(a.shape)} and {tuple(b.shape)}"
            )
        ids = scope_ids(ids, self.id_scope)
        if self.local_loss and world()[1] > 1:
            return self._local(a, b, logit_scale, ids)
        a, b, ids = gather_batch(a, b, ids)
        logits = pairwise_logits(a, b, logit_scale)  # (N, N): rows are a, columns b
        if ids is None:  # the usual one-positive case: plain cross-entropy is faster
            labels = torch.arange(logits.shape[0], device=logits.device)
            return (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)) / 2
        pos = positive_mask(ids, logits.shape[0], logits.device)
        return (multi_positive_nce(logits, pos) + multi_positive_nce(logits.T, pos.T)) / 2

    def _local(self, a, b, logit_scale, ids) -> torch.Tensor:
        rank, _ = world()
        sizes = shard_sizes(a.shape[0])
        all_a, all_b, all_ids = gather_batch(a, b, ids, sizes=sizes)
        logits_ab = pairwise_logits(a, all_b, logit_scale)  # (n, N): own rows of a vs every b
        logits_ba = pairwise_logits(b, all_a, logit_scale)  # (n, N): own rows of b vs every a
        if ids is None:
            start = sum(sizes[:rank])
            labels = torch.arange(start, start + a.shape[0], device=a.device)
            terms = F.cross_entropy(logits_ab, labels, reduction="sum") + F.cross_entropy(
                logits_ba, labels, reduction="sum"
            )
        else:
            pos = ids.reshape(-1)[:, None] == all_ids.reshape(-1)[None, :]
            terms = multi_positive_nce(logits_ab, pos, "sum") + multi_positive_nce(logits_ba, pos, "sum")
        return local_rows_loss(terms / 2, sum(sizes))
