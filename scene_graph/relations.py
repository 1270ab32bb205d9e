"""Spatial relations between 3D object boxes: two named relation sets.

- ``viewer`` (this module's :func:`pairwise_relations`, vlx's own rules, vectorised over
  object pairs): left / right / front / behind as seen by one viewer looking at the scene
  (default: 3 m in front of it along -y), support / above / below from footprint overlap and
  z-gaps (0.05 m, 50% of the footprint), closest / farthest by centre distance among the
  target's class, SceneVerse's near / larger / smaller, and a centre-near-the-segment
  "between". These are NOT Sr3D's definitions.
- ``sr3d`` (:mod:`scene_graph.sr3d`): the rules of referit3d's Sr3D generators (Achlioptas et
  al. 2020): relations to the anchor's own front, nearest-point proximity with a 0.2 m lead,
  support with 0.15 m / 30% / area ratio 1.5, footprint-in-outline "between".

``RelationConfig.set`` picks which one feeds the graph edges (and the procedural rooms' text).
Both fill the same ``RELATIONS`` slots (under ``sr3d``, "on" is Sr3D's supported-by,
"supports" its supporting, "behind" its back; near / larger / smaller stay empty).

Convention: ``rel[e, r]`` is True when object ``i[e]`` (the target) is ``RELATIONS[r]`` of
object ``j[e]`` (the anchor): "i is left of j", "i is on j", "i is closest to j".
Boxes are axis-aligned ``(N, 6)`` = centre xyz + size xyz, or oriented ``(N, 7)`` with a yaw
(radians, about +z); oriented boxes enter the ``viewer`` rules through their axis-aligned bounds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

import torch
from torch import Tensor

from scene_graph.sr3d import Sr3dConfig

RELATIONS: tuple[str, ...] = (
    "left",
    "right",
    "front",
    "behind",  # viewpoint-dependent
    "above",
    "below",
    "on",
    "supports",  # vertical, from z-gaps and footprint overlap
    "near",
    "closest",
    "farthest",  # distance
    "larger",
    "smaller",  # size
)
REL_INDEX = {r: k for k, r in enumerate(RELATIONS)}
# The relation a swapped pair (j, i) holds when (i, j) holds r: used for hard negatives.
INVERSE = {
    "left": "right",
    "right": "left",
    "front": "behind",
    "behind": "front",
    "above": "below",
    "below": "above",
    "on": "supports",
    "supports": "on",
    "near": "near",
    "larger": "smaller",
    "smaller": "larger",
}
VIEW_DEPENDENT = ("left", "right", "front", "behind")


@dataclass
class RelationConfig:
    """Which relation set feeds the graph (``set``), the ``sr3d`` set's settings (``sr3d``), and
    the thresholds (metres) of the ``viewer`` rules (every other field)."""

    set: Literal["viewer", "sr3d"] = "sr3d"
    sr3d: Sr3dConfig = field(default_factory=Sr3dConfig)
    support_gap: float = 0.05  # |bottom(target) - top(anchor)| at most this: touching
    support_overlap: float = 0.5  # fraction of the target's footprint over the anchor for "on"
    above_overlap: float = 0.2  # ... for "above"/"below" (the target higher, not touching)
    near_distance: float = 0.5  # gap between box surfaces for "near"
    lateral_margin: float = 0.0  # the target's centre must lie this far past the anchor's side
    lateral_max_distance: float = 3.0  # left/right/front/behind only between objects this close
    size_ratio: float = 1.5  # volume ratio for "larger"/"smaller"
    between_width: float = 0.5  # max distance of the target's centre from the anchor segment
    min_class_count: int = 2  # closest/farthest need this many objects of the target class

    def __post_init__(self) -> None:
        if self.set not in ("viewer", "sr3d"):
            raise ValueError(f"relations.set must be 'viewer' or 'sr3d', got {self.set!r}")
        for name in ("support_gap", "near_distance", "lateral_max_distance", "between_width"):
            if getattr(self, name) < 0:
                raise ValueError(f"relations.{name} must be >= 0, got {getattr(self, name)}")
        if self.size_ratio < 1.0:
            raise ValueError(f"relations.size_ratio must be >= 1, got {self.size_ratio}")


def axis_aligned_bounds(boxes: Tensor) -> tuple[Tensor, Tensor]:
    """``boxes (N, 6|7)`` -> (min corner ``(N, 3)``, max corner ``(N, 3)``).

    An oriented box's footprint is replaced by the axis-aligned box around its corners.
    """
    centre, size = boxes[:, :3], boxes[:, 3:6]
    half = size / 2
    if boxes.shape[1] == 7:
        c, s = torch.cos(boxes[:, 6]).abs(), torch.sin(boxes[:, 6]).abs()
        hx = c * half[:, 0] + s * half[:, 1]
        hy = s * half[:, 0] + c * half[:, 1]
        half = torch.stack([hx, hy, half[:, 2]], dim=1)
    return centre - half, centre + half


def pairwise_relations(
    boxes: Tensor,
    labels: Tensor,
    i: Tensor,
    j: Tensor,
    viewpoint: Tensor | None = None,
    cfg: RelationConfig | None = None,
) -> Tensor:
    """The ``viewer`` set: relations of the pairs ``(i[e], j[e])`` as a ``(E, len(RELATIONS))`` bool tensor.

    boxes ``(N, 6|7)``, labels ``(N,)`` class ids, i/j ``(E,)`` target/anchor indices,
    viewpoint ``(3,)`` (default: 3 m in front of the scene's centre along -y, looking +y).
    Cost is O(E) for every relation except closest/farthest, which need the (N, N) centre
    distances to find each class's minimum.
    """
    cfg = cfg or RelationConfig()
    n = boxes.shape[0]
    lo, hi = axis_aligned_bounds(boxes)
    centre = boxes[:, :3]
    size = hi - lo
    if viewpoint is None:
        viewpoint = default_viewpoint(boxes)
    viewpoint = viewpoint.to(boxes)
    out = torch.zeros(i.shape[0], len(RELATIONS), dtype=torch.bool, device=boxes.device)

    # Vertical: footprint overlap as a fraction of the target's footprint, and the z-gap.
    ov = (torch.minimum(hi[i, :2], hi[j, :2]) - torch.maximum(lo[i, :2], lo[j, :2])).clamp(min=0).prod(-1)
    foot_i = size[i, :2].prod(-1).clamp(min=1e-9)
    frac = ov / foot_i
    gap = lo[i, 2] - hi[j, 2]  # target bottom above anchor top
    on = (gap.abs() <= cfg.support_gap) & (frac >= cfg.support_overlap)
    above = (gap > cfg.support_gap) & (frac >= cfg.above_overlap)
    # "below": the anchor is above the target (footprint fraction of the anchor).
    foot_j = size[j, :2].prod(-1).clamp(min=1e-9)
    gap_rev = lo[j, 2] - hi[i, 2]
    below = (gap_rev > cfg.support_gap) & (ov / foot_j >= cfg.above_overlap)
    supports = (gap_rev.abs() <= cfg.support_gap) & (ov / foot_j >= cfg.support_overlap)
    out[:, REL_INDEX["on"]] = on
    out[:, REL_INDEX["above"]] = above
    out[:, REL_INDEX["below"]] = below
    out[:, REL_INDEX["supports"]] = supports

    # Viewpoint-dependent: a viewer looks at the anchor; the target's offset is split into the
    # viewer's right (u) and depth (w) axes; the target must be past the anchor's box edge on
    # that axis and lie more along it than across it (the anchor box's side sections in Sr3D).
    d = centre[j, :2] - viewpoint[:2]
    d = d / d.norm(dim=-1, keepdim=True).clamp(min=1e-9)
    r = torch.stack([d[:, 1], -d[:, 0]], dim=-1)
    off = centre[i, :2] - centre[j, :2]
    u, w = (off * r).sum(-1), (off * d).sum(-1)
    half_j = size[j, :2] / 2
    ext_r = (r.abs() * half_j).sum(-1) + cfg.lateral_margin
    ext_d = (d.abs() * half_j).sum(-1) + cfg.lateral_margin
    dist = (centre[i] - centre[j]).norm(dim=-1)
    lateral_ok = (dist <= cfg.lateral_max_distance) & ~(on | above | below | supports) & (i != j)
    out[:, REL_INDEX["right"]] = lateral_ok & (u > ext_r) & (u.abs() >= w.abs())
    out[:, REL_INDEX["left"]] = lateral_ok & (u < -ext_r) & (u.abs() >= w.abs())
    out[:, REL_INDEX["behind"]] = lateral_ok & (w > ext_d) & (w.abs() > u.abs())
    out[:, REL_INDEX["front"]] = lateral_ok & (w < -ext_d) & (w.abs() > u.abs())

    # Near: gap between the two boxes' surfaces.
    sep = (torch.maximum(lo[i], lo[j]) - torch.minimum(hi[i], hi[j])).clamp(min=0).norm(dim=-1)
    out[:, REL_INDEX["near"]] = (sep <= cfg.near_distance) & (i != j)

    # Closest / farthest: i is the nearest (farthest) object of its own class to the anchor j.
    D = torch.cdist(centre, centre)  # (N, N)
    eye = torch.eye(n, dtype=torch.bool, device=boxes.device)
    num_classes = int(labels.max()) + 1 if n else 0
    idx = labels.view(n, 1).expand(n, n)
    cmin = torch.full((num_classes, n), math.inf, dtype=D.dtype, device=D.device)
    cmin = cmin.scatter_reduce(0, idx, D.masked_fill(eye, math.inf), "amin")
    cmax = torch.full((num_classes, n), -math.inf, dtype=D.dtype, device=D.device)
    cmax = cmax.scatter_reduce(0, idx, D.masked_fill(eye, -math.inf), "amax")
    count = torch.zeros(num_classes, n, dtype=torch.long, device=D.device)
    count = count.scatter_add(0, idx, (~eye).long())  # (C, N): objects of class c other than anchor
    dij = D[i, j]
    enough = (count[labels[i], j] >= cfg.min_class_count) & (i != j) & (labels[i] != labels[j])
    out[:, REL_INDEX["closest"]] = enough & (dij <= cmin[labels[i], j])
    out[:, REL_INDEX["farthest"]] = enough & (dij >= cmax[labels[i], j])

    vol = size.prod(-1)
    out[:, REL_INDEX["larger"]] = (vol[i] > cfg.size_ratio * vol[j]) & (i != j)
    out[:, REL_INDEX["smaller"]] = (vol[j] > cfg.size_ratio * vol[i]) & (i != j)
    return out


def default_viewpoint(boxes: Tensor) -> Tensor:
    """A viewer 3 m in front of the scene (along -y) at eye height, looking +y: ``(3,)``."""
    lo, hi = axis_aligned_bounds(boxes)
    smin, smax = lo.min(0).values, hi.max(0).values
    cx = (smin[0] + smax[0]) / 2
    return torch.stack([cx, smin[1] - 3.0, smin[2] + 1.6])


def between_triplets(boxes: Tensor, candidates: Tensor, cfg: RelationConfig | None = None) -> Tensor:
    """Triplets ``(t, a, b)`` with target t between anchors a and b, as ``(3, T)`` long.

    candidates ``(N, K)``: the anchors considered for each target (e.g. its K nearest
    neighbours; -1 pads), so the cost is O(N K^2) rather than O(N^3). In the floor plane,
    t's centre must project strictly inside the segment a-b, lie within ``between_width`` of
    it, and a, b must not overlap t's footprint.
    """
    cfg = cfg or RelationConfig()
    n, k = candidates.shape
    if n == 0 or k < 2:
        return torch.zeros(3, 0, dtype=torch.long, device=boxes.device)
    c = boxes[:, :2]
    t = torch.arange(n, device=boxes.device).view(n, 1, 1).expand(n, k, k)
    a = candidates.view(n, k, 1).expand(n, k, k)
    b = candidates.view(n, 1, k).expand(n, k, k)
    valid = (a >= 0) & (b >= 0) & (a < b) & (a != t) & (b != t)
    a0, b0 = a.clamp(min=0), b.clamp(min=0)
    ab = c[b0] - c[a0]
    at = c[t] - c[a0]
    len2 = (ab * ab).sum(-1).clamp(min=1e-9)
    s = (at * ab).sum(-1) / len2
    perp = (at - s.unsqueeze(-1) * ab).norm(dim=-1)
    lo, hi = axis_aligned_bounds(boxes)
    half_t = (hi[:, :2] - lo[:, :2]) / 2
    # Anchors must lie clear of the target: the segment's ends beyond the target's extent.
    clear = (s * len2.sqrt() > half_t[t].norm(dim=-1)) & ((1 - s) * len2.sqrt() > half_t[t].norm(dim=-1))
    keep = valid & (s > 0) & (s < 1) & (perp <= cfg.between_width) & clear
    return torch.stack([t[keep], a[keep], b[keep]])
