"""LeRobotDataset v3.0 on disk, written and read with pyarrow and ``vlx.io.mp4`` (the
``lerobot`` package pulls its own torch, so vlx does not depend on it). Layout, as lerobot
documents it for ``codebase_version`` ``"v3.0"``::

    meta/info.json                                  schema, fps, path templates, totals
    meta/stats.json                                 per feature: min, max, mean, std, count
    meta/tasks.parquet                              task string (pandas index "task") -> task_index
    meta/episodes/chunk-000/file-000.parquet        one row per episode: length, tasks, where its
                                                    rows and video frames are, per-episode stats
    data/chunk-000/file-000.parquet                 one row per frame
    videos/<video_key>/chunk-000/file-000.mp4       every episode's frames of one camera, in order

vlx writes one data file and one video file per camera (chunk 0, file 0; lerobot starts a new
file past ``data_files_size_in_mb`` / ``video_files_size_in_mb``); the reader follows the
chunk and file indices of each episode, so it reads datasets split across files too.

Mapping from a vlx demo (``embodied.demos.Episode``, T actions): frame t holds
``observation.state`` = obs[t], ``action`` = actions[t], ``next.reward``, ``next.success``,
``next.done`` (last frame), ``step_index`` (plan step) and ``observation.images.<cam>`` =
rgb[cam][t]; the episode's task is its instruction. What LeRobot has no field for (the final
observation, the plan texts, the demo's meta) goes in extra episode columns ``vlx/...``, which
lerobot ignores. Read back, an episode has T video frames per camera (the frame after the last
action is not stored) and obs of T+1 rows. Depth is not written (8-bit video cannot hold mm).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from embodied.lerobot_read import CODEBASE_VERSION, IMAGE_PREFIX, is_lerobot, read_info, read_lerobot
from vlx.data.errors import DataError

DATA_PATH = "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
VIDEO_PATH = "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4"
EPISODES_PATH = "meta/episodes/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"


# ----------------------------------------------------------------------------- stats


def _stats(x: np.ndarray, image: bool = False) -> dict[str, np.ndarray]:
    """min/max/mean/std/count over frames (axis 0); images (N, H, W, 3) uint8 per channel in
    [0, 1] with shape (3, 1, 1), as lerobot stores them."""
    if image:
        x = x.reshape(-1, 3).astype(np.float64) / 255.0
        s = {k: f(x, axis=0) for k, f in (("min", np.min), ("max", np.max), ("mean", np.mean), ("std", np.std))}
        return {**{k: v.reshape(3, 1, 1) for k, v in s.items()}, "count": np.array([len(x)])}
    x = x.astype(np.float64).reshape(len(x), -1)
    return {
        "min": x.min(0),
        "max": x.max(0),
        "mean": x.mean(0),
        "std": x.std(0),
        "count": np.array([len(x)]),
    }


def _merge_stats(parts: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Pooled stats of several parts (weighted mean, pooled variance)."""
    n = np.array([float(p["count"][0]) for p in parts])
    w = n / n.sum()
    mean = sum(wi * p["mean"] for wi, p in zip(w, parts, strict=True))
    var = sum(wi * (p["std"] ** 2 + (p["mean"] - mean) ** 2) for wi, p in zip(w, parts, strict=True))
    return {
        "min": np.min([p["min"] for p in parts], axis=0),
        "max": np.max([p["max"] for p in parts], axis=0),
        "mean": mean,
        "std": np.sqrt(var),
        "count": np.array([int(n.sum())]),
    }


# ----------------------------------------------------------------------------- writing


def _write_tasks(path: Path, tasks: list[str]) -> None:
    """tasks.parquet as lerobot writes it with pandas: a ``task_index`` column indexed by the
    task string; the pandas schema metadata marks ``task`` as the index (written by hand
    because vlx does not depend on pandas)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    pandas_meta = {
        "index_columns": ["task"],
        "column_indexes": [],
        "columns": [
            {
                "name": "task_index",
                "field_name": "task_index",
                "pandas_type": "int64",
                "numpy_type": "int64",
                "metadata": None,
            },
            {"name": "task", "field_name": "task", "pandas_type": "unicode", "numpy_type": "object", "metadata": None},
        ],
        "creator": {"library": "pyarrow", "version": pa.__version__},
        "pandas_version": "2.2.0",
    }
    schema = pa.schema(
        [("task_index", pa.int64()), ("task", pa.string())], metadata={"pandas": json.dumps(pandas_meta)}
    )
    table = pa.table({"task_index": np.arange(len(tasks), dtype=np.int64), "task": tasks}, schema=schema)
    pq.write_table(table, path)


def _feature(dtype: str, shape: Sequence[int], names: Any = None) -> dict[str, Any]:
    return {"dtype": dtype, "shape": list(shape), "names": names}


def write_lerobot(
    episodes: Sequence[Any],
    root: str | Path,
    fps: int,
    robot_type: str | None = None,
    crf: int | None = None,
) -> Path:
    """Write vlx demo ``episodes`` (``embodied.demos.Episode``) as a LeRobotDataset v3.0 under
    ``root`` (mapping in the module docstring); every episode must have the same state and
    action sizes and cameras. Returns ``root``. ``crf``: libx264 quality (None: its default)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from vlx.io.mp4 import Mp4Writer

    root = Path(root)
    eps = [e for e in episodes if len(e) > 0]
    if not eps:
        raise DataError(f"{root}: no non-empty episodes to write as a LeRobot dataset")
    D, A = eps[0].obs.shape[1], eps[0].actions.shape[1]
    cams = sorted(eps[0].rgb)
    for e in eps:
        if e.obs.shape[1] != D or e.actions.shape[1] != A or sorted(e.rgb) != cams:
            raise DataError(f"{e.path}: state/action sizes or cameras differ from {eps[0].path}; write them apart")
    if cams:
        h, w = eps[0].rgb[cams[0]].shape[1:3]
        if h % 2 or w % 2:
            raise DataError(f"{eps[0].path}: frames {w}x{h}; H.264 (yuv420p) video needs even sizes")
    tasks: list[str] = []
    for e in eps:
        if e.meta.get("instruction", "") not in tasks:
            tasks.append(e.meta.get("instruction", ""))
    (root / "meta").mkdir(parents=True, exist_ok=True)
    writers = {
        c: Mp4Writer(
            root / VIDEO_PATH.format(video_key=IMAGE_PREFIX + c, chunk_index=0, file_index=0), fps=fps, crf=crf
        )
        for c in cams
    }
    cols: dict[str, list[np.ndarray]] = {}
    ep_rows: list[dict[str, Any]] = []
    all_stats: dict[str, list[dict[str, np.ndarray]]] = {}
    offset = 0
    try:
        for ei, e in enumerate(eps):
            T = len(e)
            frame = {
                "observation.state": e.obs[:T].astype(np.float32),
                "action": e.actions.astype(np.float32),
                "next.reward": np.asarray(e.rewards, np.float32),
                "next.success": np.asarray(e.success, bool),
                "next.done": np.arange(T) == T - 1,
                "step_index": np.asarray(e.step_index, np.int64),
                "timestamp": (np.arange(T) / fps).astype(np.float32),
                "frame_index": np.arange(T, dtype=np.int64),
                "episode_index": np.full(T, ei, np.int64),
                "index": np.arange(offset, offset + T, dtype=np.int64),
                "task_index": np.full(T, tasks.index(e.meta.get("instruction", "")), np.int64),
            }
            row: dict[str, Any] = {
                "episode_index": ei,
                "tasks": [e.meta.get("instruction", "")],
                "length": T,
                "data/chunk_index": 0,
                "data/file_index": 0,
                "dataset_from_index": offset,
                "dataset_to_index": offset + T,
            }
            for k, v in frame.items():
                cols.setdefault(k, []).append(v)
                st = _stats(v)
                all_stats.setdefault(k, []).append(st)
                for s, sv in st.items():
                    row[f"stats/{k}/{s}"] = sv.tolist()
            for c in cams:
                key, frames = IMAGE_PREFIX + c, e.rgb[c][:T]
                start = writers[c].frames
                for f in frames:
                    writers[c].write(f)
                row[f"videos/{key}/chunk_index"] = 0
                row[f"videos/{key}/file_index"] = 0
                row[f"videos/{key}/from_timestamp"] = start / fps
                row[f"videos/{key}/to_timestamp"] = (start + T) / fps
                st = _stats(frames, image=True)
                all_stats.setdefault(key, []).append(st)
                for s, sv in st.items():
                    row[f"stats/{key}/{s}"] = sv.tolist()
            row["meta/episodes/chunk_index"] = 0
            row["meta/episodes/file_index"] = 0
            row["vlx/final_observation.state"] = e.obs[T].astype(np.float32).tolist()
            row["vlx/plan_texts"] = list(e.meta.get("plan_texts", []))
            row["vlx/meta"] = json.dumps(e.meta)
            ep_rows.append(row)
            offset += T
    finally:
        for wr in writers.values():
            wr.close()
    data = {k: np.concatenate(v) for k, v in cols.items()}
    arrays = {}
    for k, v in data.items():
        if v.ndim == 2:  # fixed-length float32 lists, as HF datasets stores Sequence(length=n)
            arrays[k] = pa.FixedSizeListArray.from_arrays(pa.array(v.reshape(-1)), v.shape[1])
        else:
            arrays[k] = pa.array(v)
    data_file = root / DATA_PATH.format(chunk_index=0, file_index=0)
    data_file.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table(arrays), data_file)
    ep_file = root / EPISODES_PATH.format(chunk_index=0, file_index=0)
    ep_file.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(ep_rows), ep_file)
    _write_tasks(root / "meta" / "tasks.parquet", tasks)
    stats = {k: {s: v.tolist() for s, v in _merge_stats(parts).items()} for k, parts in all_stats.items()}
    (root / "meta" / "stats.json").write_text(json.dumps(stats, indent=2))
    features = {
        "observation.state": _feature("float32", [D]),
        "action": _feature("float32", [A]),
        "next.reward": _feature("float32", [1]),
        "next.success": _feature("bool", [1]),
        "next.done": _feature("bool", [1]),
        "step_index": _feature("int64", [1]),
    }
    for c in cams:
        h, w = eps[0].rgb[c].shape[1:3]
        features[IMAGE_PREFIX + c] = {
            **_feature("video", [int(h), int(w), 3], ["height", "width", "channels"]),
            "info": {
                "video.height": int(h),
                "video.width": int(w),
                "video.codec": "h264",
                "video.pix_fmt": "yuv420p",
                "video.is_depth_map": False,
                "video.fps": fps,
                "video.channels": 3,
                "has_audio": False,
            },
        }
    for k in ("timestamp",):
        features[k] = _feature("float32", [1])
    for k in ("frame_index", "episode_index", "index", "task_index"):
        features[k] = _feature("int64", [1])
    info = {
        "codebase_version": CODEBASE_VERSION,
        "robot_type": robot_type,
        "total_episodes": len(eps),
        "total_frames": offset,
        "total_tasks": len(tasks),
        "chunks_size": 1000,
        "data_files_size_in_mb": 100,
        "video_files_size_in_mb": 500,
        "fps": fps,
        "splits": {"train": f"0:{len(eps)}"},
        "data_path": DATA_PATH,
        "video_path": VIDEO_PATH if cams else None,
        "features": features,
    }
    (root / "meta" / "info.json").write_text(json.dumps(info, indent=4))
    return root


__all__ = ["CODEBASE_VERSION", "is_lerobot", "read_info", "read_lerobot", "write_lerobot"]
