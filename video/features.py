"""Decode a video set once and cache per-video frame features as sharded safetensors, so that
fine-tunes train on features instead of pixels. Resumable after a kill: shards are written
to a temp file and renamed, and a rerun skips every video already in a finished shard.

Layout of ``out_dir``: ``shard-00000.safetensors`` ... (tensor per video id: (T, D) frame
features; ``__timestamps__/<id>``: (T,) seconds), ``bad.jsonl`` (videos that failed, with
the reason), ``index.json`` (video id -> shard, written when all are done).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch.utils.data import Dataset

from video.io import VideoLoadConfig, load_video
from vlx.data.errors import DataError

TS_PREFIX = "__timestamps__/"


def _shards(out_dir: Path) -> list[Path]:
    return sorted(out_dir.glob("shard-*.safetensors"))


def done_video_ids(out_dir: str | Path) -> set[str]:
    done: set[str] = set()
    for shard in _shards(Path(out_dir)):
        with safe_open(str(shard), framework="pt") as f:
            done.update(k for k in f.keys() if not k.startswith(TS_PREFIX))
    return done


def _write_shard(out_dir: Path, n: int, tensors: dict[str, torch.Tensor]) -> None:
    final = out_dir / f"shard-{n:05d}.safetensors"
    tmp = out_dir / f".tmp-{n:05d}-{os.getpid()}.safetensors"
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(tmp))
    os.replace(tmp, final)  # atomic: a kill leaves either no shard or a whole one


class _Decode(Dataset):
    """records -> (video_id, frames uint8 (T, H, W, 3), timestamps) or (video_id, None, reason),
    so DataLoader workers decode ahead while the device encodes."""

    def __init__(self, records: list[dict], load: VideoLoadConfig):
        self.records, self.load = records, load

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, i: int):
        r = self.records[i]
        try:
            frames, ts = load_video(r["video"], self.load)
        except DataError as e:
            return r["video_id"], None, str(e)
        return r["video_id"], frames, ts


@torch.no_grad()
def extract_features(
    records: list[dict],
    load: VideoLoadConfig,
    encode: Callable[[torch.Tensor], torch.Tensor],
    out_dir: str | Path,
    shard_size: int = 64,
    skip_bad: bool = True,
    progress: bool = True,
    batch_size: int = 8,
    num_workers: int = 0,
    device: str | torch.device = "cpu",
) -> dict[str, Any]:
    """``encode(frames uint8 (N, H, W, 3) on device) -> (N, D)``: called once per batch of
    ``batch_size`` videos with all their frames (N = videos x T), so normalisation and the
    encoder run on ``device``; ``num_workers`` DataLoader workers decode ahead. Returns
    counts (done, skipped as already present, bad)."""
    from torch.utils.data import DataLoader

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for stale in out.glob(".tmp-*"):
        stale.unlink()
    done = done_video_ids(out)
    next_shard = 1 + max((int(p.stem.split("-")[1]) for p in _shards(out)), default=-1)
    todo = [r for r in records if r["video_id"] not in done]
    seen: set[str] = set()
    todo = [r for r in todo if not (r["video_id"] in seen or seen.add(r["video_id"]))]  # one entry per video
    device = torch.device(device)
    loader = DataLoader(
        _Decode(todo, load),
        batch_size=batch_size,
        num_workers=num_workers,
        collate_fn=list,
        pin_memory=device.type == "cuda",
    )
    from tqdm import tqdm

    bar = tqdm(total=len(todo), desc="features", unit="video", disable=not progress, dynamic_ncols=True)
    buf: dict[str, torch.Tensor] = {}
    n_bad = 0
    for batch in loader:
        good = [(vid, f, ts) for vid, f, ts in batch if f is not None]
        for vid, _, reason in (b for b in batch if b[1] is None):
            if not skip_bad:
                raise DataError(reason)
            n_bad += 1
            with (out / "bad.jsonl").open("a") as f:
                f.write(json.dumps({"video_id": vid, "reason": reason}) + "\n")
        if good:
            T = [f.shape[0] for _, f, _ in good]
            frames = torch.cat([f for _, f, _ in good]).to(device, non_blocking=True)  # uint8 (sum T, H, W, 3)
            feats = encode(frames).float().cpu().split(T)  # one copy back per batch
            for (vid, _, ts), feat in zip(good, feats):
                buf[vid] = feat.contiguous()
                buf[TS_PREFIX + vid] = ts
        bar.update(len(batch))
        if len(buf) >= 2 * shard_size:
            _write_shard(out, next_shard, buf)
            next_shard, buf = next_shard + 1, {}
    bar.close()
    if buf:
        _write_shard(out, next_shard, buf)
    index = {}
    for shard in _shards(out):
        with safe_open(str(shard), framework="pt") as f:
            index.update({k: shard.name for k in f.keys() if not k.startswith(TS_PREFIX)})
    (out / "index.json").write_text(json.dumps(index, indent=0))
    return {
        "extracted": len(todo) - n_bad,
        "already_done": len(records) - len(todo),
        "bad": n_bad,
        "total_features": len(index),
    }


class FeatureDataset(Dataset):
    """Cached features for ``records``: item ``{"features": (T, D), "timestamps", "video_index",
    "caption"}`` (one item per caption with ``pairs=True``). Videos with no features (bad
    ones) are left out and counted in ``missing``."""

    def __init__(self, records: list[dict], features_dir: str | Path, pairs: bool = True):
        self.dir = Path(features_dir)
        index_file = self.dir / "index.json"
        if not index_file.is_file():
            raise DataError(f"{index_file}: feature index not found (run the feature extraction to completion first)")
        index = json.loads(index_file.read_text())
        self.records = records
        self.missing = [r["video_id"] for r in records if r["video_id"] not in index]
        self.items = [
            (i, j)
            for i, r in enumerate(records)
            if r["video_id"] in index
            for j in range(len(r.get("captions", [0])) if pairs else 1)
        ]
        self._feats: dict[str, torch.Tensor] = {}
        for shard in sorted(set(index.values())):
            with safe_open(str(self.dir / shard), framework="pt") as f:
                for k in f.keys():
                    self._feats[k] = f.get_tensor(k)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict[str, Any]:
        ri, ci = self.items[i]
        r = self.records[ri]
        item = {
            "features": self._feats[r["video_id"]],
            "timestamps": self._feats[TS_PREFIX + r["video_id"]],
            "video_index": ri,
            "video_id": r["video_id"],
        }
        if "captions" in r:
            item["caption"] = r["captions"][ci]
        return item

    def on_epoch_end(self, epoch: int) -> dict[str, Any]:
        return {"videos_without_features": len(self.missing)}
