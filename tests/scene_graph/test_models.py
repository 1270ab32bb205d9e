import pytest
import torch
import torch.nn.functional as F

from scene_graph.data.dataset import collate_referrals
from scene_graph.models import (
    CaptionHead,
    GNNConfig,
    ObjectEncoderConfig,
    SceneModelConfig,
    build_scene_model,
    grounding_loss,
    predict_objects,
)
from vlx.config import ConfigError


def small(**kw):
    return SceneModelConfig(dim=32, fusion_heads=2, gnn=GNNConfig(heads=2, **kw))


@pytest.mark.parametrize("kind", ["transformer", "gat", "gine"])
def test_forward_backward_each_graph_layer(kind, room_dataset, tokenizer):
    torch.manual_seed(0)
    b = collate_referrals(room_dataset.items[:5], tokenizer)
    m = build_scene_model(small(kind=kind))
    out = m(b)
    assert out["scores"].shape == (b["box"].shape[0],) and torch.isfinite(out["loss"])
    out["loss"].backward()
    assert m.blocks[0].graph is not None and any(
        p.grad is not None and p.grad.abs().sum() > 0 for p in m.blocks[0].graph.parameters()
    )


@pytest.mark.parametrize("relation_head,layers", [(False, 2), (True, 0)])
def test_edges_carry_information_between_objects(room_dataset, tokenizer, relation_head, layers):
    """Without edges an object's score ignores every other object; with edges it does not,
    through the graph layers or (with zero graph layers) through the relation head alone."""
    b = collate_referrals(room_dataset.items[:1], tokenizer)
    other = b["points"].clone()
    other[1:] = torch.rand_like(other[1:])
    b2 = dict(b, points=other)
    for use_edges, changes in ((False, False), (True, True)):
        torch.manual_seed(0)
        cfg = SceneModelConfig(
            dim=32,
            fusion_heads=2,
            relation_head=relation_head,
            gnn=GNNConfig(heads=2, layers=layers, use_edges=use_edges),
        )
        m = build_scene_model(cfg).eval()
        with torch.no_grad():
            s1, s2 = m(b)["scores"][0], m(b2)["scores"][0]
        assert (not torch.allclose(s1, s2, atol=1e-6)) == changes


def test_grounding_loss_and_prediction_match_naive():
    torch.manual_seed(0)
    sizes = [3, 5, 2]
    nb = torch.repeat_interleave(torch.arange(3), torch.tensor(sizes))
    scores = torch.randn(sum(sizes))
    target = torch.tensor([1, 3 + 4, 8 + 0])
    ref, pred, start = 0.0, [], 0
    for k, n in enumerate(sizes):
        s = scores[start : start + n]
        ref += F.cross_entropy(s[None], (target[k] - start)[None]) / 3
        pred.append(start + int(s.argmax()))
        start += n
    assert torch.allclose(grounding_loss(scores, nb, target), ref)
    assert predict_objects(scores, nb).tolist() == pred


def test_qa_head_and_caption_head(room_dataset, tokenizer):
    b = collate_referrals(room_dataset.items[:4], tokenizer)
    b["answer"] = torch.tensor([0, 1, 2, -1])
    m = build_scene_model(SceneModelConfig(dim=32, fusion_heads=2, gnn=GNNConfig(heads=2), num_answers=3))
    out = m(b)
    assert out["answer_logits"].shape == (4, 3) and torch.isfinite(out["loss_answer"])
    # Training answers about the annotated object (teacher forcing); evaluation about the
    # grounded one: naive per-question reference from the fused states and raw tokens.
    scores, h, sent, tokens = m.ground(b, return_tokens=True)
    for k in range(4):
        t = int(b["target"][k])
        ref = m.answer_head(torch.cat([h[t], tokens[t], sent[k]]))
        assert torch.allclose(out["answer_logits"][k], ref, atol=1e-5)
    m.eval()
    with torch.no_grad():
        ev = m(b)
        scores, h, sent, tokens = m.ground(b, return_tokens=True)
    pred = predict_objects(scores, b["node_batch"])
    for k in range(4):
        p = int(pred[k])
        assert torch.allclose(ev["answer_logits"][k], m.answer_head(torch.cat([h[p], tokens[p], sent[k]])), atol=1e-5)
        t = int(b["target"][k])
        assert torch.allclose(
            ev["answer_logits_gt_object"][k], m.answer_head(torch.cat([h[t], tokens[t], sent[k]])), atol=1e-5
        )
    cap = CaptionHead(16, 50)
    ids = torch.randint(0, 50, (3, 7))
    assert cap(torch.randn(3, 16), ids).shape == (3, 6, 50)
    gen = cap.generate(torch.randn(3, 16), bos=1, eos=2, max_len=5)
    assert gen.shape[0] == 3 and gen.shape[1] <= 5


def test_config_errors():
    with pytest.raises(ConfigError, match="unknown 'nope'"):
        build_scene_model(SceneModelConfig(objects=ObjectEncoderConfig(backbone="nope")))
    with pytest.raises(ConfigError, match="divisible"):
        build_scene_model(SceneModelConfig(dim=30, gnn=GNNConfig(heads=4)))


def test_pointcloud_encoder_backbone(room_dataset, tokenizer):
    b = collate_referrals(room_dataset.items[:2], tokenizer)
    cfg = SceneModelConfig(
        dim=32,
        fusion_heads=2,
        gnn=GNNConfig(heads=2),
        objects=ObjectEncoderConfig(
            backbone="pointcloud:dgcnn", kwargs={"k": 4, "dims": [16, 16], "emb_dim": 32, "out_dim": 24}
        ),
    )
    m = build_scene_model(cfg)
    out = m(b)
    out["loss"].backward()
    assert m.objects.points.proj.in_features == 24
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in m.objects.points.enc.parameters())


def test_relation_scorer_matches_a_naive_loop_over_each_objects_edges():
    from scene_graph.builder import EDGE_DIM
    from scene_graph.models.scene_model import RelationScorer

    torch.manual_seed(0)
    d, n = 16, 6
    rs = RelationScorer(d, 2).eval()
    tokens, h = torch.randn(n, d), torch.randn(n, d)
    words, pad = torch.randn(2, 5, d), torch.tensor([[False] * 5, [False] * 3 + [True] * 2])
    nb = torch.tensor([0, 0, 0, 1, 1, 1])
    # object 2 has no outgoing edge; object 0 has two
    ei = torch.tensor([[0, 0, 1, 3, 4, 5], [1, 2, 0, 4, 5, 3]])
    ea = torch.randn(ei.shape[1], EDGE_DIM)
    with torch.no_grad():
        got = rs(tokens, h, words, pad, nb, ei, ea)
        ph = rs.phrases(words, pad)
        obj = torch.cat([tokens, h], -1)
        want = []
        for i in range(n):
            b = int(nb[i])
            s = (rs.subject(obj[i]) @ ph[b, 0]) / d**0.5
            terms = [
                (rs.anchor(obj[int(ei[1, e])]) @ ph[b, 1] + rs.edge(ea[e]) @ ph[b, 2]) / d**0.5
                for e in range(ei.shape[1])
                if int(ei[0, e]) == i
            ]
            want.append(s + (torch.logsumexp(torch.stack(terms), 0) if terms else 0.0))
        no_edges = rs(tokens, h, words, pad, nb, ei[:, :0], ea[:0])
    assert torch.allclose(got, torch.stack(want), atol=1e-5)
    # Without edges only the subject term is left, for every object.
    assert torch.allclose(no_edges[2], got[2], atol=1e-6) and not torch.allclose(no_edges[0], got[0], atol=1e-3)


def test_frozen_text_runs_once_per_sentence_and_grads_skip_it(room_dataset, tokenizer):
    from vlx.encoders import EncoderConfig

    torch.manual_seed(0)
    cfg = SceneModelConfig(
        dim=32,
        fusion_heads=2,
        relation_head=True,
        gnn=GNNConfig(heads=2, layers=1),
        text=EncoderConfig(name="transformer", preset="tiny", freeze=True),
    )
    m = build_scene_model(cfg).train()
    assert not m.text.encoder.training
    b = collate_referrals(room_dataset.items[:4], tokenizer)
    m(b)["loss"].backward()
    out = m(b)
    assert m.text.misses == len(
        {tuple(r[: int(k.sum())].tolist()) for r, k in zip(b["input_ids"], b["attention_mask"])}
    )
    assert m.text.hits == 4 and torch.isfinite(out["loss"])
    assert all(p.grad is None for p in m.text.encoder.parameters())
    assert m.relation.queries.grad is not None and m.relation.queries.grad.abs().sum() > 0


def test_edge_feature_ablations_hide_one_part_of_the_edge(room_dataset, tokenizer):
    from scene_graph.models.scene_model import EDGE_RELATIONS

    b = collate_referrals(room_dataset.items[:2], tokenizer)
    ea = b["edge_attr"]
    assert ea[:, :EDGE_RELATIONS].abs().sum() > 0 and ea[:, EDGE_RELATIONS:].abs().sum() > 0
    for kind, hidden, kept in (
        ("geometry", slice(0, EDGE_RELATIONS), slice(EDGE_RELATIONS, None)),
        ("relations", slice(EDGE_RELATIONS, None), slice(0, EDGE_RELATIONS)),
    ):
        m = build_scene_model(SceneModelConfig(dim=32, fusion_heads=2, gnn=GNNConfig(heads=2), edge_features=kind))
        ei, got = m.edges(b)
        assert (
            torch.equal(ei, b["edge_index"])
            and got[:, hidden].abs().sum() == 0
            and torch.equal(got[:, kept], ea[:, kept])
        )
    assert torch.equal(build_scene_model(small()).edges(b)[1], ea)
