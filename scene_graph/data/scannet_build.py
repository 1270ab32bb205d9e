"""``vlx scene-graph build-scannet``: a ScanNet v2 copy in its published layout -> one ``.npz``
per scene in the schema below, axis-aligned, in parallel processes, resumable.

Input: ``<scans>/<scene>/`` as ScanNet publishes it (see :mod:`vlx.io.scannet`) and the label
map ``scannetv2-labels.combined.tsv`` (``--label-map``; default: next to ``scans`` or inside it).

Output ``<out>/<scene>.npz`` (schema version 1), all in the axis-aligned frame
(``[x y z 1] @ axisAlignment.T``; identity for scenes without one, e.g. ScanNet's test scans):

==================  ==============  ==========================================================
key                 shape, dtype    meaning
==================  ==============  ==========================================================
points              (M, 3) float32  vertex positions, axis-aligned
colors              (M, 3) uint8    vertex colours
instance_ids        (M,) int32      the aggregation ``objectId`` of each vertex, -1 unannotated
semantic_nyu40      (M,) int32      NYU40 id of each vertex's object, 0 unannotated
object_ids          (K,) int32      ``objectId`` of each annotated object (aggregation order)
labels_raw          (K,) str        raw label (``segGroups[].label``)
labels_nyu40        (K,) int32      NYU40 id from the label map
labels_scannet18    (K,) int32      index into :data:`scene_graph.data.labels.SCANNET18`
boxes               (K, 6) float32  axis-aligned boxes: centre xyz, size xyz (min/max of its points)
axis_alignment      (4, 4) float64  the matrix applied
has_alignment       () bool         whether ``<scene>.txt`` had an ``axisAlignment`` line
schema              () int32        1
==================  ==============  ==========================================================

``<out>/scenes.json`` lists the built scenes and the skipped ones with the reason (a scene
folder missing a file, a label missing from the map, ...). A rerun builds only scenes whose
``.npz`` is missing (each is written to a temporary name and renamed, so a kill leaves none
half-written); ``--force`` rebuilds all.
"""

from __future__ import annotations

import json
import os
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from scene_graph.builder import SceneObjects
from scene_graph.data.labels import LABEL_MAP, LabelMap, read_label_map
from vlx.data.errors import DataError
from vlx.io.scannet import read_scannet_scene

SCHEMA = 1


@dataclass
class BuildResult:
    built: list[str]
    reused: list[str]
    skipped: dict[str, str]


def find_label_map(scans: Path) -> Path:
    for p in (scans / LABEL_MAP, scans.parent / LABEL_MAP):
        if p.is_file():
            return p
    raise DataError(f"{scans}: {LABEL_MAP} not found next to or inside it; pass --label-map")


def build_scene(scans: str | Path, scene_id: str, labels: LabelMap) -> dict[str, np.ndarray]:
    """One scene's arrays in the schema of this module (DataError when it cannot be built)."""
    scene = read_scannet_scene(scans, scene_id)
    if not scene.groups:
        raise DataError(f"{Path(scans) / scene_id}: aggregation has no objects")
    xyz = scene.aligned_xyz()
    inst = scene.instance_ids()
    where = str(Path(scans) / scene_id / f"{scene_id}.aggregation.json")
    sem = np.zeros(len(xyz), dtype=np.int32)
    ids, raw, nyu, s18, boxes = [], [], [], [], []
    for oid, label, _ in scene.groups:
        mask = inst == oid
        if not mask.any():
            raise DataError(f"{where}: object id {oid} ({label}) has no vertices")
        nid, _ = labels.nyu40(label, where)
        sem[mask] = nid
        lo, hi = xyz[mask].min(0), xyz[mask].max(0)
        ids.append(oid), raw.append(label), nyu.append(nid), s18.append(labels.scannet18(label))
        boxes.append(np.concatenate([(lo + hi) / 2, hi - lo]))
    m = scene.axis_alignment
    return {
        "points": xyz.astype(np.float32),
        "colors": scene.rgb.astype(np.uint8),
        "instance_ids": inst.astype(np.int32),
        "semantic_nyu40": sem,
        "object_ids": np.asarray(ids, dtype=np.int32),
        "labels_raw": np.asarray(raw, dtype=str),
        "labels_nyu40": np.asarray(nyu, dtype=np.int32),
        "labels_scannet18": np.asarray(s18, dtype=np.int32),
        "boxes": np.asarray(boxes, dtype=np.float32).reshape(-1, 6),
        "axis_alignment": np.eye(4) if m is None else m,
        "has_alignment": np.asarray(m is not None),
        "schema": np.asarray(SCHEMA, dtype=np.int32),
    }


def _build_one(scans: str, scene_id: str, labels: LabelMap, out: str) -> tuple[str, str | None]:
    """Worker: build and write one scene; (scene_id, None) or (scene_id, reason it was skipped)."""
    try:
        arrays = build_scene(scans, scene_id, labels)
    except DataError as e:
        return scene_id, str(e)
    dst = Path(out) / f"{scene_id}.npz"
    tmp = dst.with_name(f".{scene_id}.{os.getpid()}.tmp.npz")
    try:
        np.savez(tmp, **arrays)
        os.replace(tmp, dst)
    finally:
        tmp.unlink(missing_ok=True)
    return scene_id, None


def build_scannet(
    scans: str | Path,
    out: str | Path,
    label_map: str | Path | None = None,
    workers: int = 1,
    force: bool = False,
    progress: bool = True,
    scenes: list[str] | None = None,
) -> BuildResult:
    """Build every scene folder under ``scans`` (or ``scenes``) into ``out``; see the module
    docstring. Bad scenes are skipped, listed in ``scenes.json`` and returned."""
    scans, out = Path(scans), Path(out)
    if not scans.is_dir():
        raise DataError(f"{scans}: scans folder not found")
    labels = read_label_map(label_map or find_label_map(scans))
    out.mkdir(parents=True, exist_ok=True)
    todo = sorted(scenes or (d.name for d in scans.iterdir() if d.is_dir()))
    reused = [s for s in todo if not force and (out / f"{s}.npz").is_file()]
    todo = [s for s in todo if s not in set(reused)]
    built, skipped = [], {}
    bar = tqdm(total=len(todo), desc="scenes", disable=not progress)
    if workers <= 1 or len(todo) <= 1:
        results = (_build_one(str(scans), s, labels, str(out)) for s in todo)
        for sid, err in results:
            (skipped.__setitem__(sid, err) if err else built.append(sid)), bar.update()
    else:
        with ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn")) as pool:
            futs = [pool.submit(_build_one, str(scans), s, labels, str(out)) for s in todo]
            for fut in as_completed(futs):
                sid, err = fut.result()
                (skipped.__setitem__(sid, err) if err else built.append(sid)), bar.update()
    bar.close()
    index = out / "scenes.json"
    old = json.loads(index.read_text()) if index.is_file() else {}
    done = sorted((set(old.get("scenes", [])) | set(built) | set(reused)) - set(skipped))
    doc = {"schema": SCHEMA, "label_map": labels.source, "scenes": done, "skipped": dict(sorted(skipped.items()))}
    tmp = index.with_name(".scenes.json.tmp")
    tmp.write_text(json.dumps(doc, indent=1))
    os.replace(tmp, index)
    return BuildResult(sorted(built), reused, skipped)


def load_built_scene(root: str | Path, scene_id: str) -> SceneObjects:
    """A scene written by :func:`build_scannet` as SceneObjects (points with colours in 0..1,
    raw labels), so :class:`~scene_graph.data.dataset.SceneStore` can read built scenes."""
    p = Path(root) / f"{scene_id}.npz"
    if not p.is_file():
        raise DataError(f"{p}: scene {scene_id!r} not found (run vlx scene-graph build-scannet)")
    with np.load(p, allow_pickle=False) as z:
        if int(z["schema"]) != SCHEMA:
            raise DataError(f"{p}: schema {int(z['schema'])}, expected {SCHEMA}; rebuild it")
        pts = np.concatenate([z["points"], z["colors"].astype(np.float32) / 255.0], 1)
        inst = z["instance_ids"]
        ids = z["object_ids"].tolist()
        points = [torch.from_numpy(pts[inst == oid]) for oid in ids]
        return SceneObjects(
            scene_id, ids, z["labels_raw"].tolist(), torch.from_numpy(z["boxes"]), points, source=str(p)
        )
