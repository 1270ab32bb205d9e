from __future__ import annotations

import json

import numpy as np

from video.synthetic import DIRECTIONS, Event, caption, generate_moving_shapes, render_clip


def test_same_seed_same_files(tmp_path):
    a = generate_moving_shapes(tmp_path / "a", n_train=3, n_test=8, size=32, seed=7)
    b = generate_moving_shapes(tmp_path / "b", n_train=3, n_test=8, size=32, seed=7)
    c = generate_moving_shapes(tmp_path / "c", n_train=3, n_test=8, size=32, seed=8)
    assert (a / "annotation.json").read_text() == (b / "annotation.json").read_text()
    assert (a / "annotation.json").read_text() != (c / "annotation.json").read_text()
    for i in range(11):
        assert (a / f"videos/video{i}.mp4").read_bytes() == (b / f"videos/video{i}.mp4").read_bytes()
    ann = json.loads((a / "annotation.json").read_text())
    assert [v["split"] for v in ann["videos"]] == ["train"] * 3 + ["test"] * 8
    assert len(ann["sentences"]) == 22


def test_test_group_is_order_dependent_with_one_frame_multiset(tmp_path):
    """The 8 test clips form one group: distinct captions, identical multisets of frames, so
    any order-blind pooling gives them the same embedding."""
    root = generate_moving_shapes(tmp_path, n_train=0, n_test=8, size=32, seed=0)
    caps = [s["caption"] for s in json.loads((root / "annotation.json").read_text())["sentences"][::2]]
    assert len(set(caps)) == 8 and all(", then " in c for c in caps)
    a, b = Event("red", "square", "left"), Event("blue", "triangle", "right")
    variants = [
        (Event(x.color, x.shape, d1), Event(y.color, y.shape, d2))
        for x, y in ((a, b), (b, a))
        for d1 in DIRECTIONS
        for d2 in DIRECTIONS
    ]
    keyed = [sorted(f.tobytes() for f in render_clip(v, 4, 32)) for v in variants]
    assert all(k == keyed[0] for k in keyed)
    assert len({caption(v) for v in variants}) == 8
    clip = render_clip((a, b), 4, 32)
    assert not np.array_equal(clip, render_clip((b, a), 4, 32))
