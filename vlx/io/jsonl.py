"""JSON Lines record files that survive crashes: one record per line, appended and fsynced.

A process killed mid-write leaves at most a torn last line (no trailing newline); a disk or
editor accident can leave a corrupt line anywhere. Readers skip both and return every other
record. ``repair_jsonl`` (run by ``JsonlWriter`` before it appends) moves each bad line into
``<file>.bad`` (with its line number) and rewrites the file with only the valid lines, so no
valid record is ever dropped and the bad ones stay available for inspection.

Written by hand: the ``jsonlines`` package neither fsyncs nor quarantines.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class JsonlScan:
    """What a record file holds: ``records`` (valid lines, in order), ``bad`` (1-based line
    number and raw bytes of each complete line that is not a JSON object) and ``torn`` (the
    bytes of an unfinished last line, or ``b""``)."""

    records: list[dict] = field(default_factory=list)
    bad: list[tuple[int, bytes]] = field(default_factory=list)
    torn: bytes = b""


def scan_jsonl(path: str | Path) -> JsonlScan:
    """Parse ``path`` line by line (a missing file is empty)."""
    path = Path(path)
    out = JsonlScan()
    if not path.exists():
        return out
    data = path.read_bytes()
    lines = data.split(b"\n")
    out.torn = lines.pop()  # after the last newline: b"" unless the last write was cut off
    for i, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except (json.JSONDecodeError, UnicodeDecodeError):
            rec = None
        if isinstance(rec, dict):
            out.records.append(rec)
        else:
            out.bad.append((i, line))
    return out


def read_jsonl(path: str | Path) -> list[dict]:
    """Every valid record of ``path``; corrupt lines and a torn last line are skipped."""
    return scan_jsonl(path).records


def bad_path(path: str | Path) -> Path:
    path = Path(path)
    return path.with_name(path.name + ".bad")


def _fsync_dir(d: Path) -> None:
    try:
        fd = os.open(d, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def repair_jsonl(path: str | Path) -> list[int]:
    """Quarantine the bad lines of ``path`` (corrupt lines and a torn last line) into
    ``<path>.bad``, one JSON line each (``{"file", "line", "text"}``), and atomically rewrite
    ``path`` with the valid lines only. Returns the quarantined line numbers ([] when the
    file was clean and is left untouched)."""
    path = Path(path)
    scan = scan_jsonl(path)
    bad = list(scan.bad)
    if scan.torn.strip():
        bad.append((len(path.read_bytes().split(b"\n")), scan.torn))
    if not bad and not scan.torn:
        return []
    if bad:
        with open(bad_path(path), "a", encoding="utf-8") as f:
            for n, raw in bad:
                f.write(json.dumps({"file": path.name, "line": n, "text": raw.decode("utf-8", "replace")}) + "\n")
            f.flush()
            os.fsync(f.fileno())
    # Valid lines are rewritten as they were (byte for byte), into a temp file renamed over
    # the original, so a kill here leaves either the old or the new file, never half of one.
    bad_numbers = {n for n, _ in scan.bad}
    keep = [
        line for i, line in enumerate(path.read_bytes().split(b"\n")[:-1], 1) if line.strip() and i not in bad_numbers
    ]
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        f.write(b"".join(line + b"\n" for line in keep))
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)
    return [n for n, _ in bad]


class JsonlWriter:
    """Appends records to ``path``, one fsynced line each: a kill leaves at most a torn last
    line, which the next writer quarantines. ``quarantined``: the line numbers the start-up
    repair moved to ``<path>.bad``. ``default``: ``json.dumps``'s fallback for other types."""

    def __init__(self, path: str | Path, default: Callable[[Any], Any] | None = None):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.quarantined = repair_jsonl(self.path)
        self._default = default
        self._f = open(self.path, "a", encoding="utf-8")

    def write(self, record: dict) -> None:
        # One write of a whole line, then fsync.
        self._f.write(json.dumps(record, default=self._default) + "\n")
        self._f.flush()
        os.fsync(self._f.fileno())

    def close(self) -> None:
        self._f.close()

    def __enter__(self) -> JsonlWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def write_jsonl(path: str | Path, records: list[dict], default: Callable[[Any], Any] | None = None) -> None:
    """Append ``records`` to ``path`` (see ``JsonlWriter``)."""
    with JsonlWriter(path, default=default) as w:
        for r in records:
            w.write(r)


__all__ = ["JsonlScan", "JsonlWriter", "bad_path", "read_jsonl", "repair_jsonl", "scan_jsonl", "write_jsonl"]
