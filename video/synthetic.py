"""Procedural "moving shapes" videos: real mp4 files (PyAV, H.264) whose captions depend on
the order of events in time, so a model that ignores time order cannot solve them.

Each clip has two segments. In each segment one coloured shape crosses the frame
horizontally ("moves left" / "moves right"). Caption: "the red square moves left, then the
blue circle moves right". Playing a segment backwards gives the other direction, and
swapping the segments gives the other order, with *the same multiset of frames*: mean
pooling over frames (CLIP4Clip meanP) provably cannot tell these videos apart, a temporal
model can. Same seed, same files.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np

COLORS: dict[str, tuple[int, int, int]] = {
    "red": (230, 40, 40),
    "green": (40, 200, 60),
    "blue": (50, 80, 240),
    "yellow": (235, 220, 40),
}
SHAPES = ("square", "circle", "triangle")
DIRECTIONS = ("left", "right")


@dataclass(frozen=True)
class Event:
    color: str
    shape: str
    direction: str

    def text(self) -> str:
        return f"the {self.color} {self.shape} moves {self.direction}"


def caption(events: tuple[Event, Event]) -> str:
    return f"{events[0].text()}, then {events[1].text()}"


def _draw(frame: np.ndarray, ev: Event, cx: float, cy: float, radius: float) -> None:
    """Draws the shape in place on frame (H, W, 3) uint8."""
    H, W, _ = frame.shape
    yy, xx = np.mgrid[0:H, 0:W]
    if ev.shape == "square":
        m = (np.abs(xx - cx) <= radius) & (np.abs(yy - cy) <= radius)
    elif ev.shape == "circle":
        m = (xx - cx) ** 2 + (yy - cy) ** 2 <= (radius * 1.15) ** 2
    else:  # triangle pointing up
        top = cy - radius
        m = (yy >= top) & (yy <= cy + radius) & (np.abs(xx - cx) <= (yy - top) / 2 + 0.5)
    frame[m] = COLORS[ev.color]


def render_clip(events: tuple[Event, Event], frames_per_event: int = 4, size: int = 64) -> np.ndarray:
    """-> uint8 (2 * frames_per_event, size, size, 3). The shape's x positions are symmetric
    about the centre, so 'left' is exactly 'right' played backwards."""
    radius = size * 0.12
    xs = np.linspace(radius + 1, size - radius - 2, frames_per_event)
    out = np.zeros((2 * frames_per_event, size, size, 3), np.uint8)
    out[:] = 16  # dark grey background
    for s, ev in enumerate(events):
        path = xs[::-1] if ev.direction == "left" else xs
        for i, x in enumerate(path):
            _draw(out[s * frames_per_event + i], ev, x, size / 2 - 0.5, radius)
    return out


def write_mp4(path: str | Path, frames: np.ndarray, fps: int = 8, gop: int = 4, faststart: bool = False) -> None:
    """frames uint8 (T, H, W, 3) -> H.264 mp4 (yuv420p) through ``vlx.io.mp4``. A short GOP
    keeps seeks cheap; crf 18 keeps the synthetic shapes' edges."""
    from vlx.io.mp4 import write_mp4 as _write

    _write(path, frames, fps=fps, gop=gop, crf=18, preset="ultrafast", faststart=faststart)


def all_event_pairs() -> list[tuple[Event, Event]]:
    """Every ordered pair of events with two different coloured shapes."""
    evs = [Event(c, s, d) for c in COLORS for s in SHAPES for d in DIRECTIONS]
    return [(a, b) for a in evs for b in evs if (a.color, a.shape) != (b.color, b.shape)]


def generate_moving_shapes(
    out_dir: str | Path,
    n_train: int = 200,
    n_test: int = 40,
    size: int = 64,
    frames_per_event: int = 4,
    fps: int = 4,
    seed: int = 0,
    progress: bool = False,
) -> Path:
    """Writes ``videos/videoN.mp4``, an MSR-VTT-style ``annotation.json`` (``videos`` with
    ``split``, ``sentences``), a ``train.jsonl``/``test.jsonl`` (``video``, ``caption``) and a
    Video-ChatGPT-style ``qa_train.json``/``qa_test.json``. Returns ``out_dir``.

    Test clips are drawn in groups that share one multiset of frames (both orders, both
    directions), so that order-blind retrieval is at chance within each group. There are
    528 distinct clips (12 coloured shapes); ``n_train`` is capped at 528 - ``n_test``."""
    rng = random.Random(seed)
    out = Path(out_dir)
    (out / "videos").mkdir(parents=True, exist_ok=True)
    # Groups of "confusable" clips: the same two shapes in both orders and all directions
    # (8 clips with one multiset of frames up to direction). Test takes whole groups, so
    # order-blind retrieval is at chance within each; train takes the other groups.
    objects = [(c, s) for c in COLORS for s in SHAPES]
    groups = []
    for i, a in enumerate(objects):
        for b in objects[i + 1 :]:
            g = [(Event(*x, d1), Event(*y, d2)) for x, y in ((a, b), (b, a)) for d1 in DIRECTIONS for d2 in DIRECTIONS]
            rng.shuffle(g)
            groups.append(g)
    rng.shuffle(groups)
    flat = [clip for g in groups for clip in g]
    test = flat[:n_test]
    train = flat[len(test) :][:n_train]  # distinct clips; n_train is capped by what exists
    videos, sentences, qa = [], [], {"train": [], "test": []}
    items = [("train", p) for p in train] + [("test", p) for p in test]
    it = items
    if progress:
        from tqdm import tqdm

        it = tqdm(items, desc="moving shapes", unit="video")
    jsonl = {"train": [], "test": []}
    for i, (split, ev) in enumerate(it):
        vid = f"video{i}"
        write_mp4(out / "videos" / f"{vid}.mp4", render_clip(ev, frames_per_event, size), fps=fps)
        cap = caption(ev)
        # A second phrasing of the same clip: several captions per video, as in MSR-VTT.
        alt = f"first {ev[0].text()}, and afterwards {ev[1].text()}"
        videos.append({"video_id": vid, "id": i, "split": split, "category": 0})
        sentences.append({"video_id": vid, "caption": cap, "sen_id": 2 * i})
        sentences.append({"video_id": vid, "caption": alt, "sen_id": 2 * i + 1})
        jsonl[split].append({"video": f"videos/{vid}.mp4", "caption": cap})
        qa[split].append({"video_name": vid, "Q": "which shape moves first?", "A": f"the {ev[0].color} {ev[0].shape}"})
        qa[split].append(
            {"video_name": vid, "Q": f"where does the {ev[1].color} {ev[1].shape} move?", "A": ev[1].direction}
        )
    (out / "annotation.json").write_text(json.dumps({"videos": videos, "sentences": sentences}, indent=1))
    for split in ("train", "test"):
        (out / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in jsonl[split]))
        (out / f"qa_{split}.json").write_text(json.dumps(qa[split], indent=1))
    return out
