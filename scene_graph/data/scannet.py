"""ScanNet-layout scenes as scene_graph's object instances.

The files are read and written by :mod:`vlx.io.scannet` (the one reader/writer of the
layout); this module turns a scene into :class:`~scene_graph.builder.SceneObjects`: the
vertices of each aggregation ``segGroup``, axis-aligned with ``axisAlignment`` from
``<scene>.txt`` when present (as ScanRefer's boxes are), and their axis-aligned boxes.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from scene_graph.builder import SceneObjects, boxes_from_points
from vlx.data.errors import DataError
from vlx.io.scannet import read_scannet_scene, scene_paths, write_scannet_scene

__all__ = ["load_scannet_scene", "scene_files", "write_scannet_scene"]


def scene_files(root: str | Path, scene_id: str) -> tuple[Path, Path, Path]:
    """``(ply, segs.json, aggregation.json)`` of a scene."""
    p = scene_paths(root, scene_id)
    return p.ply, p.segs, p.agg


def load_scannet_scene(
    root: str | Path, scene_id: str, skip_labels: Sequence[str] = (), align: bool = True
) -> SceneObjects:
    """Object instances of one scene: points ``(Ni, 6)`` (xyz, rgb in 0..1), axis-aligned
    boxes ``(N, 6)`` around them, raw labels.

    Object ids are the aggregation's ``objectId`` (what ScanRefer / Nr3D / ScanQA refer to).
    ``align``: apply the scene's ``axisAlignment`` (points and hence boxes) when it has one.
    """
    scene = read_scannet_scene(root, scene_id)
    agg = scene_paths(root, scene_id).agg
    xyz = scene.aligned_xyz() if align else scene.xyz
    pts = np.concatenate([xyz, scene.rgb.astype(np.float32) / 255.0], axis=1)
    ids, labels, points = [], [], []
    for oid, label, segments in scene.groups:
        if label in skip_labels:
            continue
        mask = np.isin(scene.segments, np.asarray(segments, dtype=np.int64))
        if not mask.any():
            raise DataError(f"{agg}: object id {oid} ({label}) has no vertices in {scene_paths(root, scene_id).ply.name}")
        ids.append(oid)
        labels.append(label)
        points.append(torch.from_numpy(pts[mask]))
    if not ids:
        raise DataError(f"{agg}: scene {scene_id!r} has no objects")
    return SceneObjects(scene_id, ids, labels, boxes_from_points(points), points, source=str(agg))
