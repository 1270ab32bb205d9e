import math

import pytest
import torch

from scene_graph.relations import (
    REL_INDEX,
    RELATIONS,
    RelationConfig,
    between_triplets,
    default_viewpoint,
    pairwise_relations,
)


def naive_relations(boxes, labels, viewpoint, cfg):
    """Per-pair scalar loops of the same rules: the reference for the vectorised version."""
    n = len(boxes)
    b = boxes.tolist()
    lo = [[c - s / 2 for c, s in zip(x[:3], x[3:6])] for x in b]
    hi = [[c + s / 2 for c, s in zip(x[:3], x[3:6])] for x in b]
    out = {}
    for i in range(n):
        for j in range(n):
            if i == j:
                continue
            r = set()
            ov = max(0, min(hi[i][0], hi[j][0]) - max(lo[i][0], lo[j][0])) * max(
                0, min(hi[i][1], hi[j][1]) - max(lo[i][1], lo[j][1])
            )
            fi = b[i][3] * b[i][4]
            fj = b[j][3] * b[j][4]
            gap, gap_rev = lo[i][2] - hi[j][2], lo[j][2] - hi[i][2]
            if abs(gap) <= cfg.support_gap and ov / fi >= cfg.support_overlap:
                r.add("on")
            if gap > cfg.support_gap and ov / fi >= cfg.above_overlap:
                r.add("above")
            if gap_rev > cfg.support_gap and ov / fj >= cfg.above_overlap:
                r.add("below")
            if abs(gap_rev) <= cfg.support_gap and ov / fj >= cfg.support_overlap:
                r.add("supports")
            dx, dy = b[j][0] - viewpoint[0], b[j][1] - viewpoint[1]
            norm = math.hypot(dx, dy)
            d = (dx / norm, dy / norm)
            right = (d[1], -d[0])
            ox, oy = b[i][0] - b[j][0], b[i][1] - b[j][1]
            u, w = ox * right[0] + oy * right[1], ox * d[0] + oy * d[1]
            ext_r = abs(right[0]) * b[j][3] / 2 + abs(right[1]) * b[j][4] / 2
            ext_d = abs(d[0]) * b[j][3] / 2 + abs(d[1]) * b[j][4] / 2
            dist = math.dist(b[i][:3], b[j][:3])
            if dist <= cfg.lateral_max_distance and not r & {"on", "above", "below", "supports"}:
                if u > ext_r and abs(u) >= abs(w):
                    r.add("right")
                if u < -ext_r and abs(u) >= abs(w):
                    r.add("left")
                if w > ext_d and abs(w) > abs(u):
                    r.add("behind")
                if w < -ext_d and abs(w) > abs(u):
                    r.add("front")
            sep = math.sqrt(sum(max(0, max(lo[i][k], lo[j][k]) - min(hi[i][k], hi[j][k])) ** 2 for k in range(3)))
            if sep <= cfg.near_distance:
                r.add("near")
            same = [k for k in range(n) if labels[k] == labels[i] and k != j]
            if len(same) >= cfg.min_class_count and labels[i] != labels[j]:
                ds = [math.dist(b[k][:3], b[j][:3]) for k in same]
                if dist <= min(ds) + 1e-9:
                    r.add("closest")
                if dist >= max(ds) - 1e-9:
                    r.add("farthest")
            vi, vj = b[i][3] * b[i][4] * b[i][5], b[j][3] * b[j][4] * b[j][5]
            if vi > cfg.size_ratio * vj:
                r.add("larger")
            if vj > cfg.size_ratio * vi:
                r.add("smaller")
            out[(i, j)] = r
    return out


def random_scene(n, seed):
    g = torch.Generator().manual_seed(seed)
    centre = torch.rand(n, 3, generator=g) * torch.tensor([4.0, 4.0, 1.0])
    size = 0.2 + torch.rand(n, 3, generator=g) * 0.8
    labels = torch.randint(0, 3, (n,), generator=g)
    return torch.cat([centre, size], 1).double(), labels


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_vectorised_relations_match_naive_reference(seed):
    boxes, labels = random_scene(12, seed)
    # Stack a few objects so the vertical relations occur.
    boxes[1, :2] = boxes[0, :2]
    boxes[1, 3:5] = boxes[0, 3:5] * 0.5
    boxes[2, 3:5] = boxes[0, 3:5] * 0.5
    boxes[1, 2] = boxes[0, 2] + boxes[0, 5] / 2 + boxes[1, 5] / 2
    boxes[2, :2] = boxes[0, :2]
    boxes[2, 2] = boxes[0, 2] + boxes[0, 5] / 2 + boxes[2, 5] / 2 + 0.5
    cfg = RelationConfig()
    vp = default_viewpoint(boxes)
    n = len(boxes)
    i, j = torch.meshgrid(torch.arange(n), torch.arange(n), indexing="ij")
    keep = i != j
    i, j = i[keep], j[keep]
    rel = pairwise_relations(boxes, labels, i, j, vp, cfg)
    ref = naive_relations(boxes, labels.tolist(), vp.tolist(), cfg)
    total = 0
    for e in range(len(i)):
        got = {RELATIONS[r] for r in rel[e].nonzero().flatten().tolist()}
        assert got == ref[(int(i[e]), int(j[e]))], (int(i[e]), int(j[e]))
        total += len(got)
    assert total > 50
    assert rel[:, REL_INDEX["on"]].any() and rel[:, REL_INDEX["above"]].any()


def _rel(boxes, labels, a, b, vp=None):
    r = pairwise_relations(boxes, torch.tensor(labels), torch.tensor([a]), torch.tensor([b]), vp)
    return {RELATIONS[k] for k in r[0].nonzero().flatten().tolist()}


def test_semantics_on_a_small_room():
    boxes = torch.tensor(
        [
            [0.0, 0.0, 0.5, 1.0, 1.0, 1.0],  # 0 table-like box
            [0.0, 0.0, 1.2, 0.4, 0.4, 0.4],  # 1 sphere on box 0
            [2.0, 0.0, 0.5, 1.0, 1.0, 1.0],  # 2 box right of 0 (viewer at -y)
            [0.0, 3.0, 0.5, 1.0, 1.0, 1.0],  # 3 box behind 0
        ]
    )
    labels = [0, 1, 0, 0]
    vp = torch.tensor([1.0, -4.0, 1.6])
    assert {"on", "near", "smaller"} <= _rel(boxes, labels, 1, 0, vp)
    assert "supports" in _rel(boxes, labels, 0, 1, vp) and "below" not in _rel(boxes, labels, 0, 1, vp)
    assert "right" in _rel(boxes, labels, 2, 0, vp) and "left" in _rel(boxes, labels, 0, 2, vp)
    assert "behind" in _rel(boxes, labels, 3, 0, vp) and "front" in _rel(boxes, labels, 0, 3, vp)
    # Seen from the other side of the room, left and right swap.
    assert "left" in _rel(boxes, labels, 2, 0, torch.tensor([1.0, 8.0, 1.6]))
    # Box 0 is the closest box to the sphere, box 3 the farthest.
    assert "closest" in _rel(boxes, labels, 0, 1, vp) and "farthest" in _rel(boxes, labels, 3, 1, vp)
    # A lifted sphere is above, not on.
    lifted = boxes.clone()
    lifted[1, 2] = 2.0
    assert {"above"} <= _rel(lifted, labels, 1, 0, vp) and "on" not in _rel(lifted, labels, 1, 0, vp)


def test_oriented_box_footprint():
    # A long thin box rotated by 90 degrees now covers the object at +y, so that one is on it.
    boxes = torch.tensor([[0.0, 0.0, 0.25, 3.0, 0.2, 0.5, 0.0], [0.0, 1.2, 0.6, 0.2, 0.2, 0.2, 0.0]])
    assert "on" not in _rel(boxes, [0, 1], 1, 0)
    boxes[0, 6] = math.pi / 2
    assert "on" in _rel(boxes, [0, 1], 1, 0)


def test_between_triplets():
    boxes = torch.tensor(
        [
            [0.0, 0.0, 0.5, 0.5, 0.5, 0.5],
            [2.0, 0.1, 0.5, 0.5, 0.5, 0.5],
            [4.0, 0.0, 0.5, 0.5, 0.5, 0.5],
            [2.0, 3.0, 0.5, 0.5, 0.5, 0.5],
        ]
    )
    cand = torch.tensor([[1, 2, 3], [0, 2, 3], [0, 1, 3], [0, 1, 2]])
    trip = between_triplets(boxes, cand)
    got = {tuple(t) for t in trip.t().tolist()}
    assert (1, 0, 2) in got
    assert all(t[0] != 3 for t in got)  # object 3 is off the segments
    assert (0, 1, 2) not in got and (2, 0, 1) not in got


def test_config_validation():
    with pytest.raises(ValueError, match="size_ratio"):
        RelationConfig(size_ratio=0.5)
