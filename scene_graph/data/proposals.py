"""Predicted object proposals (``data.proposals: pred``): the candidates a detector found,
instead of the annotated instances, so that Acc@0.25 and Acc@0.5 measure localisation too.

File format: one ``.npz`` (read with ``allow_pickle=False``) holding, per scene,

=========================  ==============  ====================================================
key                        shape, dtype    meaning
=========================  ==============  ====================================================
``<scene>/boxes``          (P, 6) float32  axis-aligned boxes: centre xyz, size xyz, in the
                                           scene's axis-aligned frame (as the GT boxes)
``<scene>/scores``         (P,) float32    detector confidence
``<scene>/features``       (P, D) float32  optional per-proposal features (kept on the graph
                                           as ``proposal_features``)
``<scene>/labels``         (P,) str        optional predicted class names (default "object")
=========================  ==============  ====================================================

Converting detector outputs: VoteNet / ScanRefer write 8 box corners per proposal plus an
objectness and class scores: :func:`boxes_from_corners` gives the boxes, and the score is
objectness x class probability. Mask3D writes a binary mask over the scene's points and a
score per instance: :func:`boxes_from_masks` gives the boxes of the masked (axis-aligned)
points. Keep the ``score_threshold`` / NMS the detector's paper used before writing the file.

Each proposal's points are the scene's object points inside its box (its 8 corners when
none). Training picks the proposal with the highest IoU with the annotated box as the target;
evaluation scores the chosen proposal's box against the annotated box (ScanRefer's Acc@k).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from scene_graph.builder import SceneObjects
from vlx.data.errors import DataError


def boxes_from_corners(corners: np.ndarray) -> np.ndarray:
    """``(P, 8, 3)`` box corners -> ``(P, 6)`` axis-aligned centre + size around them."""
    lo, hi = corners.min(1), corners.max(1)
    return np.concatenate([(lo + hi) / 2, hi - lo], 1).astype(np.float32)


def boxes_from_masks(points: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """Scene points ``(M, 3)`` and instance masks ``(P, M)`` bool -> ``(P, 6)`` boxes."""
    out = []
    for k, m in enumerate(masks.astype(bool)):
        if not m.any():
            raise DataError(f"proposal {k}: empty mask")
        lo, hi = points[m].min(0), points[m].max(0)
        out.append(np.concatenate([(lo + hi) / 2, hi - lo]))
    return np.asarray(out, dtype=np.float32).reshape(-1, 6)


def write_proposals(path: str | Path, scenes: dict[str, dict[str, np.ndarray]]) -> Path:
    """``scenes[scene_id] = {"boxes": (P, 6), "scores": (P,), ["features": (P, D)], ["labels"]}``."""
    arrays = {f"{s}/{k}": np.asarray(v) for s, d in scenes.items() for k, v in d.items()}
    p = Path(path)
    np.savez(p, **arrays)
    return p if p.suffix == ".npz" else p.with_name(p.name + ".npz")


def read_proposals(path: str | Path, known_scenes: set[str] | None = None) -> dict[str, dict[str, np.ndarray]]:
    """The proposals of every scene in the file; one-line DataError for a missing file, a scene
    not in ``known_scenes``, a missing ``boxes``/``scores`` array or mismatched shapes."""
    p = Path(path)
    if not p.is_file():
        raise DataError(f"{p}: proposal file not found (data.proposal_file)")
    try:
        z = np.load(p, allow_pickle=False)
    except (OSError, ValueError) as e:
        raise DataError(f"{p}: not a proposal .npz ({e})") from None
    out: dict[str, dict[str, np.ndarray]] = {}
    with z:
        for key in z.files:
            scene, _, name = key.rpartition("/")
            if not scene or name not in ("boxes", "scores", "features", "labels"):
                raise DataError(f"{p}: unexpected array {key!r} (expected <scene>/boxes|scores|features|labels)")
            out.setdefault(scene, {})[name] = z[key]
    for scene, d in out.items():
        if known_scenes is not None and scene not in known_scenes:
            raise DataError(f"{p}: proposals for unknown scene {scene!r} (not among the scans)")
        if "boxes" not in d or "scores" not in d:
            raise DataError(f"{p}: scene {scene!r} needs <scene>/boxes and <scene>/scores")
        n = d["boxes"].shape[0]
        if d["boxes"].ndim != 2 or d["boxes"].shape[1] != 6 or n == 0:
            raise DataError(f"{p}: {scene}/boxes must be (P>0, 6), got {d['boxes'].shape}")
        for k in ("scores", "features", "labels"):
            if k in d and d[k].shape[0] != n:
                raise DataError(f"{p}: {scene}/{k} has {d[k].shape[0]} rows for {n} boxes")
    return out


def proposal_objects(gt: SceneObjects, prop: dict[str, np.ndarray]) -> SceneObjects:
    """The proposals of one scene as SceneObjects (ids 0..P-1), points taken from the
    annotated objects' points inside each box."""
    boxes = torch.as_tensor(prop["boxes"], dtype=torch.float32)
    labels = [str(x) for x in prop["labels"]] if "labels" in prop else ["object"] * boxes.shape[0]
    points = None
    if gt.points is not None:
        cloud = torch.cat([p if p.shape[1] == 6 else torch.cat([p, torch.zeros(len(p), 3)], 1) for p in gt.points])
        lo, hi = boxes[:, :3] - boxes[:, 3:6] / 2, boxes[:, :3] + boxes[:, 3:6] / 2
        points = []
        for k in range(boxes.shape[0]):
            inside = ((cloud[:, :3] >= lo[k]) & (cloud[:, :3] <= hi[k])).all(1)
            if inside.any():
                points.append(cloud[inside].float())
            else:
                sign = torch.tensor([[x, y, z] for x in (-1, 1) for y in (-1, 1) for z in (-1, 1)], dtype=torch.float32)
                points.append(torch.cat([boxes[k, :3] + sign * boxes[k, 3:6] / 2, torch.zeros(8, 3)], 1))
    return SceneObjects(gt.scene_id, list(range(boxes.shape[0])), labels, boxes, points, source=f"proposals of {gt.source}")


def noisy_proposals(
    objects: dict[str, SceneObjects], centre_noise: float = 0.1, size_noise: float = 0.2, extra: int = 2, seed: int = 0
) -> dict[str, dict[str, np.ndarray]]:
    """A stand-in detector for tests and the report: each annotated box with its centre moved
    by N(0, centre_noise) metres per axis and its size scaled by exp(N(0, size_noise)), plus
    ``extra`` random false positives per scene; scores fall with the displacement."""
    rng = np.random.default_rng(seed)
    out = {}
    for sid in sorted(objects):
        b = objects[sid].boxes[:, :6].numpy().astype(np.float64)
        c = b[:, :3] + rng.normal(0, centre_noise, b[:, :3].shape)
        s = b[:, 3:6] * np.exp(rng.normal(0, size_noise, b[:, 3:6].shape))
        lo, hi = b[:, :3].min(0), b[:, :3].max(0)
        fc = rng.uniform(lo, hi, (extra, 3))
        fs = rng.uniform(0.1, 0.5, (extra, 3))
        boxes = np.concatenate([np.concatenate([c, s], 1), np.concatenate([fc, fs], 1)]).astype(np.float32)
        moved = np.concatenate([np.linalg.norm(c - b[:, :3], axis=1), np.full(extra, 1.0)])
        out[sid] = {"boxes": boxes, "scores": np.exp(-moved / max(centre_noise, 1e-6)).astype(np.float32)}
    return out
