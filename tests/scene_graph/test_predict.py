"""ScanQA predicted answers (``vlx scene-graph predict-scanqa``): ScanQA's ``pred.<split>.json``
layout, checked against a file worked out by hand."""

import json

import numpy as np
import pytest
import torch
import yaml

from scene_graph.builder import GraphConfig
from scene_graph.data.annotations import read_scanqa
from scene_graph.data.dataset import ReferralDataset, SceneStore, collate_referrals
from scene_graph.predict import box_corners, scanqa_predictions, write_scanqa_predictions
from vlx.cli import main

from .test_proposals_show import make_scene
from .test_recipes import config, fit


def test_box_corners_in_get_3d_box_order():
    # centre (1, 2, 3), size (l, w, h) = (2, 4, 6): x +-1, y +-2, z +-3, the four top corners first
    want = [[2, 4, 6], [2, 0, 6], [0, 0, 6], [0, 4, 6], [2, 4, 0], [2, 0, 0], [0, 0, 0], [0, 4, 0]]
    assert box_corners([1, 2, 3, 2, 4, 6]).tolist() == want


class StubQA(torch.nn.Module):
    """Question 0 of a batch grounds the object with the largest x, question 1 the smallest;
    the answer logits are fixed rows."""

    def __init__(self, logits):
        super().__init__()
        self.logits = torch.tensor(logits)

    def forward(self, batch):
        sign = 1.0 - 2.0 * (batch["node_batch"] % 2).float()
        return {"scores": batch["box"][:, 0] * sign, "answer_logits": self.logits[: len(batch["ptr"]) - 1]}


def test_scanqa_predictions_equal_the_file_worked_out_by_hand(tmp_path, tokenizer):
    scans = make_scene(tmp_path)  # a table in [0, 1]^3 and a chair in [3, 4] x [0, 1] x [0, 1]
    questions = tmp_path / "ScanQA_v1.0_test_w_obj.json"
    qs = [("test-scene0000-0", "what is right of the table?"), ("test-scene0000-1", "what is left of the chair?")]
    questions.write_text(json.dumps([{"scene_id": "scene0000_00", "question_id": i, "question": q} for i, q in qs]))
    store = SceneStore(scans, GraphConfig(num_points=4, between=False))
    ds = ReferralDataset(read_scanqa(questions), store, progress=False, prediction_only=True)
    names = ["blue", "chair", "green", "red", "table"]
    model = StubQA([[0.1, 0.9, 0.3, 0.5, 0.0], [0.4, 0.0, 0.2, 0.1, 0.8]])
    preds = scanqa_predictions(model, ds, lambda s: collate_referrals(s, tokenizer), torch.device("cpu"), 8, names)
    out = write_scanqa_predictions(tmp_path / "pred.test_w_obj.json", preds)
    want = [
        {
            "scene_id": "scene0000_00",
            "question_id": "test-scene0000-0",
            "answer_top10": ["chair", "red", "green", "blue", "table"],
            "bbox": [[4, 1, 1], [4, 0, 1], [3, 0, 1], [3, 1, 1], [4, 1, 0], [4, 0, 0], [3, 0, 0], [3, 1, 0]],
        },
        {
            "scene_id": "scene0000_00",
            "question_id": "test-scene0000-1",
            "answer_top10": ["table", "blue", "green", "red", "chair"],
            "bbox": [[1, 1, 1], [1, 0, 1], [0, 0, 1], [0, 1, 1], [1, 1, 0], [1, 0, 0], [0, 0, 0], [0, 1, 0]],
        },
    ]
    got = json.loads(out.read_text())
    assert [{k: v for k, v in e.items() if k != "bbox"} for e in got] == [
        {k: v for k, v in e.items() if k != "bbox"} for e in want
    ]
    assert np.allclose([e["bbox"] for e in got], [e["bbox"] for e in want], atol=1e-6)
    assert out.read_text().startswith('[\n    {\n        "scene_id"')  # indent=4, as ScanQA's predict.py
    # twelve answer classes: exactly the top 10, best first
    many = [f"a{k:02d}" for k in range(12)]
    preds = scanqa_predictions(
        StubQA([list(range(12)), list(range(12))[::-1]]),
        ds, lambda s: collate_referrals(s, tokenizer), torch.device("cpu"), 2, many,
    )  # fmt: skip
    assert preds[0]["answer_top10"] == [f"a{k:02d}" for k in range(11, 1, -1)]
    assert preds[1]["answer_top10"] == [f"a{k:02d}" for k in range(10)]


@pytest.mark.slow  # trains 3 steps on generated rooms: ~20 s idle, minutes on the shared box
def test_cli_predict_scanqa_from_a_trained_checkpoint(tmp_path, capsys):
    root = tmp_path / "rooms"
    data = {"format": "scanqa", "train_file": "scanqa_train.json", "val_file": "scanqa_val.json"}
    recipe, cfg = config("sg_qa", root, tmp_path / "qa", data=data)
    fit(recipe, cfg)
    cfg_file = tmp_path / "sg_qa_test.yaml"
    cfg_file.write_text(yaml.safe_dump(_plain(root, tmp_path / "qa", data)))
    val = json.loads((root / "scanqa_val.json").read_text())
    test = [{k: q[k] for k in ("scene_id", "question_id", "question")} for q in val]  # the test layout
    questions = tmp_path / "ScanQA_v1.0_test_wo_obj.json"
    questions.write_text(json.dumps(test))
    out = tmp_path / "pred.test_wo_obj.json"
    args = ["scene-graph", "predict-scanqa", str(cfg_file), "--ckpt", str(tmp_path / "qa")]
    assert main(args + ["--questions", str(questions), "--out", str(out)]) == 0
    assert f"wrote {len(test)} predictions" in capsys.readouterr().out
    got = json.loads(out.read_text())
    answers = {q["answers"][0].lower() for q in json.loads((root / "scanqa_train.json").read_text())}
    assert [(e["scene_id"], e["question_id"]) for e in got] == [(q["scene_id"], q["question_id"]) for q in test]
    for e in got:
        assert set(e) == {"scene_id", "question_id", "answer_top10", "bbox"}
        assert sorted(e["answer_top10"]) == sorted(answers)  # 4 colours: all of them, each once
        assert np.asarray(e["bbox"]).shape == (8, 3)
    # a question about a scene that is not there: one line naming the file and entry
    questions.write_text(json.dumps(test[:1] + [dict(test[0], scene_id="scene9999_00")]))
    assert main(args + ["--questions", str(questions), "--out", str(out)]) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip() and "annotations:" not in line]
    assert len(err) == 1 and "ScanQA_v1.0_test_wo_obj.json[1]: scene 'scene9999_00' not found" in err[0]


def _plain(root, out, data):
    """The test config as a plain dict (the same settings as ``config``)."""
    from .test_recipes import GRAPH, ROOMS

    return {
        "recipe": "sg_qa",
        "train": {"output_dir": str(out), "device": "cpu"},
        "model": {"dim": 32, "fusion_heads": 2, "gnn": {"heads": 2, "layers": 1}},
        "tokenizer": {"max_length": 24},
        "data": {"root": str(root), "rooms": ROOMS, "graph": GRAPH, "unique_rule": "scene", **data},
    }
