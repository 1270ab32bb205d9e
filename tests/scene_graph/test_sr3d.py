"""The sr3d relation set against referit3d's generator rules, on scenes built to sit on either
side of each threshold; expected relations worked out by hand from the rules."""

import math

import numpy as np
import pytest

from scene_graph.sr3d import Sr3dConfig, sr3d_relations

NAN = math.nan


def box(x, y, z, sx, sy, sz):
    return [x, y, z, sx, sy, sz]


def rels(boxes, labels, points=None, fronts=None, **kw):
    r, b = sr3d_relations(
        np.array(boxes, float), labels, points, None if fronts is None else np.array(fronts), Sr3dConfig(**kw)
    )
    return set(r), set(b)


# ----------------------------------------------------------------------------- allocentric
CHAIR = box(0, 0, 0.5, 0.5, 0.5, 1.0)  # front faces +x (yaw 0): referit3d's local -x axis


def test_front_and_left_from_the_anchors_own_front():
    # box 0 sits 1 m along the chair's front; box 1 sits at world -y, which is the left of
    # someone facing the chair's front (standing at +x, looking -x).
    r, _ = rels([CHAIR, box(1.0, 0, 0.1, 0.2, 0.2, 0.2), box(0, -1.0, 0.1, 0.2, 0.2, 0.2)], ["chair", "box", "box"],
                fronts=[0.0, NAN, NAN])  # fmt: skip
    assert {x for x in r if x[1] in ("left", "right", "front", "behind")} == {(1, "front", 0), (2, "left", 0)}
    # turn the chair to face +y (everything rotates by +90 degrees: its left is now +x):
    # box 0 (+x) is on its left, box 1 (-y) behind it
    r, _ = rels([CHAIR, box(1.0, 0, 0.1, 0.2, 0.2, 0.2), box(0, -1.0, 0.1, 0.2, 0.2, 0.2)], ["chair", "box", "box"],
                fronts=[math.pi / 2, NAN, NAN])  # fmt: skip
    assert {x for x in r if x[1] in ("left", "right", "front", "behind")} == {(1, "left", 0), (2, "behind", 0)}


def test_allocentric_needs_a_front_a_unique_anchor_and_a_non_table():
    boxes = [CHAIR, box(1.0, 0, 0.1, 0.2, 0.2, 0.2), box(0, -1.0, 0.1, 0.2, 0.2, 0.2)]
    assert not rels(boxes, ["chair", "box", "box"], fronts=[NAN, NAN, NAN])[0] & {(1, "front", 0)}
    assert (1, "front", 0) not in rels(boxes, ["chair", "box", "box"])[0]  # no fronts at all
    assert (1, "front", 0) not in rels(boxes, ["table", "box", "box"], fronts=[0.0, NAN, NAN])[0]
    two_chairs = boxes + [box(5, 5, 0.5, 0.5, 0.5, 1.0)]
    assert (1, "front", 0) not in rels(two_chairs, ["chair", "box", "box", "chair"], fronts=[0.0, NAN, NAN, 0.0])[0]


def _front_points(inside: int, total: int) -> np.ndarray:
    """``total`` points of which ``inside`` lie in the chair's front section (x in 0.3..1)."""
    p = np.zeros((total, 3))
    p[:inside, 0] = np.linspace(0.4, 0.9, inside)
    p[inside:, :2] = (-3.0, 3.0)  # behind and beside the chair, wider than any section: the grey area
    return p


@pytest.mark.parametrize("inside, total, holds", [(19, 20, True), (9, 10, False)])
def test_front_needs_more_than_90_percent_of_the_target(inside, total, holds):
    pts = [np.zeros((1, 3)), _front_points(inside, total), np.array([[0.0, -5.0, 0.0]])]
    boxes = [CHAIR, box(0.6, 0, 0.1, 0.6, 0.2, 0.2), box(0, -5.0, 0.1, 0.2, 0.2, 0.2)]
    r, _ = rels(boxes, ["chair", "box", "box"], points=pts, fronts=[0.0, NAN, NAN])
    assert ((1, "front", 0) in r) is holds  # 0.95 > 0.9; 0.9 is not


@pytest.mark.parametrize("other_inside, holds", [(1, True), (2, False)])
def test_front_needs_other_targets_under_8_percent(other_inside, holds):
    other = _front_points(other_inside, 20)  # 0.05 < 0.08 keeps the reference; 0.10 spoils it
    pts = [np.zeros((1, 3)), _front_points(20, 20), other]
    boxes = [CHAIR, box(0.6, 0, 0.1, 0.6, 0.2, 0.2), box(-1, 2, 0.1, 4, 2, 0.2)]
    r, _ = rels(boxes, ["chair", "box", "box"], points=pts, fronts=[0.0, NAN, NAN])
    assert ((1, "front", 0) in r) is holds


# ----------------------------------------------------------------------------- closest / farthest
def _prox(points_x, labels=None):
    pts = [np.array([[x, 0.0, 0.0] for x in xs]) for xs in points_x]
    boxes = [box((min(xs) + max(xs)) / 2, 0, 0, max(xs) - min(xs) + 0.01, 0.01, 0.01) for xs in points_x]
    return rels(boxes, labels or ["lamp"] + ["box"] * (len(points_x) - 1), points=pts)[0]


def test_closest_farthest_need_a_020_lead():
    assert {(1, "closest", 0), (3, "farthest", 0)} <= _prox([[0], [1.0], [1.25], [3.0]])  # 0.25 and 1.75 leads
    r = _prox([[0], [1.0], [1.15], [1.3]])  # leads of 0.15: neither
    assert not {x for x in r if x[1] in ("closest", "farthest")}


def test_closest_uses_nearest_points_not_centres():
    # object 1 spans 0.5..3.5 (centre 2.0) but its nearest point is 0.5 m away; object 2 is a
    # point at 1.0 m: by points object 1 is closest (lead 0.5), by centres object 2 would be.
    r = _prox([[0], [0.5, 3.5], [1.0]])
    assert (1, "closest", 0) in r and (2, "closest", 0) not in r


def test_closest_needs_a_unique_anchor():
    r = _prox([[0], [1.0], [3.0], [10.0]], labels=["lamp", "box", "box", "lamp"])
    assert not {x for x in r if x[1] in ("closest", "farthest")}


# ----------------------------------------------------------------------------- vertical
TABLE = box(0, 0, 0.4, 1.0, 1.0, 0.8)  # top at z = 0.8


def _on_table(gap, dx=0.0, size=0.1, label="book", **kw):
    b = box(dx, 0, 0.8 + gap + 0.05, size, size, 0.1)
    return rels([TABLE, b], ["table", label], **kw)[0]


@pytest.mark.parametrize("gap, rel", [(0.14, "on"), (-0.14, "on"), (0.16, "above"), (0.05, "on")])
def test_touching_within_015_is_on_farther_is_above(gap, rel):
    r = _on_table(gap)
    assert (1, rel, 0) in r and len({x for x in r if x[0] == 1}) == 1


def test_supports_is_the_inverse_reading():
    assert (0, "supports", 1) in _on_table(0.1)


@pytest.mark.parametrize("cover, rel", [(0.35, "on"), (0.25, "above")])
def test_on_needs_over_30_percent_of_the_footprint(cover, rel):
    # book 0.1 wide, sliding off the table's edge at x = 0.5: covered fraction = cover
    assert (1, rel, 0) in _on_table(0.1, dx=0.5 + 0.05 - cover * 0.1)


@pytest.mark.parametrize("side, holds", [(1.18, True), (1.25, False)])  # area ratios 1.39 / 1.56
def test_on_needs_area_ratio_below_15(side, holds):
    assert ((1, "on", 0) in _on_table(0.0, size=side)) is holds


def test_support_label_lists():
    assert (1, "above", 0) in _on_table(0.1, cannot_be_supported=["book"])
    assert (1, "above", 0) in _on_table(0.1, can_support=["shelf"])
    assert (1, "on", 0) in _on_table(0.1, can_support=["table"])


def test_vertical_references_must_be_unique_per_class_pair():
    second = [box(5, 0, 0.4, 1.0, 1.0, 0.8), box(5, 0, 0.9, 0.1, 0.1, 0.1)]
    r, _ = rels([TABLE, box(0, 0, 0.9, 0.1, 0.1, 0.1), *second], ["table", "book", "table", "book"])
    assert not {x for x in r if x[1] in ("on", "supports", "above", "below")}  # two (book, table) pairs


# ----------------------------------------------------------------------------- between
BED, DESK = box(-1, 0, 0.5, 1, 1, 1), box(1, 0, 0.5, 1, 1, 1)  # joint outline: x -1.5..1.5, y -0.5..0.5


def _between(*targets, labels=("bed", "desk"), **kw):
    boxes = [BED, DESK, *targets]
    return rels(boxes, [*labels] + ["lamp"] * len(targets), **kw)[1]


@pytest.mark.parametrize("y, holds", [(0.0, True), (0.48, True), (0.5, False)])  # 100%, 55%, 50% inside
def test_between_needs_51_percent_of_the_footprint(y, holds):
    assert ((2, 0, 1) in _between(box(0, y, 0.25, 0.4, 0.4, 0.5))) is holds


def test_between_needs_overlapping_heights_and_different_anchor_classes():
    assert not _between(box(0, 0, 1.5, 0.4, 0.4, 0.5))  # floating above both anchors
    assert not _between(box(0, 0, 0.25, 0.4, 0.4, 0.5), labels=("bed", "bed"))


def test_between_ambiguous_or_crowded_targets_spoil_the_combination():
    inside = box(0, 0, 0.25, 0.4, 0.4, 0.5)
    assert (2, 0, 1) in _between(inside, box(0, 5, 0.25, 0.4, 0.4, 0.5))  # the other lamp is far away
    assert not _between(inside, box(0, 0.62, 0.25, 0.4, 0.4, 0.5))  # other lamp 20% inside: ambiguous
    assert not _between(inside, box(0.25, 0, 0.25, 0.4, 0.4, 0.5))  # other lamp 0.25 m away (< 0.3)
