"""Object fronts and oriented boxes from Scan2CAD, in the files referit3d publishes
(``referit3d/data/scan2cad/``), for Sr3D's left / right / front / behind.

``object_oriented_bboxes_aligned_scans.json`` (axis-aligned scans, one entry per ScanNet object
Scan2CAD aligned a ShapeNet model to)::

    {"scene0000_00_1": {"catid_cad": "03001627", "id_cad": "<model>",
                        "obj_bbox": [cx, cy, cz, lx, ly, lz], "obj_rot": 4 x 4, "front_point": [x, y, z]}}

The key is ``<scan id (12 characters)>_<object id>``. ``shapenet_has_front.csv`` (columns
``syn_id, model_name, has_front``) says which ShapeNet models have a front. As referit3d's
``register_scan2cad_bboxes`` / ``register_front_direction``: every listed object gets its
oriented box; it has a front when its (``catid_cad``, ``id_cad``) is marked ``has_front == 1``.
The generator cuts its sections in the box frame ``local = R^T (p - c)`` (``R`` the top-left
3 x 3 of ``obj_rot``) with the front beyond the local -x face, so the front direction is
``-R[:, 0]``; ``front_point`` is not read (referit3d stores it but the generator does not use it).
``bad_mappings.json`` (optional, ``data.scan2cad_bad_mappings``): a list of ``[ScanNet label,
ShapeNet category]`` pairs that referit3d found wrongly aligned. As its ``register_scan2cad_bboxes``:
an object whose (raw ScanNet label, category of ``catid_cad``) pair is listed keeps no oriented
box, while ``register_front_direction`` (which does not read the list) still gives it its front;
the generator then cuts its sections in the axis-aligned box, i.e. front = world -x.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
import torch

from vlx.data.errors import DataError, read_json_file


def read_has_front(path: str | Path) -> set[tuple[str, str]]:
    """``shapenet_has_front.csv`` -> the (ShapeNet synset id, model name) pairs with a front."""
    p = Path(path)
    if not p.is_file():
        raise DataError(f"{p}: Scan2CAD has-front file not found")
    with p.open(newline="") as f:
        rows = list(csv.DictReader(f))
    need = ("syn_id", "model_name", "has_front")
    missing = [c for c in need if rows and c not in rows[0]]
    if not rows or missing:
        raise DataError(f"{p}: expected columns {', '.join(need)}; missing {', '.join(missing) or 'all rows'}")
    out = set()
    for k, r in enumerate(rows):
        try:
            yes = int(float(r["has_front"])) == 1
        except ValueError:
            raise DataError(f"{p}: row {k + 2}: has_front must be 0 or 1, got {r['has_front']!r}") from None
        if yes:
            out.add((str(r["syn_id"]).strip(), str(r["model_name"]).strip()))
    return out


# ShapeNetCore v2 synset id -> the category names referit3d's bad_mappings.json uses (the ShapeNet
# taxonomy; needed to compare a Scan2CAD entry's catid_cad with the list).
SHAPENET_CATEGORIES = {
    "02691156": "airplane", "02747177": "can", "02773838": "bag", "02801938": "basket", "02808440": "bathtub",
    "02818832": "bed", "02828884": "bench", "02834778": "bicycle", "02843684": "birdhouse", "02858304": "boat",
    "02871439": "bookshelf", "02876657": "bottle", "02880940": "bowl", "02924116": "bus", "02933112": "cabinet",
    "02942699": "camera", "02946921": "tin_can", "02954340": "cap", "02958343": "car", "02992529": "cellphone",
    "03001627": "chair", "03046257": "clock", "03085013": "keyboard", "03207941": "dishwasher",
    "03211117": "monitor", "03261776": "earphone", "03325088": "faucet", "03337140": "file", "03467517": "guitar",
    "03513137": "helmet", "03593526": "jar", "03624134": "knife", "03636649": "lamp", "03642806": "laptop",
    "03691459": "speaker", "03710193": "mailbox", "03759954": "microphone", "03761084": "microwave",
    "03790512": "motorcycle", "03797390": "mug", "03928116": "piano", "03938244": "pillow", "03948459": "pistol",
    "03991062": "pot", "04004475": "printer", "04074963": "remote_control", "04090263": "rifle",
    "04099429": "rocket", "04225987": "skateboard", "04256520": "sofa", "04330267": "stove", "04379243": "table",
    "04401088": "telephone", "04460130": "tower", "04468005": "train", "04530566": "vessel", "04554684": "washer",
}  # fmt: skip


def read_bad_mappings(path: str | Path) -> set[tuple[str, str]]:
    """referit3d's ``bad_mappings.json`` -> the (ScanNet label, ShapeNet category) pairs it lists."""
    p = Path(path)
    data = read_json_file(p)
    if not isinstance(data, list):
        raise DataError(f"{p}: expected a list of [ScanNet label, ShapeNet category] pairs, got {type(data).__name__}")
    out = set()
    for k, pair in enumerate(data):
        if not (isinstance(pair, list) and len(pair) == 2 and all(isinstance(x, str) for x in pair)):
            raise DataError(f"{p}: entry {k}: expected [ScanNet label, ShapeNet category], got {pair!r}")
        out.add((pair[0], pair[1]))
    return out


def read_scan2cad_boxes(path: str | Path, has_front: set[tuple[str, str]] | None = None) -> dict[str, dict]:
    """referit3d's oriented-box file -> ``{scene_id: {object_id: (box (7,), has_front, catid)}}``
    with ``box`` = centre, size (lx, ly, lz) and the yaw of the box's local x axis
    (``atan2(R10, R00)``) and ``catid`` the ShapeNet synset id (``catid_cad``).
    ``has_front``: from :func:`read_has_front` (None: no object has a front)."""
    p = Path(path)
    data = read_json_file(p)
    if not isinstance(data, dict):
        raise DataError(f"{p}: expected an object keyed '<scene id>_<object id>', got {type(data).__name__}")
    out: dict[str, dict] = {}
    for key, e in data.items():
        where = f"{p}: {key}"
        if len(key) < 14 or key[12] != "_":
            raise DataError(f"{where}: key must be '<scene id (12 characters)>_<object id>'")
        scene, oid = key[:12], key[13:]
        if not isinstance(e, dict) or any(k not in e for k in ("catid_cad", "id_cad", "obj_bbox", "obj_rot")):
            raise DataError(f"{where}: expected keys catid_cad, id_cad, obj_bbox, obj_rot")
        try:
            bbox = np.asarray(e["obj_bbox"], dtype=np.float64)
            rot = np.asarray(e["obj_rot"], dtype=np.float64)
            object_id = int(oid)
        except (TypeError, ValueError):
            raise DataError(f"{where}: obj_bbox / obj_rot must be numbers and the object id an integer") from None
        if bbox.shape != (6,) or rot.shape not in ((4, 4), (3, 3)):
            raise DataError(f"{where}: obj_bbox must have 6 numbers and obj_rot be 4 x 4, got {bbox.shape}, {rot.shape}")
        yaw = math.atan2(rot[1, 0], rot[0, 0])
        front = has_front is not None and (str(e["catid_cad"]), str(e["id_cad"])) in has_front
        out.setdefault(scene, {})[object_id] = (np.append(bbox, yaw), front, str(e["catid_cad"]))
    return out


def scan2cad_fronts(
    object_ids: list[int],
    entries: dict[int, tuple],
    labels: list[str] | None = None,
    bad_mappings: set[tuple[str, str]] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One scene's ``(fronts (N,), oriented (N, 7))`` for ``SceneObjects``: the yaw of each
    object's front direction (``-R[:, 0]``, i.e. the box yaw + pi; NaN without a front) and its
    oriented box (NaN rows for objects Scan2CAD does not list). With ``bad_mappings`` (and the
    objects' raw ``labels``), a listed (label, ShapeNet category) pair drops the oriented box and
    the front becomes the axis-aligned box's -x face (yaw pi), as referit3d's generator sees it."""
    if bad_mappings and labels is None:
        raise ValueError("scan2cad_fronts: bad_mappings needs the objects' labels")
    fronts = torch.full((len(object_ids),), float("nan"), dtype=torch.float64)
    oriented = torch.full((len(object_ids), 7), float("nan"), dtype=torch.float64)
    for k, oid in enumerate(object_ids):
        if oid in entries:
            box, front, catid = entries[oid]
            bad = bool(bad_mappings) and (labels[k], SHAPENET_CATEGORIES.get(catid, "")) in bad_mappings
            yaw = 0.0 if bad else box[6]
            if not bad:
                oriented[k] = torch.from_numpy(box)
            if front:
                fronts[k] = math.atan2(-math.sin(yaw), -math.cos(yaw))
    return fronts, oriented
