from __future__ import annotations

import av
import numpy as np
import pytest
import torch

from video.io import (
    PyAVReader,
    SamplerConfig,
    VideoLoadConfig,
    fps_indices,
    load_video,
    open_video,
    resize_crop,
    timestamp_indices,
    tsn_indices,
    uniform_indices,
)
from video.synthetic import render_clip
from vlx.data.errors import DataError


def naive_frames(path) -> np.ndarray:
    with av.open(str(path)) as c:
        return np.stack([f.to_ndarray(format="rgb24") for f in c.decode(video=0)])


def test_uniform_and_tsn_indices():
    assert uniform_indices(16, 4).tolist() == [2, 6, 10, 14]
    assert uniform_indices(3, 6).tolist() == [0, 0, 1, 1, 2, 2]
    rng = np.random.default_rng(0)
    seen = set()
    for _ in range(50):
        idx = tsn_indices(16, 4, rng)
        # one frame from each segment [4k, 4k+4), in order
        assert all(4 * k <= i < 4 * k + 4 for k, i in enumerate(idx))
        seen.add(tuple(idx))
    assert len(seen) > 10  # random, not fixed


def test_fps_and_timestamp_indices():
    assert fps_indices(40, native_fps=10, target_fps=2).tolist() == [0, 5, 10, 15, 20, 25, 30, 35]
    assert fps_indices(40, 10, 2, max_frames=4).tolist() == [5, 15, 25, 35]
    assert timestamp_indices(40, 10, [0.0, 0.55, 3.9, 100]).tolist() == [0, 5, 39, 39]
    with pytest.raises(ValueError):
        timestamp_indices(40, 10, [-1])


@pytest.mark.parametrize("backend", ["decord", "pyav"])
def test_reader_matches_naive_decode(bad_videos, backend):
    path = bad_videos["good"]
    ref = naive_frames(path)  # (32, 64, 64, 3)
    r = open_video(path, backend=backend)
    assert r.num_frames == 32 and abs(r.fps - 8) < 1e-6
    idx = [0, 5, 6, 31]
    got = r.get_batch(idx)
    assert got.dtype == np.uint8 and got.shape == (4, 64, 64, 3)
    assert np.abs(got.astype(int) - ref[idx].astype(int)).max() <= 2  # same decoder, same frames
    np.testing.assert_allclose(r.timestamps(idx), np.array(idx) / 8, atol=1e-6)


def test_load_video_samplers_and_resize(bad_videos):
    path = bad_videos["good"]
    f, t = load_video(path, VideoLoadConfig(sampler=SamplerConfig("uniform", 4), size=32))
    assert f.shape == (4, 32, 32, 3) and f.dtype == torch.uint8
    np.testing.assert_allclose(t.numpy(), np.array([4, 12, 20, 28]) / 8, atol=1e-6)
    f, t = load_video(
        path, VideoLoadConfig(sampler=SamplerConfig("timestamps", timestamps=[0.5, 1.0]), size=48, crop="center")
    )
    assert f.shape == (2, 48, 48, 3)
    np.testing.assert_allclose(t.numpy(), [0.5, 1.0], atol=1e-6)
    f, t = load_video(path, VideoLoadConfig(sampler=SamplerConfig("fps", num_frames=100, fps=2), size=32))
    assert len(t) == 8  # 4 s at 2 fps
    # decoder-side resize agrees with a torch resize of full frames (same content)
    full, _ = load_video(path, VideoLoadConfig(sampler=SamplerConfig("uniform", 4), size=64))
    small, _ = load_video(path, VideoLoadConfig(sampler=SamplerConfig("uniform", 4), size=32))
    ref = resize_crop(full, 32, "none")
    assert (small.float() - ref.float()).abs().mean() < 8


def test_frames_encode_the_motion(tmp_path):
    """The shape's x-centre in decoded frames follows the rendered path (order kept)."""
    from video.synthetic import Event, write_mp4

    ev = (Event("red", "square", "right"), Event("blue", "circle", "left"))
    write_mp4(tmp_path / "v.mp4", render_clip(ev, 4, 64), fps=4)
    f, _ = load_video(tmp_path / "v.mp4", VideoLoadConfig(sampler=SamplerConfig("uniform", 8), size=64))
    xs = []
    for fr in f.numpy().astype(int):
        m = np.abs(fr - 16).sum(-1) > 100
        xs.append(np.nonzero(m)[1].mean())
    assert np.all(np.diff(xs[:4]) > 0) and np.all(np.diff(xs[4:]) < 0)
    assert f[1, 32, int(xs[1]), 0] > 150  # red first
    assert f[5, 32, int(xs[5]), 2] > 150  # blue second


@pytest.mark.parametrize(
    "name,reason",
    [
        ("missing", "not found"),
        ("a_folder", "unreadable"),
        ("empty", "empty"),
        ("corrupt", "corrupt"),
        ("truncated", "truncated"),
        ("truncated_data", "truncated"),
        ("zero", "zero frames"),
    ],
)
def test_bad_videos_raise_one_line_error_naming_file(bad_videos, name, reason):
    path = bad_videos[name]
    with pytest.raises(DataError) as e:
        load_video(path, VideoLoadConfig(size=32))
    msg = str(e.value)
    assert str(path) in msg and reason in msg and "\n" not in msg


def test_pyav_truncated_data_is_reported(bad_videos):
    with pytest.raises(DataError, match="truncated"):
        r = PyAVReader(bad_videos["truncated_data"])
        r.get_batch([r.num_frames - 1])


@pytest.mark.parametrize("size", [16, 48])
def test_decord_sizes_its_scaler_rejects_fall_back_to_torch_resize(bad_videos, size):
    f, _ = load_video(
        bad_videos["good"], VideoLoadConfig(sampler=SamplerConfig("uniform", 4), size=size, backend="decord")
    )
    assert f.shape == (4, size, size, 3)
    ref, _ = load_video(
        bad_videos["good"], VideoLoadConfig(sampler=SamplerConfig("uniform", 4), size=size, backend="pyav")
    )
    assert (f.float() - ref.float()).abs().mean() < 10
