"""H.264 mp4 files through PyAV: ``Mp4Writer`` streams frames to an encoder thread,
``write_mp4`` writes a whole clip, ``read_mp4`` decodes one (for checks and tests).

The writer encodes in a background thread so that whoever produces the frames (a simulator
rendering a rollout) does not wait for the encoder: ``write`` only queues the frame (a bounded
queue, so memory stays flat when the encoder is the slower side). An encoder error is
raised again by the next ``write`` or by ``close``.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

_DONE = object()


class Mp4Writer:
    """Frames (H, W, 3) uint8 RGB -> ``path`` (H.264, yuv420p, ``fps`` frames per second).

    gop: keyframe interval (None: the codec's default; short GOPs keep seeks cheap);
    crf / preset: libx264's quality and speed settings (None: its defaults, crf 23 / medium);
    faststart: put the index at the front (streamable). Odd sizes are cropped by one pixel
    (yuv420p needs even sizes). ``background=False`` encodes in the calling thread.
    """

    def __init__(
        self,
        path: str | Path,
        fps: int = 30,
        gop: int | None = None,
        crf: int | None = None,
        preset: str | None = None,
        faststart: bool = False,
        background: bool = True,
        queue_size: int = 32,
    ):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.fps, self.gop, self.crf, self.preset, self.faststart = fps, gop, crf, preset, faststart
        self.frames = 0
        self._container: Any = None
        self._stream: Any = None
        self._error: BaseException | None = None
        self._closed = False
        self._queue: queue.Queue | None = None
        self._thread: threading.Thread | None = None
        if background:
            self._queue = queue.Queue(maxsize=queue_size)
            self._thread = threading.Thread(target=self._worker, name=f"mp4:{self.path.name}", daemon=True)
            self._thread.start()

    # -- encoding (in the worker thread, or inline)
    def _open(self, h: int, w: int) -> None:
        import av

        opts = {"movflags": "faststart"} if self.faststart else {}
        self._container = av.open(str(self.path), mode="w", options=opts)
        stream = self._container.add_stream("libx264", rate=self.fps)
        stream.width, stream.height = w - w % 2, h - h % 2
        stream.pix_fmt = "yuv420p"
        if self.gop is not None:
            stream.codec_context.gop_size = self.gop
        codec_opts = {}
        if self.crf is not None:
            codec_opts["crf"] = str(self.crf)
        if self.preset is not None:
            codec_opts["preset"] = self.preset
        if codec_opts:
            stream.options = codec_opts
        self._stream = stream

    def _encode(self, frame: np.ndarray) -> None:
        import av

        if self._stream is None:
            self._open(*frame.shape[:2])
        s = self._stream
        img = np.ascontiguousarray(frame[: s.height, : s.width])
        for packet in s.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
            self._container.mux(packet)

    def _finish(self) -> None:
        if self._stream is not None:
            for packet in self._stream.encode():
                self._container.mux(packet)
        if self._container is not None:
            self._container.close()

    def _worker(self) -> None:
        assert self._queue is not None
        while True:
            item = self._queue.get()
            if item is _DONE:
                break
            if self._error is not None:
                continue  # drain, so that a blocked ``write`` wakes up
            try:
                self._encode(item)
            except BaseException as e:  # noqa: BLE001  re-raised in the caller's thread
                self._error = e
        try:
            if self._error is None:
                self._finish()
            elif self._container is not None:
                self._container.close()
        except BaseException as e:  # noqa: BLE001
            self._error = self._error or e

    # -- public
    def write(self, frame: np.ndarray) -> None:
        if self._closed:
            raise ValueError(f"{self.path}: writer is closed")
        if self._error is not None:
            raise RuntimeError(f"{self.path}: encoding failed: {self._error}") from self._error
        frame = np.asarray(frame)
        if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
            raise ValueError(f"{self.path}: expected (H, W, 3) uint8 frames, got {frame.shape} {frame.dtype}")
        self.frames += 1
        if self._queue is None:
            self._encode(frame)
        else:
            self._queue.put(frame)

    def close(self) -> None:
        """Flush the encoder and close the file (waits for the encoder thread)."""
        if self._closed:
            return
        self._closed = True
        if self._queue is None:
            self._finish()
        else:
            self._queue.put(_DONE)
            assert self._thread is not None
            self._thread.join()
        if self._error is not None:
            raise RuntimeError(f"{self.path}: encoding failed: {self._error}") from self._error
        if self.frames == 0:
            raise ValueError(f"{self.path}: no frames written")

    def __enter__(self) -> Mp4Writer:
        return self

    def __exit__(self, exc_type: Any, *rest: object) -> None:
        if exc_type is None:
            self.close()
        else:  # do not mask the caller's error with an encoder one
            try:
                self.close()
            except Exception:  # noqa: BLE001
                pass


def write_mp4(
    path: str | Path,
    frames: Iterable[np.ndarray],
    fps: int = 30,
    gop: int | None = None,
    crf: int | None = None,
    preset: str | None = None,
    faststart: bool = False,
) -> Path:
    """Write ``frames`` ((T, H, W, 3) array or iterable of (H, W, 3) uint8) to ``path``."""
    with Mp4Writer(path, fps=fps, gop=gop, crf=crf, preset=preset, faststart=faststart) as w:
        for f in frames:
            w.write(f)
    return Path(path)


def read_mp4(path: str | Path) -> np.ndarray:
    """Every frame of ``path`` decoded with PyAV -> (T, H, W, 3) uint8 RGB."""
    import av

    with av.open(str(path)) as c:
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    if not frames:
        raise ValueError(f"{path}: no video frames")
    return np.stack(frames)


__all__ = ["Mp4Writer", "read_mp4", "write_mp4"]
