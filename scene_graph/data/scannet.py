"""Scenes in ScanNet's layout: ``<root>/<scene>/<scene>_vh_clean_2.ply`` (mesh or point
cloud vertices with colours), ``<scene>_vh_clean_2.0.010000.segs.json`` (a segment id per
vertex) and ``<scene>.aggregation.json`` (segment groups = object instances with labels)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch

from scene_graph.builder import SceneObjects, boxes_from_points
from vlx.data.errors import DataError, read_json_file

PLY = "{s}_vh_clean_2.ply"
SEGS = "{s}_vh_clean_2.0.010000.segs.json"
AGG = "{s}.aggregation.json"


def scene_files(root: str | Path, scene_id: str) -> tuple[Path, Path, Path]:
    d = Path(root) / scene_id
    return d / PLY.format(s=scene_id), d / SEGS.format(s=scene_id), d / AGG.format(s=scene_id)


def read_ply_vertices(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Vertices ``(M, 3)`` float32 and colours ``(M, 3)`` in 0..1 (zeros when absent), via open3d."""
    import open3d as o3d  # heavy; only when reading scenes

    if not path.is_file():
        raise DataError(f"{path}: file not found")
    pc = o3d.io.read_point_cloud(str(path))  # reads the vertices of a mesh ply as well
    xyz = np.asarray(pc.points, dtype=np.float32)
    if xyz.shape[0] == 0:
        raise DataError(f"{path}: no vertices")
    rgb = np.asarray(pc.colors, dtype=np.float32) if pc.has_colors() else np.zeros_like(xyz)
    return xyz, rgb


def load_scannet_scene(
    root: str | Path, scene_id: str, skip_labels: Sequence[str] = ()
) -> SceneObjects:
    """Object instances of one scene: points ``(Ni, 6)`` (xyz, rgb), axis-aligned boxes, labels.

    Object ids are the aggregation's ``objectId`` (what ScanRefer / Nr3D / ScanQA refer to).
    """
    ply, segs_path, agg_path = scene_files(root, scene_id)
    if not (Path(root) / scene_id).is_dir():
        raise DataError(f"{Path(root) / scene_id}: scene {scene_id!r} not found")
    xyz, rgb = read_ply_vertices(ply)
    seg = read_json_file(segs_path)
    if "segIndices" not in seg:
        raise DataError(f"{segs_path}: missing key 'segIndices'")
    seg_idx = np.asarray(seg["segIndices"], dtype=np.int64)
    if seg_idx.shape[0] != xyz.shape[0]:
        raise DataError(f"{segs_path}: {seg_idx.shape[0]} segment ids for {xyz.shape[0]} vertices in {ply.name}")
    agg = read_json_file(agg_path)
    if "segGroups" not in agg:
        raise DataError(f"{agg_path}: missing key 'segGroups'")
    pts = np.concatenate([xyz, rgb], axis=1)
    ids, labels, points = [], [], []
    for k, g in enumerate(agg["segGroups"]):
        try:
            oid, label, segments = int(g["objectId"]), str(g["label"]), g["segments"]
        except (KeyError, TypeError, ValueError):
            raise DataError(f"{agg_path}: segGroups[{k}] needs objectId, label, segments") from None
        if label in skip_labels:
            continue
        mask = np.isin(seg_idx, np.asarray(segments, dtype=np.int64))
        if not mask.any():
            raise DataError(f"{agg_path}: object id {oid} ({label}) has no vertices in {ply.name}")
        ids.append(oid)
        labels.append(label)
        points.append(torch.from_numpy(pts[mask]))
    if not ids:
        raise DataError(f"{agg_path}: scene {scene_id!r} has no objects")
    boxes = boxes_from_points(points)
    return SceneObjects(scene_id, ids, labels, boxes, points, source=str(agg_path))


def write_scannet_scene(
    root: str | Path,
    scene_id: str,
    xyz: np.ndarray,
    rgb: np.ndarray,
    instance: np.ndarray,
    labels: dict[int, str],
    segment: Optional[np.ndarray] = None,
) -> None:
    """Write points ``(M, 3)`` with colours ``(M, 3)`` in 0..1, an object id per point ``(M,)``
    and ``labels[object_id]`` as a ScanNet-layout scene (one segment per object unless
    ``segment (M,)`` is given)."""
    import open3d as o3d

    ply, segs_path, agg_path = scene_files(root, scene_id)
    ply.parent.mkdir(parents=True, exist_ok=True)
    pc = o3d.geometry.PointCloud()
    pc.points = o3d.utility.Vector3dVector(xyz.astype(np.float64))
    pc.colors = o3d.utility.Vector3dVector(np.clip(rgb, 0, 1).astype(np.float64))
    o3d.io.write_point_cloud(str(ply), pc, write_ascii=False)
    if segment is None:
        segment = instance
    segs_path.write_text(json.dumps({"sceneId": scene_id, "segIndices": segment.astype(int).tolist()}))
    groups = []
    for oid in sorted(labels):
        segs = sorted(set(segment[instance == oid].astype(int).tolist()))
        groups.append({"id": oid, "objectId": oid, "segments": segs, "label": labels[oid]})
    agg_path.write_text(json.dumps({"sceneId": f"scannet.{scene_id}", "segGroups": groups,
                                    "segmentsFile": f"scannet.{segs_path.name}"}))
