"""3D grounding / QA / dense-captioning metrics as the benchmarks report them:
ScanRefer's Acc@0.25/0.5 split Unique/Multiple/Overall, referit3d's (Nr3D/Sr3D) candidate
accuracy split Easy/Hard/View-dependent/View-independent, ScanQA's EM@1/EM@10 plus caption
metrics of the top answer, and Scan2Cap's caption metrics at box IoU 0.25 / 0.5."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor


def box_iou_3d(a: Tensor, b: Tensor) -> Tensor:
    """IoU of axis-aligned boxes, pairwise by row: ``a, b (N, 6)`` (centre, size) -> ``(N,)``."""
    alo, ahi = a[:, :3] - a[:, 3:6] / 2, a[:, :3] + a[:, 3:6] / 2
    blo, bhi = b[:, :3] - b[:, 3:6] / 2, b[:, :3] + b[:, 3:6] / 2
    inter = (torch.minimum(ahi, bhi) - torch.maximum(alo, blo)).clamp(min=0).prod(-1)
    union = a[:, 3:6].prod(-1) + b[:, 3:6].prod(-1) - inter
    return inter / union.clamp(min=1e-12)


def grounding_accuracy(pred_boxes: Tensor, gt_boxes: Tensor, unique: Tensor) -> dict[str, float]:
    """ScanRefer's table: percent of expressions whose predicted box has IoU >= 0.25 / 0.5 with
    the target, for "unique" (target class alone in the scene), "multiple" and overall.

    pred_boxes, gt_boxes ``(N, 6)``; unique ``(N,)`` bool. Empty splits report NaN.
    """
    iou = box_iou_3d(pred_boxes.float(), gt_boxes.float())
    unique = unique.bool()
    out = {}
    for thr in (0.25, 0.5):
        hit = (iou >= thr).float()
        for name, m in (("unique", unique), ("multiple", ~unique), ("overall", torch.ones_like(unique))):
            out[f"{name}/Acc@{thr}"] = float(hit[m].mean() * 100) if m.any() else float("nan")
    return out


def candidate_accuracy(correct: Tensor, hard: Tensor, view_dependent: Tensor) -> dict[str, float]:
    """referit3d's table (percent): overall, easy / hard (hard: more than 2 objects of the
    target's class, i.e. more than one distractor), view-dependent / view-independent."""
    c = correct.float()
    hard, vd = hard.bool(), view_dependent.bool()
    splits = {"overall": torch.ones_like(hard), "easy": ~hard, "hard": hard, "view_dep": vd, "view_indep": ~vd}
    return {k: float(c[m].mean() * 100) if m.any() else float("nan") for k, m in splits.items()}


def _norm(s: str) -> str:
    return " ".join(s.lower().strip().rstrip(".?!").split())


def qa_exact_match(pred_topk: Sequence[Sequence[str]], answers: Sequence[Sequence[str]]) -> dict[str, float]:
    """ScanQA's EM@1 / EM@10 (percent): the top-1 (any of the top-10) predicted answers equals
    one of the reference answers after lower-casing and stripping punctuation."""
    if len(pred_topk) != len(answers):
        raise ValueError(f"qa_exact_match: {len(pred_topk)} predictions for {len(answers)} questions")
    em1 = em10 = 0
    for preds, refs in zip(pred_topk, answers):
        r = {_norm(a) for a in refs}
        p = [_norm(x) for x in preds]
        em1 += bool(p[:1]) and p[0] in r
        em10 += any(x in r for x in p[:10])
    n = max(len(answers), 1)
    return {"EM@1": 100.0 * em1 / n, "EM@10": 100.0 * em10 / n}


def qa_metrics(pred_topk: Sequence[Sequence[str]], answers: Sequence[Sequence[str]]) -> dict[str, float]:
    """EM@1/EM@10 plus the core's caption metrics of the top-1 answer against the references."""
    from vlx.metrics import caption_metrics

    out = qa_exact_match(pred_topk, answers)
    out.update(caption_metrics([p[0] if p else "" for p in pred_topk], [list(a) for a in answers]))
    return out


def scan2cap_metrics(preds: Sequence[str], refs: Sequence[Sequence[str]], ious: Tensor) -> dict[str, float]:
    """Scan2Cap's m@kIoU: a caption scores only when its predicted box overlaps the object it
    describes with IoU >= k; below that it is replaced by an empty caption (scored 0), as in
    Scan2Cap's evaluation, and the core's caption metrics are computed over all objects."""
    from vlx.metrics import caption_metrics

    out = {}
    for k in (0.25, 0.5):
        kept = [p if float(iou) >= k else "" for p, iou in zip(preds, ious)]
        for name, v in caption_metrics(kept, [list(r) for r in refs]).items():
            out[f"{name}@{k}IoU"] = v
    return out
