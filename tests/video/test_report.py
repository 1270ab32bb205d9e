"""`vlx quickstart video`: honours --out/--fast/--seed, writes only under --out, and the
report explains its numbers (within-group chance, CIDEr-D scale, examples per model)."""

from __future__ import annotations

import json

import pytest

import video.report as report
from vlx.cli import main


def test_within_group_chance_from_its_definition(tmp_path):
    caps = {
        "video0": "the red square moves left, then the blue circle moves up",
        "video1": "the blue circle moves up, then the red square moves left",  # same words: same group
        "video2": "the green star moves down, then the red square moves right",
    }
    ann = {
        "videos": [{"video_id": v, "split": "test"} for v in caps] + [{"video_id": "video9", "split": "train"}],
        "sentences": [{"video_id": v, "caption": c} for v, c in caps.items()]
        + [{"video_id": "video9", "caption": "x"}],
    }
    (tmp_path / "annotation.json").write_text(json.dumps(ann))
    # groups of 2, 2 and 1: the mean of 1/2, 1/2, 1 over the three captions
    assert report.within_group_chance(tmp_path) == pytest.approx(100 * (0.5 + 0.5 + 1) / 3)


@pytest.mark.slow
def test_quickstart_honours_out_fast_seed_and_writes_only_there(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    micro = {  # the --fast path with test-sized settings
        "data": ["data.n_train=16", "data.n_test=8", "data.render_size=32"],
        "retrieval": ["train.max_steps=2", "train.batch_size=2", "train.progress=false"],
        "captioning": ["train.max_steps=2", "train.batch_size=4", "train.progress=false"],
    }
    monkeypatch.setattr(report, "FAST_OVERRIDES", micro)
    out = tmp_path / "qs"
    assert main(["quickstart", "video", "--out", str(out), "--fast", "--seed", "3"]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["qs"]  # nothing in the working directory
    res = json.loads((out / "report.json").read_text())
    assert res["settings"]["fast"] is True and res["settings"]["seed"] == 3
    assert res["retrieval_seqtransf"]["trained"]["n_videos"] == 8  # the fast data set was used
    assert (out / "data" / "moving_shapes_fast_s3" / "annotation.json").is_file()
    for stage in report.STAGES:
        assert (out / stage / "config.yaml").is_file()
    md = (out / "report.md").read_text()
    assert "within-group chance" in md and "not a percentage" in md
    for name in ("untrained:", "vision from retrieval:", "vision from scratch:"):
        assert f"- trained, {name}" in md or f"- {name}" in md
    assert md.count(" | ref ") == 9  # 3 examples from each of the 3 captioners
    printed = capsys.readouterr().out
    assert "stage 1/4: retrieval_seqtransf" in printed and "stage 4/4: captioning_scratch" in printed
