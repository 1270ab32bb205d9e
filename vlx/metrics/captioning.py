"""Captioning metrics as coco-caption computes them (pycocoevalcap's Bleu, Rouge and Cider
scorers; Papineni et al. 2002, Lin 2004, Vedantam et al. 2015), written here so they run without
Java (coco-caption's PTB tokenizer needs it) and faster; tests check agreement to 1e-6.

``bleu``, ``rouge_l`` and ``cider_d`` take already-tokenized strings (tokens separated by
single spaces) and return coco's raw scale (0..1 for BLEU/ROUGE-L, 0..10 for CIDEr-D);
``caption_metrics`` tokenizes with ``tokenize_caption`` and reports them x100, as papers do.
"""
from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence

from vlx.data.errors import DataError

# ---- tokenization ------------------------------------------------------------------------
_CLITIC = re.compile(r"(?<=\w)('(?:s|re|ve|ll|d|m)|n't)\b")
_TOKEN = re.compile(r"n't|'(?:s|re|ve|ll|d|m)\b|\d+(?:[.,]\d+)+|\w+(?:[-/&]\w+)*|[$%#@+=*<>~^|\\]")


def tokenize_caption(text: str) -> str:
    """Lower-case and tokenize a caption the way coco-caption's Stanford PTBTokenizer +
    punctuation removal does for ordinary captions, without Java.

    What it does: lower-cases; splits off the clitics 's 're 've 'll 'd 'm and n't as their own
    tokens ("don't" -> "do n't", "dog's" -> "dog 's"); keeps numbers with inner . or , whole
    ("3.5", "1,000") and words with inner - / & whole ("t-shirt", "black/white"); keeps the
    symbols $ % # @ + = * < > ~ ^ | \\ as tokens; drops every other punctuation mark (the
    tokens coco-caption removes: . , ? ! : ; - -- ... quotes, backquotes and brackets).
    Returns the tokens joined by single spaces ("" for a caption with no tokens). It is an
    approximation of PTB for edge cases (abbreviations such as "st." lose their period, as
    coco's removal of "." after PTB would not); compare published numbers only on identically
    tokenized text.
    """
    s = _CLITIC.sub(r" \1", text.lower())
    return " ".join(_TOKEN.findall(s))


# ---- shared n-gram counting --------------------------------------------------------------
def _ngram_counts(words: Sequence[str], n: int) -> Counter:
    c: Counter = Counter()
    for k in range(1, n + 1):
        c.update(tuple(words[i : i + k]) for i in range(len(words) - k + 1))
    return c


def _check(preds: Sequence[str], refs: Sequence[Sequence[str]], who: str) -> None:
    if len(preds) != len(refs):
        raise DataError(f"{who}: {len(preds)} predictions but {len(refs)} reference sets")
    for i, (p, r) in enumerate(zip(preds, refs)):
        if not isinstance(p, str):
            raise DataError(f"{who}: prediction {i} is {type(p).__name__}, expected str")
        if isinstance(r, str) or len(r) == 0:
            raise DataError(f"{who}: reference set {i} must be a non-empty list of strings, got {r!r}")


# ---- BLEU --------------------------------------------------------------------------------
def bleu(preds: Sequence[str], refs: Sequence[Sequence[str]], n: int = 4) -> list[float]:
    """Corpus BLEU-1..n as coco-caption's BleuScorer with option "closest": clipped n-gram
    counts summed over the corpus, the effective reference length of each sentence is the
    reference length closest to it (the shorter on a tie), one brevity penalty over the corpus
    totals, and coco's smoothing constants (1e-15 / 1e-9) so an empty corpus scores ~0.
    preds: N tokenized strings; refs: N lists of tokenized strings. Returns [BLEU-1, ..., BLEU-n]."""
    _check(preds, refs, "bleu")
    tiny, small = 1e-15, 1e-9
    correct, guess = [0] * n, [0] * n
    testlen = reflen = 0
    for p, rs in zip(preds, refs):
        words = p.split()
        tl = len(words)
        maxref: dict[tuple, int] = {}
        lens = []
        for r in rs:
            rw = r.split()
            lens.append(len(rw))
            for g, c in _ngram_counts(rw, n).items():
                if c > maxref.get(g, 0):
                    maxref[g] = c
        testlen += tl
        reflen += min((abs(l - tl), l) for l in lens)[1]
        for g, c in _ngram_counts(words, n).items():
            correct[len(g) - 1] += min(maxref.get(g, 0), c)
        for k in range(n):
            guess[k] += max(0, tl - k)
    scores, prod = [], 1.0
    for k in range(n):
        prod *= (correct[k] + tiny) / (guess[k] + small)
        scores.append(prod ** (1.0 / (k + 1)))
    ratio = (testlen + tiny) / (reflen + small)
    if ratio < 1:
        scores = [s * math.exp(1 - 1 / ratio) for s in scores]
    return scores


# ---- ROUGE-L -----------------------------------------------------------------------------
def lcs_length(a: Sequence[str], b: Sequence[str]) -> int:
    """Length of the longest common subsequence, bit-parallel (Allison & Dix 1986; Hyyro 2004):
    one big-int add per token of ``b`` instead of a len(a) x len(b) table in Python."""
    if not a or not b:
        return 0
    match: dict[str, int] = {}
    for i, tok in enumerate(a):
        match[tok] = match.get(tok, 0) | (1 << i)
    full = (1 << len(a)) - 1
    v = full
    for tok in b:
        u = v & match.get(tok, 0)
        v = ((v + u) | (v - u)) & full
    return len(a) - bin(v).count("1")


def rouge_l_scores(preds: Sequence[str], refs: Sequence[Sequence[str]], beta: float = 1.2) -> list[float]:
    """Per-sample ROUGE-L as coco-caption's Rouge: the best precision and the best recall over
    the references (each maximised on its own), combined as an F-measure weighted by ``beta``.
    Tokens are split on single spaces like coco, so "" is one empty token (scores 0 against
    non-empty references)."""
    _check(preds, refs, "rouge_l")
    out = []
    for p, rs in zip(preds, refs):
        c = p.split(" ")
        prec = rec = 0.0
        for r in rs:
            t = r.split(" ")
            lcs = lcs_length(t, c)
            prec, rec = max(prec, lcs / len(c)), max(rec, lcs / len(t))
        out.append((1 + beta**2) * prec * rec / (rec + beta**2 * prec) if prec and rec else 0.0)
    return out


def rouge_l(preds: Sequence[str], refs: Sequence[Sequence[str]], beta: float = 1.2) -> float:
    """Mean over samples of ``rouge_l_scores`` (coco-caption's ROUGE-L, beta = 1.2)."""
    s = rouge_l_scores(preds, refs, beta)
    return sum(s) / len(s) if s else 0.0


# ---- CIDEr-D -----------------------------------------------------------------------------
def cider_d_scores(preds: Sequence[str], refs: Sequence[Sequence[str]], n: int = 4, sigma: float = 6.0) -> list[float]:
    """Per-sample CIDEr-D exactly as pycocoevalcap's ``cider_scorer`` (its ``Cider`` class is
    CIDEr-D, with clipping and the length penalty; the "D" is the Vedantam et al. variant).

    For each n-gram order k = 1..n: TF-IDF vectors with document frequencies counted over the
    reference *sets* (an n-gram counts once per sample) and idf = log(#samples) - log(max(1, df));
    the similarity to each reference is sum_g min(h_g, r_g) r_g / (|h| |r|) (candidate weights
    clipped by the reference's), times the Gaussian length penalty exp(-d^2 / (2 sigma^2)).
    Scores are averaged over k and over the references, times 10. As in the reference code, the
    length d compares the *bigram* counts (len - 1) of candidate and reference, not word counts.
    """
    _check(preds, refs, "cider_d")
    ref_counts = [[_ngram_counts(r.split(), n) for r in rs] for rs in refs]
    df: Counter = Counter()
    for rcs in ref_counts:
        df.update(set().union(*rcs))
    log_n = math.log(float(len(refs))) if refs else 0.0
    idf_cache: dict[tuple, float] = {}

    def vectorize(counts: Counter) -> tuple[list[dict], list[float], int]:
        vec: list[dict] = [{} for _ in range(n)]
        norm = [0.0] * n
        for g, tf in counts.items():
            w = idf_cache.get(g)
            if w is None:
                w = idf_cache[g] = log_n - math.log(max(1.0, df.get(g, 0.0)))
            k = len(g) - 1
            vec[k][g] = x = tf * w
            norm[k] += x * x
        length = sum(c for g, c in counts.items() if len(g) == 2)  # the reference's "length"
        return vec, [math.sqrt(x) for x in norm], length

    scores = []
    for p, rcs in zip(preds, ref_counts):
        vh, nh, lh = vectorize(_ngram_counts(p.split(), n))
        total = [0.0] * n
        for rc in rcs:
            vr, nr, lr = vectorize(rc)
            penalty = math.exp(-((lh - lr) ** 2) / (2 * sigma**2))
            for k in range(n):
                rk = vr[k]
                val = 0.0
                for g, x in vh[k].items():
                    y = rk.get(g)
                    if y is not None:
                        val += min(x, y) * y
                if nh[k] != 0 and nr[k] != 0:
                    val /= nh[k] * nr[k]
                total[k] += val * penalty
        scores.append(sum(total) / n / len(rcs) * 10.0)
    return scores


def cider_d(preds: Sequence[str], refs: Sequence[Sequence[str]], n: int = 4, sigma: float = 6.0) -> float:
    """Corpus CIDEr-D: the mean of ``cider_d_scores`` (coco's scale: x10, so ~0..10)."""
    s = cider_d_scores(preds, refs, n, sigma)
    return sum(s) / len(s) if s else 0.0


# ---- all together ------------------------------------------------------------------------
def caption_metrics(preds: Sequence[str], refs: Sequence[Sequence[str]], tokenize: bool = True) -> dict[str, float]:
    """{"BLEU-1".."BLEU-4", "ROUGE-L", "CIDEr-D"}, all x100 (CIDEr-D 100 = coco's 1.0).

    preds: N caption strings; refs: N non-empty lists of reference strings. With ``tokenize``
    (default) both sides go through ``tokenize_caption`` first; pass False for pre-tokenized text.
    """
    _check(preds, refs, "caption_metrics")
    if tokenize:
        preds = [tokenize_caption(p) for p in preds]
        refs = [[tokenize_caption(r) for r in rs] for rs in refs]
    b = bleu(preds, refs, 4)
    out = {f"BLEU-{k + 1}": 100.0 * v for k, v in enumerate(b)}
    out["ROUGE-L"] = 100.0 * rouge_l(preds, refs)
    out["CIDEr-D"] = 100.0 * cider_d(preds, refs)
    return out
