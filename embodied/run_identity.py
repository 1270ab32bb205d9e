"""Run identity: a fingerprint of everything that changes an evaluation's results, stored in
the run folder (``run.json``), so that resuming can never relabel another configuration's
episodes, and so that the default folder of one configuration is never another's.

Fingerprinted: benchmark, tasks, instruction set (name and hash), planner and its options
(secrets left out), skills, seed, episodes, step caps, re-plans, the planner timeout and the
versions of metaworld, mujoco, gymnasium, gymnasium-robotics and vlx. Not fingerprinted (they
do not change results): the folder, vector envs, videos, the progress bar.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from importlib import metadata
from pathlib import Path
from typing import Any

from vlx.config import ConfigError

PACKAGES = ("metaworld", "mujoco", "gymnasium", "gymnasium-robotics", "vlx")
RUN_FILE = "run.json"
_SECRET = re.compile(r"(key|token|secret|password|passwd|auth|credential)", re.IGNORECASE)


def package_versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def is_secret_option(name: str) -> bool:
    """Option names that may hold a credential (``api_key``, ``token``, ...); ``api_key_env``
    names a variable, not a secret, and is kept."""
    return bool(_SECRET.search(name)) and not name.endswith("_env")


def public_options(options: dict[str, Any]) -> dict[str, Any]:
    """``options`` with every secret value replaced by ``"<redacted>"`` (for reports)."""
    return {k: ("<redacted>" if is_secret_option(k) else v) for k, v in sorted(options.items())}


def fingerprint(fields: dict[str, Any]) -> dict[str, Any]:
    """``{"fields": ..., "sha256": ...}``: the hash of the fields in canonical JSON."""
    fields = dict(fields, packages=package_versions())
    blob = json.dumps(fields, sort_keys=True, default=str)
    return {"fields": json.loads(blob), "sha256": hashlib.sha256(blob.encode()).hexdigest()}


def _slug(s: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", s).strip("._") or "x"


def default_out(benchmark: str, planner: str, digest: str, root: str = "runs/embodied") -> str:
    """``runs/embodied/<benchmark>-<planner>-<first 10 hex of the fingerprint>``."""
    return str(Path(root) / f"{_slug(benchmark)}-{_slug(planner)}-{digest[:10]}")


def read_fingerprint(out: str | Path) -> dict | None:
    p = Path(out) / RUN_FILE
    if not p.is_file():
        return None
    try:
        data = json.loads(p.read_text())
    except (OSError, json.JSONDecodeError):
        return {"sha256": "<unreadable>", "fields": {}}
    return data if isinstance(data, dict) else {"sha256": "<unreadable>", "fields": {}}


def _has_records(out: Path) -> bool:
    return any(p.stat().st_size > 0 for p in out.glob("episodes.rank*.jsonl"))


def _differences(old: dict, new: dict) -> str:
    a, b = old.get("fields", {}), new.get("fields", {})
    keys = [k for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]
    if not keys:
        return "unreadable run.json"
    shown = []
    for k in keys[:3]:
        x, y = json.dumps(a.get(k), default=str), json.dumps(b.get(k), default=str)
        shown.append(f"{k}: {x[:60]} -> {y[:60]}")
    more = f" (+{len(keys) - 3} more)" if len(keys) > 3 else ""
    return "; ".join(shown) + more


def _free(out: Path, fp: dict) -> bool:
    """Whether ``out`` can take this run: its fingerprint, or nothing recorded yet."""
    old = read_fingerprint(out)
    if old is not None:
        return old.get("sha256") == fp["sha256"]
    return not _has_records(out)


def claim_run_folder(out: str | Path, fp: dict, new: bool = False) -> Path:
    """The folder this run writes to: ``out`` when it is empty or holds this fingerprint's
    run (resume); with ``new``, the first free sibling ``<out>-2``, ``<out>-3``, ... when it
    holds another. Otherwise a one-line ``ConfigError`` naming what differs."""
    out = Path(out)
    if not _free(out, fp):
        if not new:
            old = read_fingerprint(out)
            why = _differences(old, fp) if old is not None else "records without a fingerprint (an older vlx)"
            raise ConfigError(
                f"{out}: holds a run of another configuration ({why}); choose another --out, "
                "or pass --new to start over in a fresh folder"
            )
        n = 2
        while not _free(out.with_name(f"{out.name}-{n}"), fp):
            n += 1
        out = out.with_name(f"{out.name}-{n}")
    out.mkdir(parents=True, exist_ok=True)
    if read_fingerprint(out) is None:
        tmp = out / f".{RUN_FILE}.{os.getpid()}.tmp"
        tmp.write_text(json.dumps(fp, indent=2, sort_keys=True))
        os.replace(tmp, out / RUN_FILE)
    return out


__all__ = [
    "PACKAGES",
    "RUN_FILE",
    "claim_run_folder",
    "default_out",
    "fingerprint",
    "is_secret_option",
    "package_versions",
    "public_options",
    "read_fingerprint",
]
