"""Metrics against naive references, and the captioning scores against pycocoevalcap's own
Bleu / Rouge / Cider(-D) scorers on the same pre-tokenized text (to 1e-6)."""

import random

import numpy as np
import pytest
import torch
from pycocoevalcap.bleu.bleu import Bleu
from pycocoevalcap.cider.cider import Cider
from pycocoevalcap.rouge.rouge import Rouge

from vlx.data.errors import DataError
from vlx.metrics import (
    bleu,
    caption_metrics,
    cider_d,
    cider_d_scores,
    image_text_retrieval_metrics,
    lcs_length,
    retrieval_metrics,
    rouge_l,
    rouge_l_scores,
    tokenize_caption,
    topk_accuracy,
)


# ---- retrieval ----------------------------------------------------------------------------
def naive_ranks(sim, gt_sets):
    ranks = []
    for q in range(sim.shape[0]):
        order = sorted(range(sim.shape[1]), key=lambda j: -float(sim[q, j]))  # no ties in random floats
        ranks.append(1 + min(order.index(j) for j in gt_sets[q]))
    return ranks


def test_retrieval_matches_argsort_reference():
    g = torch.Generator().manual_seed(0)
    sim = torch.randn(40, 30, generator=g)
    gt = torch.randint(0, 30, (40,), generator=g)
    ranks = naive_ranks(sim, [{int(x)} for x in gt])
    got = retrieval_metrics(sim, gt)
    for k in (1, 5, 10):
        assert got[f"R@{k}"] == pytest.approx(100 * np.mean([r <= k for r in ranks]))
    assert got["MdR"] == pytest.approx(np.median(ranks))
    assert got["MnR"] == pytest.approx(np.mean(ranks))
    # sets: the best-ranked of several correct items counts
    sets = [{int(gt[q]), (int(gt[q]) + 7) % 30} for q in range(40)]
    ranks2 = naive_ranks(sim, sets)
    got2 = retrieval_metrics(sim, sets)
    assert got2["MnR"] == pytest.approx(np.mean(ranks2)) and got2["MnR"] < got["MnR"]
    assert got2["R@1"] == pytest.approx(100 * np.mean([r == 1 for r in ranks2]))
    # a plain list of ints (or numpy ints) is a LongTensor; numpy sets work too
    assert retrieval_metrics(sim, gt.tolist()) == got
    assert retrieval_metrics(sim, list(gt.numpy())) == got
    assert retrieval_metrics(sim, [set(np.array(list(x))) for x in sets]) == got2


def test_retrieval_known_values_and_pessimistic_ties():
    sim = torch.tensor([[0.9, 0.1, 0.2], [0.3, 0.2, 0.1], [0.0, 0.5, 0.4]])
    # ranks: q0 -> item0 rank 1; q1 -> item1 rank 2; q2 -> item0 rank 3
    m = retrieval_metrics(sim, torch.tensor([0, 1, 0]))
    assert m == {"R@1": pytest.approx(100 / 3), "R@5": 100.0, "R@10": 100.0, "MdR": 2.0, "MnR": 2.0}
    # a collapsed model (all scores equal) must not look perfect
    flat = retrieval_metrics(torch.zeros(4, 4), torch.arange(4))
    assert flat["R@1"] == 0.0 and flat["MnR"] == 4.0


def test_image_text_both_directions():
    g = torch.Generator().manual_seed(1)
    sim = torch.randn(6, 12, generator=g)  # 6 images, 2 captions each
    t2i = torch.arange(12) // 2
    m = image_text_retrieval_metrics(sim, t2i)
    assert m["t2i_MnR"] == pytest.approx(np.mean(naive_ranks(sim.T, [{int(i)} for i in t2i])))
    assert m["i2t_MnR"] == pytest.approx(np.mean(naive_ranks(sim, [{2 * i, 2 * i + 1} for i in range(6)])))
    with pytest.raises(DataError, match="one column per caption"):
        image_text_retrieval_metrics(sim, t2i[:5])


def test_retrieval_bad_gt_errors():
    with pytest.raises(DataError, match=r"gt\[1\] is empty"):
        retrieval_metrics(torch.zeros(2, 3), [{0}, set()])
    with pytest.raises(DataError, match=r"gt\[1\] = 5 is outside"):
        retrieval_metrics(torch.zeros(2, 3), torch.tensor([0, 5]))
    with pytest.raises(DataError, match="3 entries for 2 queries"):
        retrieval_metrics(torch.zeros(2, 3), torch.tensor([0, 1, 2]))


# ---- classification -----------------------------------------------------------------------
def test_topk_accuracy_against_loop():
    g = torch.Generator().manual_seed(2)
    logits = torch.randn(50, 8, generator=g)
    labels = torch.randint(0, 8, (50,), generator=g)
    want = {}
    for k in (1, 3, 5):
        hits = sum(int(labels[i]) in sorted(range(8), key=lambda c: -float(logits[i, c]))[:k] for i in range(50))
        want[f"top{k}"] = 100 * hits / 50
    assert topk_accuracy(logits, labels, ks=(1, 3, 5)) == pytest.approx(want)
    # k beyond the number of classes: everything is a hit
    assert topk_accuracy(torch.randn(4, 3), torch.tensor([0, 1, 2, 0]))["top5"] == 100.0
    with pytest.raises(ValueError, match="one label per row"):
        topk_accuracy(torch.randn(4, 3), torch.tensor([0, 1]))


# ---- captioning ---------------------------------------------------------------------------
def test_tokenize_caption():
    assert tokenize_caption("A Man's dog doesn't run, in the \"park\"...") == "a man 's dog does n't run in the park"
    assert (
        tokenize_caption("It costs $3.50 (cheap)! A t-shirt; black/white -- 1,000 cats?")
        == "it costs $ 3.50 cheap a t-shirt black/white 1,000 cats"
    )
    assert tokenize_caption(" ... !? ") == ""
    assert tokenize_caption("Two  DOGS\tplaying.\n") == "two dogs playing"


def test_lcs_bit_parallel_matches_dynamic_programming():
    rng = random.Random(3)
    for _ in range(300):
        a = [rng.choice("abcde") for _ in range(rng.randint(0, 12))]
        b = [rng.choice("abcde") for _ in range(rng.randint(0, 12))]
        t = [[0] * (len(b) + 1) for _ in range(len(a) + 1)]
        for i in range(1, len(a) + 1):
            for j in range(1, len(b) + 1):
                t[i][j] = t[i - 1][j - 1] + 1 if a[i - 1] == b[j - 1] else max(t[i - 1][j], t[i][j - 1])
        assert lcs_length(a, b) == t[len(a)][len(b)]
    assert lcs_length(list("x" * 100), list("x" * 70)) == 70  # wider than a machine word


VOCAB = "a the man woman dog cat red blue small big is on in with near running sitting ball grass table".split()


def caption_corpus(n, seed):
    """Captions from a small vocabulary (so n-grams repeat across samples), with edge cases:
    empty predictions, single-word references, exact matches, duplicated references."""
    rng = random.Random(seed)
    sent = lambda lo, hi: " ".join(rng.choice(VOCAB) for _ in range(rng.randint(lo, hi)))
    preds, refs = [], []
    for i in range(n):
        rs = [sent(3, 12) for _ in range(rng.randint(1, 5))]
        p = sent(1, 12)
        kind = i % 10
        if kind == 0:
            p = ""
        elif kind == 1:
            rs = [rng.choice(VOCAB)]
        elif kind == 2:
            p = rs[0]
        elif kind == 3:
            rs = rs + [rs[0]]
        elif kind == 4:
            p = rng.choice(VOCAB)
        preds.append(p)
        refs.append(rs)
    # a fully repeated sample (same pred and refs twice)
    preds.append(preds[5])
    refs.append(list(refs[5]))
    return preds, refs


def coco(scorer, preds, refs, **kw):
    gts = {i: list(r) for i, r in enumerate(refs)}
    res = {i: [p] for i, p in enumerate(preds)}
    return scorer.compute_score(gts, res, **kw)


@pytest.mark.parametrize("seed,n", [(0, 300), (1, 40)])
def test_caption_scores_agree_with_pycocoevalcap(seed, n):
    preds, refs = caption_corpus(n, seed)
    want_cider, want_cider_each = coco(Cider(), preds, refs)
    assert cider_d(preds, refs) == pytest.approx(want_cider, abs=1e-6)
    assert np.allclose(cider_d_scores(preds, refs), want_cider_each, atol=1e-6)
    want_bleu, _ = coco(Bleu(4), preds, refs, verbose=0)
    assert np.allclose(bleu(preds, refs), want_bleu, atol=1e-6)
    want_rouge, want_rouge_each = coco(Rouge(), preds, refs)
    assert rouge_l(preds, refs) == pytest.approx(want_rouge, abs=1e-6)
    assert np.allclose(rouge_l_scores(preds, refs), want_rouge_each, atol=1e-6)
    # caption_metrics on pre-tokenized text is the same numbers x100
    m = caption_metrics(preds, refs, tokenize=False)
    assert m["CIDEr-D"] == pytest.approx(100 * want_cider, abs=1e-4)
    assert [m[f"BLEU-{k}"] for k in range(1, 5)] == pytest.approx([100 * b for b in want_bleu], abs=1e-4)
    assert m["ROUGE-L"] == pytest.approx(100 * want_rouge, abs=1e-4)


EDGE_CORPORA = {
    "one sample": (["a dog on the grass"], [["a dog is on the grass", "dog"]]),
    "all predictions empty": (["", ""], [["a dog"], ["the cat sat"]]),
    "empty reference string": (["a dog", ""], [["", "a dog runs"], [""]]),
    "single words": (["dog", "cat", "dog"], [["dog"], ["dog"], ["cat", "dog"]]),
}


@pytest.mark.parametrize("name", sorted(EDGE_CORPORA))
def test_caption_edge_cases_agree_with_pycocoevalcap(name):
    preds, refs = EDGE_CORPORA[name]
    want_cider, want_each = coco(Cider(), preds, refs)
    assert np.allclose(cider_d_scores(preds, refs), want_each, atol=1e-6)
    assert np.allclose(bleu(preds, refs), coco(Bleu(4), preds, refs, verbose=0)[0], atol=1e-6)
    assert np.allclose(rouge_l_scores(preds, refs), coco(Rouge(), preds, refs)[1], atol=1e-6)


def test_cider_is_the_d_variant():
    """The length penalty and the clipping make CIDEr-D differ from plain CIDEr: repeating a
    matching word cannot raise the score, and a longer candidate is penalised."""
    refs = [["a dog on the grass"], ["a cat on a table"], ["the man is running"]]
    base = cider_d_scores(["a dog on the grass", "a cat", "the man"], refs)
    rep = cider_d_scores(["a dog on the grass", "a cat cat cat cat", "the man"], refs)
    assert rep[1] <= base[1] + 1e-12
    assert base[0] == pytest.approx(10.0)  # exact match of a single reference: cosine 1 at every order
    longer = cider_d_scores(["a dog on the grass a dog on the grass", "a cat", "the man"], refs)
    assert longer[0] < base[0]


def test_caption_metrics_tokenizes_and_scores_perfect_match():
    refs = [["A dog runs on the grass.", "A brown dog running."], ["Two cats sleep!", "Cats sleeping on a bed."]]
    m = caption_metrics(["a dog runs on the grass", "two cats sleep"], refs)
    assert set(m) == {"BLEU-1", "BLEU-2", "BLEU-3", "BLEU-4", "ROUGE-L", "CIDEr-D"}
    assert m["BLEU-1"] == pytest.approx(100.0) and m["ROUGE-L"] == pytest.approx(100.0)
    worse = caption_metrics(["a cat sleeps", "a dog"], refs)
    assert all(worse[k] < m[k] for k in m)


def test_caption_input_errors():
    with pytest.raises(DataError, match="2 predictions but 1 reference sets"):
        caption_metrics(["a", "b"], [["a"]])
    with pytest.raises(DataError, match="reference set 1 must be a non-empty list"):
        caption_metrics(["a", "b"], [["a"], []])
    with pytest.raises(DataError, match="no predictions"):
        caption_metrics([], [])
    with pytest.raises(DataError, match="prediction 0 is NoneType"):
        cider_d([None], [["a"]])
