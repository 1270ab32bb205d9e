import pytest
import torch

from scene_graph.builder import (
    EDGE_DIM,
    GraphConfig,
    SceneObjects,
    batch_graphs,
    build_scene_graph,
    relation_triples,
    to_hetero,
)
from scene_graph.relations import REL_INDEX, RELATIONS, RelationConfig
from vlx.data.errors import DataError


def scene(n, seed=0, scene_id="s0"):
    g = torch.Generator().manual_seed(seed)
    centre = torch.rand(n, 3, generator=g) * 5
    size = 0.2 + torch.rand(n, 3, generator=g)
    labels = [["box", "chair", "lamp"][k % 3] for k in range(n)]
    pts = [torch.rand(10 + k, 6, generator=g) for k in range(n)]
    return SceneObjects(scene_id, list(range(100, 100 + n)), labels, torch.cat([centre, size], 1), pts, source="f.json")


def test_graph_fields_and_edges():
    g = build_scene_graph(scene(8), GraphConfig(num_points=16, relations=RelationConfig(set="viewer")))
    assert g.num_nodes == 8 and g.points.shape == (8, 16, 6)
    assert g.edge_index.shape == (2, 8 * 7)  # k >= n-1: all ordered pairs
    assert g.edge_attr.shape == (56, EDGE_DIM)
    assert not (g.edge_index[0] == g.edge_index[1]).any()
    # Geometry part of edge_attr is the offset target - anchor.
    off = g.pos[g.edge_index[0]] - g.pos[g.edge_index[1]]
    assert torch.allclose(g.edge_attr[:, len(RELATIONS) : len(RELATIONS) + 3], off)
    trip = relation_triples(g)
    assert trip and all(a in range(100, 108) and b in range(100, 108) for a, _, b in trip)


def test_sr3d_set_feeds_edges_and_between():
    # a book on a table (both unique), a lamp between a bed and a desk (no other object
    # lies inside the outline of two others)
    boxes = torch.tensor(
        [
            [6, 20, 0.4, 1, 1, 0.8],  # table, far off to the side
            [6, 20, 0.85, 0.1, 0.1, 0.1],  # book on it
            [5, 0, 0.5, 1, 1, 1],  # bed
            [7, 0, 0.5, 1, 1, 1],  # desk
            [6, 0, 0.25, 0.4, 0.4, 0.5],  # lamp between them
        ]
    )
    objs = SceneObjects("s", [10, 11, 12, 13, 14], ["table", "book", "bed", "desk", "lamp"], boxes)
    g = build_scene_graph(objs, GraphConfig(edges="knn", k=1))
    trip = set(relation_triples(g))
    assert (11, "on", 10) in trip and (10, "supports", 11) in trip
    assert not g.edge_rel[:, [REL_INDEX[r] for r in ("near", "larger", "smaller")]].any()
    assert g.between_index.t().tolist() == [[4, 2, 3]]
    viewer = build_scene_graph(objs, GraphConfig(edges="knn", k=1, relations=RelationConfig(set="viewer")))
    assert (11, "near", 10) in set(relation_triples(viewer))


def test_knn_edges_are_a_subset_with_identical_relations():
    objs = scene(30, seed=1)
    dense = build_scene_graph(objs, GraphConfig(edges="all", between=False))
    sparse = build_scene_graph(objs, GraphConfig(edges="knn", k=4, between=False))
    assert sparse.edge_index.shape[1] < dense.edge_index.shape[1]
    # each node keeps at least its 4 nearest neighbours as anchors
    assert torch.bincount(sparse.edge_index[0], minlength=30).min() >= 4
    key = lambda ei: (ei[0] * 30 + ei[1]).tolist()
    pos = {k: e for e, k in enumerate(key(dense.edge_index))}
    idx = torch.tensor([pos[k] for k in key(sparse.edge_index)])
    assert torch.equal(sparse.edge_rel, dense.edge_rel[idx])


def test_batching_scenes_of_different_sizes():
    a, b = build_scene_graph(scene(5)), build_scene_graph(scene(9, seed=3, scene_id="s1"))
    batch = batch_graphs([a, b])
    assert batch.num_nodes == 14 and batch.batch.tolist() == [0] * 5 + [1] * 9
    assert batch.edge_index[:, a.edge_index.shape[1] :].min() >= 5
    if b.between_index.shape[1]:
        assert batch.between_index[:, a.between_index.shape[1] :].min() >= 5
    assert batch.scene_id == ["s0", "s1"]


def test_hetero_view_counts_relations():
    g = build_scene_graph(scene(10, seed=2))
    h = to_hetero(g)
    for r, name in enumerate(RELATIONS):
        assert h["object", name, "object"].edge_index.shape[1] == int(g.edge_rel[:, r].sum())
    assert h["object"].num_nodes == 10


@pytest.mark.parametrize(
    "mutate, msg",
    [
        (lambda d: d.update(object_ids=[], labels=[], boxes=torch.zeros(0, 6), points=None), "no objects"),
        (lambda d: d.update(object_ids=[1, 2, 1]), "duplicate object id 1"),
        (lambda d: d["boxes"].__setitem__((1, 2), float("nan")), "object id 2 has a NaN/inf box"),
        (lambda d: d["boxes"].__setitem__((2, 4), -1.0), "object id 3 has a negative box size"),
    ],
)
def test_bad_scenes_name_file_and_id(mutate, msg):
    d = dict(
        scene_id="scene7",
        object_ids=[1, 2, 3],
        labels=["a", "b", "c"],
        boxes=torch.ones(3, 6),
        points=None,
        source="scans/scene7/agg.json",
    )
    mutate(d)
    with pytest.raises(DataError, match=msg) as e:
        SceneObjects(**d)
    assert "scans/scene7/agg.json" in str(e.value) and "scene7" in str(e.value)
