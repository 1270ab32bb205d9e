"""vlx.io: the mp4 writer round-trips through PyAV's decoder; the JSONL store keeps every
valid record around a corrupt line and quarantines the bad one."""

from __future__ import annotations

import json

import numpy as np
import pytest

from vlx.io.jsonl import JsonlWriter, bad_path, read_jsonl, repair_jsonl, scan_jsonl
from vlx.io.mp4 import Mp4Writer, read_mp4, write_mp4


def _clip(t: int = 12, h: int = 48, w: int = 64) -> np.ndarray:
    # Smooth, distinct frames (a moving gradient) so that H.264 keeps them close.
    y, x = np.mgrid[0:h, 0:w]
    return np.stack(
        [np.stack([(x * 4 + 10 * i) % 256, (y * 5) % 256, np.full_like(x, 20 * i % 256)], -1) for i in range(t)]
    ).astype(np.uint8)


@pytest.mark.parametrize("background", [True, False])
def test_mp4_round_trip(tmp_path, background):
    clip = _clip()
    with Mp4Writer(tmp_path / "v.mp4", fps=10, crf=10, background=background) as w:
        for f in clip:
            w.write(f)
    back = read_mp4(tmp_path / "v.mp4")
    assert back.shape == clip.shape
    err = np.abs(back.astype(int) - clip.astype(int)).mean(axis=(1, 2, 3))
    assert err.max() < 6, err  # lossy, but each frame close to its own source...
    assert np.abs(back[0].astype(int) - clip[5].astype(int)).mean() > 4 * err.max()  # ...and not to another


def test_mp4_odd_size_cropped_and_function_form(tmp_path):
    clip = _clip(5, 33, 41)
    p = write_mp4(tmp_path / "sub" / "odd.mp4", clip, fps=5, gop=2, preset="ultrafast", faststart=True)
    back = read_mp4(p)
    assert back.shape == (5, 32, 40, 3)


def test_mp4_rejects_bad_frames(tmp_path):
    w = Mp4Writer(tmp_path / "x.mp4")
    with pytest.raises(ValueError, match="uint8"):
        w.write(np.zeros((8, 8, 3), np.float32))
    with pytest.raises(ValueError, match="no frames"):
        w.close()


def test_jsonl_round_trip_with_numpy(tmp_path):
    p = tmp_path / "r.jsonl"
    with JsonlWriter(p, default=lambda o: o.item()) as w:
        for i in range(3):
            w.write({"i": np.int64(i), "s": "é"})
    assert read_jsonl(p) == [{"i": 0, "s": "é"}, {"i": 1, "s": "é"}, {"i": 2, "s": "é"}]


def test_corrupt_middle_line_quarantined_valid_records_kept(tmp_path):
    p = tmp_path / "r.jsonl"
    lines = [json.dumps({"i": 0}), json.dumps({"i": 1}), '{"i": 2, "trunc', "[1, 2]", json.dumps({"i": 3})]
    p.write_text("\n".join(lines) + "\n" + '{"i": 4')  # and a torn last line
    assert [r["i"] for r in read_jsonl(p)] == [0, 1, 3]  # reading skips, changes nothing
    assert p.read_text().endswith('{"i": 4')
    w = JsonlWriter(p)  # start-up: quarantine
    assert w.quarantined == [3, 4, 6]
    w.write({"i": 5})
    w.close()
    assert [r["i"] for r in read_jsonl(p)] == [0, 1, 3, 5]
    assert scan_jsonl(p).bad == [] and scan_jsonl(p).torn == b""
    quarantined = [json.loads(x) for x in bad_path(p).read_text().splitlines()]
    assert [(q["line"], q["text"]) for q in quarantined] == [(3, '{"i": 2, "trunc'), (4, "[1, 2]"), (6, '{"i": 4')]
    assert repair_jsonl(p) == []  # clean now: nothing more to do


def test_clean_file_untouched(tmp_path):
    p = tmp_path / "r.jsonl"
    p.write_text('{"a": 1}\n\n{"a": 2}\n')
    before = p.stat().st_mtime_ns
    assert repair_jsonl(p) == []
    assert p.stat().st_mtime_ns == before and not bad_path(p).exists()
