"""Predicted proposals (file format, errors, targets by IoU) and ``vlx scene-graph show``."""

import numpy as np
import pytest
import torch

from scene_graph.builder import GraphConfig
from scene_graph.data.annotations import Referral
from scene_graph.data.dataset import ReferralDataset, SceneStore
from scene_graph.data.proposals import boxes_from_corners, read_proposals, write_proposals
from vlx.cli import main
from vlx.data.errors import DataError
from vlx.io.scannet import write_scannet_scene


def make_scene(root):
    """A table in the unit cube and a chair in the unit cube 3 m along x (corners included)."""
    rng = np.random.default_rng(0)
    cube = np.concatenate([rng.uniform(0, 1, (22, 3)), [[x, y, z] for x in (0, 1) for y in (0, 1) for z in (0, 1)]])
    xyz = np.concatenate([cube, cube + [3, 0, 0]])
    write_scannet_scene(root / "scans", "scene0000_00", xyz, rng.uniform(0, 1, xyz.shape), np.repeat([0, 1], 30),
                        {0: "table", 1: "chair"})  # fmt: skip
    return root / "scans"


def test_proposal_file_roundtrip_and_errors(tmp_path):
    corners = np.array([[[x, y, z] for x in (0, 1) for y in (0, 2) for z in (0, 3)]], float)
    assert np.allclose(boxes_from_corners(corners), [[0.5, 1, 1.5, 1, 2, 3]])
    p = write_proposals(tmp_path / "props.npz", {"scene0000_00": {"boxes": np.zeros((2, 6)), "scores": np.ones(2)}})
    assert set(read_proposals(p, {"scene0000_00"})) == {"scene0000_00"}
    with pytest.raises(DataError, match=r"props.npz: proposals for unknown scene 'scene0000_00'"):
        read_proposals(p, {"scene0001_00"})
    bad = write_proposals(tmp_path / "bad.npz", {"s": {"boxes": np.zeros((2, 6)), "scores": np.ones(3)}})
    with pytest.raises(DataError, match=r"bad.npz: s/scores has 3 rows for 2 boxes"):
        read_proposals(bad)


def test_pred_proposals_make_acc05_differ_from_acc025(tmp_path):
    scans = make_scene(tmp_path)
    gt = torch.tensor([[0.5, 0.5, 0.5, 1, 1, 1], [3.5, 0.5, 0.5, 1, 1, 1]])
    # proposal 0: the table's box shifted 0.3 m in x (IoU 0.7/1.3 = 0.54); proposal 1: the chair's
    # box grown to 1.5 m per side (IoU 1/3.375 = 0.30); proposal 2: a false positive
    boxes = np.array([[0.8, 0.5, 0.5, 1, 1, 1], [3.5, 0.5, 0.5, 1.5, 1.5, 1.5], [9, 9, 9, 0.2, 0.2, 0.2]], np.float32)
    props = {"scene0000_00": {"boxes": boxes, "scores": np.array([0.9, 0.8, 0.1], np.float32)}}
    store = SceneStore(scans, GraphConfig(num_points=4, between=False), proposals=props)
    refs = [Referral("scene0000_00", [0], "the table"), Referral("scene0000_00", [1], "the chair")]
    ds = ReferralDataset(refs, store, progress=False)
    assert [it["target"] for it in ds.items] == [0, 1]  # best IoU proposal
    assert torch.allclose(torch.stack([it["gt_box"] for it in ds.items]), gt)
    from scene_graph.metrics import box_iou_3d, grounding_accuracy

    pred = torch.tensor(boxes[:2])
    assert torch.allclose(box_iou_3d(pred, gt), torch.tensor([0.7 / 1.3, 1 / 3.375]), atol=1e-4)
    acc = grounding_accuracy(pred, gt, torch.tensor([True, True]))
    assert acc["overall/Acc@0.25"] == 100.0 and acc["overall/Acc@0.5"] == 50.0
    g = ds.items[0]["graph"]
    assert g.num_nodes == 3 and g.points.shape[0] == 3  # one node per proposal


def test_show_writes_ply_and_png(tmp_path, capsys):
    import open3d as o3d

    scans = make_scene(tmp_path)
    assert (
        main(
            [
                "scene-graph",
                "show",
                str(scans / "scene0000_00"),
                "--out",
                str(tmp_path / "g.ply"),
                "--relations",
                "viewer",
            ]
        )
        == 0
    )
    ls = o3d.io.read_line_set(str(tmp_path / "g.ply"))
    # two boxes (12 lines each) and the viewer relations: chair right of table, table left of chair
    assert len(ls.lines) == 2 * 12 + 2
    from PIL import Image

    assert Image.open(tmp_path / "g.png").size[0] > 100
    assert main(["scene-graph", "show", str(tmp_path / "nope"), "--out", str(tmp_path / "x.ply")]) != 0
    assert "expected a ScanNet-layout scene folder" in capsys.readouterr().err


def test_pred_evaluation_reports_the_best_proposal_ceiling(tmp_path, tokenizer):
    # the table's best proposal has IoU 0.54, the chair's 0.30 (worked out above): a model
    # that always picks the false positive scores 0, the ceilings are 100 and 50
    from scene_graph.data.dataset import collate_referrals
    from scene_graph.recipes import evaluate_grounding

    scans = make_scene(tmp_path)
    boxes = np.array([[0.8, 0.5, 0.5, 1, 1, 1], [3.5, 0.5, 0.5, 1.5, 1.5, 1.5], [9, 9, 9, 0.2, 0.2, 0.2]], np.float32)
    props = {"scene0000_00": {"boxes": boxes, "scores": np.array([0.9, 0.8, 0.1], np.float32)}}
    store = SceneStore(scans, GraphConfig(num_points=4, between=False), proposals=props)
    ds = ReferralDataset([Referral("scene0000_00", [0], "the table"), Referral("scene0000_00", [1], "the chair")],
                         store, progress=False)  # fmt: skip

    class FalsePositive(torch.nn.Module):
        def forward(self, batch):
            return {"scores": batch["box"][:, 0]}  # the largest x: the box at (9, 9, 9)

    res = evaluate_grounding(FalsePositive(), ds, lambda s: collate_referrals(s, tokenizer), torch.device("cpu"), 4)
    assert res["overall/Acc@0.25"] == 0.0 and res["proposals_pred"] == 1.0
    assert res["proposal_ceiling/Acc@0.25"] == 100.0 and res["proposal_ceiling/Acc@0.5"] == 50.0
