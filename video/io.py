"""Video decoding into model-ready uint8 frames, and the frame samplers people use (uniform,
TSN random segments, fixed fps, explicit timestamps).

Three readers behind one interface, picked in this order by ``backend="auto"``: torchcodec
(PyTorch's maintained decoder: exact seeks from a scan of the packets, batched
``get_frames_at``, resize inside the decoder), decord (batched seeks, decoder-side resize;
no release since 2022) and PyAV (sequential decode from the start: slow but exact anywhere).
A backend that is not installed, does not load (torchcodec needs FFmpeg's shared libraries)
or cannot open a file hands over to the next one. Frame index ``i`` means the same frame in
all three: the ``i``-th frame in presentation order, also with B-frames and variable frame
rate; ``fps`` is the stream's average rate from the container header and ``num_frames`` its
header count (a scan when the header has none), so samplers pick the same indices whichever
backend decodes.

Every failure is a ``DataError`` naming the file and the reason (missing/unreadable,
corrupt, truncated, no video stream, zero frames), raised when the file is opened or decoded.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Protocol

import numpy as np
import torch
import torch.nn.functional as F

from vlx.data.errors import DataError

# ---------------------------------------------------------------------------------------
# Samplers: frame indices from (number of frames, native fps). Pure functions, easy to test.
# ---------------------------------------------------------------------------------------


def uniform_indices(num_total: int, num_frames: int) -> np.ndarray:
    """Centres of ``num_frames`` equal segments (CLIP4Clip/eval-time TSN). Repeats frames
    when the clip is shorter than ``num_frames``."""
    return np.minimum(((np.arange(num_frames) + 0.5) * num_total / num_frames).astype(np.int64), num_total - 1)


def tsn_indices(num_total: int, num_frames: int, rng: np.random.Generator) -> np.ndarray:
    """TSN (Wang et al. 2016) training sampler: one random frame from each of ``num_frames``
    equal segments, so every epoch sees other frames in the same temporal order."""
    edges = np.linspace(0, num_total, num_frames + 1)
    lo, hi = (
        np.floor(edges[:-1]).astype(np.int64),
        np.maximum(np.floor(edges[1:]).astype(np.int64), np.floor(edges[:-1]).astype(np.int64) + 1),
    )
    return np.minimum(rng.integers(lo, hi), num_total - 1)


def fps_indices(num_total: int, native_fps: float, target_fps: float, max_frames: int | None = None) -> np.ndarray:
    """Frames at a fixed rate ``target_fps`` from t=0; uniformly thinned to ``max_frames``."""
    duration = num_total / native_fps
    times = np.arange(0.0, duration, 1.0 / target_fps)
    idx = np.minimum(np.round(times * native_fps).astype(np.int64), num_total - 1)
    if max_frames is not None and len(idx) > max_frames:
        idx = idx[uniform_indices(len(idx), max_frames)]
    return idx


def timestamp_indices(num_total: int, native_fps: float, timestamps: Sequence[float]) -> np.ndarray:
    """The frame shown at each time (seconds); times past the end clamp to the last frame."""
    t = np.asarray(timestamps, dtype=np.float64)
    if (t < 0).any():
        raise ValueError(f"timestamps must be >= 0, got {list(timestamps)}")
    return np.minimum(np.floor(t * native_fps + 1e-6).astype(np.int64), num_total - 1)


@dataclass
class SamplerConfig:
    """Which frames to take. ``kind``: uniform | tsn | fps | timestamps."""

    kind: Literal["uniform", "tsn", "fps", "timestamps"] = "uniform"
    num_frames: int = 8
    fps: float = 1.0  # for kind=fps; num_frames caps the count
    timestamps: list[float] = field(default_factory=list)  # for kind=timestamps

    def __post_init__(self) -> None:
        if self.num_frames < 1:
            raise ValueError(f"sampler.num_frames must be >= 1, got {self.num_frames}")
        if self.kind == "fps" and self.fps <= 0:
            raise ValueError(f"sampler.fps must be > 0, got {self.fps}")


def sample_indices(
    cfg: SamplerConfig, num_total: int, native_fps: float, rng: np.random.Generator | None = None
) -> np.ndarray:
    if cfg.kind == "uniform":
        return uniform_indices(num_total, cfg.num_frames)
    if cfg.kind == "tsn":
        return tsn_indices(num_total, cfg.num_frames, rng if rng is not None else np.random.default_rng())
    if cfg.kind == "fps":
        return fps_indices(num_total, native_fps, cfg.fps, cfg.num_frames)
    if cfg.kind == "timestamps":
        return timestamp_indices(num_total, native_fps, cfg.timestamps)
    raise ValueError(f"unknown sampler kind {cfg.kind!r}; expected uniform, tsn, fps or timestamps")


# ---------------------------------------------------------------------------------------
# Readers
# ---------------------------------------------------------------------------------------


class VideoReader(Protocol):
    """One open video. ``get_batch(indices) -> uint8 (T, H, W, 3)``; ``timestamps(indices)
    -> float64 (T,)`` seconds."""

    path: str
    num_frames: int
    fps: float

    def get_batch(self, indices: Sequence[int]) -> np.ndarray: ...

    def timestamps(self, indices: Sequence[int]) -> np.ndarray: ...


def _check_file(path: str) -> None:
    if not os.path.exists(path):
        raise DataError(f"{path}: video file not found")
    if not os.path.isfile(path) or not os.access(path, os.R_OK):
        raise DataError(f"{path}: video file is unreadable (not a regular file or no read permission)")
    if os.path.getsize(path) == 0:
        raise DataError(f"{path}: video file is empty (0 bytes)")


class TorchCodecReader:
    """torchcodec's ``VideoDecoder`` in exact seek mode (frame ``i`` is found from a scan of
    the packets, not from the average rate); ``size=(H, W)`` resizes inside the decoder
    (bilinear, antialiased)."""

    def __init__(self, path: str | Path, size: tuple[int, int] | None = None, num_threads: int = 1):
        from torchcodec.decoders import VideoDecoder  # RuntimeError when FFmpeg's libraries are missing

        self.path = str(path)
        _check_file(self.path)
        self.size = size
        kw: dict = {}
        if size is not None:
            from torchcodec.transforms import Resize

            kw["transforms"] = [Resize(size)]
        try:
            self._dec = VideoDecoder(
                self.path, dimension_order="NHWC", num_ffmpeg_threads=num_threads, seek_mode="exact", **kw
            )
            m = self._dec.metadata
        except Exception as e:
            raise DataError(f"{self.path}: cannot open video (corrupt or truncated file): {_first_line(e)}") from None
        # The header's count (as the other readers report it); frames past the decodable
        # ones then read as truncated, not as a shorter video.
        self._decodable = int(m.num_frames_from_content or 0)
        self.num_frames = int(m.num_frames_from_header or self._decodable)
        if self.num_frames == 0 or self._decodable == 0:
            raise DataError(f"{self.path}: video has zero frames")
        # The container's average rate (frames / duration, FFmpeg's avg_frame_rate, which decord
        # and PyAV report), not torchcodec's header rate (r_frame_rate: 100 for a VFR file whose
        # average is 20.8).
        dur = m.duration_seconds_from_header
        self.fps = float(m.num_frames_from_header / dur if m.num_frames_from_header and dur else m.average_fps or 1.0)
        self._times: dict[int, float] = {}

    def get_batch(self, indices: Sequence[int]) -> np.ndarray:
        idx = [int(i) for i in indices]
        missing = sorted({i for i in idx if i >= self._decodable})
        if missing:
            raise DataError(f"{self.path}: truncated video: frames {missing} of {self.num_frames} could not be decoded")
        try:
            batch = self._dec.get_frames_at(idx)
        except Exception as e:
            raise DataError(
                f"{self.path}: decoding frames {idx} failed (truncated or corrupt data): {_first_line(e)}"
            ) from None
        self._times.update(zip(idx, batch.pts_seconds.tolist()))
        return batch.data.numpy()

    def timestamps(self, indices: Sequence[int]) -> np.ndarray:
        missing = [int(i) for i in indices if int(i) not in self._times]
        if missing:
            self._times.update(zip(missing, self._dec.get_frames_at(missing).pts_seconds.tolist()))
        return np.array([self._times[int(i)] for i in indices], dtype=np.float64)


def _container_key_indices(path: str) -> list[int] | None:
    """Presentation-order indices of the key frames, from the container's packet flags (a
    demux, no decoding); None when PyAV is missing or cannot read the file."""
    try:
        import av

        with av.open(path) as c:
            pts = [(p.pts, p.is_keyframe) for p in c.demux(video=0) if p.pts is not None]
    except Exception:
        return None
    return [i for i, (_, key) in enumerate(sorted(pts)) if key]


class DecordReader:
    """decord's VideoReader; ``size=(H, W)`` makes the decoder scale frames (cheaper than
    scaling full-size RGB afterwards).

    decord seeks to the key frame it believes precedes a frame; with B-frames in some
    containers (MPEG-4 part 2 in mp4, for one) its key-frame list is in decode order and its
    seeks land on later frames. When its list disagrees with the container's packet flags,
    this reader decodes sequentially from the start instead (exact, slower)."""

    def __init__(self, path: str | Path, size: tuple[int, int] | None = None, num_threads: int = 1):
        import decord

        self.path = str(path)
        _check_file(self.path)
        self.size, self._num_threads, self._post_resize = size, num_threads, False
        h, w = size if size is not None else (-1, -1)
        try:
            self._vr = decord.VideoReader(self.path, ctx=decord.cpu(0), width=w, height=h, num_threads=num_threads)
        except Exception as e:  # decord raises DECORDError with a C++ backtrace; keep line 1
            raise DataError(f"{self.path}: cannot open video (corrupt or truncated file): {_first_line(e)}") from None
        self.num_frames = len(self._vr)
        if self.num_frames == 0:
            raise DataError(f"{self.path}: video has zero frames")
        self.fps = float(self._vr.get_avg_fps()) or 1.0
        keys = _container_key_indices(self.path)
        self.sequential = keys is not None and list(self._vr.get_key_indices()) != keys

    def _read(self, indices: list[int]) -> np.ndarray:
        if not self.sequential:
            return self._vr.get_batch(indices).asnumpy()
        want, got = set(indices), {}
        self._vr.seek(0)
        for i in range(max(indices) + 1):
            frame = self._vr.next()
            if i in want:
                got[i] = frame.asnumpy()
        return np.stack([got[i] for i in indices])

    def get_batch(self, indices: Sequence[int]) -> np.ndarray:
        idx = list(map(int, indices))
        try:
            out = self._read(idx)
        except Exception as e:
            if self.size is not None and not self._post_resize and "DECORDArrayCopyFromTo" in str(e):
                # decord's scaler fails for some output widths (buffer alignment): decode at
                # full size and resize in torch instead.
                import decord

                self._vr = decord.VideoReader(self.path, ctx=decord.cpu(0), num_threads=self._num_threads)
                self._post_resize = True
                return self.get_batch(indices)
            raise DataError(
                f"{self.path}: decoding frames {idx} failed (truncated or corrupt data): {_first_line(e)}"
            ) from None
        if self._post_resize:
            out = (
                resize_crop(torch.from_numpy(out), self.size[0], "none").numpy()
                if self.size[0] == self.size[1]
                else _resize_hw(out, self.size)
            )
        return out

    def timestamps(self, indices: Sequence[int]) -> np.ndarray:
        return self._vr.get_frame_timestamp(list(map(int, indices)))[:, 0].astype(np.float64)


class PyAVReader:
    """PyAV fallback: decodes sequentially up to the last requested frame (no seeking, so it
    is exact on any container). Same interface as ``DecordReader``."""

    def __init__(self, path: str | Path, size: tuple[int, int] | None = None, num_threads: int = 1):
        import av

        self.path = str(path)
        _check_file(self.path)
        self.size = size
        try:
            with av.open(self.path) as c:
                if not c.streams.video:
                    raise DataError(f"{self.path}: no video stream in the file")
                s = c.streams.video[0]
                self.fps = float(s.average_rate or s.guessed_rate or 1.0)
                n = s.frames
                if n <= 0:  # some containers do not store a count: count by decoding
                    n = sum(1 for _ in c.decode(video=0))
        except DataError:
            raise
        except Exception as e:
            raise DataError(f"{self.path}: cannot open video (corrupt or truncated file): {_first_line(e)}") from None
        self.num_frames = n
        if n == 0:
            raise DataError(f"{self.path}: video has zero frames")
        self._times: dict[int, float] = {}

    def get_batch(self, indices: Sequence[int]) -> np.ndarray:
        import av

        want = sorted(set(int(i) for i in indices))
        got: dict[int, np.ndarray] = {}
        kw = {"width": self.size[1], "height": self.size[0]} if self.size else {}
        try:
            with av.open(self.path) as c:
                for i, frame in enumerate(c.decode(video=0)):
                    if i in want:
                        got[i] = frame.to_ndarray(format="rgb24", **kw)
                        self._times[i] = float(frame.time) if frame.time is not None else i / self.fps
                    if i >= want[-1]:
                        break
        except Exception as e:
            raise DataError(f"{self.path}: decoding failed (truncated or corrupt data): {_first_line(e)}") from None
        missing = [i for i in want if i not in got]
        if missing:
            raise DataError(f"{self.path}: truncated video: frames {missing} of {self.num_frames} could not be decoded")
        return np.stack([got[int(i)] for i in indices])

    def timestamps(self, indices: Sequence[int]) -> np.ndarray:
        return np.array([self._times.get(int(i), int(i) / self.fps) for i in indices], dtype=np.float64)


def _first_line(e: BaseException) -> str:
    """First line of a backend's message, without decord's '[hh:mm:ss] file.cc:N: ' or
    torchcodec's 'Function, /path/file.cpp:N, ' prefix."""
    text = str(e).strip().splitlines()
    line = text[0] if text else type(e).__name__
    line = re.sub(r"^\[[0-9:]+\] \S+:\d+: ", "", line)
    line = re.sub(r"^\w+, \S+\.cpp:\d+, ", "", line)
    return line[:200]


Backend = Literal["auto", "torchcodec", "decord", "pyav"]
READERS: dict[str, type] = {"torchcodec": TorchCodecReader, "decord": DecordReader, "pyav": PyAVReader}
_UNAVAILABLE: dict[str, str] = {}  # backend -> why it cannot be imported (checked once per process)


def available_backends() -> list[str]:
    """The backends that import here, in the order ``auto`` tries them."""
    out = []
    for name, module in (("torchcodec", "torchcodec.decoders"), ("decord", "decord"), ("pyav", "av")):
        if name not in _UNAVAILABLE:
            try:
                __import__(module)
            except Exception as e:  # torchcodec raises RuntimeError/OSError when FFmpeg's libs are missing
                _UNAVAILABLE[name] = _first_line(e)
        if name not in _UNAVAILABLE:
            out.append(name)
    return out


def open_video(
    path: str | Path, size: tuple[int, int] | None = None, backend: Backend = "auto", num_threads: int = 1
) -> VideoReader:
    """Opens ``path`` with ``backend``; ``"auto"`` tries torchcodec, then decord, then PyAV,
    moving on when a backend is not importable or cannot open the file (each lacks some
    codecs/containers). When all fail, the last reason is raised (PyAV's are the most
    specific, e.g. "no video stream")."""
    if backend != "auto":
        if backend not in READERS:
            raise ValueError(f"unknown video backend {backend!r}; expected auto, {', '.join(READERS)}")
        return READERS[backend](path, size, num_threads)
    names = available_backends()
    if not names:
        raise DataError(f"{path}: no video backend imports here ({_UNAVAILABLE}); install torchcodec, decord or av")
    err: DataError | None = None
    for name in names:
        try:
            return READERS[name](path, size, num_threads)
        except DataError as e:
            if "cannot open" not in str(e):  # a definite answer (missing file, zero frames)
                raise
            err = e
    assert err is not None
    raise err


# ---------------------------------------------------------------------------------------
# One call: path -> (frames (T, H, W, 3) uint8, timestamps (T,))
# ---------------------------------------------------------------------------------------


def _resize_hw(frames: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    x = torch.from_numpy(frames).permute(0, 3, 1, 2).float()
    x = F.interpolate(x, size=size, mode="bilinear", antialias=True, align_corners=False)
    return x.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()


def resize_crop(frames: torch.Tensor, size: int, crop: Literal["center", "none"] = "center") -> torch.Tensor:
    """uint8 (T, H, W, C) -> uint8 (T, size, size, C): shorter side to ``size`` then centre
    crop (``crop="center"``), or a direct squash (``"none"``)."""
    T, H, W, C = frames.shape
    x = frames.permute(0, 3, 1, 2).float()
    if crop == "none":
        x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    else:
        s = size / min(H, W)
        nh, nw = max(size, round(H * s)), max(size, round(W * s))
        if (nh, nw) != (H, W):
            x = F.interpolate(x, size=(nh, nw), mode="bilinear", antialias=True, align_corners=False)
        top, left = (nh - size) // 2, (nw - size) // 2
        x = x[:, :, top : top + size, left : left + size]
    return x.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).contiguous()


@dataclass
class VideoLoadConfig:
    sampler: SamplerConfig = field(default_factory=SamplerConfig)
    size: int = 224  # output frames are size x size
    crop: Literal["center", "none"] = "none"  # none: the decoder squashes to size x size
    backend: Backend = "auto"
    num_threads: int = 1


def load_video(
    path: str | Path, cfg: VideoLoadConfig, rng: np.random.Generator | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """-> (frames uint8 (T, size, size, 3), timestamps float32 (T,) seconds)."""
    decoder_size = (cfg.size, cfg.size) if cfg.crop == "none" else None
    reader = open_video(path, decoder_size, cfg.backend, cfg.num_threads)
    idx = sample_indices(cfg.sampler, reader.num_frames, reader.fps, rng)
    frames = torch.from_numpy(reader.get_batch(idx))
    if frames.shape[0] != len(idx) or frames.ndim != 4:
        raise DataError(f"{path}: decoder returned frames of shape {tuple(frames.shape)} for {len(idx)} indices")
    if cfg.crop != "none":
        frames = resize_crop(frames, cfg.size, cfg.crop)
    return frames, torch.from_numpy(reader.timestamps(idx)).float()


# ImageNet/CLIP normalisation used by the core's image pipeline.
def frames_to_model(frames: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """uint8 (..., T, H, W, 3) -> float (..., T, 3, H, W), normalised."""
    x = frames.movedim(-1, -3).float().div_(255.0)
    m = torch.tensor(mean, dtype=x.dtype, device=x.device).view(3, 1, 1)
    s = torch.tensor(std, dtype=x.dtype, device=x.device).view(3, 1, 1)
    return (x - m) / s
