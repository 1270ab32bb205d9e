"""The ``sr3d`` relation set: the rules of referit3d's Sr3D generators (Achlioptas et al. 2020).

Targets ``t`` and anchors ``a``; "t REL a" reads "the target is REL the anchor".

- left / right / front / behind ("allocentric"): only anchors with a front direction, unique in
  the scene and not in ``exclude_allocentric``. In the anchor's own frame (front along the
  local -x axis, as referit3d's oriented boxes have it) four sections are cut around its
  footprint: depth ``df = min(2 * lx, max_df)`` (``dl = min(2 * ly, max_dl)`` sideways),
  widening by ``angle`` degrees, then ``d2`` metres more. A target holds the relation when
  more than ``positive_occupancy`` (0.9) of its points fall in one section and every other
  object of its class with points there has less than ``negative_occupancy`` (0.08). A class
  where one object's footprint overlap with the anchor exceeds 0.2 of either footprint is
  skipped for that anchor. "left" is the left of someone facing the anchor's front.
- closest / farthest ("horizontal proximity"): targets of a class with at least two objects,
  anchors unique in the scene; distance = the smallest point-to-point distance between the two
  objects; the closest (farthest) must lead the runner-up by ``proximity_gap`` (0.2 m).
- on (Sr3D's "supported-by") / supports ("supporting") / above / below ("vertical
  proximity"): footprints must overlap (2D IoU >= 0.001); "on": the target's footprint is more
  than ``min_supported_ratio`` (0.3) covered by the anchor, its bottom within
  ``max_touch_distance`` (0.15 m) of the anchor's top, the footprint area ratio target/anchor
  below ``max_support_area_ratio`` (1.5), the anchor a class that can support and the target
  one that can be supported; "above": the target's bottom more than 0.06 m over the anchor's
  top and either footprint more than 0.2 covered; touching relations win over above/below.
  Dropped when the target and an object of its class intersect by more than 0.3 of a volume.
- between: unique anchors of different classes whose footprints do not overlap, the target of
  a third class; at least ``between_occupancy`` (51%) of the target's footprint inside the
  convex hull of the two anchors' footprints, the target overlapping each anchor's height
  range by at least 0.2 of its own height, overlapping either anchor's footprint by at most 0.1
  of its area, and at least ``safe_distance`` (0.3 m, centre to centre in the floor plane) from
  every object of its class. An (anchor pair, target class) combination where any object of
  the class sits ambiguously (10% to 51% inside) is dropped entirely.
- uniqueness: like referit3d's ``force_uniqueness``, a relation kept only when no other
  relation of the same family links the same target class to the same anchor class(es).

Targets must have at most ``too_hard`` (6) objects of their class. Class lists (which classes
can support, which cannot be supported, excluded anchors) default to referit3d's exclusion
lists; the support lists default to "every class" and can be read from referit3d's
``instances_that_can_support.json`` / ``instances_that_cannot_be_supported.json``.
Objects without points use a 5 x 5 grid over their footprint as their points.
"""

from __future__ import annotations

import itertools
import json
import math
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from vlx.data.errors import DataError

TABLES = ("table", "coffee table", "dining table", "folded table", "round table", "side table")
SMALL = ("clothing", "clothes", "cup", "books", "book", "bottle", "towel")


@dataclass
class Sr3dConfig:
    """Thresholds and class lists of referit3d's Sr3D generators (their ``hp.yml`` values)."""

    too_hard: int = 6  # targets whose class has more objects than this are skipped
    # allocentric
    angle: float = 10.0  # degrees: how fast a section widens
    max_df: float = 1.0
    max_dl: float = 1.0
    d2: float = 4.0
    positive_occupancy: float = 0.9
    negative_occupancy: float = 0.08
    exclude_allocentric: list[str] = field(
        default_factory=lambda: [*TABLES, "air hockey table", "end table", "blanket", "stool", "bathtub"]
    )
    # horizontal proximity
    proximity_gap: float = 0.2
    exclude_proximity: list[str] = field(default_factory=lambda: list(SMALL))
    # vertical proximity
    max_touch_distance: float = 0.15
    min_above_distance: float = 0.06
    max_support_area_ratio: float = 1.5
    min_supported_ratio: float = 0.3
    min_above_ratio: float = 0.2
    exclude_vertical: list[str] = field(default_factory=lambda: ["cup", "keyboard"])
    can_support: list[str] | None = None  # None: every class can support
    cannot_be_supported: list[str] = field(default_factory=list)
    semantics_dir: str | None = None  # referit3d's sr3d/semantics folder: read both lists from it
    # between
    between_occupancy: float = 0.51
    between_forbidden: float = 0.1
    between_anchor_overlap: float = 0.1
    between_min_z_overlap: float = 0.2
    safe_distance: float = 0.3
    exclude_between: list[str] = field(default_factory=lambda: list(SMALL))
    force_unique: bool = True

    def __post_init__(self) -> None:
        if not 0 < self.positive_occupancy <= 1 or not 0 <= self.negative_occupancy < self.positive_occupancy:
            raise ValueError("relations.sr3d: need 0 <= negative_occupancy < positive_occupancy <= 1")
        if self.semantics_dir:
            self.can_support, self.cannot_be_supported = read_support_lists(self.semantics_dir)


def read_support_lists(folder: str | Path) -> tuple[list[str], list[str]]:
    """referit3d's ``{class: "True"|"False"}`` files -> (classes that can support, classes that
    cannot be supported)."""
    out = []
    for name in ("instances_that_can_support.json", "instances_that_cannot_be_supported.json"):
        p = Path(folder) / name
        try:
            d = json.loads(p.read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise DataError(f"{p}: cannot read referit3d's class list ({e})") from None
        out.append(sorted(k for k, v in d.items() if str(v).lower() == "true"))
    return out[0], out[1]


def _rect(lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Footprint corners ``(4, 2)`` of an axis-aligned box."""
    return np.array([[lo[0], lo[1]], [hi[0], lo[1]], [hi[0], hi[1]], [lo[0], hi[1]]])


def _footprint(box: np.ndarray) -> np.ndarray:
    """``(4, 2)`` floor-plane corners of a ``(6|7,)`` box (rotated by its yaw when it has one)."""
    c, h = box[:2], box[3:5] / 2
    corners = np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]]) * h
    if box.shape[0] == 7:
        cs, sn = math.cos(box[6]), math.sin(box[6])
        corners = corners @ np.array([[cs, sn], [-sn, cs]])
    return corners + c


def _overlap_2d(lo, hi, a: int, b: int) -> tuple[float, float, float, float]:
    """Axis-aligned footprints: (iou, inter / area_a, inter / area_b, area_a / area_b)."""
    w = np.clip(np.minimum(hi[a, :2], hi[b, :2]) - np.maximum(lo[a, :2], lo[b, :2]), 0, None)
    inter = float(w[0] * w[1])
    aa = float(np.prod(hi[a, :2] - lo[a, :2])) or 1e-12
    ab = float(np.prod(hi[b, :2] - lo[b, :2])) or 1e-12
    return inter / (aa + ab - inter), inter / aa, inter / ab, aa / ab


def sr3d_relations(
    boxes: np.ndarray,
    labels: list[str],
    points: list[np.ndarray] | None = None,
    fronts: np.ndarray | None = None,
    cfg: Sr3dConfig | None = None,
    oriented: np.ndarray | None = None,
) -> tuple[list[tuple[int, str, int]], list[tuple[int, int, int]]]:
    """Sr3D's relations of one scene.

    boxes ``(N, 6|7)`` (centre, size[, yaw]); labels: N class names; points: per object
    ``(Ni, >=3)`` xyz (None: a footprint grid); fronts ``(N,)`` the yaw (radians) of each
    object's front direction, NaN for objects without a front (None: no fronts, so no
    left/right/front/behind). Returns ``[(target, relation, anchor)]`` with relation names of
    :data:`scene_graph.relations.RELATIONS` ("on" = Sr3D's supported-by, "supports" =
    supporting, "behind" = back) and ``[(target, anchor_a, anchor_b)]`` for between.
    oriented ``(N, 7)``: an anchor's object-aligned box (centre, size, yaw; NaN rows: none, e.g.
    Scan2CAD's via :mod:`scene_graph.data.scan2cad`); when given, the anchor's sections are cut
    around it (its centre and lx, ly) as referit3d's generator does with ``get_bbox()``.
    """
    cfg = cfg or Sr3dConfig()
    boxes = np.asarray(boxes, dtype=np.float64)
    n = boxes.shape[0]
    foot = [_footprint(b) for b in boxes]
    lo = np.concatenate([np.array([f.min(0) for f in foot]), (boxes[:, 2] - boxes[:, 5] / 2)[:, None]], 1)
    hi = np.concatenate([np.array([f.max(0) for f in foot]), (boxes[:, 2] + boxes[:, 5] / 2)[:, None]], 1)
    if points is None:
        g = (np.arange(5) + 0.5) / 5
        grid = np.stack(np.meshgrid(g, g, indexing="ij"), -1).reshape(-1, 2)
        pts = [
            np.concatenate([lo[k, :2] + grid * (hi[k, :2] - lo[k, :2]), np.full((25, 1), boxes[k, 2])], 1)
            for k in range(n)
        ]
    else:
        pts = [np.asarray(p, dtype=np.float64)[:, :3] for p in points]
    count = Counter(labels)
    by_class: dict[str, list[int]] = defaultdict(list)
    for k, lab in enumerate(labels):
        by_class[lab].append(k)
    target_ok = [count[lab] <= cfg.too_hard for lab in labels]
    unique = [count[lab] == 1 for lab in labels]
    refs: list[tuple[int, str, int]] = []
    frames = boxes
    if oriented is not None:  # anchors with an object-aligned box use it for their sections
        oriented = np.asarray(oriented, dtype=np.float64)
        has = np.isfinite(oriented).all(1)
        frames = np.concatenate([boxes[:, :6], boxes[:, 6:7] if boxes.shape[1] == 7 else np.zeros((n, 1))], 1)
        frames[has] = oriented[has]
    refs += _allocentric(frames, labels, pts, fronts, lo, hi, by_class, unique, target_ok, cfg)
    refs += _proximity(labels, pts, by_class, unique, target_ok, cfg)
    refs += _vertical(labels, lo, hi, by_class, target_ok, cfg)
    between = _between(labels, foot, lo, hi, by_class, unique, target_ok, cfg)
    if cfg.force_unique:
        refs, between = _force_unique(refs, between, labels)
    return refs, between


def _allocentric(boxes, labels, pts, fronts, lo, hi, by_class, unique, target_ok, cfg) -> list:
    import shapely

    if fronts is None:
        return []
    out = []
    t = math.tan(math.radians(cfg.angle))
    for a in range(len(labels)):
        phi = float(fronts[a])
        if math.isnan(phi) or not unique[a] or labels[a] in cfg.exclude_allocentric:
            continue
        # Local frame: x against the front direction (front section at x < xmin), y = z cross x.
        ex = np.array([-math.cos(phi), -math.sin(phi)])
        ey = np.array([-ex[1], ex[0]])
        loc = (_footprint(boxes[a]) - boxes[a, :2]) @ np.stack([ex, ey], 1)
        xmin, ymin = loc.min(0)
        xmax, ymax = loc.max(0)
        df, dl = min(2 * (xmax - xmin), cfg.max_df), min(2 * (ymax - ymin), cfg.max_dl)
        sections = {
            "front": [(xmin, ymin), (xmin, ymax), (xmin - df, ymax + t * df), (xmin - df, ymin - t * df),
                      (xmin - df - cfg.d2, ymin - t * df), (xmin - df - cfg.d2, ymax + t * df)],
            "behind": [(xmax, ymin), (xmax, ymax), (xmax + df, ymax + t * df), (xmax + df, ymin - t * df),
                       (xmax + df + cfg.d2, ymin - t * df), (xmax + df + cfg.d2, ymax + t * df)],
            "right": [(xmin, ymin), (xmax, ymin), (xmax + t * dl, ymin - dl), (xmin - t * dl, ymin - dl),
                      (xmin - t * dl, ymin - dl - cfg.d2), (xmax + t * dl, ymin - dl - cfg.d2)],
            "left": [(xmin, ymax), (xmax, ymax), (xmax + t * dl, ymax + dl), (xmin - t * dl, ymax + dl),
                     (xmin - t * dl, ymax + dl + cfg.d2), (xmax + t * dl, ymax + dl + cfg.d2)],
        }  # fmt: skip
        hulls = {k: shapely.MultiPoint(v).convex_hull for k, v in sections.items()}
        for lab, members in by_class.items():
            members = [m for m in members if m != a and target_ok[m]]
            if not members or lab == labels[a]:
                continue
            if any(max(_overlap_2d(lo, hi, m, a)[1:3]) > 0.2 for m in members):
                continue  # a target intersects the anchor: referit3d skips the whole class
            occ = {}
            for m in members:
                p = (pts[m][:, :2] - boxes[a, :2]) @ np.stack([ex, ey], 1)
                occ[m] = {k: float(shapely.contains_xy(h, p[:, 0], p[:, 1]).mean()) for k, h in hulls.items()}
            for sec in hulls:
                inside = [m for m in members if occ[m][sec] > 0]
                pos = [m for m in inside if occ[m][sec] > cfg.positive_occupancy]
                neg = [m for m in inside if occ[m][sec] < cfg.negative_occupancy]
                if len(pos) == 1 and len(neg) == len(inside) - 1:
                    out.append((pos[0], sec, a))
    return out


def _min_distance(p: np.ndarray, q: np.ndarray) -> float:
    from scipy.spatial import cKDTree

    return float(cKDTree(p).query(q, k=1)[0].min())


def _proximity(labels, pts, by_class, unique, target_ok, cfg) -> list:
    out = []
    for a in range(len(labels)):
        if not unique[a] or labels[a] in cfg.exclude_proximity:
            continue
        for lab, members in by_class.items():
            members = [m for m in members if target_ok[m]]
            if len(members) < 2 or lab == labels[a]:
                continue
            d = np.array([_min_distance(pts[a], pts[m]) for m in members])
            order = np.argsort(d, kind="stable")
            d = d[order]
            if d[0] + cfg.proximity_gap < d[1]:
                out.append((members[order[0]], "closest", a))
            if d[-1] - cfg.proximity_gap > d[-2]:
                out.append((members[order[-1]], "farthest", a))
    return out


def _vertical(labels, lo, hi, by_class, target_ok, cfg) -> list:
    def can_support(lab):
        return cfg.can_support is None or lab in cfg.can_support

    out = []
    for a in range(len(labels)):
        if labels[a] in cfg.exclude_vertical:
            continue
        for t in range(len(labels)):
            if not target_ok[t] or labels[t] == labels[a]:
                continue
            iou, it, ia, ratio = _overlap_2d(lo, hi, t, a)
            if iou < 0.001:
                continue
            up = lo[t, 2] - hi[a, 2]  # target bottom over anchor top
            down = lo[a, 2] - hi[t, 2]  # anchor bottom over target top
            if (
                can_support(labels[a])
                and it > cfg.min_supported_ratio
                and abs(up) <= cfg.max_touch_distance
                and labels[t] not in cfg.cannot_be_supported
                and ratio < cfg.max_support_area_ratio
            ):
                rel = "on"
            elif (
                can_support(labels[t])
                and ia > cfg.min_supported_ratio
                and abs(down) <= cfg.max_touch_distance
                and labels[a] not in cfg.cannot_be_supported
                and 1 / ratio < cfg.max_support_area_ratio
            ):
                rel = "supports"
            elif up > cfg.min_above_distance and max(it, ia) > cfg.min_above_ratio:
                rel = "above"
            elif down > cfg.min_above_distance and max(it, ia) > cfg.min_above_ratio:
                rel = "below"
            else:
                continue
            if _class_intersects(t, by_class[labels[t]], lo, hi):
                continue
            out.append((t, rel, a))
    return out


def _class_intersects(t: int, members: list[int], lo, hi) -> bool:
    """Two objects of the target's class intersect by more than 0.3 of either one's volume."""
    vol = np.prod(hi - lo, axis=1).clip(min=1e-12)
    for x, y in itertools.combinations(members, 2):
        inter = float(np.prod(np.clip(np.minimum(hi[x], hi[y]) - np.maximum(lo[x], lo[y]), 0, None)))
        if inter / vol[x] > 0.3 or inter / vol[y] > 0.3:
            return True
    return False


def _between(labels, foot, lo, hi, by_class, unique, target_ok, cfg) -> list:
    import shapely

    anchors = [k for k in range(len(labels)) if unique[k] and labels[k] not in cfg.exclude_between]
    polys = [shapely.Polygon(f) for f in foot]
    found, bad = [], set()
    for a, b in itertools.combinations(anchors, 2):
        if labels[a] == labels[b] or _overlap_2d(lo, hi, a, b)[0] >= 0.001:
            continue
        hull = shapely.MultiPoint(np.concatenate([foot[a], foot[b]])).convex_hull
        for lab, members in by_class.items():
            if lab in (labels[a], labels[b]):
                continue
            for t in members:
                if not target_ok[t]:
                    continue
                area = polys[t].area or 1e-12
                occ = hull.intersection(polys[t]).area / area
                if occ < cfg.between_occupancy:
                    if cfg.between_forbidden < occ < cfg.between_occupancy - 0.001:
                        bad.add((a, b, lab))
                    continue
                if max(polys[t].intersection(polys[x]).area / area for x in (a, b)) > cfg.between_anchor_overlap:
                    bad.add((a, b, lab))
                    continue
                h = max(hi[t, 2] - lo[t, 2], 1e-12)
                z = [min(hi[t, 2], hi[x, 2]) - max(lo[t, 2], lo[x, 2]) for x in (a, b)]
                if min(z) / h < cfg.between_min_z_overlap:
                    bad.add((a, b, lab))
                    continue
                c = (lo[:, :2] + hi[:, :2]) / 2
                if any(np.linalg.norm(c[t] - c[m]) < cfg.safe_distance for m in members if m != t):
                    bad.add((a, b, lab))
                    continue
                found.append((t, a, b))
    return [(t, a, b) for t, a, b in found if (a, b, labels[t]) not in bad]


def _force_unique(refs, between, labels):
    """Keep a relation only when it is the only one of its family for its class combination."""
    vertical = {"on", "supports", "above", "below"}
    key = lambda t, r, a: (labels[t], labels[a], "vertical" if r in vertical else r)  # noqa: E731
    n = Counter(key(*r) for r in refs)
    nb = Counter((labels[t], labels[a], labels[b]) for t, a, b in between)
    return [r for r in refs if n[key(*r)] == 1], [
        x for x in between if nb[(labels[x[0]], labels[x[1]], labels[x[2]])] == 1
    ]
