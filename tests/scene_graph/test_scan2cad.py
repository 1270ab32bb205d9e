"""Scan2CAD fronts in referit3d's published files (object_oriented_bboxes_aligned_scans.json,
shapenet_has_front.csv) feeding Sr3D's allocentric relations; values worked out by hand."""

import json
import math

import numpy as np
import pytest

from scene_graph.builder import GraphConfig, relation_triples
from scene_graph.data.dataset import SceneStore
from scene_graph.data.scan2cad import read_bad_mappings, read_has_front, read_scan2cad_boxes, scan2cad_fronts
from scene_graph.relations import RelationConfig
from scene_graph.sr3d import sr3d_relations
from vlx.data.errors import DataError
from vlx.io.scannet import write_scannet_scene


def rotz(deg):
    c, s = math.cos(math.radians(deg)), math.sin(math.radians(deg))
    return [[c, -s, 0, 0], [s, c, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]]


def write_files(tmp_path, bed_rot=90, bed_front=1):
    """The bed's model turned 90 degrees (its local x along world +y, so its front, the local
    -x face, looks along world -y); the chair's model has no front."""
    boxes = {
        "scene0000_00_0": {"catid_cad": "02818832", "id_cad": "bedmodel", "obj_bbox": [0, 0, 0.25, 1, 2, 0.5],
                           "obj_rot": rotz(bed_rot), "front_point": [0, -0.5, 0.25]},
        "scene0000_00_1": {"catid_cad": "03001627", "id_cad": "chairmodel", "obj_bbox": [0, -1.1, 0.4, 0.4, 0.4, 0.8],
                           "obj_rot": rotz(0), "front_point": [-0.2, -1.1, 0.4]},
    }  # fmt: skip
    (tmp_path / "object_oriented_bboxes_aligned_scans.json").write_text(json.dumps(boxes))
    (tmp_path / "shapenet_has_front.csv").write_text(
        f"syn_id,model_name,has_front\n02818832,bedmodel,{bed_front}\n03001627,chairmodel,0\n"
    )
    return tmp_path / "object_oriented_bboxes_aligned_scans.json", tmp_path / "shapenet_has_front.csv"


def test_reader_gives_boxes_and_fronts_in_the_published_layout(tmp_path):
    boxes, front = write_files(tmp_path)
    has = read_has_front(front)
    assert has == {("02818832", "bedmodel")}  # the leading zero of the synset id kept
    e = read_scan2cad_boxes(boxes, has)["scene0000_00"]
    assert set(e) == {0, 1} and e[0][1] and not e[1][1]
    assert np.allclose(e[0][0], [0, 0, 0.25, 1, 2, 0.5, math.pi / 2])
    fronts, oriented = scan2cad_fronts([0, 1, 2], e)
    assert fronts[0].item() == pytest.approx(-math.pi / 2)  # -R[:, 0] = (0, -1)
    assert math.isnan(fronts[1]) and math.isnan(fronts[2])  # no front / not in Scan2CAD
    assert oriented[1, :6].tolist() == pytest.approx([0, -1.1, 0.4, 0.4, 0.4, 0.8]) and oriented[2].isnan().all()
    assert not any(v[1] for v in read_scan2cad_boxes(boxes)["scene0000_00"].values())  # no has-front file


def test_reader_errors_are_one_line(tmp_path):
    p = tmp_path / "b.json"
    for content, msg in (
        ({"scene0000_1": {}}, r"b.json: scene0000_1: key must be '<scene id \(12 characters\)>_<object id>'"),
        ({"scene0000_00_1": {"catid_cad": "1", "id_cad": "m", "obj_bbox": [0] * 6}}, r"expected keys .*obj_rot"),
        ({"scene0000_00_1": {"catid_cad": "1", "id_cad": "m", "obj_bbox": [0] * 5, "obj_rot": rotz(0)}},
         r"obj_bbox must have 6 numbers"),
    ):  # fmt: skip
        p.write_text(json.dumps(content))
        with pytest.raises(DataError, match=msg):
            read_scan2cad_boxes(p)
    f = tmp_path / "f.csv"
    f.write_text("syn_id,model\n1,m\n")
    with pytest.raises(DataError, match=r"f.csv: expected columns syn_id, model_name, has_front; missing model_name"):
        read_has_front(f)


def scene(tmp_path):
    """A bed (2 m along x, 1 m along y) with a chair 0.9-1.3 m on either side of it along y."""
    rng = np.random.default_rng(0)
    bed = rng.uniform([-1, -0.5, 0], [1, 0.5, 0.5], (60, 3))
    chair_a = rng.uniform([-0.2, -1.3, 0], [0.2, -0.9, 0.8], (30, 3))
    chair_b = rng.uniform([-0.2, 0.9, 0], [0.2, 1.3, 0.8], (30, 3))
    xyz = np.concatenate([bed, chair_a, chair_b])
    write_scannet_scene(tmp_path / "scans", "scene0000_00", xyz, rng.uniform(0, 1, xyz.shape),
                        np.repeat([0, 1, 2], [60, 30, 30]), {0: "bed", 1: "chair", 2: "chair"})  # fmt: skip
    return tmp_path / "scans", [bed, chair_a, chair_b]


@pytest.mark.parametrize("rot, front, behind", [(90, 1, 2), (-90, 2, 1)])
def test_sr3d_front_and_behind_follow_the_scan2cad_front(tmp_path, rot, front, behind):
    # rot 90: the bed faces -y, chair 1 (y < 0) is in front of it and chair 2 behind; turned
    # the other way (-90) the two swap.
    scans, pts = scene(tmp_path)
    boxes_file, front_file = write_files(tmp_path, bed_rot=rot)
    entries = read_scan2cad_boxes(boxes_file, read_has_front(front_file))
    fronts, oriented = scan2cad_fronts([0, 1, 2], entries["scene0000_00"])
    boxes = np.array([[*(p.min(0) + p.max(0)) / 2, *(p.max(0) - p.min(0))] for p in pts])
    refs, _ = sr3d_relations(boxes, ["bed", "chair", "chair"], pts, fronts.numpy(), oriented=oriented.numpy())
    allo = {r for r in refs if r[1] in ("front", "behind", "left", "right")}
    assert allo == {(front, "front", 0), (behind, "behind", 0)}
    refs, _ = sr3d_relations(boxes, ["bed", "chair", "chair"], pts, None)  # no fronts: none of them
    assert not {r for r in refs if r[1] in ("front", "behind", "left", "right")}
    # the same through the store (data.scan2cad): the scene's graph carries the two edges
    cfg = GraphConfig(num_points=8, between=False, relations=RelationConfig(set="sr3d"))
    g = SceneStore(scans, cfg, scan2cad=entries).get("scene0000_00")
    triples = {t for t in relation_triples(g) if t[1] in ("front", "behind", "left", "right")}
    assert triples == {(front, "front", 0), (behind, "behind", 0)}
    g = SceneStore(scans, cfg).get("scene0000_00")
    assert not {t for t in relation_triples(g) if t[1] in ("front", "behind", "left", "right")}
    # the bed's model without a front: no allocentric relation
    write_files(tmp_path, bed_rot=rot, bed_front=0)
    none = read_scan2cad_boxes(boxes_file, read_has_front(front_file))
    g = SceneStore(scans, cfg, scan2cad=none).get("scene0000_00")
    assert not {t for t in relation_triples(g) if t[1] in ("front", "behind", "left", "right")}


def test_bad_mappings_drop_the_oriented_box_but_keep_the_front(tmp_path):
    # referit3d: a listed [ScanNet label, ShapeNet category] pair loses its oriented box (the
    # generator falls back to the axis-aligned box) while register_front_direction keeps its
    # front. The bed's model is turned 90 degrees (front = world -y); with ["bed", "bed"] listed
    # the sections are cut around the axis-aligned box, front beyond its -x face: the chairs at
    # y < 0 and y > 0 are no longer in front / behind but right / left of it.
    scans, pts = scene(tmp_path)
    boxes_file, front_file = write_files(tmp_path, bed_rot=90)
    (tmp_path / "bad_mappings.json").write_text(json.dumps([["bed", "bed"], ["desk", "file"]]))
    bad = read_bad_mappings(tmp_path / "bad_mappings.json")
    assert bad == {("bed", "bed"), ("desk", "file")}
    entries = read_scan2cad_boxes(boxes_file, read_has_front(front_file))["scene0000_00"]
    fronts, oriented = scan2cad_fronts([0, 1, 2], entries, ["bed", "chair", "chair"], bad)
    assert abs(fronts[0].item()) == pytest.approx(math.pi) and oriented[0].isnan().all()  # yaw +-pi: world -x
    assert oriented[1, :6].tolist() == pytest.approx([0, -1.1, 0.4, 0.4, 0.4, 0.8])  # the chair is not listed
    boxes = np.array([[*(p.min(0) + p.max(0)) / 2, *(p.max(0) - p.min(0))] for p in pts])
    refs, _ = sr3d_relations(boxes, ["bed", "chair", "chair"], pts, fronts.numpy(), oriented=oriented.numpy())
    assert {r for r in refs if r[1] in ("front", "behind", "left", "right")} == {(1, "right", 0), (2, "left", 0)}
    # through the store: the same two edges; another label ("cot") with the same model is not listed
    cfg = GraphConfig(num_points=8, between=False, relations=RelationConfig(set="sr3d"))
    g = SceneStore(scans, cfg, scan2cad={"scene0000_00": entries}, scan2cad_bad_mappings=bad).get("scene0000_00")
    assert {t for t in relation_triples(g) if t[1] in ("front", "behind", "left", "right")} == {
        (1, "right", 0),
        (2, "left", 0),
    }
    _, kept = scan2cad_fronts([0], entries, ["cot"], bad)
    assert not kept[0].isnan().any()
    for content, msg in (({"a": 1}, "expected a list of"), ([["bed"]], r"entry 0: expected \[ScanNet label")):
        (tmp_path / "b.json").write_text(json.dumps(content))
        with pytest.raises(DataError, match=msg):
            read_bad_mappings(tmp_path / "b.json")


def test_bad_mappings_through_the_data_config_and_the_cache_key(tmp_path):
    from scene_graph.recipes import SceneDataConfig, _cache_path, make_store

    scene(tmp_path)
    write_files(tmp_path, bed_rot=90)
    (tmp_path / "bad_mappings.json").write_text(json.dumps([["bed", "bed"]]))
    graph = GraphConfig(num_points=8, between=False, relations=RelationConfig(set="sr3d"))
    common = dict(root=str(tmp_path), generate=False, graph=graph, scan2cad="object_oriented_bboxes_aligned_scans.json")
    plain = SceneDataConfig(**common, scan2cad_has_front="shapenet_has_front.csv")
    listed = SceneDataConfig(
        **common, scan2cad_has_front="shapenet_has_front.csv", scan2cad_bad_mappings="bad_mappings.json"
    )

    def allocentric(cfg):
        g = make_store(cfg).get("scene0000_00")
        return {t for t in relation_triples(g) if t[1] in ("front", "behind", "left", "right")}

    assert allocentric(plain) == {(1, "front", 0), (2, "behind", 0)}
    assert allocentric(listed) == {(1, "right", 0), (2, "left", 0)}
    assert _cache_path(plain) != _cache_path(listed)  # cached graphs of one are never read for the other
