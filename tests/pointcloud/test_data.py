"""Readers on fixture files written in each published format, and their one-line errors."""

import json

import h5py
import numpy as np
import pytest
import torch
from PIL import Image

from pointcloud.data import (
    PointCloudDataset,
    generate_primitives,
    read_h5_clouds,
    read_modelnet_txt,
    read_point_file,
    read_rgbd_frame,
)
from vlx.data.errors import DataError


def write_h5(path, data, labels):
    with h5py.File(path, "w") as f:
        f["data"] = data
        f["label"] = labels


def test_h5_roundtrip_and_truncated(tmp_path):
    data = np.random.rand(5, 64, 3).astype(np.float32)
    write_h5(tmp_path / "ply_data_train0.h5", data, np.arange(5).reshape(5, 1))
    pts, lab = read_h5_clouds(tmp_path / "ply_data_train0.h5")
    np.testing.assert_array_equal(pts, data)
    assert lab.tolist() == [0, 1, 2, 3, 4]
    raw = (tmp_path / "ply_data_train0.h5").read_bytes()
    (tmp_path / "cut.h5").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(DataError, match=r"cut.h5: unreadable or truncated h5"):
        read_h5_clouds(tmp_path / "cut.h5")
    bad = data.copy()
    bad[3, 7, 1] = np.nan
    write_h5(tmp_path / "nan.h5", bad, np.zeros(5))
    with pytest.raises(DataError, match="cloud 3, point 7"):
        read_h5_clouds(tmp_path / "nan.h5")
    write_h5(tmp_path / "shape.h5", np.zeros((5, 64)), np.zeros(5))
    with pytest.raises(DataError, match=r"should be \(n, N, 3\)"):
        read_h5_clouds(tmp_path / "shape.h5")
    with h5py.File(tmp_path / "nolabel.h5", "w") as f:
        f["data"] = data
    with pytest.raises(DataError, match="missing dataset 'label'"):
        read_h5_clouds(tmp_path / "nolabel.h5")


def test_dataset_label_range(tmp_path):
    with pytest.raises(DataError, match="label 7 at index 1"):
        PointCloudDataset(np.zeros((2, 4, 3)), np.array([0, 7]), ["a", "b"])


def test_modelnet_txt(tmp_path):
    (tmp_path / "modelnet40_shape_names.txt").write_text("airplane\nbed\n")
    (tmp_path / "modelnet40_train.txt").write_text("airplane_0001\nbed_0002\n")
    for cls, sid in (("airplane", "airplane_0001"), ("bed", "bed_0002")):
        (tmp_path / cls).mkdir()
        np.savetxt(tmp_path / cls / f"{sid}.txt", np.random.rand(10, 6), delimiter=",")
    clouds, labels, names = read_modelnet_txt(tmp_path, "train")
    assert labels.tolist() == [0, 1] and clouds[0].shape == (10, 6) and names == ["airplane", "bed"]
    (tmp_path / "modelnet40_train.txt").write_text("chair_0001\n")
    with pytest.raises(DataError, match="unknown class 'chair'"):
        read_modelnet_txt(tmp_path, "train")


def test_ply_and_empty(tmp_path):
    import open3d as o3d

    pc = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(np.random.rand(20, 3)))
    o3d.io.write_point_cloud(str(tmp_path / "a.ply"), pc)
    o3d.io.write_point_cloud(str(tmp_path / "a.pcd"), pc)
    for f in ("a.ply", "a.pcd"):
        pts, _ = read_point_file(tmp_path / f)
        np.testing.assert_allclose(pts, np.asarray(pc.points), atol=1e-6)
    (tmp_path / "empty.ply").write_text(
        "ply\nformat ascii 1.0\nelement vertex 0\nproperty float x\nproperty float y\nproperty float z\nend_header\n"
    )
    with pytest.raises(DataError, match="empty.ply: no points"):
        read_point_file(tmp_path / "empty.ply")


def write_scannet_frame(root, h=24, w=32, color_size=None):
    for d in ("color", "depth", "intrinsic", "pose"):
        (root / d).mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full(((color_size or (w, h))[1], (color_size or (w, h))[0], 3), 200, np.uint8)).save(
        root / "color" / "0.jpg"
    )
    depth = np.full((h, w), 2000, np.uint16)  # a wall 2 m in front
    depth[:4] = 0  # missing depth rows
    Image.fromarray(depth).save(root / "depth" / "0.png")
    K = np.eye(4)
    K[0, 0] = K[1, 1] = 20.0
    K[0, 2], K[1, 2] = w / 2, h / 2
    np.savetxt(root / "intrinsic" / "intrinsic_depth.txt", K)
    pose = np.eye(4)
    pose[:3, 3] = [1.0, 2.0, 3.0]  # camera-to-world translation
    np.savetxt(root / "pose" / "0.txt", pose)
    inst = np.zeros((h, w), np.uint8)
    inst[:, w // 2 :] = 5
    (root / "instance").mkdir(exist_ok=True)
    Image.fromarray(inst).save(root / "instance" / "0.png")


def test_scannet_rgbd_frame(tmp_path):
    write_scannet_frame(tmp_path)
    f = read_rgbd_frame(tmp_path, 0)
    assert f["points"].shape == (20 * 32, 3)
    np.testing.assert_allclose(f["points"][:, 2], 3.0 + 2.0, atol=1e-4)  # depth 2 m + camera z 3 m
    # pixel (row r, col c) back-projects to x = (c - cx) * z / fx + tx
    r, c = f["pixels"][0]
    np.testing.assert_allclose(f["points"][0, 0], (c - 16) * 2.0 / 20 + 1.0, atol=1e-4)
    assert set(np.unique(f["instance"])) == {0, 5}
    assert (f["instance"] == 5).sum() == 20 * 16
    assert f["colors"].max() > 0.7


def test_scannet_size_mismatch(tmp_path):
    write_scannet_frame(tmp_path, color_size=(64, 48))
    with pytest.raises(DataError, match=r"depth is 32x24 but color 0.jpg is 64x48"):
        read_rgbd_frame(tmp_path, 0)
    assert read_rgbd_frame(tmp_path, 0, resize_color=True)["points"].shape == (640, 3)


def test_primitives_generator_deterministic(tmp_path):
    a = generate_primitives(tmp_path / "a", 2, 1, n_points=128, image_size=32, render_points=1500, progress=False)
    b = generate_primitives(tmp_path / "b", 2, 1, n_points=128, image_size=32, render_points=1500, progress=False)
    za, zb = np.load(a / "train.npz"), np.load(b / "train.npz")
    np.testing.assert_array_equal(za["points"], zb["points"])
    assert (a / "train.jsonl").read_text() == (b / "train.jsonl").read_text()
    recs = [json.loads(l) for l in (a / "train.jsonl").read_text().splitlines()]
    assert len(recs) == 16 and sorted({r["shape"] for r in recs}) == sorted((a / "classes.txt").read_text().split())
    assert all(r["shape"] in r["caption"] for r in recs)
    assert any(r["color"] in r["caption"] for r in recs) and any(r["color"] not in r["caption"] for r in recs)
    img = np.asarray(Image.open(a / recs[0]["image"]))
    assert img.shape == (32, 32, 3) and (img.sum(-1) > 0).mean() > 0.05  # the object is drawn
    ds = PointCloudDataset.from_primitives(a, "train")
    assert ds[0]["points"].shape == (128, 3) and torch.isfinite(ds.points).all()
    assert float(ds.points.norm(dim=-1).max()) < 1.1
