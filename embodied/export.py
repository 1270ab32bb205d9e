"""Simulation data for the other siblings, exported from the same MuJoCo scenes the
benchmarks run in, in the formats those siblings read (files, never imports):

* RGB-D frames in ScanNet's exported layout (what ScanNet's SensReader writes, plus its 2D
  instance/label pngs): ``color/<i>.jpg``, ``depth/<i>.png`` (uint16 mm), ``pose/<i>.txt``
  (camera-to-world 4x4, OpenCV axes: x right, y down, z forward), ``intrinsic/intrinsic_color.txt``
  / ``intrinsic_depth.txt`` / ``extrinsic_*.txt`` (4x4), ``instance-filt/<i>.png`` (uint8 object
  id per pixel, 0 = none), ``label-filt/<i>.png`` (uint16 label id), ``objects.json`` (object
  id -> name, label, simulator 3D box), ``frames.json``; and the fused first time step as a
  ScanNet scene (``<scene>_vh_clean_2.ply`` + ``.segs.json`` + ``.aggregation.json``).
* Rollout mp4s of the scripted plan with captions narrating the executed steps, as an
  MSR-VTT-style json (``videos``/``sentences``, plus ``vlx_steps`` with step timings):
  ``embodied.export_video`` (``export_videos`` is re-exported here).
* Object-level scene descriptions from simulator state (names, 3D boxes, spatial relations)
  as ScanRefer-style referring expressions.

Objects are the root bodies of the MuJoCo tree that own visible geoms (a robot is one object);
ids are 1-based in a fixed order, the same in every export of a scene. Spatial words use the
robot's view: +x is right, +y is farther from the robot, +z is up.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from embodied.collect import CameraRig, check_cameras, depth_to_mm, sim_handles
from embodied.export_video import export_videos, narrate, scripted_rollout
from vlx.data.errors import DataError

# Names people use for Meta-World's / Kitchen's body names (the rest keep their body name).
ALIASES = {"world": "floor", "tablelink": "table", "RetainingWall": "wall", "base": "robot arm", "obj": "object"}
TASK_OBJECT = {
    "reach-v3": "puck",
    "push-v3": "puck",
    "pick-place-v3": "puck",
    "pick-place-wall-v3": "puck",
    "push-wall-v3": "puck",
    "reach-wall-v3": "puck",
    "sweep-v3": "puck",
    "basketball-v3": "ball",
    "soccer-v3": "ball",
    "peg-insert-side-v3": "peg",
}
STRUCTURE = {"floor", "wall", "robot arm"}  # neither described nor used as anchors


@dataclass
class SimObject:
    object_id: int  # 1-based; 0 means "no object" in the instance masks
    body: str  # MuJoCo root body name
    name: str  # what people call it
    geoms: list[int]
    bbox_min: np.ndarray  # (3,) world frame, metres
    bbox_max: np.ndarray

    @property
    def center(self) -> np.ndarray:
        return (self.bbox_min + self.bbox_max) / 2

    def as_dict(self) -> dict[str, Any]:
        return dict(
            object_id=self.object_id,
            name=self.name,
            label=self.name,
            body=self.body,
            bbox_min=self.bbox_min.round(5).tolist(),
            bbox_max=self.bbox_max.round(5).tolist(),
            center=self.center.round(5).tolist(),
            size=(self.bbox_max - self.bbox_min).round(5).tolist(),
        )


def _visible_geoms(model: Any) -> np.ndarray:
    # mujoco.Renderer draws geom groups 0-2 by default; alpha-0 geoms are invisible.
    return np.flatnonzero((model.geom_group < 3) & (model.geom_rgba[:, 3] > 0))


def geom_world_box(model: Any, data: Any, g: int) -> tuple[np.ndarray, np.ndarray]:
    """World-frame axis-aligned box (min, max) of geom ``g`` from its local AABB and pose."""
    c, h = model.geom_aabb[g, :3], model.geom_aabb[g, 3:]
    R, p = data.geom_xmat[g].reshape(3, 3), data.geom_xpos[g]
    center = p + R @ c
    half = np.minimum(np.abs(R) @ h, 100.0)  # infinite planes (floors) get a finite 100 m box
    return center - half, center + half


def scene_objects(model: Any, data: Any, task: str | None = None) -> list[SimObject]:
    """The scene's objects (root bodies with visible geoms), ids 1.. in root-body order."""
    by_root: dict[int, list[int]] = {}
    for g in _visible_geoms(model):
        by_root.setdefault(int(model.body_rootid[model.geom_bodyid[g]]), []).append(int(g))
    objs = []
    for k, root in enumerate(sorted(by_root)):
        body = model.body(root).name or f"body{root}"
        name = ALIASES.get(body, body.replace("_", " "))
        if body == "obj" and task in TASK_OBJECT:
            name = TASK_OBJECT[task]
        boxes = [geom_world_box(model, data, g) for g in by_root[root]]
        objs.append(
            SimObject(
                k + 1, body, name, by_root[root], np.min([b[0] for b in boxes], 0), np.max([b[1] for b in boxes], 0)
            )
        )
    return objs


def instance_lookup(model: Any, objects: Sequence[SimObject]) -> np.ndarray:
    """(ngeom,) object id of each geom (0 for geoms no object owns)."""
    lut = np.zeros(model.ngeom, np.int32)
    for o in objects:
        lut[o.geoms] = o.object_id
    return lut


def segmentation_to_instances(seg: np.ndarray, lut: np.ndarray) -> np.ndarray:
    """(H, W, 2) MuJoCo segmentation (object id, object type) -> (H, W) object ids."""
    import mujoco

    ids, types = seg[..., 0], seg[..., 1]
    is_geom = (types == int(mujoco.mjtObj.mjOBJ_GEOM)) & (ids >= 0)
    out = np.zeros(ids.shape, np.int32)
    out[is_geom] = lut[ids[is_geom]]
    return out


def camera_intrinsics(model: Any, camera: str, width: int, height: int) -> np.ndarray:
    """3x3 pinhole K of MuJoCo camera ``camera`` rendered at width x height (square pixels,
    vertical field of view ``cam_fovy``; pixel centres at integer coordinates)."""
    cid = model.camera(camera).id
    f = 0.5 * height / np.tan(np.deg2rad(model.cam_fovy[cid]) / 2)
    return np.array([[f, 0, (width - 1) / 2], [0, f, (height - 1) / 2], [0, 0, 1]], dtype=np.float64)


def camera_pose(model: Any, data: Any, camera: str) -> np.ndarray:
    """4x4 camera-to-world pose with OpenCV axes (MuJoCo cameras look along -z with y up)."""
    cid = model.camera(camera).id
    T = np.eye(4)
    T[:3, :3] = data.cam_xmat[cid].reshape(3, 3) @ np.diag([1.0, -1.0, -1.0])
    T[:3, 3] = data.cam_xpos[cid]
    return T


def _mat4(K: np.ndarray) -> np.ndarray:
    M = np.eye(4)
    M[:3, :3] = K
    return M


def _write_txt(path: Path, M: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savetxt(path, M, fmt="%.8f")


def export_rgbd(
    benchmark: str,
    task: str,
    out: str | Path,
    cameras: Sequence[str] = ("corner",),
    frames: int = 4,
    stride: int = 10,
    width: int = 96,
    height: int = 96,
    seed: int = 0,
    scene_id: str | None = None,
) -> Path:
    """``frames`` time steps (every ``stride`` env steps of the scripted rollout, from the
    reset) x ``cameras``, written to ``out/<scene_id>/`` in ScanNet's exported layout (see the
    module docstring). Returns the scene directory."""
    from PIL import Image

    from embodied.envs import build_benchmark

    bench = build_benchmark(benchmark)
    scene_id = scene_id or f"{task}_{seed}"
    root = Path(out) / scene_id
    env, steps = scripted_rollout(bench, task, seed)
    model, data = sim_handles(env)
    check_cameras(model, cameras, f"{bench.name} {task}")
    rig = CameraRig(model, cameras, width, height, where=f"{bench.name} {task}")
    objects = scene_objects(model, data, task)
    lut = instance_lookup(model, objects)
    K = camera_intrinsics(model, cameras[0], width, height)
    for sub in ("color", "depth", "pose", "instance-filt", "label-filt", "intrinsic"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    for name in ("intrinsic_color", "intrinsic_depth"):
        _write_txt(root / "intrinsic" / f"{name}.txt", _mat4(K))
    for name in ("extrinsic_color", "extrinsic_depth"):
        _write_txt(root / "intrinsic" / f"{name}.txt", np.eye(4))
    label_ids = {n: i + 1 for i, n in enumerate(sorted({o.name for o in objects}))}
    frame_meta, i, t = [], 0, 0
    try:
        for k in range(frames):
            while t < k * stride:
                try:
                    t, _, _ = next(steps)
                except StopIteration:  # the plan finished: keep filming the final state
                    t = k * stride
            for cam in cameras:
                Kc = camera_intrinsics(model, cam, width, height)
                if not np.allclose(Kc, K):
                    raise DataError(
                        f"camera {cam!r}: its field of view differs from {cameras[0]!r}; ScanNet's layout has "
                        "one intrinsic per scene, export it separately"
                    )
                rgb = rig.render(data, cam, "rgb")
                depth = rig.render(data, cam, "depth")
                inst = segmentation_to_instances(rig.render(data, cam, "seg"), lut)
                Image.fromarray(rgb).save(root / "color" / f"{i}.jpg", quality=95)
                Image.fromarray(depth_to_mm(depth)).save(root / "depth" / f"{i}.png")
                Image.fromarray(inst.astype(np.uint8)).save(root / "instance-filt" / f"{i}.png")
                names = {o.object_id: o.name for o in objects}
                labels = (
                    np.vectorize(lambda v, names=names: label_ids.get(names.get(int(v), ""), 0), otypes=[np.uint16])(
                        inst
                    )
                    if inst.any()
                    else inst.astype(np.uint16)
                )
                Image.fromarray(labels.astype(np.uint16)).save(root / "label-filt" / f"{i}.png")
                _write_txt(root / "pose" / f"{i}.txt", camera_pose(model, data, cam))
                frame_meta.append(
                    dict(
                        frame=i,
                        camera=cam,
                        env_step=int(t),
                        time_index=k,
                        boxes={
                            o.object_id: [b.round(5).tolist() for b in _object_box(model, data, o)] for o in objects
                        },
                    )
                )
                i += 1
    finally:
        rig.close()
    doc = dict(
        scene_id=scene_id,
        benchmark=bench.name,
        task=task,
        seed=seed,
        width=width,
        height=height,
        depth_scale=1000.0,
        label_ids=label_ids,
        objects=[o.as_dict() for o in scene_objects(model, data, task)],
    )
    # objects.json holds the boxes at the first time step (frames.json has every frame's boxes)
    doc["objects"] = [
        dict(
            o,
            **{
                "bbox_min": frame_meta[0]["boxes"][o["object_id"]][0],
                "bbox_max": frame_meta[0]["boxes"][o["object_id"]][1],
            },
        )
        for o in doc["objects"]
    ]
    (root / "objects.json").write_text(json.dumps(doc, indent=2))
    (root / "frames.json").write_text(json.dumps(frame_meta))
    (root / f"{scene_id}.txt").write_text(
        f"colorWidth = {width}\ncolorHeight = {height}\ndepthWidth = {width}\ndepthHeight = {height}\n"
        f"fx_color = {K[0, 0]:.6f}\nfy_color = {K[1, 1]:.6f}\nmx_color = {K[0, 2]:.6f}\nmy_color = {K[1, 2]:.6f}\n"
        f"numColorFrames = {i}\nnumDepthFrames = {i}\nsceneType = simulation\n"
    )
    first = [f["frame"] for f in frame_meta if f["time_index"] == 0]
    write_fused_scene(root, scene_id, first, {o.object_id: o.name for o in objects})
    env.close()
    return root


def _object_box(model: Any, data: Any, o: SimObject) -> tuple[np.ndarray, np.ndarray]:
    boxes = [geom_world_box(model, data, g) for g in o.geoms]
    return np.min([b[0] for b in boxes], 0), np.max([b[1] for b in boxes], 0)


def read_scannet_frame(scene_dir: str | Path, i: int) -> dict[str, np.ndarray]:
    """One exported frame: color (H, W, 3) uint8, depth (H, W) uint16 mm, instance (H, W),
    pose (4, 4), K (3, 3); DataError naming the missing/bad file."""
    from PIL import Image

    d = Path(scene_dir)
    paths = dict(
        color=d / "color" / f"{i}.jpg",
        depth=d / "depth" / f"{i}.png",
        instance=d / "instance-filt" / f"{i}.png",
        pose=d / "pose" / f"{i}.txt",
        K=d / "intrinsic" / "intrinsic_depth.txt",
    )
    for k, p in paths.items():
        if not p.is_file():
            raise DataError(f"{p}: missing ({k} of frame {i})")
    depth = np.asarray(Image.open(paths["depth"]))
    if depth.dtype != np.uint16:
        raise DataError(f"{paths['depth']}: depth must be a uint16 png in millimetres, got {depth.dtype}")
    return dict(
        color=np.asarray(Image.open(paths["color"]).convert("RGB")),
        depth=depth,
        instance=np.asarray(Image.open(paths["instance"])),
        pose=np.loadtxt(paths["pose"]),
        K=np.loadtxt(paths["K"])[:3, :3],
    )


def fuse_frames(
    scene_dir: str | Path, frames: Sequence[int], depth_trunc: float = 10.0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Back-project and fuse exported frames into one world-frame cloud with open3d:
    xyz (N, 3) float64, rgb (N, 3) in [0, 1], instance ids (N,). Pixels without depth drop."""
    import open3d as o3d

    xyz, rgb, inst = [], [], []
    for i in frames:
        f = read_scannet_frame(scene_dir, i)
        H, W = f["depth"].shape
        K = f["K"]
        intr = o3d.camera.PinholeCameraIntrinsic(W, H, K[0, 0], K[1, 1], K[0, 2], K[1, 2])
        pc = o3d.geometry.PointCloud.create_from_depth_image(
            o3d.geometry.Image(np.ascontiguousarray(f["depth"])),
            intr,
            np.linalg.inv(f["pose"]),
            depth_scale=1000.0,
            depth_trunc=depth_trunc,
            stride=1,
            project_valid_depth_only=False,
        )
        p = np.asarray(pc.points)  # (H*W, 3) row-major; NaN where there is no depth
        ok = np.isfinite(p).all(1)
        xyz.append(p[ok])
        rgb.append(f["color"].reshape(-1, 3)[ok] / 255.0)
        inst.append(f["instance"].reshape(-1)[ok].astype(np.int64))
    return np.concatenate(xyz), np.concatenate(rgb), np.concatenate(inst)


def write_fused_scene(scene_dir: Path, scene_id: str, frames: Sequence[int], names: dict[int, str]) -> None:
    """The fused frames as a ScanNet scene (``<scene>_vh_clean_2.ply``, ``.segs.json`` with the
    object id as segment id, ``.aggregation.json`` with one segGroup per object present),
    written by the one ScanNet-layout writer, :func:`vlx.io.scannet.write_scannet_scene`."""
    from vlx.io.scannet import write_scannet_scene

    xyz, rgb, inst = fuse_frames(scene_dir, frames)
    present = set(inst.tolist()) - {0}
    labels = {oid: name for oid, name in names.items() if oid in present}
    write_scannet_scene(scene_dir.parent, scene_id, xyz, rgb, inst, labels)


# The phrase for each relation of scene_graph's viewer-frame set, with the viewer standing far
# away along -y looking +y: the robot's view (+x right, +y farther from the robot).
PHRASES = {
    "on": "on top of",
    "above": "above",
    "below": "below",
    "right": "to the right of",
    "left": "to the left of",
    "behind": "farther from the robot than",
    "front": "closer to the robot than",
}


def _relations(o: SimObject, others: Sequence[SimObject]) -> list[tuple[str, SimObject]]:
    """``o``'s relations to ``others``, from :mod:`scene_graph.relations` (the ``viewer`` set;
    one place computes spatial relations), phrased for the robot's view."""
    import torch

    from scene_graph.relations import RELATIONS, RelationConfig, pairwise_relations

    anchors = [b for b in others if b.object_id != o.object_id]
    if not anchors:
        return []
    objs = [o, *anchors]
    lo = torch.tensor(np.array([b.bbox_min for b in objs]), dtype=torch.float64)
    hi = torch.tensor(np.array([b.bbox_max for b in objs]), dtype=torch.float64)
    boxes = torch.cat([(lo + hi) / 2, hi - lo], 1)
    labels = torch.arange(len(objs))  # every object its own class: closest/farthest unused
    j = torch.arange(1, len(objs))
    i = torch.zeros_like(j)
    far = torch.stack([boxes[:, 0].mean(), lo[:, 1].min() - 1e4, boxes[:, 2].mean()])
    cfg = RelationConfig(set="viewer", support_gap=0.02, lateral_max_distance=1e9)
    rel = pairwise_relations(boxes, labels, i, j, far, cfg)
    out = []
    for e, b in enumerate(anchors):
        for r, name in enumerate(RELATIONS):
            if rel[e, r] and name in PHRASES:
                out.append((PHRASES[name], b))
    return out


def describe_scene(objects: Sequence[SimObject], scene_id: str) -> list[dict[str, Any]]:
    """ScanRefer entries (scene_id, object_id, object_name, ann_id, description, token) for
    every non-structural object: its relations to the others and its nearest neighbour."""
    out = []
    targets = [o for o in objects if o.name not in STRUCTURE]
    for o in targets:
        rels = _relations(o, [b for b in objects if b.name not in STRUCTURE])
        near = min(
            (b for b in objects if b.object_id != o.object_id and b.name not in STRUCTURE),
            key=lambda b: float(np.linalg.norm(b.center - o.center)),
            default=None,
        )
        for k, (rel, b) in enumerate(rels or [("", None)]):
            if b is None:
                desc = f"the {o.name} is the only object here."
            else:
                desc = f"the {o.name} is {rel} the {b.name}."
            if near is not None:
                dist = np.linalg.norm(near.center - o.center)
                desc += f" the nearest object to it is the {near.name}, {dist:.2f} m away."
            out.append(
                dict(
                    scene_id=scene_id,
                    object_id=str(o.object_id),
                    object_name=o.name,
                    ann_id=str(k),
                    description=desc,
                    token=re.findall(r"\d+\.\d+|\w+|[^\w\s]", desc),
                    relation=rel,
                    anchor_id=None if b is None else str(b.object_id),
                )
            )
    return out


def export_scanrefer(benchmark: str, task: str, out: str | Path, seed: int = 0, scene_id: str | None = None) -> Path:
    """``out/scanrefer.json`` (ScanRefer list) and ``out/<scene_id>_objects.json`` (boxes)
    for the scene at the reset of ``task`` with ``seed``; appends to an existing scanrefer.json
    (other scenes' entries are kept, this scene's replaced)."""
    from embodied.envs import build_benchmark

    bench = build_benchmark(benchmark)
    scene_id = scene_id or f"{task}_{seed}"
    env = bench.make_env(task)
    env.reset(seed=seed)
    model, data = sim_handles(env)
    objects = scene_objects(model, data, task)
    env.close()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "scanrefer.json"
    old = json.loads(path.read_text()) if path.exists() else []
    entries = [e for e in old if e.get("scene_id") != scene_id] + describe_scene(objects, scene_id)
    path.write_text(json.dumps(entries, indent=1))
    (out / f"{scene_id}_objects.json").write_text(json.dumps([o.as_dict() for o in objects], indent=1))
    return path


__all__ = [
    "SimObject",
    "camera_intrinsics",
    "camera_pose",
    "describe_scene",
    "export_rgbd",
    "export_scanrefer",
    "export_videos",
    "fuse_frames",
    "narrate",
    "read_scannet_frame",
    "scene_objects",
    "segmentation_to_instances",
    "write_fused_scene",
]
