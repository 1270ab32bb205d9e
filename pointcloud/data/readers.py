"""Readers for published point-cloud formats, each validating on load (one-line DataError
naming the file, key or index):

* ModelNet40, h5 release (``ply_data_{train,test}N.h5`` with ``data`` (n, 2048, 3) and
  ``label`` (n, 1), plus ``shape_names.txt``) and txt release
  (``modelnet40_normal_resampled``: ``modelnet40_{split}.txt`` ids, ``<class>/<id>.txt``
  with ``x,y,z,nx,ny,nz`` rows, ``modelnet40_shape_names.txt``);
* ScanObjectNN h5 (``data`` (n, 2048, 3), ``label`` (n,), optional ``mask``);
* PLY / PCD / XYZ files through open3d;
* RGB-D frames in ScanNet's exported layout (``color/<i>.jpg``, ``depth/<i>.png`` uint16 in
  millimetres, ``intrinsic/intrinsic_depth.txt`` 4x4, ``pose/<i>.txt`` 4x4 camera-to-world,
  optional ``instance/<i>.png``) back-projected to world-space points with open3d.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from vlx.data.errors import DataError


def check_cloud(points: np.ndarray, where: str) -> np.ndarray:
    """(N, 3+) finite, non-empty float array, or a DataError naming ``where``."""
    if points.ndim != 2 or points.shape[1] < 3:
        raise DataError(f"{where}: expected points of shape (N, 3), got {points.shape}")
    if len(points) == 0:
        raise DataError(f"{where}: empty point cloud")
    bad = ~np.isfinite(points[:, :3]).all(1)
    if bad.any():
        raise DataError(f"{where}: non-finite coordinate (NaN/inf) at point {int(np.argmax(bad))}")
    return points


def read_h5_clouds(path: str | Path, data_key: str = "data", label_key: str = "label") -> tuple[np.ndarray, np.ndarray]:
    """ModelNet40 / ScanObjectNN h5: returns points (n, N, 3) float32 and labels (n,) int64."""
    import h5py

    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: h5 file not found")
    try:
        with h5py.File(path, "r") as f:
            for key in (data_key, label_key):
                if key not in f:
                    raise DataError(f"{path}: missing dataset '{key}' (has: {sorted(f.keys())})")
            data = np.asarray(f[data_key][:], dtype=np.float32)
            labels = np.asarray(f[label_key][:]).reshape(-1).astype(np.int64)
    except DataError:
        raise
    except (OSError, KeyError, ValueError) as e:  # h5py reports truncation / corruption as OSError
        raise DataError(f"{path}: unreadable or truncated h5 file ({str(e).splitlines()[0]})") from None
    if data.ndim != 3 or data.shape[-1] < 3:
        raise DataError(f"{path}: '{data_key}' should be (n, N, 3), got {data.shape}")
    if len(labels) != len(data):
        raise DataError(f"{path}: {len(data)} clouds but {len(labels)} labels in '{label_key}'")
    if data.shape[1] == 0:
        raise DataError(f"{path}: '{data_key}' holds empty clouds, shape {data.shape}")
    bad = ~np.isfinite(data[..., :3]).all(-1)
    if bad.any():
        i, j = (int(v) for v in np.argwhere(bad)[0])
        raise DataError(f"{path}: non-finite coordinate in '{data_key}' at cloud {i}, point {j}")
    return data[..., :3], labels


def read_class_names(path: str | Path) -> list[str]:
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: class-name file not found")
    names = [ln.strip() for ln in path.read_text().splitlines() if ln.strip()]
    if not names:
        raise DataError(f"{path}: class-name file is empty")
    return names


def read_modelnet_txt(root: str | Path, split: str = "train", n_points: int | None = None) -> tuple[list[np.ndarray], np.ndarray, list[str]]:
    """ModelNet40 ``modelnet40_normal_resampled``: (clouds (N, 6) xyz+normals, labels, names)."""
    root = Path(root)
    names = read_class_names(root / "modelnet40_shape_names.txt")
    ids_file = root / f"modelnet40_{split}.txt"
    if not ids_file.is_file():
        raise DataError(f"{ids_file}: split file not found")
    clouds, labels = [], []
    for lineno, sid in enumerate(ids_file.read_text().split(), 1):
        cls = sid.rsplit("_", 1)[0]
        if cls not in names:
            raise DataError(f"{ids_file}:{lineno}: id {sid!r} names unknown class {cls!r}")
        f = root / cls / f"{sid}.txt"
        if not f.is_file():
            raise DataError(f"{ids_file}:{lineno}: point file not found: {f}")
        try:
            arr = np.loadtxt(f, delimiter=",", dtype=np.float32, ndmin=2, max_rows=n_points)
        except ValueError as e:
            raise DataError(f"{f}: not comma-separated numbers ({e})") from None
        clouds.append(check_cloud(arr, str(f)))
        labels.append(names.index(cls))
    return clouds, np.asarray(labels, dtype=np.int64), names


def read_point_file(path: str | Path) -> tuple[np.ndarray, np.ndarray | None]:
    """PLY / PCD / XYZ / PTS through open3d: (points (N, 3) float32, colors (N, 3) or None)."""
    import open3d as o3d

    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: point file not found")
    pc = o3d.io.read_point_cloud(str(path))
    pts = np.asarray(pc.points, dtype=np.float32)
    if len(pts) == 0:
        raise DataError(f"{path}: no points read (empty or unreadable {path.suffix} file)")
    check_cloud(pts, str(path))
    return pts, (np.asarray(pc.colors, dtype=np.float32) if pc.has_colors() else None)


def _read_matrix(path: Path, shape=(4, 4)) -> np.ndarray:
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    try:
        m = np.loadtxt(path, dtype=np.float64, ndmin=2)
    except ValueError as e:
        raise DataError(f"{path}: not a whitespace-separated matrix ({e})") from None
    if m.shape != shape:
        raise DataError(f"{path}: expected a {shape[0]}x{shape[1]} matrix, got {m.shape}")
    if not np.isfinite(m).all():
        raise DataError(f"{path}: matrix has non-finite entries")
    return m


def read_rgbd_frame(scene_dir: str | Path, frame: int | str, depth_scale: float = 1000.0, depth_trunc: float = 10.0,
                    resize_color: bool = False, stride: int = 1) -> dict[str, np.ndarray]:
    """One ScanNet-layout RGB-D frame -> world-space points via open3d.

    Returns ``{"points": (N, 3) float32, "colors": (N, 3) float32 in [0, 1], "pixels": (N, 2)
    int (row, col) of every point, "instance": (N,) int or absent}``. A depth png whose size
    differs from the colour frame is an error unless ``resize_color`` (ScanNet's own export
    has 1296x968 colour and 640x480 depth: pass ``resize_color=True`` there).
    """
    import open3d as o3d
    from PIL import Image

    root = Path(scene_dir)
    cpath, dpath = root / "color" / f"{frame}.jpg", root / "depth" / f"{frame}.png"
    for p in (cpath, dpath):
        if not p.is_file():
            raise DataError(f"{p}: frame file not found")
    try:
        color = Image.open(cpath).convert("RGB")
        depth = np.asarray(Image.open(dpath))
    except OSError as e:
        raise DataError(f"{e.filename or cpath}: unreadable image ({e})") from None
    if depth.ndim != 2:
        raise DataError(f"{dpath}: depth must be a single-channel uint16 png in mm, got shape {depth.shape}")
    h, w = depth.shape
    if color.size != (w, h):
        if not resize_color:
            raise DataError(f"{dpath}: depth is {w}x{h} but color {cpath.name} is {color.size[0]}x{color.size[1]} "
                            f"(expected equal sizes; pass resize_color=True to resize color to the depth size)")
        color = color.resize((w, h), Image.BILINEAR)
    K = _read_matrix(root / "intrinsic" / "intrinsic_depth.txt")
    pose = _read_matrix(root / "pose" / f"{frame}.txt")
    intr = o3d.camera.PinholeCameraIntrinsic(w, h, K[0, 0], K[1, 1], K[0, 2], K[1, 2])
    rgbd = o3d.geometry.RGBDImage.create_from_color_and_depth(
        o3d.geometry.Image(np.ascontiguousarray(np.asarray(color))), o3d.geometry.Image(depth.astype(np.uint16)),
        depth_scale=depth_scale, depth_trunc=depth_trunc, convert_rgb_to_intensity=False)
    # open3d drops pixels without depth; recompute which pixels survive to keep the pixel->point map.
    pc = o3d.geometry.PointCloud.create_from_rgbd_image(rgbd, intr, np.linalg.inv(pose), project_valid_depth_only=True)
    z = depth.astype(np.float64) / depth_scale
    valid = (z > 0) & (z < depth_trunc)
    rows, cols = np.nonzero(valid)
    pts = np.asarray(pc.points, dtype=np.float32)
    if len(pts) == 0:
        raise DataError(f"{dpath}: no valid depth (all zero or beyond {depth_trunc} m)")
    if len(pts) != len(rows):  # should not happen; guards the pixel map against an open3d change
        raise DataError(f"{dpath}: open3d kept {len(pts)} points for {len(rows)} valid depth pixels")
    out = {"points": pts, "colors": np.asarray(pc.colors, dtype=np.float32), "pixels": np.stack([rows, cols], 1)}
    ipath = root / "instance" / f"{frame}.png"
    if ipath.is_file():
        inst = np.asarray(Image.open(ipath))
        if inst.shape[:2] != (h, w):
            raise DataError(f"{ipath}: instance mask is {inst.shape[1]}x{inst.shape[0]}, depth is {w}x{h}")
        out["instance"] = inst[rows, cols].astype(np.int64)
    if stride > 1:
        out = {k: v[::stride] for k, v in out.items()}
    return out


def read_rgbd_scene(scene_dir: str | Path, frames: Sequence[int | str] | None = None, **kw) -> dict[str, np.ndarray]:
    """Fuse several frames of a ScanNet-layout scene by concatenating their world points."""
    root = Path(scene_dir)
    if frames is None:
        frames = sorted((p.stem for p in (root / "depth").glob("*.png")), key=lambda s: int(s) if s.isdigit() else s)
    if not frames:
        raise DataError(f"{root / 'depth'}: no depth frames")
    parts = [read_rgbd_frame(root, f, **kw) for f in frames]
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0] if all(k in p for p in parts)}


def resample(points: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """Exactly ``n`` rows: a random subset, or with repeats when the cloud is smaller."""
    idx = rng.choice(len(points), n, replace=len(points) < n)
    return points[idx]


class PointCloudDataset(torch.utils.data.Dataset):
    """In-memory labelled clouds -> ``{"points": (N, 3) float, "label": int, "index": int}``.

    Build from arrays, ``from_h5`` (ModelNet40 / ScanObjectNN) or ``from_primitives``."""

    def __init__(self, points: np.ndarray, labels: np.ndarray, class_names: list[str], source: str = "<memory>"):
        if len(points) == 0:
            raise DataError(f"{source}: dataset has no clouds")
        self.points = torch.as_tensor(np.asarray(points, dtype=np.float32))
        self.labels = torch.as_tensor(np.asarray(labels, dtype=np.int64))
        self.class_names = class_names
        bad = (self.labels < 0) | (self.labels >= len(class_names))
        if bool(bad.any()):
            i = int(bad.nonzero()[0])
            raise DataError(f"{source}: label {int(self.labels[i])} at index {i} is outside [0, {len(class_names)})")

    @classmethod
    def from_h5(cls, files: Sequence[str | Path], class_names_file: str | Path) -> "PointCloudDataset":
        parts = [read_h5_clouds(f) for f in files]
        return cls(np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]), read_class_names(class_names_file), str(files[0]))

    @classmethod
    def from_primitives(cls, root: str | Path, split: str) -> "PointCloudDataset":
        root = Path(root)
        f = root / f"{split}.npz"
        if not f.is_file():
            raise DataError(f"{f}: primitives split not found (generate with pointcloud.data.generate_primitives)")
        with np.load(f) as z:
            ds = cls(z["points"], z["labels"], read_class_names(root / "classes.txt"), str(f))
            ds.views = torch.as_tensor(z["views"])
        return ds

    def __len__(self) -> int:
        return len(self.points)

    def __getitem__(self, i: int) -> dict:
        return {"points": self.points[i], "label": int(self.labels[i]), "index": i}
