from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from video.datasets import load_msrvtt
from video.features import FeatureDataset, done_video_ids, extract_features
from video.io import SamplerConfig, VideoLoadConfig

LOAD = VideoLoadConfig(sampler=SamplerConfig("uniform", 4), size=16)


def encode(frames: torch.Tensor) -> torch.Tensor:
    """A deterministic stand-in encoder: per-frame channel means (T, 3)."""
    return frames.float().mean(dim=(1, 2))


def test_extraction_resumes_after_a_crash(shapes_dir, bad_videos, tmp_path):
    records = load_msrvtt(shapes_dir / "annotation.json", shapes_dir / "videos")  # 10 videos
    records.append({"video": str(bad_videos["corrupt"]), "video_id": "broken", "captions": ["x"]})
    ref = extract_features(records, LOAD, encode, tmp_path / "ref", shard_size=3, progress=False, batch_size=1)
    assert ref == {"extracted": 10, "already_done": 0, "bad": 1, "total_features": 10}

    calls = {"n": 0}

    def crashing(frames):
        calls["n"] += 1
        if calls["n"] == 8:
            raise KeyboardInterrupt  # killed while the third shard is half full
        return encode(frames)

    out = tmp_path / "resumed"
    with pytest.raises(KeyboardInterrupt):
        extract_features(records, LOAD, crashing, out, shard_size=3, progress=False, batch_size=1)
    assert len(done_video_ids(out)) == 6  # two whole shards survive, the partial one is gone
    calls["n"] = 100
    counted = []
    second = extract_features(
        records, LOAD, lambda f: counted.append(1) or encode(f), out, shard_size=3, progress=False, batch_size=1
    )
    assert second["already_done"] == 6 and second["extracted"] == 4 and len(counted) == 4
    a = FeatureDataset(records, tmp_path / "ref")
    b = FeatureDataset(records, out)
    assert len(a) == len(b) == 20 and a.missing == b.missing == ["broken"]
    for i in range(len(a)):
        torch.testing.assert_close(a[i]["features"], b[i]["features"])
        assert a[i]["caption"] == b[i]["caption"]
    assert a[0]["features"].shape == (4, 3)
    bad = [json.loads(l) for l in (out / "bad.jsonl").read_text().splitlines()]
    assert bad[0]["video_id"] == "broken" and "corrupt" in bad[0]["reason"]


def test_batched_extraction_matches_per_video(shapes_dir, bad_videos, tmp_path):
    """Videos are encoded in batches (one encoder call with all frames of batch_size
    videos), decoded ahead by DataLoader workers; features equal the per-video ones."""
    records = load_msrvtt(shapes_dir / "annotation.json", shapes_dir / "videos")  # 10 videos
    records.insert(3, {"video": str(bad_videos["corrupt"]), "video_id": "broken", "captions": ["x"]})
    shapes = []

    def recording(frames):
        shapes.append(tuple(frames.shape))
        return encode(frames)

    one = extract_features(records, LOAD, encode, tmp_path / "one", progress=False, batch_size=1)
    res = extract_features(records, LOAD, recording, tmp_path / "b", progress=False, batch_size=4, num_workers=2)
    assert res == one == {"extracted": 10, "already_done": 0, "bad": 1, "total_features": 10}
    # 11 records in batches of 4: 4 (one bad) + 4 + 3 videos -> 3 calls of 3, 4 and 3 videos x 4 frames
    assert shapes == [(12, 16, 16, 3), (16, 16, 16, 3), (12, 16, 16, 3)]
    a, b = FeatureDataset(records, tmp_path / "one"), FeatureDataset(records, tmp_path / "b")
    for i in range(len(a)):
        torch.testing.assert_close(a[i]["features"], b[i]["features"])
        torch.testing.assert_close(a[i]["timestamps"], b[i]["timestamps"])


@pytest.mark.slow
def test_extraction_resumes_after_sigkill(shapes_dir, tmp_path):
    """A real SIGKILL of the extraction process; the rerun finishes and matches."""
    script = f"""
import os, signal, torch
from video.datasets import load_msrvtt
from video.features import extract_features
from video.io import SamplerConfig, VideoLoadConfig
recs = load_msrvtt({str(shapes_dir / "annotation.json")!r}, {str(shapes_dir / "videos")!r})
n = [0]
def enc(f):
    n[0] += 1
    if n[0] == 6 and os.environ.get('KILL'):
        os.kill(os.getpid(), signal.SIGKILL)
    return f.float().mean(dim=(1, 2))
cfg = VideoLoadConfig(sampler=SamplerConfig('uniform', 4), size=16)
print(extract_features(recs, cfg, enc, {str(tmp_path / "f")!r}, shard_size=2, progress=False, batch_size=1))
"""
    killed = subprocess.run(
        [sys.executable, "-c", script], env={**__import__("os").environ, "KILL": "1"}, capture_output=True, text=True
    )
    assert killed.returncode == -9
    assert len(done_video_ids(tmp_path / "f")) == 4
    rerun = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert rerun.returncode == 0, rerun.stderr
    assert "'already_done': 4" in rerun.stdout and "'total_features': 10" in rerun.stdout
