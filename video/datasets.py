"""Video-text annotation formats people have, read into one record list, and a torch Dataset
that decodes clips and can skip-and-count bad videos.

Formats: MSR-VTT json (``videos``/``sentences``), MSVD (``AllVideoDescriptions.txt``-style
``<video_id> <caption>`` lines), WebVid CSV (``videoid``, ``name``, ``page_dir``),
VideoInstruct-100K / Video-ChatGPT QA json (``video_id``|``video_name``, ``q``|``Q``,
``a``|``A``), and plain jsonl (``video``, ``caption``).

A record is ``{"video": absolute path, "video_id": str, "captions": [str, ...]}`` or, for
QA, ``{"video", "video_id", "question", "answer"}``.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch.utils.data import Dataset

from video.io import VideoLoadConfig, load_video
from vlx.data.errors import DataError

VIDEO_EXTS = (".mp4", ".avi", ".webm", ".mkv", ".mov")


def _read_json(path: Path) -> Any:
    if not path.is_file():
        raise DataError(f"{path}: annotation file not found")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise DataError(f"{path}: invalid JSON at line {e.lineno}: {e.msg}") from None


def inside_root(root: Path, rel: str, where: str) -> Path:
    """root/rel, refused (one-line DataError naming ``where``) when ``rel`` is absolute or
    climbs out of ``root`` with ``..``: annotation files come from other people, and a path
    such as ``/etc/passwd`` must not be read as a video. The check is on the path as
    written, so symbolic links inside the root (datasets on other disks) still work."""
    root_n = os.path.normpath(os.path.abspath(root))
    full = os.path.normpath(os.path.join(root_n, rel))
    if full != root_n and not full.startswith(root_n + os.sep):
        raise DataError(f"{where}: video path {rel!r} is outside the dataset root {root_n}")
    return Path(full)


def _video_path(root: Path, video_id: str, ext: str | None, where: str) -> Path:
    """root/video_id[.ext] (kept inside root); with no ext, the first existing common
    extension (else .mp4, so the error at load time names a concrete file)."""
    if ext is not None:
        return inside_root(root, f"{video_id}{ext}", where)
    if Path(video_id).suffix.lower() in VIDEO_EXTS:
        return inside_root(root, video_id, where)
    for e in VIDEO_EXTS:
        p = inside_root(root, f"{video_id}{e}", where)
        if p.exists():
            return p
    return inside_root(root, f"{video_id}.mp4", where)


def _need(obj: Any, key: str, where: str) -> Any:
    if not isinstance(obj, dict) or key not in obj:
        raise DataError(f"{where}: missing key {key!r}")
    return obj[key]


def load_msrvtt(
    ann_file: str | Path, video_root: str | Path, split: str | None = None, ext: str | None = ".mp4"
) -> list[dict]:
    """MSR-VTT ``train_val_videodatainfo.json`` layout: ``videos`` [{video_id, split}],
    ``sentences`` [{video_id, caption}]. ``split`` keeps only videos of that split (entries
    without a ``split`` are kept)."""
    ann_file, root = Path(ann_file), Path(video_root)
    data = _read_json(ann_file)
    videos = _need(data, "videos", str(ann_file))
    sentences = _need(data, "sentences", str(ann_file))
    order: list[str] = []
    for i, v in enumerate(videos):
        vid = str(_need(v, "video_id", f"{ann_file}: videos[{i}]"))
        if split is None or v.get("split", split) == split:
            order.append(vid)
    caps: dict[str, list[str]] = {v: [] for v in order}
    for i, s in enumerate(sentences):
        vid = str(_need(s, "video_id", f"{ann_file}: sentences[{i}]"))
        cap = _need(s, "caption", f"{ann_file}: sentences[{i}]")
        if vid in caps:
            caps[vid].append(str(cap))
    missing = [v for v in order if not caps[v]]
    if missing:
        raise DataError(f"{ann_file}: video {missing[0]!r} has no sentence ({len(missing)} such videos)")
    return [
        {"video": str(_video_path(root, v, ext, f"{ann_file}: video {v!r}")), "video_id": v, "captions": caps[v]}
        for v in order
    ]


def load_msvd(
    ann_file: str | Path, video_root: str | Path, split_file: str | Path | None = None, ext: str | None = None
) -> list[dict]:
    """MSVD ``AllVideoDescriptions.txt``: ``<video_id> <caption words>`` per line, ``#``
    comments; several lines per video. ``split_file``: one video id per line to keep."""
    ann_file, root = Path(ann_file), Path(video_root)
    if not ann_file.is_file():
        raise DataError(f"{ann_file}: annotation file not found")
    caps: dict[str, list[str]] = {}
    for ln, line in enumerate(ann_file.read_text().splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split(maxsplit=1)
        if len(parts) < 2:
            raise DataError(f"{ann_file}:{ln}: expected '<video_id> <caption>', got {line!r}")
        caps.setdefault(parts[0], []).append(parts[1])
    keep = list(caps)
    if split_file is not None:
        split_file = Path(split_file)
        if not split_file.is_file():
            raise DataError(f"{split_file}: split file not found")
        wanted = [l.strip() for l in split_file.read_text().splitlines() if l.strip()]
        unknown = [w for w in wanted if w not in caps]
        if unknown:
            raise DataError(f"{split_file}: video id {unknown[0]!r} has no caption in {ann_file}")
        keep = wanted
    return [
        {"video": str(_video_path(root, v, ext, f"{ann_file}: video {v!r}")), "video_id": v, "captions": caps[v]}
        for v in keep
    ]


def load_webvid_csv(csv_file: str | Path, video_root: str | Path, ext: str = ".mp4") -> list[dict]:
    """WebVid-2M/10M csv (``videoid,contentUrl,duration,page_dir,name``); the downloader's
    layout ``root/page_dir/videoid.mp4``, or ``root/videoid.mp4`` when there is no page_dir."""
    csv_file, root = Path(csv_file), Path(video_root)
    if not csv_file.is_file():
        raise DataError(f"{csv_file}: annotation file not found")
    out = []
    with csv_file.open(newline="") as f:
        reader = csv.DictReader(f)
        for col in ("videoid", "name"):
            if col not in (reader.fieldnames or []):
                raise DataError(f"{csv_file}: missing column {col!r} (have {reader.fieldnames})")
        for i, row in enumerate(reader):
            vid, name = (row.get("videoid") or "").strip(), (row.get("name") or "").strip()
            if not vid or not name:
                raise DataError(f"{csv_file}: row {i + 2}: empty 'videoid' or 'name'")
            sub = (row.get("page_dir") or "").strip()
            rel = f"{sub}/{vid}{ext}" if sub else f"{vid}{ext}"
            path = inside_root(root, rel, f"{csv_file}: row {i + 2}")
            out.append({"video": str(path), "video_id": vid, "captions": [name]})
    return out


def load_video_qa(json_file: str | Path, video_root: str | Path, ext: str | None = None) -> list[dict]:
    """VideoInstruct-100K (``video_id``, ``q``, ``a``) or Video-ChatGPT benchmark QA
    (``video_name``, ``Q``, ``A``; consistency files with ``Q1``/``Q2`` use ``Q1``)."""
    json_file, root = Path(json_file), Path(video_root)
    data = _read_json(json_file)
    if not isinstance(data, list):
        raise DataError(f"{json_file}: expected a JSON list of QA entries, got {type(data).__name__}")
    out = []
    for i, e in enumerate(data):
        where = f"{json_file}: entry {i}"
        if not isinstance(e, dict):
            raise DataError(f"{where}: expected an object")
        vid = next((e[k] for k in ("video_id", "video_name", "video") if k in e), None)
        q = next((e[k] for k in ("q", "Q", "question", "Q1") if k in e), None)
        a = next((e[k] for k in ("a", "A", "answer") if k in e), None)
        for name, val in (("video_id|video_name", vid), ("q|Q|question", q), ("a|A|answer", a)):
            if val is None:
                raise DataError(f"{where}: missing key {name}")
        path = _video_path(root, str(vid), ext, where)
        out.append({"video": str(path), "video_id": str(vid), "question": str(q), "answer": str(a)})
    return out


def load_jsonl(jsonl_file: str | Path, video_root: str | Path | None = None) -> list[dict]:
    """One ``{"video": path, "caption": str | [str]}`` per line; paths are relative to
    ``video_root`` (default: the jsonl's folder) and must stay inside it."""
    jsonl_file = Path(jsonl_file)
    if not jsonl_file.is_file():
        raise DataError(f"{jsonl_file}: annotation file not found")
    root = Path(video_root) if video_root is not None else jsonl_file.parent
    out = []
    for ln, line in enumerate(jsonl_file.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            r = json.loads(line)
        except json.JSONDecodeError as e:
            raise DataError(f"{jsonl_file}:{ln}: invalid JSON: {e.msg}") from None
        video = _need(r, "video", f"{jsonl_file}:{ln}")
        cap = _need(r, "caption", f"{jsonl_file}:{ln}")
        caps = [cap] if isinstance(cap, str) else list(cap)
        if not caps or not all(isinstance(c, str) and c.strip() for c in caps):
            raise DataError(f"{jsonl_file}:{ln}: 'caption' must be a non-empty string or list of strings")
        path = inside_root(root, str(video), f"{jsonl_file}:{ln}")
        out.append({"video": str(path), "video_id": Path(str(video)).stem, "captions": caps})
    if not out:
        raise DataError(f"{jsonl_file}: no records")
    return out


@dataclass
class AnnotationConfig:
    """Where the annotations and videos are. ``format``: msrvtt | msvd | webvid | qa | jsonl."""

    format: Literal["msrvtt", "msvd", "webvid", "qa", "jsonl"] = "jsonl"
    file: str = ""
    video_root: str | None = None  # default: the annotation file's folder
    split: str | None = None  # msrvtt: split name; msvd: a split list file
    ext: str | None = None


def load_annotations(cfg: AnnotationConfig) -> list[dict]:
    """One dispatch point for every format (a small table, not an if-ladder)."""
    root = cfg.video_root if cfg.video_root is not None else str(Path(cfg.file).parent)
    loaders: dict[str, Callable[[], list[dict]]] = {
        "msrvtt": lambda: load_msrvtt(cfg.file, root, cfg.split, cfg.ext or ".mp4"),
        "msvd": lambda: load_msvd(cfg.file, root, cfg.split, cfg.ext),
        "webvid": lambda: load_webvid_csv(cfg.file, root, cfg.ext or ".mp4"),
        "qa": lambda: load_video_qa(cfg.file, root, cfg.ext),
        "jsonl": lambda: load_jsonl(cfg.file, cfg.video_root),
    }
    if cfg.format not in loaders:
        raise DataError(f"unknown annotation format {cfg.format!r}; expected one of {sorted(loaders)}")
    return loaders[cfg.format]()


class VideoDataset(Dataset):
    """Decodes clips for ``records``. ``pairs=True`` yields one item per (video, caption)
    with ``video_index`` so several captions of a video are positives for one another
    (ClipLoss ``ids``); otherwise one item per video (first caption / the QA pair).

    ``skip_bad=True``: a video that fails to decode is remembered and replaced by the next
    good one, so a run never stops on one bad file and each bad file is tried once per epoch
    (not once per item that lands on it). The memory is a flag per record in shared memory,
    so DataLoader workers (persistent or not) see each other's finds and the main process
    sees all of them: ``bad_report()`` gives the count and files, ``on_epoch_end`` prints
    them and clears the flags. ``cache=True`` keeps decoded uint8 frames in memory
    (deterministic samplers only; for small sets such as the tiny recipes).

    Random samplers (TSN) draw from a generator seeded by (``seed``, item, epoch); the epoch
    is shared with the workers too (``set_epoch``, or ``on_epoch_end`` moving to the next),
    so persistent workers draw new frames every epoch.

    Item: ``{"frames": uint8 (T, H, W, 3), "timestamps": (T,), "video_index": int,
    "caption": str, ...}``."""

    def __init__(
        self,
        records: list[dict],
        load: VideoLoadConfig,
        pairs: bool = False,
        skip_bad: bool = False,
        cache: bool = False,
        seed: int = 0,
    ):
        if not records:
            raise DataError("VideoDataset: no records")
        self.records, self.load, self.skip_bad, self.seed = records, load, skip_bad, seed
        self.cache = cache and load.sampler.kind != "tsn"
        self._frames: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
        self.items: list[tuple[int, int]] = []  # (record index, caption index)
        for i, r in enumerate(records):
            n = len(r.get("captions", [None])) if pairs else 1
            self.items.extend((i, j) for j in range(n))
        # Shared with DataLoader workers (fork and spawn alike): bad flag per record, epoch.
        self._bad_flags = torch.zeros(len(records), dtype=torch.uint8).share_memory_()
        self._epoch = torch.zeros(1, dtype=torch.int64).share_memory_()
        self.reasons: dict[int, str] = {}  # record -> reason, for the failures seen in this process
        self.decode_attempts = 0  # in this process

    def __len__(self) -> int:
        return len(self.items)

    def set_epoch(self, epoch: int) -> None:
        self._epoch.fill_(int(epoch))

    def frames(self, ri: int, rng: np.random.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        if self.cache and ri in self._frames:
            return self._frames[ri]
        self.decode_attempts += 1
        out = load_video(self.records[ri]["video"], self.load, rng)
        if self.cache:
            self._frames[ri] = out
        return out

    def __getitem__(self, i: int) -> dict[str, Any]:
        # The trainer's sampler may hand out indices that carry their epoch (``i.epoch``);
        # otherwise the epoch shared through ``set_epoch`` / ``on_epoch_end``.
        epoch = getattr(i, "epoch", None)
        epoch = int(self._epoch.item()) if epoch is None else int(epoch)
        i = int(i)
        for attempt in range(len(self.items)):
            k = (i + attempt) % len(self.items)
            ri, ci = self.items[k]
            if self.skip_bad and self._bad_flags[ri]:
                continue  # failed before in this epoch (in any worker)
            rec = self.records[ri]
            # Per-(item, epoch) seed: TSN offsets vary between epochs, reproducibly.
            rng = np.random.default_rng([self.seed, k, epoch])
            try:
                frames, ts = self.frames(ri, rng)
            except DataError as e:
                if not self.skip_bad:
                    raise
                self._bad_flags[ri] = 1
                self.reasons[ri] = str(e)
                continue
            item: dict[str, Any] = {"frames": frames, "timestamps": ts, "video_index": ri, "video_id": rec["video_id"]}
            if "captions" in rec:
                item["caption"] = rec["captions"][ci]
            if "question" in rec:
                item["question"], item["answer"] = rec["question"], rec["answer"]
            return item
        example = next(iter(self.reasons.values()), "see the earlier skips")
        raise DataError(f"all {len(self.records)} videos failed to decode, e.g. {example}")

    def bad_report(self) -> dict[str, Any]:
        bad = self._bad_flags.nonzero().flatten().tolist()
        return {"bad_videos": len(bad), "bad_files": sorted(self.records[i]["video"] for i in bad)}

    def on_epoch_end(self, epoch: int) -> dict[str, Any]:
        """Prints and returns the count of skipped videos (from every worker), clears it and
        moves the sampling epoch to ``epoch + 1``."""
        rep = self.bad_report()
        if rep["bad_videos"]:
            bad = self._bad_flags.nonzero().flatten().tolist()[:5]
            shown = [self.reasons.get(i, f"{self.records[i]['video']}: failed in a loader worker") for i in bad]
            print(f"[video] epoch {epoch}: skipped {rep['bad_videos']} bad video(s): " + "; ".join(shown))
        self._bad_flags.zero_()
        self.reasons = {}
        self.set_epoch(epoch + 1)
        return {"bad_videos": rep["bad_videos"]}


class _WithEpoch(int):
    """An index that carries its epoch (as the trainer's sampler indices do)."""

    def __new__(cls, value: int, epoch: int):
        obj = super().__new__(cls, value)
        obj.epoch = epoch
        return obj


def collate_video(items: list[dict]) -> dict[str, Any]:
    """Stacks frames to uint8 (B, T, H, W, 3) (or cached ``features`` to (B, T, D)); ``video_index`` ->
    LongTensor ``ids``; strings stay lists."""
    key = "features" if "features" in items[0] else "frames"  # cached features (B, T, D)
    out: dict[str, Any] = {
        key: torch.stack([it[key] for it in items]),
        "timestamps": torch.stack([it["timestamps"] for it in items]),
        "ids": torch.tensor([it["video_index"] for it in items], dtype=torch.long),
    }
    for key in ("caption", "question", "answer", "video_id"):
        if key in items[0]:
            out[key] = [it[key] for it in items]
    return out


def caption_word_bag(caption: str) -> tuple[str, ...]:
    """Order-free key of a caption: its sorted lower-case words (punctuation dropped)."""
    return tuple(sorted(w.strip(".,;:!?") for w in caption.lower().split() if w.strip(".,;:!?")))


class HardNegativeGroups(Dataset):
    """Batches of whole groups of videos whose (first) captions use the same words in a
    different order ("A, then B" vs "B, then A"): the hard negatives that only a
    time-order-aware model can tell apart. Each item is the list of the group's items of
    ``base`` (every caption of every video in it); ``collate_groups`` flattens them, so
    ``train.batch_size`` counts groups."""

    def __init__(self, base: VideoDataset):
        self.base = base
        groups: dict[tuple[str, ...], list[int]] = {}
        for k, (ri, _) in enumerate(base.items):
            rec = base.records[ri]
            key = caption_word_bag(rec["captions"][0]) if "captions" in rec else (rec["video_id"],)
            groups.setdefault(key, []).append(k)
        self.groups = list(groups.values())

    def __len__(self) -> int:
        return len(self.groups)

    def __getitem__(self, i: int) -> list[dict[str, Any]]:
        epoch = getattr(i, "epoch", None)
        if epoch is not None:  # pass the sampler's epoch on to the group's items
            return [self.base[_WithEpoch(k, epoch)] for k in self.groups[int(i)]]
        return [self.base[k] for k in self.groups[i]]

    def set_epoch(self, epoch: int) -> None:
        if hasattr(self.base, "set_epoch"):  # cached-feature datasets have no epoch
            self.base.set_epoch(epoch)

    def on_epoch_end(self, epoch: int) -> dict[str, Any]:
        return self.base.on_epoch_end(epoch)


def collate_groups(collate: Callable[[list[dict]], dict]) -> Callable[[list[list[dict]]], dict]:
    return lambda groups: collate([it for g in groups for it in g])
