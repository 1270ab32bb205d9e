"""Reading a LeRobotDataset v3.0 folder (layout in ``embodied.lerobot``) into vlx demo
episodes (``embodied.demos.Episode``), which the plan-conditioned policy trains on. Works for
folders vlx wrote and for ones lerobot wrote: without vlx's extra columns the episode's
conditioning text per frame is the frame's task. Every problem is a one-line ``DataError``
naming the file."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from vlx.data.errors import DataError

CODEBASE_VERSION = "v3.0"
IMAGE_PREFIX = "observation.images."
LEROBOT_FORMAT = "lerobot-v3.0"


def is_lerobot(root: str | Path) -> bool:
    return (Path(root) / "meta" / "info.json").is_file()


def read_info(root: str | Path) -> dict[str, Any]:
    """``meta/info.json``, checked: codebase_version v3.0 and the fields the reader uses."""
    p = Path(root) / "meta" / "info.json"
    if not p.is_file():
        raise DataError(f"{p}: not found; expected a LeRobotDataset v3.0 folder")
    try:
        info = json.loads(p.read_text())
    except json.JSONDecodeError as e:
        raise DataError(f"{p}: invalid JSON at line {e.lineno}: {e.msg}") from None
    v = info.get("codebase_version")
    if v != CODEBASE_VERSION:
        raise DataError(
            f"{p}: codebase_version {v!r}; vlx reads LeRobotDataset {CODEBASE_VERSION!r} only "
            "(convert older datasets with lerobot's convert_dataset_v21_to_v30)"
        )
    missing = [k for k in ("fps", "features", "data_path") if k not in info]
    if missing:
        raise DataError(f"{p}: missing {', '.join(missing)}")
    return info


def _read_parquet(path: Path) -> Any:
    import pyarrow.parquet as pq

    if not path.is_file():
        raise DataError(f"{path}: not found (named by the dataset's meta)")
    try:
        return pq.read_table(path)
    except Exception as e:  # noqa: BLE001 - pyarrow raises several types for a bad file
        raise DataError(f"{path}: unreadable parquet ({type(e).__name__}: {str(e)[:120]})") from None


def _column(table: Any, name: str, where: Path) -> np.ndarray:
    """A column as numpy; list columns as (N, n)."""
    import pyarrow as pa

    if name not in table.column_names:
        raise DataError(f"{where}: no column {name!r}")
    col = table.column(name).combine_chunks()
    if pa.types.is_list(col.type) or pa.types.is_fixed_size_list(col.type) or pa.types.is_large_list(col.type):
        rows = col.to_pylist()
        return np.asarray(rows, dtype=np.float32) if rows else np.zeros((0, 0), np.float32)
    return col.to_numpy(zero_copy_only=False)


def _tasks(root: Path) -> list[str]:
    """task_index -> task string from ``meta/tasks.parquet`` (task as the pandas index column
    ``task`` or as a plain string column)."""
    p = root / "meta" / "tasks.parquet"
    t = _read_parquet(p)
    idx = _column(t, "task_index", p).astype(int)
    text_col = next((n for n in t.column_names if n != "task_index"), None)
    if text_col is None:
        raise DataError(f"{p}: no task string column (expected the index 'task')")
    texts = [str(x) for x in t.column(text_col).to_pylist()]
    out = [""] * (int(idx.max()) + 1 if len(idx) else 0)
    for i, s in zip(idx, texts, strict=True):
        out[i] = s
    return out


def read_lerobot(
    root: str | Path,
    benchmark: str | None = None,
    tasks: Sequence[str] | None = None,
    cameras: Sequence[str] | None = None,
    images: bool = True,
) -> list[Any]:
    """Episodes of a LeRobotDataset v3.0 folder. ``cameras``: names after
    ``observation.images.`` that must be present (default: every video feature);
    ``benchmark`` / ``tasks``: checked / filtered with the vlx meta where vlx wrote it (a
    dataset lerobot wrote has no benchmark task names: its episodes are all kept)."""
    from embodied.episode import Episode
    from vlx.io.mp4 import read_mp4

    root = Path(root)
    info = read_info(root)
    info_p = root / "meta" / "info.json"
    fps = float(info["fps"])
    feats = info["features"]
    if "action" not in feats:
        raise DataError(f"{info_p}: no 'action' feature; vlx trains on actions")
    stored = [
        k[len(IMAGE_PREFIX) :] for k, f in feats.items() if k.startswith(IMAGE_PREFIX) and f.get("dtype") == "video"
    ]
    want = stored if cameras is None else list(cameras)
    for c in want:
        if c not in stored:
            raise DataError(
                f"{info_p}: camera {c!r} not in this dataset; video features: {', '.join(stored) or 'none'}"
            )
    task_names = _tasks(root)
    ep_files = sorted((root / "meta" / "episodes").glob("chunk-*/file-*.parquet"))
    if not ep_files:
        raise DataError(f"{root / 'meta' / 'episodes'}: no chunk-*/file-*.parquet episode files")
    data_cache: dict[Path, Any] = {}
    video_cache: dict[Path, np.ndarray] = {}
    out = []
    for ep_file in ep_files:
        for row in _read_parquet(ep_file).to_pylist():
            ei = int(row["episode_index"])
            meta = json.loads(row["vlx/meta"]) if row.get("vlx/meta") else {}
            if benchmark is not None and meta.get("benchmark", benchmark) != benchmark:
                raise DataError(
                    f"{ep_file}: episode {ei} from benchmark {meta.get('benchmark')!r}, expected {benchmark!r}"
                )
            if tasks and meta and meta.get("task") not in set(tasks):  # foreign episodes: no task names
                continue
            dp = root / info["data_path"].format(chunk_index=row["data/chunk_index"], file_index=row["data/file_index"])
            if dp not in data_cache:
                data_cache[dp] = _read_parquet(dp)
            table = data_cache[dp]
            rows = np.nonzero(_column(table, "episode_index", dp) == ei)[0]
            T = int(row["length"])
            if len(rows) != T:
                raise DataError(f"{dp}: episode {ei} has {len(rows)} rows, meta/episodes says length {T}")
            rows = rows[np.argsort(_column(table, "frame_index", dp)[rows])]

            def col(
                name: str, default: np.ndarray, t: Any = table, dp: Path = dp, rows: np.ndarray = rows
            ) -> np.ndarray:
                return _column(t, name, dp)[rows] if name in t.column_names else default

            actions = col("action", np.zeros((T, 0), np.float32)).astype(np.float32).reshape(T, -1)
            state = col("observation.state", np.zeros((T, 0), np.float32)).astype(np.float32).reshape(T, -1)
            final = np.asarray(row.get("vlx/final_observation.state") or state[-1], np.float32)
            obs = np.concatenate([state, final.reshape(1, -1)])
            frame_tasks = [task_names[i] for i in col("task_index", np.zeros(T, np.int64)).astype(int)]
            plan_texts = row.get("vlx/plan_texts")
            if plan_texts is not None and "step_index" in table.column_names:
                step_index = col("step_index", np.zeros(T)).astype(np.int16)
            else:  # a foreign dataset: each distinct frame task is one "plan step"
                plan_texts = list(dict.fromkeys(frame_tasks))
                step_index = np.asarray([plan_texts.index(t) for t in frame_tasks], np.int16)
            if not meta:
                meta = dict(format=LEROBOT_FORMAT, task=frame_tasks[0] if frame_tasks else "", episode=ei)
            meta = {
                **meta,
                "instruction": meta.get("instruction", (row.get("tasks") or [""])[0]),
                "plan_texts": list(plan_texts),
                "cameras": want,
                "source": str(root),
            }
            meta.setdefault("success", bool(col("next.success", np.zeros(T, bool)).any()))
            ep = Episode(
                ep_file,
                meta,
                obs,
                actions,
                col("next.reward", np.zeros(T, np.float32)).astype(np.float32),
                col("next.success", np.zeros(T, bool)).astype(bool),
                step_index,
            )
            if images:
                for c in want:
                    key = IMAGE_PREFIX + c
                    vp = root / info["video_path"].format(
                        video_key=key,
                        chunk_index=row[f"videos/{key}/chunk_index"],
                        file_index=row[f"videos/{key}/file_index"],
                    )
                    if vp not in video_cache:
                        if not vp.is_file():
                            raise DataError(f"{vp}: not found (named by {ep_file})")
                        video_cache[vp] = read_mp4(vp)
                    start = int(round(float(row[f"videos/{key}/from_timestamp"]) * fps))
                    frames = video_cache[vp][start : start + T]
                    if len(frames) != T:
                        raise DataError(f"{vp}: {len(frames)} frames from {start} for episode {ei} of length {T}")
                    ep.rgb[c] = frames
            out.append(ep)
    return out


__all__ = ["CODEBASE_VERSION", "is_lerobot", "read_info", "read_lerobot"]
