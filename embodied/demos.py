"""Reading collected demonstrations (the files ``embodied.collect`` writes; layout in its
docstring): one episode, every episode of a folder, the folder's ``dataset.json``. Every
problem is a one-line ``DataError`` naming the file; a file that would decompress to more
than ``max_mib`` is refused before anything is decompressed."""

from __future__ import annotations

import json
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from vlx.data.errors import DataError

FORMAT = "vlx-embodied-demo"


@dataclass
class Episode:
    """One demonstration: arrays as in the module docstring, ``meta`` as a dict."""

    path: Path
    meta: dict[str, Any]
    obs: np.ndarray
    actions: np.ndarray
    rewards: np.ndarray
    success: np.ndarray
    step_index: np.ndarray
    rgb: dict[str, np.ndarray] = field(default_factory=dict)
    depth: dict[str, np.ndarray] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.actions)

    def text_at(self, t: int) -> str:
        """The plan-step conditioning text of action ``t``."""
        texts = self.meta["plan_texts"]
        return texts[min(int(self.step_index[t]), len(texts) - 1)] if texts else ""


def check_npz_size(path: str | Path, max_mib: float | None) -> int:
    """The bytes ``path`` (an ``.npz``) decompresses to, from its zip directory (nothing is
    decompressed); a ``DataError`` when that exceeds ``max_mib`` (a shared file that would
    inflate a few KiB into GiBs of memory). ``zipfile`` never yields more than a member's
    declared size, so the declared sizes bound what ``np.load`` can allocate."""
    with zipfile.ZipFile(path) as zf:
        total = sum(i.file_size for i in zf.infolist())
    if max_mib is not None and total > max_mib * 2**20:
        raise DataError(
            f"{path}: decompresses to {total / 2**20:.1f} MiB, over the limit of {max_mib:g} MiB "
            "(max_demo_mib); raise it if you trust this file"
        )
    return total


MAX_DEMO_MIB = 2048.0  # one demo episode: 500 steps of 2 cameras at 224x224 RGB-D is ~300 MiB


def load_episode(
    path: str | Path,
    benchmark: str | None = None,
    cameras: Sequence[str] | None = None,
    images: bool = True,
    max_mib: float | None = MAX_DEMO_MIB,
) -> Episode:
    """Read one demo file. ``benchmark``: the benchmark it must come from; ``cameras``: the
    camera streams that must be present (default: all stored; ``images=False`` skips them);
    ``max_mib``: the most the file may decompress to (None: no limit). Every problem is a
    one-line ``DataError`` naming the file (and the camera)."""
    p = Path(path)
    if not p.is_file():
        raise DataError(f"{p}: demo file not found")
    try:
        check_npz_size(p, max_mib)
        with np.load(p, allow_pickle=False) as z:
            names = set(z.files)
            if "meta" not in names:
                raise DataError(f"{p}: not a {FORMAT} file (no 'meta' entry)")
            meta = json.loads(str(z["meta"]))
            if meta.get("format") != FORMAT:
                raise DataError(f"{p}: not a {FORMAT} file (format {meta.get('format')!r})")
            if benchmark is not None and meta.get("benchmark") != benchmark:
                raise DataError(f"{p}: demo from benchmark {meta.get('benchmark')!r}, expected {benchmark!r}")
            stored = list(meta.get("cameras", []))
            want = stored if cameras is None else list(cameras)
            for c in want:
                if c not in stored:
                    raise DataError(
                        f"{p}: camera {c!r} not in this demo; recorded cameras: {', '.join(stored) or 'none'}"
                    )
            missing = [k for k in ("obs", "actions", "rewards", "success", "step_index") if k not in names]
            if missing:
                raise DataError(f"{p}: missing arrays {missing}")
            ep = Episode(p, meta, z["obs"], z["actions"], z["rewards"], z["success"], z["step_index"])
            if images:
                for c in want:
                    ep.rgb[c] = z[f"rgb_{c}"]
                    if meta.get("depth") and f"depth_{c}" in names:
                        ep.depth[c] = z[f"depth_{c}"]
    except DataError:
        raise
    except (zipfile.BadZipFile, EOFError, OSError, ValueError, KeyError, json.JSONDecodeError) as e:
        raise DataError(
            f"{p}: truncated or corrupt demo file ({type(e).__name__}: {str(e)[:120]}); "
            "delete it and re-run `vlx embodied collect` with the same --out"
        ) from None
    T = len(ep.actions)
    if len(ep.obs) != T + 1 or len(ep.step_index) != T:
        raise DataError(
            f"{p}: inconsistent lengths: obs {len(ep.obs)}, actions {T}, step_index {len(ep.step_index)} "
            "(expected T+1, T, T)"
        )
    for c, frames in ep.rgb.items():
        if len(frames) != T + 1:
            raise DataError(f"{p}: camera {c!r} has {len(frames)} frames for {T} actions (expected {T + 1})")
    return ep


def read_dataset_json(root: str | Path) -> dict[str, Any]:
    p = Path(root) / "dataset.json"
    if not p.is_file():
        raise DataError(f"{p}: not found; expected a directory written by `vlx embodied collect`")
    try:
        doc = json.loads(p.read_text())
    except json.JSONDecodeError as e:
        raise DataError(f"{p}: invalid JSON at line {e.lineno}: {e.msg}") from None
    if doc.get("format") != FORMAT:
        raise DataError(f"{p}: not a {FORMAT} dataset (format {doc.get('format')!r})")
    return doc


def list_episodes(root: str | Path, tasks: Sequence[str] | None = None) -> list[Path]:
    """Every episode file under ``root`` (sorted by task, episode); tasks filters."""
    root = Path(root)
    files = sorted(p for p in root.glob("episodes/*/ep_*.npz"))
    if tasks:
        files = [p for p in files if p.parent.name in set(tasks)]
    return files


def load_demos(
    root: str | Path,
    benchmark: str | None = None,
    tasks: Sequence[str] | None = None,
    cameras: Sequence[str] | None = None,
    images: bool = True,
    only_success: bool = False,
    max_mib: float | None = MAX_DEMO_MIB,
) -> list[Episode]:
    """All episodes of a collected directory, checked against ``benchmark`` and ``cameras``."""
    doc = read_dataset_json(root)
    bench = doc.get("settings", {}).get("benchmark")
    if benchmark is not None and bench != benchmark:
        raise DataError(f"{Path(root) / 'dataset.json'}: demos from benchmark {bench!r}, expected {benchmark!r}")
    files = list_episodes(root, tasks)
    if not files:
        raise DataError(f"{root}: no episode files under episodes/<task>/ (tasks: {list(tasks) if tasks else 'all'})")
    eps = [load_episode(f, benchmark=bench, cameras=cameras, images=images, max_mib=max_mib) for f in files]
    return [e for e in eps if e.meta.get("success") or not only_success]


__all__ = [
    "MAX_DEMO_MIB",
    "Episode",
    "check_npz_size",
    "list_episodes",
    "load_demos",
    "load_episode",
    "read_dataset_json",
]
