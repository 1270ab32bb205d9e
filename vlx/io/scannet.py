"""ScanNet v2 scenes in their published layout, one reader/writer pair for every sibling.

``<root>/<scene>/`` holds:

- ``<scene>_vh_clean_2.ply``: the mesh (or point cloud); its vertices carry ``x, y, z``
  (float) and ``red, green, blue[, alpha]`` (uchar);
- ``<scene>_vh_clean_2.0.010000.segs.json``: ``{"sceneId", "segIndices": [segment id per vertex]}``;
- ``<scene>.aggregation.json``: ``{"sceneId", "segGroups": [{"id", "objectId", "segments",
  "label"}], "segmentsFile"}``: object instances as groups of segments, with raw labels;
- ``<scene>.txt``: ``key = value`` lines, among them ``axisAlignment = m00 m01 ... m33`` (a
  row-major 4x4 that rotates the scan so walls run along x / y; absent in the test scans).

Points are axis-aligned as ScanNet / ScanRefer do it: ``[x y z 1] @ M.T``.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from vlx.data.errors import DataError, read_json_file

PLY = "{s}_vh_clean_2.ply"
SEGS = "{s}_vh_clean_2.0.010000.segs.json"
AGG = "{s}.aggregation.json"
META = "{s}.txt"


@dataclass
class ScenePaths:
    dir: Path
    ply: Path
    segs: Path
    agg: Path
    meta: Path


def scene_paths(root: str | Path, scene_id: str) -> ScenePaths:
    d = Path(root) / scene_id
    return ScenePaths(
        d,
        d / PLY.format(s=scene_id),
        d / SEGS.format(s=scene_id),
        d / AGG.format(s=scene_id),
        d / META.format(s=scene_id),
    )


@dataclass
class ScanNetScene:
    """One scene as stored: ``xyz (M, 3)`` float32 in the scan's own frame (not aligned),
    ``rgb (M, 3)`` uint8, ``segments (M,)`` segment ids, ``groups``: ``(objectId, label,
    segments)`` per annotated object, ``axis_alignment`` ``(4, 4)`` or None."""

    scene_id: str
    xyz: np.ndarray
    rgb: np.ndarray
    segments: np.ndarray
    groups: list[tuple[int, str, list[int]]] = field(default_factory=list)
    axis_alignment: np.ndarray | None = None

    def instance_ids(self) -> np.ndarray:
        """``(M,)`` the objectId of each vertex's group, -1 where no group holds its segment."""
        inst = np.full(self.xyz.shape[0], -1, dtype=np.int64)
        for oid, _, segs in self.groups:
            inst[np.isin(self.segments, np.asarray(segs, dtype=np.int64))] = oid
        return inst

    def aligned_xyz(self) -> np.ndarray:
        """Vertices in the axis-aligned frame (unchanged when the scene has no alignment)."""
        return align_points(self.xyz, self.axis_alignment)


def align_points(xyz: np.ndarray, matrix: np.ndarray | None) -> np.ndarray:
    """``(M, 3)`` -> ``(M, 3)``: ``[x y z 1] @ matrix.T`` (ScanNet's axisAlignment), float32."""
    if matrix is None:
        return xyz.astype(np.float32, copy=False)
    return (xyz.astype(np.float64) @ matrix[:3, :3].T + matrix[:3, 3]).astype(np.float32)


def read_ply_vertices(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Vertices ``(M, 3)`` float32 and colours ``(M, 3)`` uint8 (zeros when absent), via open3d
    (which reads the vertices of a mesh PLY as well)."""
    import open3d as o3d  # heavy; only when reading scenes

    p = Path(path)
    if not p.is_file():
        raise DataError(f"{p}: file not found")
    pc = o3d.io.read_point_cloud(str(p))
    xyz = np.asarray(pc.points, dtype=np.float32)
    if xyz.shape[0] == 0:
        raise DataError(f"{p}: no vertices")
    rgb = np.round(np.asarray(pc.colors) * 255).astype(np.uint8) if pc.has_colors() else np.zeros_like(xyz, np.uint8)
    return xyz, rgb


def write_ply_vertices(path: str | Path, xyz: np.ndarray, rgb: np.ndarray) -> None:
    """A binary PLY with ScanNet's vertex layout: float x, y, z and uchar red, green, blue,
    alpha (no faces). Written by hand because open3d's writer stores doubles, not ScanNet's
    floats, and drops alpha."""
    n = xyz.shape[0]
    v = np.empty(n, dtype=[(k, "<f4") for k in "xyz"] + [(k, "u1") for k in ("red", "green", "blue", "alpha")])
    for k, c in zip("xyz", xyz.T):
        v[k] = c
    for k, c in zip(("red", "green", "blue"), _to_uint8(rgb).T):
        v[k] = c
    v["alpha"] = 255
    props = "".join(f"property float {k}\n" for k in "xyz") + "".join(
        f"property uchar {k}\n" for k in ("red", "green", "blue", "alpha")
    )
    header = f"ply\nformat binary_little_endian 1.0\nelement vertex {n}\n{props}end_header\n"
    with open(path, "wb") as f:
        f.write(header.encode("ascii"))
        f.write(v.tobytes())


def _to_uint8(rgb: np.ndarray) -> np.ndarray:
    """Colours as uint8: float input is read as 0..1, integer input as 0..255."""
    if np.issubdtype(rgb.dtype, np.floating):
        return np.round(np.clip(rgb, 0, 1) * 255).astype(np.uint8)
    return np.clip(rgb, 0, 255).astype(np.uint8)


def read_axis_alignment(path: str | Path) -> np.ndarray | None:
    """The ``axisAlignment`` of a ``<scene>.txt`` as ``(4, 4)``; None when the file or line is
    absent (ScanNet's test scans have none); a malformed line is a DataError."""
    p = Path(path)
    if not p.is_file():
        return None
    for k, line in enumerate(p.read_text().splitlines()):
        key, _, value = line.partition("=")
        if key.strip() == "axisAlignment":
            try:
                m = np.array([float(x) for x in value.split()], dtype=np.float64)
            except ValueError:
                m = np.zeros(0)
            if m.size != 16:
                raise DataError(f"{p} line {k + 1}: axisAlignment needs 16 numbers, got {value.strip()!r}")
            return m.reshape(4, 4)
    return None


def read_scannet_scene(root: str | Path, scene_id: str, aggregation: bool = True) -> ScanNetScene:
    """Read one scene; DataError (one line, naming the file) on a missing scene or file,
    missing keys or a segment list whose length differs from the vertex count.

    ``aggregation=False`` reads a scene without objects (no ``.aggregation.json`` needed).
    """
    p = scene_paths(root, scene_id)
    if not p.dir.is_dir():
        raise DataError(f"{p.dir}: scene {scene_id!r} not found")
    xyz, rgb = read_ply_vertices(p.ply)
    seg = read_json_file(p.segs)
    if not isinstance(seg, dict) or "segIndices" not in seg:
        raise DataError(f"{p.segs}: missing key 'segIndices'")
    segments = np.asarray(seg["segIndices"], dtype=np.int64)
    if segments.shape[0] != xyz.shape[0]:
        raise DataError(f"{p.segs}: {segments.shape[0]} segment ids for {xyz.shape[0]} vertices in {p.ply.name}")
    groups: list[tuple[int, str, list[int]]] = []
    if aggregation:
        agg = read_json_file(p.agg)
        if not isinstance(agg, dict) or "segGroups" not in agg:
            raise DataError(f"{p.agg}: missing key 'segGroups'")
        for k, g in enumerate(agg["segGroups"]):
            try:
                groups.append((int(g["objectId"]), str(g["label"]), [int(s) for s in g["segments"]]))
            except (KeyError, TypeError, ValueError):
                raise DataError(f"{p.agg}: segGroups[{k}] needs objectId, label, segments") from None
    return ScanNetScene(scene_id, xyz, rgb, segments, groups, read_axis_alignment(p.meta))


def write_scannet_scene(
    root: str | Path,
    scene_id: str,
    xyz: np.ndarray,
    rgb: np.ndarray,
    instance: np.ndarray,
    labels: dict[int, str],
    segment: np.ndarray | None = None,
    axis_alignment: np.ndarray | None = None,
    meta: dict[str, str] | None = None,
) -> Path:
    """Write a scene in ScanNet's layout; returns its folder.

    xyz ``(M, 3)``, rgb ``(M, 3)`` (float 0..1 or uint8), ``instance (M,)`` an object id per
    point, ``labels[object_id]`` the raw label of each object to annotate (points whose id is
    not in ``labels`` stay unannotated), ``segment (M,)`` segment ids (default: the instance
    id, one segment per object), ``axis_alignment (4, 4)`` and other ``meta`` lines for
    ``<scene>.txt``. Files are written to a temporary name and renamed.
    """
    p = scene_paths(root, scene_id)
    p.dir.mkdir(parents=True, exist_ok=True)
    instance = np.asarray(instance).astype(np.int64)
    segment = instance if segment is None else np.asarray(segment).astype(np.int64)
    _atomic(p.ply, lambda f: write_ply_vertices(f, xyz, rgb))
    segs = {"params": {"kThresh": "0.0001", "segMinVerts": "20"}, "sceneId": scene_id, "segIndices": segment.tolist()}
    _atomic(p.segs, lambda f: Path(f).write_text(json.dumps(segs)))
    groups = [
        {
            "id": k,
            "objectId": int(oid),
            "segments": sorted(set(segment[instance == oid].tolist())),
            "label": labels[oid],
        }
        for k, oid in enumerate(sorted(labels))
    ]
    agg = {
        "sceneId": f"scannet.{scene_id}",
        "appId": "vlx",
        "segGroups": groups,
        "segmentsFile": f"scannet.{p.segs.name}",
    }
    _atomic(p.agg, lambda f: Path(f).write_text(json.dumps(agg)))
    lines = dict(meta or {})
    if axis_alignment is not None:
        lines["axisAlignment"] = " ".join(f"{v:.9g}" for v in np.asarray(axis_alignment, dtype=np.float64).reshape(-1))
    if lines:
        _atomic(p.meta, lambda f: Path(f).write_text("".join(f"{k} = {v}\n" for k, v in lines.items())))
    return p.dir


def _atomic(path: Path, write) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
