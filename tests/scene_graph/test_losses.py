import math

import torch
import torch.nn.functional as F

from scene_graph.losses import (
    PretrainLossConfig,
    SceneGraphPretrainer,
    color_names,
    mask_words,
    phrase_id,
    relation_text_loss,
)
from scene_graph.models import GNNConfig, SceneModelConfig, build_scene_model


def test_relation_text_loss_matches_naive():
    torch.manual_seed(0)
    pair, pos, neg = (F.normalize(torch.randn(5, 8), dim=-1) for _ in range(3))
    scale = torch.tensor(10.0)
    ref = 0.0
    for r in range(5):
        logits = [scale * (pair[r] @ pos[c]) for c in range(5)] + [scale * (pair[r] @ neg[c]) for c in range(5)]
        ref += -(logits[r] - torch.logsumexp(torch.stack(logits), 0)) / 5
    assert torch.allclose(relation_text_loss(pair, pos, neg, scale), ref, atol=1e-6)
    # The swapped phrase is a harder negative when it is close to the pair: loss goes up.
    assert relation_text_loss(pair, pos, pair, scale) > relation_text_loss(pair, pos, None, scale)


def test_mask_words():
    ids = torch.tensor([[101, 5, 6, 7, 102, 0], [101, 9, 102, 0, 0, 0]])
    att = (ids != 0).long()
    masked, labels = mask_words(ids, att, 0.0, 103, [0, 101, 102], torch.Generator().manual_seed(0))
    assert (masked == 103).sum(1).tolist() == [1, 1]  # at least one word per text even at p=0
    assert ((labels != -100) == (masked == 103)).all() and (labels[labels != -100] != 101).all()
    assert not ((masked == 103) & torch.isin(ids, torch.tensor([0, 101, 102]))).any()
    masked, labels = mask_words(ids, att, 1.0, 103, [0, 101, 102], torch.Generator().manual_seed(0))
    assert (masked == 103).sum().item() == 4


def test_color_names():
    assert color_names(torch.tensor([[0.9, 0.1, 0.1], [0.1, 0.2, 0.8], [0.92, 0.9, 0.15]])) == ["red", "blue", "yellow"]


def test_pretrainer_objectives(room_dataset, tokenizer):
    torch.manual_seed(0)
    labels = sorted({l for it in room_dataset.items for l in it["graph"].label_names})
    cfg = SceneModelConfig(
        dim=32, fusion_heads=2, gnn=GNNConfig(heads=2), num_classes=len(labels), vocab_size=tokenizer.vocab_size
    )
    pre = SceneGraphPretrainer(build_scene_model(cfg), tokenizer, labels, PretrainLossConfig(max_relations=16))
    b = pre.collate(room_dataset.items[:6], seed=0)
    # relation phrases and their swaps differ only in argument order
    assert b["rel_edge"].numel() > 1
    pos = tokenizer.decode(b["rel_input_ids"][0])
    neg = tokenizer.decode(b["swap_input_ids"][0])
    assert pos != neg and sorted(pos.split()) == sorted(neg.split())
    out = pre(b)
    for k in ("object_text", "relation_text", "scene_text", "masked_objects", "masked_words"):
        assert torch.isfinite(out[f"loss_{k}"]), k
    # untrained: masked-object CE near log(#classes), masked-word CE near log(vocab)
    assert abs(out["loss_masked_objects"].item() - math.log(len(labels))) < 1.5
    out["loss"].backward()
    assert pre.model.class_head.weight.grad.abs().sum() > 0 and pre.model.word_head.weight.grad.abs().sum() > 0
    # same seed, same batch
    assert torch.equal(pre.collate(room_dataset.items[:6], seed=0)["obj_mask"], b["obj_mask"])


def test_object_phrase_ids_are_global(room_dataset, tokenizer):
    """obj_ids mean the same phrase in every batch (as ClipLoss's gather across ranks needs):
    two batches from different items give equal ids exactly for equal phrases."""
    labels = sorted({l for it in room_dataset.items for l in it["graph"].label_names})
    cfg = SceneModelConfig(dim=32, fusion_heads=2, gnn=GNNConfig(heads=2), num_classes=len(labels))
    pre = SceneGraphPretrainer(build_scene_model(cfg), tokenizer, labels, PretrainLossConfig(max_objects=64))
    phrases, ids = [], []
    for items in (room_dataset.items[:3], room_dataset.items[3:6]):
        b = pre.collate(items, seed=0)
        phrases += [tuple(r[m.bool()].tolist()) for r, m in zip(b["obj_input_ids"], b["obj_attention_mask"])]
        ids += b["obj_ids"].tolist()
    assert len(set(phrases)) > 1
    for p, i in zip(phrases, ids):
        for q, j in zip(phrases, ids):
            assert (p == q) == (i == j), (p, q)
    assert phrase_id("red chair") == phrase_id("red chair") != phrase_id("blue chair")
