"""Zero-shot benchmark files in their published layouts.

* ModelNet40 ``modelnet40_ply_hdf5_2048`` (PointNet's release): ``ply_data_train{0..4}.h5``,
  ``ply_data_test{0,1}.h5`` each with ``data`` (n, 2048, 3) float32 and ``label`` (n, 1)
  (uint8 in the release; extra datasets such as ``normal`` / ``faceId`` are ignored),
  ``shape_names.txt`` (40 names, label order) and ``train_files.txt`` / ``test_files.txt``
  listing the h5 files as ``data/modelnet40_ply_hdf5_2048/ply_data_test0.h5`` (a path relative
  to PointNet's repo root, so only the file name is used, looked up in the folder).
* ScanObjectNN ``h5_files``: ``main_split/`` (objects with background) and
  ``main_split_nobg/`` (object only), each with ``training_objectdataset.h5`` /
  ``test_objectdataset.h5`` (and the PB_T50_RS ``*_augmentedrot_scale75.h5``) holding
  ``data`` (n, 2048, 3), ``label`` (n,) and ``mask`` (n, 2048; 1 object, 0 background).
  The release ships no class-name file; the 15 names in label order are SCANOBJECTNN_CLASSES.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pointcloud.data.readers import read_class_names, read_h5_clouds
from vlx.data.errors import DataError

SCANOBJECTNN_CLASSES = [
    "bag", "bin", "box", "cabinet", "chair", "desk", "display", "door",
    "shelf", "table", "bed", "pillow", "sink", "sofa", "toilet",
]  # fmt: skip

SCANOBJECTNN_FILES = {
    ("test", False): "test_objectdataset.h5",
    ("train", False): "training_objectdataset.h5",
    ("test", True): "test_objectdataset_augmentedrot_scale75.h5",
    ("train", True): "training_objectdataset_augmentedrot_scale75.h5",
}


@dataclass
class Benchmark:
    name: str  # "modelnet40" or "scanobjectnn"
    points: np.ndarray  # (n, N, 3) float32
    labels: np.ndarray  # (n,) int64
    class_names: list[str]
    files: list[str]


def read_modelnet40_h5(root: str | Path, split: str = "test") -> Benchmark:
    """The ``modelnet40_ply_hdf5_2048`` folder -> its ``split`` ("train" / "test") clouds."""
    root = Path(root)
    if split not in ("train", "test"):
        raise DataError(f"{root}: split must be 'train' or 'test', got {split!r}")
    names = read_class_names(root / "shape_names.txt")
    listing = root / f"{split}_files.txt"
    if not listing.is_file():
        raise DataError(f"{listing}: file list not found (expected in a modelnet40_ply_hdf5_2048 folder)")
    files = []
    for lineno, line in enumerate(listing.read_text().splitlines(), 1):
        if not line.strip():
            continue
        f = root / Path(line.strip()).name
        if not f.is_file():
            raise DataError(f"{listing}:{lineno}: listed file {Path(line.strip()).name} not found in {root}")
        files.append(f)
    if not files:
        raise DataError(f"{listing}: lists no h5 files")
    parts = [read_h5_clouds(f) for f in files]
    pts, labels = np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
    _check_labels(labels, len(names), str(listing))
    return Benchmark("modelnet40", pts, labels, names, [str(f) for f in files])


def read_scanobjectnn_h5(path: str | Path, background: bool | None = None) -> Benchmark:
    """One ScanObjectNN h5 file. With ``background=False`` points whose ``mask`` is 0
    (background) are replaced by object points of the same cloud (kept count N, so the batch
    stays rectangular); the default keeps the file as published (``main_split_nobg`` files
    already hold object points only)."""
    import h5py

    path = Path(path)
    pts, labels = read_h5_clouds(path)
    if background is False:
        with h5py.File(path, "r") as f:
            if "mask" not in f:
                raise DataError(f"{path}: background=False needs the 'mask' dataset (has: {sorted(f.keys())})")
            mask = np.asarray(f["mask"][:])
        if mask.shape != pts.shape[:2]:
            raise DataError(f"{path}: 'mask' should be {pts.shape[:2]}, got {mask.shape}")
        pts = pts.copy()
        for i in range(len(pts)):
            obj = np.flatnonzero(mask[i] > 0)
            if len(obj) == 0:
                raise DataError(f"{path}: cloud {i} has no object points in 'mask'")
            bg = np.flatnonzero(mask[i] <= 0)
            pts[i, bg] = pts[i, obj[np.arange(len(bg)) % len(obj)]]
    _check_labels(labels, len(SCANOBJECTNN_CLASSES), str(path))
    return Benchmark("scanobjectnn", pts, labels, list(SCANOBJECTNN_CLASSES), [str(path)])


def read_benchmark(
    path: str | Path, split: str = "test", variant: str = "main_split", augmented: bool = False
) -> Benchmark:
    """A ModelNet40 h5 folder (has ``shape_names.txt``), a ScanObjectNN ``h5_files`` folder
    (``variant``: ``main_split`` or ``main_split_nobg``), a ScanObjectNN variant folder, or one
    ScanObjectNN h5 file."""
    p = Path(path)
    if p.is_file():
        return read_scanobjectnn_h5(p)
    if not p.is_dir():
        raise DataError(f"{p}: no such file or folder")
    if (p / "shape_names.txt").is_file():
        return read_modelnet40_h5(p, split)
    if (p / variant).is_dir():
        p = p / variant
    f = p / SCANOBJECTNN_FILES.get((split, augmented), "")
    if f.is_file():
        return read_scanobjectnn_h5(f)
    raise DataError(
        f"{p}: neither a modelnet40_ply_hdf5_2048 folder (shape_names.txt) nor a ScanObjectNN folder "
        f"({variant}/{SCANOBJECTNN_FILES.get((split, augmented))})"
    )


def _check_labels(labels: np.ndarray, n_classes: int, where: str) -> None:
    bad = (labels < 0) | (labels >= n_classes)
    if bad.any():
        i = int(np.argmax(bad))
        raise DataError(f"{where}: label {int(labels[i])} at cloud {i} is outside [0, {n_classes})")


# z up -> y up: (x, y, z) -> (x, z, -y), a rotation (det +1) about x.
Z_UP_TO_Y_UP = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, -1.0, 0.0]], dtype=np.float32)


def write_modelnet40_h5(
    root: str | Path, points: np.ndarray, labels: np.ndarray, class_names: list[str], split: str = "test"
) -> Path:
    """Write clouds in the ``modelnet40_ply_hdf5_2048`` layout (one ``ply_data_{split}0.h5``
    with ``data`` float32 (n, N, 3) and ``label`` uint8 (n, 1), ``{split}_files.txt`` naming it
    by PointNet's repo-relative path, ``shape_names.txt``), so any ModelNet40 h5 reader takes
    them. Points are written as given (ModelNet40's h5 clouds are y up)."""
    import h5py

    if len(class_names) > 256:
        raise DataError(f"write_modelnet40_h5: {len(class_names)} classes do not fit ModelNet40's uint8 labels")
    out = Path(root)
    out.mkdir(parents=True, exist_ok=True)
    name = f"ply_data_{split}0.h5"
    with h5py.File(out / name, "w") as f:
        f["data"] = np.asarray(points, dtype=np.float32)
        f["label"] = np.asarray(labels, dtype=np.uint8).reshape(-1, 1)
    (out / f"{split}_files.txt").write_text(f"data/modelnet40_ply_hdf5_2048/{name}\n")
    (out / "shape_names.txt").write_text("\n".join(class_names) + "\n")
    return out
