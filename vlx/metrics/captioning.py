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
from collections.abc import Sequence

import numpy as np

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


# ---- shared n-gram tables ---------------------------------------------------------------
def _check(preds: Sequence[str], refs: Sequence[Sequence[str]], who: str) -> None:
    if len(preds) != len(refs):
        raise DataError(f"{who}: {len(preds)} predictions but {len(refs)} reference sets")
    for i, (p, r) in enumerate(zip(preds, refs)):
        if not isinstance(p, str):
            raise DataError(f"{who}: prediction {i} is {type(p).__name__}, expected str")
        if isinstance(r, str) or len(r) == 0:
            raise DataError(f"{who}: reference set {i} must be a non-empty list of strings, got {r!r}")


class _Corpus:
    """The n-gram counts of every sentence of a captioning corpus as flat numpy arrays, so BLEU
    and CIDEr-D become a few sorts and bincounts instead of per-sample Python dicts.

    Sentences 0..N-1 are the predictions, N.. the references; ``sample[s]`` is the sample a
    sentence belongs to (a prediction's own index). ``orders[k-1] = (sent, gram, tf, G)``: one
    row per distinct (sentence, k-gram) with its count, rows sorted by (sentence, gram), gram
    ids in [0, G) for that order.
    """

    def __init__(self, preds: Sequence[str], refs: Sequence[Sequence[str]], n: int):
        sentences = [p.split() for p in preds] + [r.split() for rs in refs for r in rs]
        self.n_samples = len(preds)
        self.n_refs = np.array([len(rs) for rs in refs], dtype=np.int64)
        self.sample = np.concatenate([np.arange(len(preds)), np.repeat(np.arange(len(preds)), self.n_refs)]).astype(
            np.int64
        )
        self.length = np.array([len(w) for w in sentences], dtype=np.int64)
        vocab: dict[str, int] = {}
        ids = np.array([vocab.setdefault(w, len(vocab)) for ws in sentences for w in ws], dtype=np.int64)
        sent_of_tok = np.repeat(np.arange(len(sentences)), self.length)
        pos = np.arange(len(ids)) - (np.cumsum(self.length) - self.length)[sent_of_tok]
        room = self.length[sent_of_tok] - pos  # tokens from here to the end of the sentence
        self.orders: list[tuple[np.ndarray, np.ndarray, np.ndarray, int]] = []
        v = max(len(vocab), 1)
        prev = ids  # id of the (k-1)-gram starting at each token (k = 1: the word itself)
        for k in range(1, n + 1):
            t = np.flatnonzero(room >= k)
            if len(t) == 0:
                e = np.zeros(0, dtype=np.int64)
                self.orders.append((e, e, e, 1))
                continue
            if k == 1:
                gid, g = ids, v
            else:  # a k-gram is its (k-1)-gram prefix plus one word: ids stay < (#tokens) * V
                _, inv = np.unique(prev[t] * v + ids[t + k - 1], return_inverse=True)
                gid = np.full(len(ids), -1, dtype=np.int64)
                gid[t] = inv.reshape(-1)
                g = int(inv.max()) + 1
            key, tf = np.unique(sent_of_tok[t] * g + gid[t], return_counts=True)
            self.orders.append((key // g, key % g, tf, g))
            prev = gid


def _lookup(sorted_keys: np.ndarray, values: np.ndarray, query: np.ndarray, default):
    """values[i] where sorted_keys[i] == query, else ``default`` (vectorised dict.get)."""
    if len(sorted_keys) == 0:
        return np.full(len(query), default, dtype=values.dtype)
    at = np.searchsorted(sorted_keys, query).clip(max=len(sorted_keys) - 1)
    return np.where(sorted_keys[at] == query, values[at], default)


# ---- BLEU --------------------------------------------------------------------------------
def bleu(preds: Sequence[str], refs: Sequence[Sequence[str]], n: int = 4) -> list[float]:
    """Corpus BLEU-1..n as coco-caption's BleuScorer with option "closest": clipped n-gram
    counts summed over the corpus, the effective reference length of each sentence is the
    reference length closest to it (the shorter on a tie), one brevity penalty over the corpus
    totals, and coco's smoothing constants (1e-15 / 1e-9) so an empty corpus scores ~0.
    preds: N tokenized strings; refs: N lists of tokenized strings. Returns [BLEU-1, ..., BLEU-n]."""
    _check(preds, refs, "bleu")
    return _bleu(_Corpus(preds, refs, n), n) if preds else [0.0] * n


def _bleu(c: _Corpus, n: int) -> list[float]:
    N = c.n_samples
    tiny, small = 1e-15, 1e-9
    testlens = c.length[:N]
    correct = []
    for sent, gram, tf, g in c.orders:
        hyp, ref = sent < N, sent >= N
        # the largest count of each (sample, n-gram) over the sample's references
        rkey = c.sample[sent[ref]] * g + gram[ref]
        order = np.argsort(rkey, kind="stable")
        rkey, rtf = rkey[order], tf[ref][order]
        if len(rkey):
            starts = np.flatnonzero(np.r_[True, rkey[1:] != rkey[:-1]])
            ukey, maxref = rkey[starts], np.maximum.reduceat(rtf, starts)
        else:
            ukey, maxref = rkey, rtf
        clip = _lookup(ukey, maxref, sent[hyp] * g + gram[hyp], 0)
        correct.append(int(np.minimum(tf[hyp], clip).sum()))
    guess = [int(np.maximum(0, testlens - k).sum()) for k in range(n)]
    # closest reference length: the lexicographic min of (|l - testlen|, l) within each sample
    reflens = c.length[N:]
    big = int(reflens.max(initial=0)) + 1
    d = np.abs(reflens - testlens[c.sample[N:]]) * big + reflens
    starts = np.cumsum(c.n_refs) - c.n_refs
    reflen = int((np.minimum.reduceat(d, starts) % big).sum())
    testlen = int(testlens.sum())
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
    return _cider_d(_Corpus(preds, refs, n), n, sigma) if preds else []


def _cider_d(c: _Corpus, n: int, sigma: float) -> list[float]:
    N = c.n_samples
    log_n = math.log(float(N))
    ref_sample = c.sample[N:]  # the sample (= its prediction's sentence index) of each reference
    total = np.zeros(len(ref_sample))
    for sent, gram, tf, g in c.orders:
        hyp, ref = sent < N, sent >= N
        pairs = np.unique(c.sample[sent[ref]] * g + gram[ref])  # distinct (sample, n-gram) in refs
        df = np.bincount(pairs % g, minlength=g)
        w = tf * (log_n - np.log(np.maximum(1.0, df)))[gram]
        norm = np.sqrt(np.bincount(sent, w * w, minlength=len(c.length)).astype(np.float64))
        rsent = sent[ref] - N
        # the prediction's weight of each reference n-gram (rows are sorted by (sentence, gram))
        wh = _lookup(sent[hyp] * g + gram[hyp], w[hyp], ref_sample[rsent] * g + gram[ref], 0.0)
        wr = w[ref]
        # (astype: bincount of nothing comes back as int64)
        val = np.bincount(rsent, np.minimum(wh, wr) * wr, minlength=len(ref_sample)).astype(np.float64)
        den = norm[:N][ref_sample] * norm[N:]
        total += np.divide(val, den, out=np.zeros_like(val), where=den != 0)
    # the reference code's "length" is a sentence's number of bigrams
    bigrams = np.maximum(c.length - 1, 0) if n >= 2 else np.zeros_like(c.length)
    delta = (bigrams[:N][ref_sample] - bigrams[N:]).astype(np.float64)
    total *= np.exp(-(delta**2) / (2 * sigma**2))
    per_sample = np.bincount(ref_sample, total, minlength=N) / n / c.n_refs * 10.0
    return per_sample.tolist()


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
    if not preds:
        raise DataError("caption_metrics: no predictions to score")
    corpus = _Corpus(preds, refs, 4)  # n-gram tables shared by BLEU and CIDEr-D
    out = {f"BLEU-{k + 1}": 100.0 * v for k, v in enumerate(_bleu(corpus, 4))}
    out["ROUGE-L"] = 100.0 * rouge_l(preds, refs)
    cider = _cider_d(corpus, 4, 6.0)
    out["CIDEr-D"] = 100.0 * sum(cider) / len(cider)
    return out
