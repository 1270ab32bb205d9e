"""The harness's record store: one JSON line per finished episode in
``<out>/episodes.rank<R>.jsonl`` (through ``vlx.io.jsonl``: appended and fsynced, bad lines
quarantined into ``<file>.bad`` on start, never dropped), the merged view of every rank's
files, waiting for the other ranks, and episode-id selections ("7" or "task/7")."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from vlx.config import ConfigError
from vlx.io.jsonl import JsonlWriter, bad_path, read_jsonl


def rank_file(out: str | Path, rank: int) -> Path:
    return Path(out) / f"episodes.rank{rank}.jsonl"


def read_records(path: str | Path) -> list[dict]:
    """Complete records of one rank file (a torn last line or a corrupt line is skipped)."""
    return read_jsonl(path)


def load_all_records(out: str | Path) -> list[dict]:
    """Every finished episode of every rank in ``out``, deduplicated by episode id, in a
    stable order (task index, episode)."""
    seen: dict[str, dict] = {}
    for p in sorted(Path(out).glob("episodes.rank*.jsonl")):
        for r in read_jsonl(p):
            if "episode_id" in r:
                seen.setdefault(r["episode_id"], r)
    return sorted(seen.values(), key=lambda r: (r.get("task_index", 0), r.get("episode", 0)))


def json_default(o: Any) -> Any:
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    return str(o)


class RecordWriter(JsonlWriter):
    """Appends episode records to one rank file; bad lines found on start are moved to
    ``<file>.bad`` and reported on stderr (every valid record stays)."""

    def __init__(self, path: str | Path):
        super().__init__(path, default=json_default)
        if self.quarantined:
            print(
                f"[embodied] {self.path}: moved {len(self.quarantined)} unreadable line(s) "
                f"(line {', '.join(map(str, self.quarantined))}) to {bad_path(self.path)}; "
                "their episodes will be run again",
                file=sys.stderr,
            )


def wait_for_records(out: Path, ids: set[str], timeout_s: float = 24 * 3600, poll_s: float = 2.0) -> list[dict]:
    """Every rank's records once all of ``ids`` are recorded (the other ranks' shards are
    done); completeness, not marker files, so a resumed run cannot merge a stale state."""
    t0 = time.time()
    while True:
        records = [r for r in load_all_records(out) if r["episode_id"] in ids]
        if len(records) == len(ids):
            return records
        if time.time() - t0 > timeout_s:
            raise TimeoutError(
                f"{out}: {len(ids) - len(records)} episodes still missing after {timeout_s}s "
                "(did a rank die? rerun the same command to resume)"
            )
        time.sleep(poll_s)


EpisodeIds = tuple[set[int], set[str]]


def parse_episode_ids(ids: Iterable[str | int] | str | None, key: str = "video_episodes") -> EpisodeIds:
    """("3,7" or ["3", "push-v3/7"]) -> (episode numbers chosen in every task, full episode
    ids); ``ConfigError`` naming ``key`` for anything else."""
    if ids is None:
        return set(), set()
    if isinstance(ids, str):
        ids = [x for x in ids.split(",")]
    numbers, full = set(), set()
    for x in ids:
        t = str(x).strip()
        head, _, tail = t.rpartition("/")
        if t.isdigit():
            numbers.add(int(t))
        elif head and tail.isdigit():
            full.add(f"{head}/{int(tail)}")
        else:
            raise ConfigError(f"{key}: {t!r} is not an episode number (7) or id (task/7)")
    return numbers, full


def episode_chosen(episode_id: str, chosen: EpisodeIds) -> bool:
    numbers, full = chosen
    return episode_id in full or int(episode_id.rpartition("/")[2]) in numbers


__all__ = [
    "RecordWriter",
    "episode_chosen",
    "json_default",
    "load_all_records",
    "parse_episode_ids",
    "rank_file",
    "read_records",
    "wait_for_records",
]
