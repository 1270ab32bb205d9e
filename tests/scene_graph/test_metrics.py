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


def test_qa_exact_match_scanqa_raw_and_leo_refined():
    preds = [
        ["Red", "blue"],  # raw: "Red" is not "red"; refined: cleaned to "red"
        ["blue"] + ["x"] * 8 + ["green."],  # refined top-10 only ("green." -> "green")
        ["yellow"],  # no match either way
        ["2 chairs"],  # refined: "two chairs" contains the reference "two"
        ["the brown chair"],  # refined: "brown chair" contains "brown"
        ["white", "brown"],  # raw and refined top-10
        ["brown"],  # raw top-1
    ]
    refs = [["red"], ["green"], ["red", "dark red"], ["two"], ["brown"], ["brown"], ["brown"]]
    m = qa_exact_match(preds, refs)
    assert m["EM@1"] == pytest.approx(100 / 7) and m["EM@10"] == pytest.approx(200 / 7)
    assert m["EM@1_refined"] == pytest.approx(400 / 7) and m["EM@10_refined"] == pytest.approx(600 / 7)
    with pytest.raises(ValueError, match="2 predictions for 7"):
        qa_exact_match(preds[:2], refs)


def test_leo_clean_answer():
    from scene_graph.metrics import clean_answer

    assert clean_answer("  The  Brown Chair!! ") == "brown chair"
    assert clean_answer("none") == "zero" and clean_answer("23") == "twenty-three"
    assert clean_answer("mat2") == "mat" and clean_answer("on the letf") == "on left"


def test_meteor_when_java_is_present_else_na(monkeypatch):
    import shutil

    from scene_graph import metrics

    if shutil.which("java"):
        m = metrics.qa_meteor(["brown", "right side"], [["brown"], ["on the left side", "left"]])
        assert 20 < m["METEOR"] < 35 and "METEOR_note" not in m  # pycocoevalcap: 1.0 and 0.156 -> 26.8
    else:
        assert metrics.qa_meteor(["brown"], [["brown"]])["METEOR_note"].startswith("n/a")
    monkeypatch.setattr(metrics.shutil, "which", lambda name: None)
    m = metrics.qa_meteor(["brown"], [["brown"]])
    assert "METEOR" not in m and "no java" in m["METEOR_note"]


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
    q = qa_metrics([["red", "blue"], ["green"]], [["red"], ["blue"]], meteor=False)
    assert q["EM@1"] == 50.0 and "CIDEr-D" in q
