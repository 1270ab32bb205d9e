"""Every decoding backend returns the same frames for the same indices, on mp4s with
B-frames and variable frame rate generated here with PyAV."""

from __future__ import annotations

from fractions import Fraction

import av
import numpy as np
import pytest

import video.io as vio
from video.io import SamplerConfig, VideoLoadConfig, available_backends, load_video, open_video, sample_indices

N = 40
DURATIONS_MS = (20, 40, 90)  # variable frame rate: frame i lasts DURATIONS_MS[i % 3]


def _frame(i: int, size: int) -> np.ndarray:
    """Frame i is recognisable: red level 6 i, a green line at row 3 i."""
    img = np.zeros((size, size, 3), np.uint8)
    img[:, :, 0] = (i * 6) % 256
    img[(i * 3) % size, :, 1] = 255
    return img


def write_bframes_mp4(path, codec: str, vfr: bool, size: int = 64) -> list[float]:
    """Writes N frames with B-frames (x264 bframes=3, or MPEG-4 part 2 max_b_frames=2) and
    millisecond pts; returns each frame's presentation time in seconds."""
    opts = {"x264-params": "bframes=3:b-adapt=0:keyint=12"} if codec == "libx264" else {}
    times, t = [], 0
    with av.open(str(path), "w") as c:
        s = c.add_stream(codec, rate=25, options=opts)
        s.width = s.height = size
        s.pix_fmt = "yuv420p"
        if codec == "mpeg4":
            s.codec_context.max_b_frames, s.codec_context.gop_size = 2, 12
        s.codec_context.time_base = Fraction(1, 1000)
        for i in range(N):
            f = av.VideoFrame.from_ndarray(_frame(i, size), format="rgb24")
            f.pts, f.time_base = t, Fraction(1, 1000)
            times.append(t / 1000)
            t += DURATIONS_MS[i % 3] if vfr else 40
            for p in s.encode(f):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    return times


def reference(path) -> np.ndarray:
    with av.open(str(path)) as c:
        return np.stack([f.to_ndarray(format="rgb24") for f in c.decode(video=0)])


@pytest.fixture(scope="module", params=[("libx264", False), ("libx264", True), ("mpeg4", False), ("mpeg4", True)])
def clip(request, tmp_path_factory):
    codec, vfr = request.param
    path = tmp_path_factory.mktemp("bframes") / f"{codec}_{'vfr' if vfr else 'cfr'}.mp4"
    times = write_bframes_mp4(path, codec, vfr)
    with av.open(str(path)) as c:  # the file really has what the test is about
        pkts = [p.pts for p in c.demux(video=0) if p.pts is not None]
    assert any(b < a for a, b in zip(pkts, pkts[1:])), "no B-frames: decode order equals presentation order"
    assert len(set(np.diff(sorted(pkts)))) == (3 if vfr else 1)
    return path, times


BACKENDS = ["torchcodec", "decord", "pyav"]
IDX = [0, 1, 2, 5, 17, 3, 39, 38, 17]  # out of order, repeated, across GOPs


def test_all_backends_import_here():
    assert available_backends() == BACKENDS


@pytest.mark.parametrize("backend", BACKENDS)
def test_same_frames_for_same_indices(clip, backend):
    path, times = clip
    ref = reference(path)
    assert len(ref) == N
    r = open_video(path, backend=backend)
    assert r.num_frames == N
    got = r.get_batch(IDX)
    # which generated frame each decoded one is: the red level identifies it
    assert [int(round(g[..., 0].mean() / 6)) for g in got] == IDX
    assert np.abs(got.astype(int) - ref[IDX].astype(int)).max() <= 1
    np.testing.assert_allclose(r.timestamps(IDX), [times[i] for i in IDX], atol=1e-4)


def test_backends_agree_on_rate_and_sampled_indices(clip):
    path, _ = clip
    readers = [open_video(path, backend=b) for b in BACKENDS]
    assert len({round(r.fps, 6) for r in readers}) == 1
    for cfg in (SamplerConfig("uniform", 7), SamplerConfig("fps", 100, fps=3.0)):
        picks = {tuple(sample_indices(cfg, r.num_frames, r.fps)) for r in readers}
        assert len(picks) == 1


def test_resized_frames_agree_across_backends(clip):
    path, _ = clip
    cfg = {b: VideoLoadConfig(sampler=SamplerConfig("uniform", 6), size=32, backend=b) for b in BACKENDS}
    out = {b: load_video(path, c) for b, c in cfg.items()}
    for b in BACKENDS[1:]:
        assert out[b][0].shape == (6, 32, 32, 3)
        # different scalers (swscale settings, torch) but the same frames
        assert (out[b][0].float() - out["torchcodec"][0].float()).abs().mean() < 3
        np.testing.assert_allclose(out[b][1].numpy(), out["torchcodec"][1].numpy(), atol=1e-4)


def test_decord_falls_back_to_sequential_when_its_key_frames_are_wrong(clip):
    path, _ = clip
    r = open_video(path, backend="decord")
    # decord lists MPEG-4 part 2 key frames in decode order; x264's it gets right
    assert r.sequential == ("mpeg4" in path.name)


def test_auto_prefers_torchcodec_and_falls_back(clip, monkeypatch):
    path, _ = clip
    assert type(open_video(path)).__name__ == "TorchCodecReader"
    monkeypatch.setitem(vio._UNAVAILABLE, "torchcodec", "libavutil.so.57: cannot open shared object file")
    assert type(open_video(path)).__name__ == "DecordReader"
    monkeypatch.setitem(vio._UNAVAILABLE, "decord", "No module named 'decord'")
    assert type(open_video(path)).__name__ == "PyAVReader"
    with pytest.raises(ValueError, match="unknown video backend"):
        open_video(path, backend="opencv")
