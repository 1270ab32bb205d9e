"""Object instances (boxes or points, with labels) -> a torch-geometric scene graph.

Nodes carry geometry (box, centre, optional resampled points); edges carry the spatial
relations of :mod:`scene_graph.relations` (the ``sr3d`` or the ``viewer`` set, as
``GraphConfig.relations.set`` says) as a multi-hot vector plus the relative offset,
as in SceneVerse's scene-graph preprocessing (Jia et al. 2024). Scenes of different sizes
batch with ``torch_geometric.data.Batch`` (``between_index`` is offset like ``edge_index``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import torch
from torch import Tensor
from torch_geometric.data import Batch, Data, HeteroData

from scene_graph.relations import (
    REL_INDEX,
    RELATIONS,
    RelationConfig,
    between_triplets,
    default_viewpoint,
    pairwise_relations,
)
from scene_graph.sr3d import sr3d_relations
from vlx.data.errors import DataError

EDGE_GEOMETRY_DIM = 4  # dx, dy, dz, distance
EDGE_DIM = len(RELATIONS) + EDGE_GEOMETRY_DIM


@dataclass
class GraphConfig:
    relations: RelationConfig = field(default_factory=RelationConfig)
    edges: Literal["knn", "all"] = "knn"  # candidate pairs: k nearest centres (both ways) or all
    k: int = 16
    between: bool = True  # ternary "between" triplets among each target's k nearest
    num_points: int = 64  # points resampled per object when points are given

    def __post_init__(self) -> None:
        if self.k < 1:
            raise ValueError(f"graph.k must be >= 1, got {self.k}")


@dataclass
class SceneObjects:
    """One scene's object instances, as read from a dataset.

    boxes ``(N, 6)`` (centre xyz, size xyz) or ``(N, 7)`` (+ yaw); points: one ``(Ni, 3|6)``
    tensor per object (xyz [+ rgb in 0..1]) or None. ``source`` names the file it came from.
    """

    scene_id: str
    object_ids: list[int]
    labels: list[str]
    boxes: Tensor
    points: list[Tensor] | None = None
    source: str = "<memory>"
    fronts: Tensor | None = None  # (N,) yaw (radians) of each object's front, NaN: none (sr3d)
    oriented: Tensor | None = None  # (N, 7) object-aligned boxes (centre, size, yaw), NaN rows: none (sr3d)

    def __post_init__(self) -> None:
        validate_objects(self)

    def __len__(self) -> int:
        return len(self.object_ids)


def validate_objects(objs: SceneObjects) -> None:
    """Raise DataError naming the file, scene and object id for empty scenes, duplicate ids,
    NaN/inf or negative-size boxes and mismatched lengths."""
    where = f"{objs.source}: scene {objs.scene_id!r}"
    n = len(objs.object_ids)
    if n == 0:
        raise DataError(f"{where}: scene has no objects")
    seen: set[int] = set()
    for oid in objs.object_ids:
        if oid in seen:
            raise DataError(f"{where}: duplicate object id {oid}")
        seen.add(oid)
    if len(objs.labels) != n:
        raise DataError(f"{where}: {len(objs.labels)} labels for {n} object ids")
    b = objs.boxes
    if b.ndim != 2 or b.shape[0] != n or b.shape[1] not in (6, 7):
        raise DataError(f"{where}: boxes must be ({n}, 6) or ({n}, 7), got {tuple(b.shape)}")
    bad = ~torch.isfinite(b).all(dim=1)
    if bad.any():
        raise DataError(f"{where}: object id {objs.object_ids[int(bad.nonzero()[0])]} has a NaN/inf box")
    neg = (b[:, 3:6] < 0).any(dim=1)
    if neg.any():
        raise DataError(f"{where}: object id {objs.object_ids[int(neg.nonzero()[0])]} has a negative box size")
    if objs.points is not None:
        if len(objs.points) != n:
            raise DataError(f"{where}: {len(objs.points)} point sets for {n} objects")
        for oid, p in zip(objs.object_ids, objs.points):
            if p.ndim != 2 or p.shape[0] == 0 or p.shape[1] not in (3, 6):
                raise DataError(f"{where}: object id {oid} points must be (M>0, 3|6), got {tuple(p.shape)}")
            if not torch.isfinite(p).all():
                raise DataError(f"{where}: object id {oid} has NaN/inf points")


def boxes_from_points(points: Sequence[Tensor]) -> Tensor:
    """Axis-aligned boxes ``(N, 6)`` around each object's points (as ScanRefer's GT boxes)."""
    lo = torch.stack([p[:, :3].min(0).values for p in points])
    hi = torch.stack([p[:, :3].max(0).values for p in points])
    return torch.cat([(lo + hi) / 2, hi - lo], dim=1)


def candidate_pairs(centres: Tensor, cfg: GraphConfig) -> tuple[Tensor, Tensor]:
    """Ordered candidate pairs (i, j), i != j: all of them or the k-NN ones made symmetric."""
    n = centres.shape[0]
    if cfg.edges == "all" or n - 1 <= cfg.k:
        i, j = torch.meshgrid(torch.arange(n), torch.arange(n), indexing="ij")
        keep = i != j
        return i[keep], j[keep]
    D = torch.cdist(centres, centres)
    D.fill_diagonal_(float("inf"))
    nn_idx = D.topk(cfg.k, dim=1, largest=False).indices  # (N, k)
    src = torch.arange(n).repeat_interleave(cfg.k)
    dst = nn_idx.reshape(-1)
    pairs = torch.cat([torch.stack([src, dst]), torch.stack([dst, src])], dim=1)
    pairs = torch.unique(pairs, dim=1)  # symmetric, deduplicated
    return pairs[0], pairs[1]


def _resample(points: Tensor, m: int, gen: torch.Generator) -> Tensor:
    """``(Ni, C)`` -> ``(m, 6)``: a seeded subset (with replacement when Ni < m), rgb zero if absent."""
    n = points.shape[0]
    idx = torch.randperm(n, generator=gen)[:m] if n >= m else torch.randint(n, (m,), generator=gen)
    p = points[idx].float()
    if p.shape[1] == 3:
        p = torch.cat([p, torch.zeros(m, 3)], dim=1)
    return p


def build_scene_graph(
    objs: SceneObjects,
    cfg: GraphConfig | None = None,
    label_vocab: dict[str, int] | None = None,
    viewpoint: Tensor | None = None,
    seed: int = 0,
) -> Data:
    """Build the scene graph of one scene.

    Returns ``Data`` with ``box (N, 6|7)``, ``pos (N, 3)``, ``label (N,)`` (ids from
    ``label_vocab``, -1 when absent), ``object_id (N,)``, ``points (N, P, 6)`` when points
    were given, ``edge_index (2, E)`` (row 0 = target i, row 1 = anchor j: "i REL j"),
    ``edge_rel (E, R)`` bool, ``edge_attr (E, R + 4)`` float (relations, dx, dy, dz, dist),
    ``between_index (3, T)`` (target, anchor a, anchor b), ``viewpoint (1, 3)``, ``scene_id``.
    """
    cfg = cfg or GraphConfig()
    boxes = objs.boxes.float()
    n = boxes.shape[0]
    names = sorted(set(objs.labels))
    local = {name: k for k, name in enumerate(names)}  # relation rules only need class equality
    cls = torch.tensor([local[l] for l in objs.labels], dtype=torch.long)
    if viewpoint is None:
        viewpoint = default_viewpoint(boxes)
    i, j = candidate_pairs(boxes[:, :3], cfg)
    between = None
    if cfg.relations.set == "sr3d":
        i, j, rel, between = _sr3d_edges(objs, boxes, i, j, cfg)
    else:
        rel = pairwise_relations(boxes, cls, i, j, viewpoint, cfg.relations)
    off = boxes[i, :3] - boxes[j, :3]
    edge_attr = torch.cat([rel.float(), off, off.norm(dim=-1, keepdim=True)], dim=1)
    data = Data(
        edge_index=torch.stack([i, j]),
        edge_attr=edge_attr,
        edge_rel=rel,
        box=boxes,
        pos=boxes[:, :3].clone(),
        object_id=torch.tensor(objs.object_ids, dtype=torch.long),
        label=torch.tensor([label_vocab.get(l, -1) if label_vocab else -1 for l in objs.labels]),
        viewpoint=viewpoint.float().view(1, 3),
        num_nodes=n,
    )
    data.scene_id = objs.scene_id
    data.label_names = list(objs.labels)
    if objs.fronts is not None:
        data.front = objs.fronts.float()
    if not cfg.between:
        pass
    elif between is not None:
        data.between_index = between
    else:
        k = min(cfg.k, n - 1)
        if k >= 2:
            D = torch.cdist(boxes[:, :3], boxes[:, :3])
            D.fill_diagonal_(float("inf"))
            cand = D.topk(k, dim=1, largest=False).indices
            data.between_index = between_triplets(boxes, cand, cfg.relations)
        else:
            data.between_index = torch.zeros(3, 0, dtype=torch.long)
    if objs.points is not None:
        gen = torch.Generator().manual_seed(seed)
        data.points = torch.stack([_resample(p, cfg.num_points, gen) for p in objs.points])
    return data


def _sr3d_edges(objs: SceneObjects, boxes: Tensor, i: Tensor, j: Tensor, cfg: GraphConfig):
    """Sr3D's relations on the candidate pairs plus every related pair outside them:
    ``(i, j, rel (E, R) bool, between_index (3, T))``."""
    pts = [p[:, :3].double().numpy() for p in objs.points] if objs.points is not None else None
    fronts = objs.fronts.double().numpy() if objs.fronts is not None else None
    oriented = objs.oriented.double().numpy() if objs.oriented is not None else None
    refs, between = sr3d_relations(
        boxes.double().numpy(), list(objs.labels), pts, fronts, cfg.relations.sr3d, oriented=oriented
    )
    pairs = {(int(a), int(b)): e for e, (a, b) in enumerate(zip(i.tolist(), j.tolist()))}
    for t, _, a in refs:
        pairs.setdefault((t, a), len(pairs))
    ij = torch.tensor(list(pairs), dtype=torch.long).reshape(-1, 2)
    rel = torch.zeros(ij.shape[0], len(RELATIONS), dtype=torch.bool)
    for t, name, a in refs:
        rel[pairs[(t, a)], REL_INDEX[name]] = True
    bidx = torch.tensor(between, dtype=torch.long).reshape(-1, 3).t().contiguous()
    return ij[:, 0], ij[:, 1], rel, bidx


def relation_triples(data: Data) -> list[tuple[int, str, int]]:
    """``[(object_id_i, relation, object_id_j), ...]`` of a graph, for inspection and text."""
    e, r = data.edge_rel.nonzero(as_tuple=True)
    oid = data.object_id
    return [(int(oid[data.edge_index[0, a]]), RELATIONS[int(b)], int(oid[data.edge_index[1, a]])) for a, b in zip(e, r)]


def to_hetero(data: Data) -> HeteroData:
    """One edge type per relation: ``("object", rel, "object")`` with the edges holding it."""
    h = HeteroData()
    for key in ("box", "pos", "label", "object_id"):
        h["object"][key] = data[key]
    if "points" in data:
        h["object"].points = data.points
    h["object"].num_nodes = data.num_nodes
    for r, name in enumerate(RELATIONS):
        m = data.edge_rel[:, r]
        h["object", name, "object"].edge_index = data.edge_index[:, m]
        h["object", name, "object"].edge_attr = data.edge_attr[m, len(RELATIONS) :]
    if "between_index" in data:
        h["object", "between", "object"].edge_index = data.between_index[1:]  # anchor pairs
        h["object", "between", "object"].target = data.between_index[0]
    h.scene_id = data.scene_id
    return h


def batch_graphs(graphs: Sequence[Data]) -> Batch:
    """Batch scenes of different sizes into one disconnected graph (``batch`` maps nodes to scenes)."""
    if not graphs:
        raise ValueError("batch_graphs: no graphs")
    return Batch.from_data_list(list(graphs))
