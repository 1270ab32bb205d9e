"""What ``vlx train`` / ``vlx eval`` print at the end: a short table of the headline numbers,
rounded for people, and the paths of what was written (the full numbers stay in eval.json)."""

from __future__ import annotations

import math
from collections.abc import Iterable
from pathlib import Path
from typing import Any

MAX_ROWS = 24


def human_number(v: Any) -> str:
    """57.999998331 -> '58.00', 0.0123456 -> '0.0123', 3 -> '3'."""
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return str(v)
    if isinstance(v, int):
        return str(v)
    if not math.isfinite(v):
        return str(v)
    if v == 0 or abs(v) >= 1:
        return f"{v:.2f}"
    return f"{v:.3g}"


def headline_rows(result: dict[str, Any] | None) -> tuple[list[tuple[str, str]], int]:
    """(key, rounded value) for every number of ``result`` (lists/curves left out), and how
    many entries were left out (non-scalars, or past MAX_ROWS)."""
    rows, left = [], 0
    for k, v in (result or {}).items():
        if isinstance(v, (int, float)) and not isinstance(v, bool) and len(rows) < MAX_ROWS:
            rows.append((str(k), human_number(v)))
        else:
            left += 1
    return rows, left


def format_summary(result: dict[str, Any] | None, title: str, paths: Iterable[str | Path] = ()) -> str:
    rows, left = headline_rows(result)
    lines = [title]
    if rows:
        w = max(len(k) for k, _ in rows)
        vw = max(len(v) for _, v in rows)
        lines += [f"  {k:<{w}}  {v:>{vw}}" for k, v in rows]
    if left:
        lines.append(f"  ({left} more entries: curves and lists, in the JSON report)")
    existing = [str(p) for p in paths if Path(p).exists()]
    if existing:
        lines.append("wrote: " + ", ".join(existing))
    return "\n".join(lines)


def print_summary(result: dict[str, Any] | None, title: str, paths: Iterable[str | Path] = ()) -> None:
    print(format_summary(result, title, paths))
