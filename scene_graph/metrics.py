"""3D grounding / QA / dense-captioning metrics as the benchmarks report them:
ScanRefer's Acc@0.25/0.5 split Unique/Multiple/Overall, referit3d's (Nr3D/Sr3D) candidate
accuracy split Easy/Hard/View-dependent/View-independent, ScanQA's EM@1/EM@10 plus caption
metrics of the top answer, and Scan2Cap's caption metrics at box IoU 0.25 / 0.5.

ScanQA's exact match comes in two labelled variants: ``EM@1`` / ``EM@10`` as ScanQA's own
scorer (``scripts/score.py``: the answer string is one of the reference strings, no
normalisation) and ``EM@1_refined`` / ``EM@10_refined`` as LEO's evaluator (Huang et al. 2024:
both sides cleaned, then equal or one contained in the other, spaces ignored). METEOR is
ScanQA's (pycocoevalcap's PTB tokenizer and METEOR 1.5, both Java programs): reported when
``java`` is on the PATH, otherwise absent with the reason under ``METEOR_note``.
"""

from __future__ import annotations

import re
import shutil
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


def qa_exact_match(pred_topk: Sequence[Sequence[str]], answers: Sequence[Sequence[str]]) -> dict[str, float]:
    """EM@1 / EM@10 (percent) as ScanQA's scorer and as LEO's refined EM.

    ``EM@k``: one of the top-k predicted strings is one of the reference strings, exactly.
    ``EM@k_refined``: after LEO's :func:`clean_answer` of both sides, a prediction equals a
    reference or one contains the other (spaces removed).
    """
    if len(pred_topk) != len(answers):
        raise ValueError(f"qa_exact_match: {len(pred_topk)} predictions for {len(answers)} questions")
    sums = dict.fromkeys(("EM@1", "EM@10", "EM@1_refined", "EM@10_refined"), 0)
    for preds, refs in zip(pred_topk, answers):
        top = list(preds[:10])
        sums["EM@1"] += bool(top) and top[0] in refs
        sums["EM@10"] += any(p in refs for p in top)
        clean = [clean_answer(r) for r in refs]
        hits = [refined_match(clean_answer(p), clean) for p in top]
        sums["EM@1_refined"] += bool(hits) and hits[0]
        sums["EM@10_refined"] += any(hits)
    n = max(len(answers), 1)
    return {k: 100.0 * v / n for k, v in sums.items()}


def refined_match(pred: str, refs: Sequence[str]) -> bool:
    """LEO's refined match: equal, or one contains the other once spaces are removed."""
    p = "".join(pred.split())
    return any(pred == r or p in "".join(r.split()) or "".join(r.split()) in p for r in refs)


_NUMBERS = ("zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen "
            "sixteen seventeen eighteen nineteen twenty").split()  # fmt: skip
_FIXES = {"letf": "left", "let": "left", "tehre": "there", "rigth": "right", "rght": "right", "behine": "behind",
          "tv": "TV", "chai": "chair", "wasing": "washing", "waslked": "walked", "oclock": "o'clock"}  # fmt: skip


def clean_answer(text: str) -> str:
    """LEO's answer cleaning (``data_utils.clean_answer``): lower case, collapse spaces, drop
    characters other than letters, digits, ``,'-:`` and spaces, fix a few typos, spell out the
    numbers 0-20 and 23 ("none" -> "zero"), drop a trailing digit glued to a word, and drop
    the articles a / an / the before a word."""
    t = text.lower().strip(" ")
    t = re.sub(" {2,}", " ", t)
    t = re.sub(r"\.[ ]{2,}", ". ", t)
    t = re.sub(r"[^a-zA-Z0-9,'\s\-:]+", "", t)
    for wrong, right in _FIXES.items():
        t = re.sub(rf"\b{wrong}\b", right, t)
    t = re.sub(r"\bo'[ ]+clock\b", "o'clock", t)
    t = re.sub(r"\bnone\b", "zero", t)
    for k, word in enumerate(_NUMBERS):
        t = re.sub(rf"\b{k}\b", word, t)
    t = re.sub(r"\b23\b", "twenty-three", t)
    t = re.sub(r"\b([a-zA-Z]+)([0-9])\b", r"\g<1>", t)
    for article in ("a", "an", "the"):
        t = re.sub(rf"\b{article}\b ([a-zA-Z]+)", r"\g<1>", t)
    return re.sub(r"\bbackwards\b", "backward", t)


def java_available() -> bool:
    return shutil.which("java") is not None


def qa_meteor(top1: Sequence[str], answers: Sequence[Sequence[str]]) -> dict:
    """ScanQA's METEOR of the top answers (percent), or ``{"METEOR_note": why not}``."""
    if not java_available():
        return {"METEOR_note": "n/a: METEOR (pycocoevalcap) runs Java and no java is on the PATH"}
    try:
        from pycocoevalcap.meteor.meteor import Meteor
        from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer
    except ImportError:
        return {"METEOR_note": "n/a: pycocoevalcap is not installed (pip install pycocoevalcap)"}
    tok = PTBTokenizer()
    gts = tok.tokenize({str(k): [{"caption": a} for a in refs] for k, refs in enumerate(answers)})
    res = tok.tokenize({str(k): [{"caption": p}] for k, p in enumerate(top1)})
    score, _ = Meteor().compute_score(gts, res)
    return {"METEOR": 100.0 * float(score)}


def qa_metrics(
    pred_topk: Sequence[Sequence[str]], answers: Sequence[Sequence[str]], meteor: bool = True
) -> dict[str, float]:
    """EM@1/EM@10 (ScanQA's and LEO's refined), the core's caption metrics of the top-1 answer
    against the references, and METEOR when Java is present (``meteor=True``)."""
    from vlx.metrics import caption_metrics

    out = qa_exact_match(pred_topk, answers)
    top1 = [p[0] if p else "" for p in pred_topk]
    out.update(caption_metrics(top1, [list(a) for a in answers]))
    if meteor:
        out.update(qa_meteor(top1, answers))
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
