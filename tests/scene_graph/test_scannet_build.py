"""ScanNet v2 in its published layout -> built scenes; axis alignment worked out by hand."""

import json
import struct

import numpy as np
import pytest
import torch

from scene_graph.data.labels import SCANNET18, read_label_map
from scene_graph.data.scannet import load_scannet_scene
from scene_graph.data.scannet_build import build_scannet, load_built_scene
from vlx.data.errors import DataError
from vlx.io.scannet import read_scannet_scene, write_scannet_scene

# 90 degrees about z, then a shift: (x, y, z) -> (1 - y, 2 + x, 3 + z)
ALIGN = [[0, -1, 0, 1], [1, 0, 0, 2], [0, 0, 1, 3], [0, 0, 0, 1]]
TSV = (
    "id\traw_category\tcategory\tcount\tnyu40id\teigen13id\tnyuClass\tnyu40class\teigen13class\r\n"
    "1\toffice chair\tchair\t10\t5\t4\tchair\tchair\tChair\r\n"
    "2\ttrash can\ttrash can\t10\t39\t6\tgarbage bin\totherfurniture\tFurniture\r\n"
    "3\tkitchen counter\tcounter\t10\t12\t6\tcounter\tcounter\tTable\r\n"
)


def write_ply(path, xyz, rgb):
    """A mesh PLY as ScanNet ships it: float x y z, uchar red green blue alpha, and a face list."""
    head = (
        "ply\nformat binary_little_endian 1.0\ncomment written by hand\n"
        f"element vertex {len(xyz)}\nproperty float x\nproperty float y\nproperty float z\n"
        "property uchar red\nproperty uchar green\nproperty uchar blue\nproperty uchar alpha\n"
        "element face 1\nproperty list uchar int vertex_indices\nend_header\n"
    )
    body = b"".join(struct.pack("<fffBBBB", *p, *c, 255) for p, c in zip(xyz.tolist(), rgb.tolist()))
    path.write_bytes(head.encode() + body + struct.pack("<Biii", 3, 0, 1, 2))


def make_scannet(root, scene="scene0000_00", align=True, labels=("office chair", "trash can")):
    d = root / "scans" / scene
    d.mkdir(parents=True)
    xyz = np.array([[0, 0, 0], [2, 1, 0.5], [5, 5, 0], [6, 5, 1], [9, 9, 9]], np.float32)
    rgb = np.array([[255, 0, 0], [250, 0, 0], [0, 255, 0], [0, 250, 0], [1, 2, 3]], np.uint8)
    write_ply(d / f"{scene}_vh_clean_2.ply", xyz, rgb)
    segs = {"params": {}, "sceneId": scene, "segIndices": [7, 8, 3, 3, 99]}  # vertex 4: no object
    (d / f"{scene}_vh_clean_2.0.010000.segs.json").write_text(json.dumps(segs))
    groups = [
        {"id": 0, "objectId": 0, "segments": [7, 8], "label": labels[0]},
        {"id": 1, "objectId": 1, "segments": [3], "label": labels[1]},
    ]
    (d / f"{scene}.aggregation.json").write_text(json.dumps({"sceneId": f"scannet.{scene}", "segGroups": groups}))
    meta = "colorHeight = 968\n" + (
        "axisAlignment = " + " ".join(str(v) for r in ALIGN for v in r) + "\n" if align else ""
    )
    (d / f"{scene}.txt").write_text(meta)
    (root / "scannetv2-labels.combined.tsv").write_text(TSV)
    return root / "scans"


def test_axis_alignment_of_points_and_boxes(tmp_path):
    scans = make_scannet(tmp_path)
    res = build_scannet(scans, tmp_path / "out", progress=False)
    assert res.built == ["scene0000_00"] and not res.skipped
    z = np.load(tmp_path / "out" / "scene0000_00.npz")
    # (0,0,0) -> (1,2,3); (2,1,0.5) -> (0,4,3.5); (5,5,0) -> (-4,7,3); (6,5,1) -> (-4,8,4)
    assert np.allclose(z["points"][:4], [[1, 2, 3], [0, 4, 3.5], [-4, 7, 3], [-4, 8, 4]])
    assert np.allclose(z["boxes"], [[0.5, 3, 3.25, 1, 2, 0.5], [-4, 7.5, 3.5, 0, 1, 1]])
    assert z["instance_ids"].tolist() == [0, 0, 1, 1, -1]
    assert z["semantic_nyu40"].tolist() == [5, 5, 39, 39, 0]
    assert z["labels_raw"].tolist() == ["office chair", "trash can"]
    assert [SCANNET18[k] for k in z["labels_scannet18"]] == ["chair", "others"]
    assert z["colors"][0].tolist() == [255, 0, 0] and bool(z["has_alignment"])
    # the scene_graph loader applies the same alignment (ScanRefer's boxes are aligned)
    objs = load_scannet_scene(scans, "scene0000_00")
    assert torch.allclose(objs.boxes, torch.tensor(z["boxes"]))
    assert torch.allclose(load_built_scene(tmp_path / "out", "scene0000_00").boxes, objs.boxes)
    raw = load_scannet_scene(scans, "scene0000_00", align=False)
    assert torch.allclose(raw.boxes[0], torch.tensor([1.0, 0.5, 0.25, 2, 1, 0.5]))


def test_no_alignment_line_means_identity(tmp_path):
    scans = make_scannet(tmp_path, align=False)
    build_scannet(scans, tmp_path / "out", progress=False)
    z = np.load(tmp_path / "out" / "scene0000_00.npz")
    assert not bool(z["has_alignment"]) and np.allclose(z["boxes"][0], [1, 0.5, 0.25, 2, 1, 0.5])


@pytest.mark.slow  # spawns two worker processes that import torch
def test_bad_scenes_are_skipped_and_listed_and_runs_resume(tmp_path):
    scans = make_scannet(tmp_path)
    make_scannet(tmp_path, "scene0001_00")
    (scans / "scene0001_00" / "scene0001_00.aggregation.json").unlink()
    make_scannet(tmp_path, "scene0002_00", labels=("office chair", "unicorn"))
    res = build_scannet(scans, tmp_path / "out", workers=2, progress=False)  # two spawned processes
    assert res.built == ["scene0000_00"]
    assert set(res.skipped) == {"scene0001_00", "scene0002_00"}
    assert res.skipped["scene0001_00"].endswith("scene0001_00.aggregation.json: file not found")
    assert "label 'unicorn' is not in" in res.skipped["scene0002_00"]
    assert all("\n" not in v for v in res.skipped.values())
    index = json.loads((tmp_path / "out" / "scenes.json").read_text())
    assert index["scenes"] == ["scene0000_00"] and set(index["skipped"]) == {"scene0001_00", "scene0002_00"}
    # a rerun reuses the built scene and retries the bad ones only
    res = build_scannet(scans, tmp_path / "out", progress=False)
    assert res.reused == ["scene0000_00"] and res.built == [] and len(res.skipped) == 2


def test_label_map_errors(tmp_path):
    p = tmp_path / "map.tsv"
    p.write_text("raw_category\tnyu40id\n")
    with pytest.raises(DataError, match=r"map.tsv: missing column\(s\) nyu40class"):
        read_label_map(p)
    with pytest.raises(DataError, match="label map not found"):
        read_label_map(tmp_path / "nope.tsv")


def test_writer_reader_roundtrip(tmp_path):
    rng = np.random.default_rng(0)
    xyz = rng.uniform(-1, 1, (50, 3)).astype(np.float32)
    rgb = rng.integers(0, 256, (50, 3)).astype(np.uint8)
    inst = np.repeat([4, 9, 0], [20, 20, 10])
    seg = np.repeat([1, 2, 3, 5], [10, 10, 20, 10])
    write_scannet_scene(
        tmp_path, "sceneX", xyz, rgb, inst, {4: "desk", 9: "lamp"}, segment=seg, axis_alignment=np.array(ALIGN)
    )
    s = read_scannet_scene(tmp_path, "sceneX")
    assert np.array_equal(s.xyz, xyz) and np.array_equal(s.rgb, rgb) and np.array_equal(s.segments, seg)
    assert s.groups == [(4, "desk", [1, 2]), (9, "lamp", [3])]
    assert np.array_equal(s.instance_ids(), np.where(inst == 0, -1, inst))
    assert np.allclose(s.axis_alignment, ALIGN)
    agg = json.loads((tmp_path / "sceneX" / "sceneX.aggregation.json").read_text())
    assert agg["segmentsFile"] == "scannet.sceneX_vh_clean_2.0.010000.segs.json"


def test_cli_build_scannet(tmp_path, capsys):
    from vlx.cli import main

    scans = make_scannet(tmp_path)
    make_scannet(tmp_path, "scene0001_00")
    (scans / "scene0001_00" / "scene0001_00.aggregation.json").unlink()
    assert (
        main(["scene-graph", "build-scannet", "--scans", str(scans), "--out", str(tmp_path / "o"), "--workers", "1"])
        == 0
    )
    out = capsys.readouterr().out
    assert "built 1, already built 0, skipped 1" in out and "skipped scene0001_00: " in out
    assert (tmp_path / "o" / "scene0000_00.npz").is_file()
