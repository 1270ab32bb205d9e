"""Shared fixtures: a few real mp4 clips (moving shapes) and bad files of each kind."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest

from video.synthetic import all_event_pairs, generate_moving_shapes, render_clip, write_mp4


@pytest.fixture(scope="session")
def shapes_dir(tmp_path_factory) -> Path:
    return generate_moving_shapes(tmp_path_factory.mktemp("moving_shapes"), n_train=6, n_test=4, size=64, seed=0)


@pytest.fixture(scope="session")
def bad_videos(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("bad")
    frames = np.concatenate([render_clip(all_event_pairs()[0], 4, 64)] * 4)
    write_mp4(d / "good.mp4", frames)
    write_mp4(d / "faststart.mp4", frames, faststart=True)
    b = (d / "good.mp4").read_bytes()
    (d / "truncated.mp4").write_bytes(b[: len(b) // 2])  # moov atom lost
    b = (d / "faststart.mp4").read_bytes()
    (d / "truncated_data.mp4").write_bytes(b[: len(b) // 2])  # header intact, frames cut
    rng = np.random.default_rng(0)
    (d / "corrupt.mp4").write_bytes(rng.integers(0, 256, 4000, dtype=np.uint8).tobytes())
    c = av.open(str(d / "zero.avi"), "w")  # a video stream with no frames
    s = c.add_stream("mpeg4", rate=4)
    s.width, s.height, s.pix_fmt = 64, 64, "yuv420p"
    c.start_encoding()
    c.close()
    (d / "empty.mp4").write_bytes(b"")
    (d / "a_folder.mp4").mkdir()
    return {p.stem: p for p in d.iterdir()} | {"missing": d / "missing.mp4"}


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """These tests use tiny tensors; on the shared 2-core CI box intra-op threads only add
    contention (measured 10-20x slower steps with 2 threads under load)."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
