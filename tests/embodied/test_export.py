"""Exports for the siblings: ScanNet-layout RGB-D frames that fuse (open3d) into a cloud whose
instance labels match the simulator's objects; MSR-VTT-style rollout videos that video/'s
loader reads; ScanRefer-style descriptions from simulator state."""

from __future__ import annotations

import json

import numpy as np
import pytest

from embodied.export import export_rgbd, export_scanrefer, export_videos, fuse_frames, read_scannet_frame
from vlx.data.errors import DataError


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    out = tmp_path_factory.mktemp("rgbd")
    return export_rgbd(
        "metaworld-mt10", "pick-place-v3", out, cameras=["corner", "corner3"], frames=1, width=96, height=96, seed=7
    )


def test_scannet_layout(scene):
    sid = scene.name
    for rel in (
        "color/0.jpg",
        "depth/0.png",
        "pose/0.txt",
        "instance-filt/1.png",
        "label-filt/1.png",
        "intrinsic/intrinsic_color.txt",
        "intrinsic/intrinsic_depth.txt",
        "intrinsic/extrinsic_depth.txt",
        "objects.json",
        f"{sid}_vh_clean_2.ply",
        f"{sid}.aggregation.json",
        f"{sid}_vh_clean_2.0.010000.segs.json",
    ):
        assert (scene / rel).is_file(), rel
    f = read_scannet_frame(scene, 0)
    assert f["depth"].dtype == np.uint16 and f["color"].shape == (96, 96, 3)
    assert np.loadtxt(scene / "intrinsic" / "intrinsic_color.txt").shape == (4, 4)
    pose = f["pose"]
    np.testing.assert_allclose(pose[:3, :3] @ pose[:3, :3].T, np.eye(3), atol=1e-6)  # a rotation
    # the aggregation's objects are the instance ids present in the segment file
    agg = json.loads((scene / f"{sid}.aggregation.json").read_text())
    segs = json.loads((scene / f"{sid}_vh_clean_2.0.010000.segs.json").read_text())["segIndices"]
    assert {g["objectId"] for g in agg["segGroups"]} == set(segs) - {0}
    import open3d as o3d

    assert len(o3d.io.read_point_cloud(str(scene / f"{sid}_vh_clean_2.ply")).points) == len(segs)


def test_fused_puck_matches_simulator_state(scene):
    """Fuse both cameras' first frames; the points labelled 'puck' must sit where the simulator
    put the puck (Meta-World's observation gives its position; its geom is 4 cm tall)."""
    from embodied.envs import build_benchmark

    objects = json.loads((scene / "objects.json").read_text())["objects"]
    puck = next(o for o in objects if o["name"] == "puck")
    xyz, rgb, inst = fuse_frames(scene, [0, 1])
    pts = xyz[inst == puck["object_id"]]
    assert len(pts) >= 10
    env = build_benchmark("metaworld-mt10").make_env("pick-place-v3")
    obs, _ = env.reset(seed=7)
    env.close()
    puck_pos = obs[4:7]  # the simulator's puck position (body origin at the puck's centre)
    lo, hi = pts.min(0), pts.max(0)
    # seen from above/side, the visible surface spans the puck: the fused box centre is within 1.5 cm in x, y
    np.testing.assert_allclose((lo[:2] + hi[:2]) / 2, puck_pos[:2], atol=0.015)
    # and every labelled point lies inside the simulator's 3D box (1 cm tolerance for depth quantisation)
    assert (pts >= np.asarray(puck["bbox_min"]) - 0.01).all() and (pts <= np.asarray(puck["bbox_max"]) + 0.01).all()
    # the table's points lie on or under its top surface (z = 0), nothing labelled 'table' floats
    table = next(o for o in objects if o["name"] == "table")
    assert xyz[inst == table["object_id"]][:, 2].max() < 0.01
    # instance ids are only objects of the scene (0 = no object)
    assert set(np.unique(inst)) <= {0} | {o["object_id"] for o in objects}


def test_bad_camera_is_named(tmp_path):
    with pytest.raises(DataError, match=r"camera 'ceiling' does not exist; known cameras: topview"):
        export_rgbd("metaworld-mt10", "reach-v3", tmp_path, cameras=["ceiling"], frames=1)


def test_video_export_loads_with_video_msrvtt_loader(tmp_path):
    from video.datasets import load_msrvtt

    p = export_videos("metaworld-mt10", ["reach-v3"], tmp_path, episodes=1, size=32, stride=8, max_steps=40)
    recs = load_msrvtt(p, tmp_path / "videos")
    assert len(recs) == 1 and recs[0]["video_id"] == "reach-v3_0"
    caps = recs[0]["captions"]
    assert caps[0].startswith("the robot arm follows a plan: first, it does this: reach a goal position")
    doc = json.loads(p.read_text())
    steps = doc["videos"][0]["vlx_steps"]
    assert steps[0]["step"] == "reach" and steps[0]["start_s"] == 0.0 and steps[0]["end_s"] > 0
    import av

    with av.open(recs[0]["video"]) as c:
        n = sum(1 for _ in c.decode(video=0))
    assert n == 1 + steps[0]["end_step"] // 8


def test_scanrefer_descriptions(tmp_path):
    p = export_scanrefer("metaworld-mt10", "pick-place-v3", tmp_path, seed=7)
    entries = json.loads(p.read_text())
    assert all({"scene_id", "object_id", "object_name", "ann_id", "description", "token"} <= set(e) for e in entries)
    puck = [e for e in entries if e["object_name"] == "puck"]
    table_id = next(
        o["object_id"]
        for o in json.loads((tmp_path / "pick-place-v3_7_objects.json").read_text())
        if o["name"] == "table"
    )
    assert any(e["relation"] == "on top of" and e["anchor_id"] == str(table_id) for e in puck)
    assert puck[0]["description"].startswith("the puck is ")
    # a second scene is appended, the first kept
    export_scanrefer("metaworld-mt10", "pick-place-v3", tmp_path, seed=8)
    assert {e["scene_id"] for e in json.loads(p.read_text())} == {"pick-place-v3_7", "pick-place-v3_8"}
