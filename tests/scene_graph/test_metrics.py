import math

import pytest
import torch

from scene_graph.metrics import box_iou_3d, candidate_accuracy, grounding_accuracy, qa_exact_match


def naive_iou(a, b):
    inter = 1.0
    for k in range(3):
        lo = max(a[k] - a[k + 3] / 2, b[k] - b[k + 3] / 2)
        hi = min(a[k] + a[k + 3] / 2, b[k] + b[k + 3] / 2)
        inter *= max(0.0, hi - lo)
    va, vb = a[3] * a[4] * a[5], b[3] * b[4] * b[5]
    return inter / (va + vb - inter)


def test_box_iou_matches_naive():
    g = torch.Generator().manual_seed(0)
    a = torch.cat([torch.rand(50, 3, generator=g), 0.1 + torch.rand(50, 3, generator=g)], 1).double()
    b = torch.cat([torch.rand(50, 3, generator=g), 0.1 + torch.rand(50, 3, generator=g)], 1).double()
    got = box_iou_3d(a, b)
    ref = torch.tensor([naive_iou(x.tolist(), y.tolist()) for x, y in zip(a, b)], dtype=torch.double)
    assert torch.allclose(got, ref) and (ref > 0).sum() > 10
    assert box_iou_3d(a[:1], a[:1]).item() == pytest.approx(1.0)


def test_grounding_accuracy_splits():
    gt = torch.tensor([[0, 0, 0, 1, 1, 1.0]] * 4)
    pred = gt.clone()
    pred[1, 0] = 0.5  # IoU 1/3: hit at 0.25, miss at 0.5
    pred[2, 0] = 5.0  # miss
    unique = torch.tensor([True, True, False, False])
    m = grounding_accuracy(pred, gt, unique)
    assert m["unique/Acc@0.25"] == 100.0 and m["unique/Acc@0.5"] == 50.0
    assert m["multiple/Acc@0.25"] == 50.0 and m["overall/Acc@0.25"] == 75.0 and m["overall/Acc@0.5"] == 50.0
    assert math.isnan(grounding_accuracy(pred, gt, torch.ones(4, dtype=torch.bool))["multiple/Acc@0.5"])


def test_candidate_accuracy():
    correct = torch.tensor([1, 0, 1, 1, 0, 0])
    hard = torch.tensor([0, 0, 1, 1, 1, 1])
    vd = torch.tensor([1, 1, 1, 0, 0, 0])
    m = candidate_accuracy(correct, hard, vd)
    assert m["overall"] == pytest.approx(50.0) and m["easy"] == 50.0 and m["hard"] == 50.0
    assert m["view_dep"] == pytest.approx(200 / 3) and m["view_indep"] == pytest.approx(100 / 3)


def test_qa_exact_match():
    preds = [["Red", "blue"], ["blue"] + ["x"] * 8 + ["green."], ["yellow"]]
    refs = [["red"], ["green"], ["red", "dark red"]]
    m = qa_exact_match(preds, refs)
    assert m["EM@1"] == pytest.approx(100 / 3) and m["EM@10"] == pytest.approx(200 / 3)
    with pytest.raises(ValueError, match="2 predictions for 3"):
        qa_exact_match(preds[:2], refs)


def test_scan2cap_zeroes_captions_of_badly_localised_objects():
    from scene_graph.metrics import qa_metrics, scan2cap_metrics
    from vlx.metrics import caption_metrics

    preds = ["a red box on the floor", "a blue cone near the wall", "a green sphere"]
    refs = [["a red box on the floor"], ["a blue cone near the wall"], ["a green sphere"]]
    full = caption_metrics(preds, refs)
    m = scan2cap_metrics(preds, refs, torch.tensor([0.9, 0.3, 0.1]))
    # all localised at 0.25 except the last; at 0.5 only the first counts
    assert m["CIDEr-D@0.25IoU"] < full["CIDEr-D"] and m["CIDEr-D@0.5IoU"] < m["CIDEr-D@0.25IoU"]
    assert scan2cap_metrics(preds, refs, torch.ones(3))["CIDEr-D@0.5IoU"] == pytest.approx(full["CIDEr-D"])
    q = qa_metrics([["red", "blue"], ["green"]], [["red"], ["blue"]])
    assert q["EM@1"] == 50.0 and "CIDEr-D" in q
