"""Retrieval metrics: recall at K, median and mean rank of the best-ranked correct item."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from vlx.data.errors import DataError

Gt = torch.Tensor | Sequence[int] | Sequence[set[int] | Sequence[int]]


def _gt_mask(gt: Gt, nq: int, ng: int, rows: slice, device: torch.device) -> torch.Tensor:
    """(rows, Ng) bool: the correct gallery items of each query in ``rows``."""
    n = rows.stop - rows.start
    mask = torch.zeros(n, ng, dtype=torch.bool, device=device)
    if isinstance(gt, torch.Tensor):
        mask[torch.arange(n, device=device), gt[rows].to(device)] = True
        return mask
    for r, q in enumerate(range(rows.start, rows.stop)):
        items = gt[q]
        items = [int(items)] if isinstance(items, (int, np.integer)) else [int(x) for x in items]
        if not items:
            raise DataError(f"retrieval_metrics: gt[{q}] is empty; every query needs at least one correct gallery item")
        mask[r, items] = True
    return mask


def retrieval_ranks(sim: torch.Tensor, gt: Gt, chunk: int = 1024) -> torch.Tensor:
    """1-based rank of the best-ranked correct gallery item of each query.

    sim (Nq, Ng), higher = more similar; gt a LongTensor (Nq,) of correct gallery indices, or a
    list of Nq sets of indices (any one counts). Ties are pessimistic: a wrong item scoring
    *equal* to the best correct one is counted above it, so a collapsed model (all scores equal)
    gets the worst rank instead of a perfect one. Returns a LongTensor (Nq,).
    """
    if sim.dim() != 2:
        raise ValueError(f"retrieval_metrics: sim must be (Nq, Ng), got shape {tuple(sim.shape)}")
    nq, ng = sim.shape
    if len(gt) != nq:
        raise DataError(f"retrieval_metrics: gt has {len(gt)} entries for {nq} queries")
    if isinstance(gt, torch.Tensor):
        gt = gt.reshape(-1).long()
        bad = (gt < 0) | (gt >= ng)
        if bad.any():
            q = int(bad.nonzero()[0])
            raise DataError(f"retrieval_metrics: gt[{q}] = {int(gt[q])} is outside the gallery of {ng} items")
    elif all(isinstance(g, (int, np.integer)) for g in gt):
        gt = torch.tensor(list(gt), dtype=torch.long)
        return retrieval_ranks(sim, gt, chunk)
    ranks = []
    for s in range(0, nq, chunk):  # chunks keep the (chunk, Ng) masks small for big galleries
        rows = slice(s, min(nq, s + chunk))
        block = sim[rows].float()
        try:
            correct = _gt_mask(gt, nq, ng, rows, block.device)
        except IndexError as e:
            raise DataError(
                f"retrieval_metrics: a gt index in queries {rows.start}..{rows.stop - 1} is outside the "
                f"gallery of {ng} items"
            ) from e
        best = block.masked_fill(~correct, float("-inf")).amax(dim=1, keepdim=True)
        ranks.append(((block >= best) & ~correct).sum(dim=1) + 1)
    return torch.cat(ranks).cpu()


def retrieval_metrics(sim: torch.Tensor, gt: Gt, ks: Sequence[int] = (1, 5, 10)) -> dict[str, float]:
    """{"R@1", "R@5", "R@10" (percent of queries whose best correct item ranks <= K), "MdR"
    (median rank, numpy's median: the mean of the middle two for an even count), "MnR" (mean
    rank)} for a similarity matrix sim (Nq, Ng) and gt as in ``retrieval_ranks``."""
    ranks = retrieval_ranks(sim, gt).double()
    out = {f"R@{k}": float((ranks <= k).double().mean() * 100) for k in ks}
    out["MdR"] = float(np.median(ranks.numpy()))
    out["MnR"] = float(ranks.mean())
    return out


def image_text_retrieval_metrics(
    sim: torch.Tensor, text_to_image: torch.Tensor | Sequence[int], ks: Sequence[int] = (1, 5, 10)
) -> dict[str, float]:
    """Both directions for images with several captions each.

    sim (N_images, N_texts); text_to_image (N_texts,): the image each caption describes.
    Text->image: one correct image per caption. Image->text: any of the image's captions is
    correct. Returns {"t2i_R@1", ..., "t2i_MnR", "i2t_R@1", ..., "i2t_MnR"}.
    """
    t2i_gt = torch.as_tensor(text_to_image, dtype=torch.long).reshape(-1)
    if sim.dim() != 2 or sim.shape[1] != len(t2i_gt):
        raise DataError(
            f"image_text_retrieval_metrics: sim {tuple(sim.shape)} needs one column per caption ({len(t2i_gt)})"
        )
    per_image: list[set[int]] = [set() for _ in range(sim.shape[0])]
    for t, i in enumerate(t2i_gt.tolist()):
        if not 0 <= i < sim.shape[0]:
            raise DataError(f"image_text_retrieval_metrics: text_to_image[{t}] = {i} is outside {sim.shape[0]} images")
        per_image[i].add(t)
    out = {f"t2i_{k}": v for k, v in retrieval_metrics(sim.T, t2i_gt, ks).items()}
    out.update({f"i2t_{k}": v for k, v in retrieval_metrics(sim, per_image, ks).items()})
    return out
