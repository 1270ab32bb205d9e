"""Checkpoints: model weights as safetensors, optimizer/scheduler/RNG state beside them.

Layout: ``checkpoints/step_XXXXXXX/{model.safetensors, trainer.pt, meta.json}`` (an FSDP run
writes ``dcp/``, a torch.distributed.checkpoint directory of every rank's shards, in place of
``model.safetensors`` until its final export) and ``checkpoints/latest``, a text file naming
the step directory.

Crash safety: a checkpoint is written into a temporary directory, every file and the
directory are fsynced, then it is renamed into place and ``latest`` is replaced atomically.
Re-saving a step that exists never leaves ``latest`` naming nothing: ``latest`` may list
fallbacks, one per line, and the first that exists wins; during a re-save it names the new
(temporary) directory first and the final name second. Old checkpoints are pruned by step
number. Directories and files get the modes the umask gives (0755 / 0644 under umask 022),
so a run folder can be shared.

Safety: ``trainer.pt`` holds only tensors and plain Python data (the numpy RNG state is
stored as a tensor) and is loaded with ``torch.load(weights_only=True)``: a crafted file that
would run code when unpickled is refused.
"""

from __future__ import annotations

import json
import os
import pickle
import random
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_model, save_model
from torch import nn

from vlx.data.errors import DataError
from vlx.utils import atomic_write_text, current_umask, fsync_dir, fsync_file

__all__ = [
    "MODEL_FILE",
    "STATE_FILE",
    "META_FILE",
    "DCP_DIR",
    "atomic_write_text",
    "rng_state",
    "set_rng_state",
    "save_checkpoint",
    "begin_checkpoint",
    "commit_checkpoint",
    "find_checkpoint",
    "latest_checkpoint",
    "load_model_weights",
    "load_trainer_state",
]

MODEL_FILE = "model.safetensors"
STATE_FILE = "trainer.pt"
META_FILE = "meta.json"
DCP_DIR = "dcp"


# -- RNG state as tensors and plain data (loadable with weights_only=True) ---------------
def rng_state() -> dict[str, Any]:
    version, internal, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state: dict[str, Any] = {
        "python": [version, list(internal), gauss],
        "numpy": {
            "kind": str(kind),
            "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    n = state["numpy"]
    keys = n["keys"].numpy().astype(np.uint32)
    np.random.set_state((n["kind"], keys, n["pos"], n["has_gauss"], n["cached_gaussian"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


# -- writing ------------------------------------------------------------------------------
def _step_of(p: Path) -> int | None:
    try:
        return int(p.name.split("_", 1)[1])
    except (IndexError, ValueError):
        return None


def begin_checkpoint(ckpt_root: Path, step: int) -> Path:
    """Create the temporary directory a checkpoint of ``step`` is written into (mode from
    the umask, not mkdtemp's 0700)."""
    ckpt_root = Path(ckpt_root)
    ckpt_root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=ckpt_root, prefix=f".tmp_step_{step:07d}_"))
    os.chmod(tmp, 0o777 & ~current_umask())
    return tmp


def _seal_tree(root: Path) -> None:
    """Give every file and dir under ``root`` the umask's mode (safetensors writes 0600,
    mkdtemp makes 0700) and fsync them, before the rename that publishes them."""
    mask = current_umask()
    for dirpath, _, files in os.walk(root):
        for f in files:
            os.chmod(Path(dirpath) / f, 0o666 & ~mask)
            fsync_file(Path(dirpath) / f)
        os.chmod(dirpath, 0o777 & ~mask)
        fsync_dir(dirpath)


def commit_checkpoint(ckpt_root: Path, tmp: Path, step: int, keep_last: int = 2) -> Path:
    """fsync ``tmp``, rename it to ``step_XXXXXXX``, point ``latest`` at it, prune old ones."""
    ckpt_root, tmp = Path(ckpt_root), Path(tmp)
    final = ckpt_root / f"step_{step:07d}"
    _seal_tree(tmp)
    if final.exists():
        # Re-save of a step: `latest` names the finished temporary dir first, then the
        # final name, so each moment below leaves it naming a complete checkpoint.
        atomic_write_text(ckpt_root / "latest", f"{tmp.name}\n{final.name}\n")
        trash = ckpt_root / f".old_{final.name}_{os.getpid()}"
        os.replace(final, trash)
        os.replace(tmp, final)
        fsync_dir(ckpt_root)
        shutil.rmtree(trash, ignore_errors=True)
    else:
        os.replace(tmp, final)
        fsync_dir(ckpt_root)
    atomic_write_text(ckpt_root / "latest", final.name)
    done = sorted((p for p in ckpt_root.glob("step_*") if p.is_dir() and _step_of(p) is not None), key=_step_of)
    for old in done[:-keep_last]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def save_checkpoint(
    ckpt_root: Path, step: int, model: nn.Module, state: dict[str, Any], meta: dict[str, Any], keep_last: int = 2
) -> Path:
    """Write ``ckpt_root/step_XXXXXXX`` atomically, point ``latest`` at it, prune old ones."""
    tmp = begin_checkpoint(ckpt_root, step)
    try:
        save_model(model, str(tmp / MODEL_FILE))
        torch.save(state, tmp / STATE_FILE)
        (tmp / META_FILE).write_text(json.dumps(meta, indent=2, default=str))
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    # Not under the clean-up above: once renames begin, `latest` may name `tmp`.
    return commit_checkpoint(ckpt_root, tmp, step, keep_last)


# -- finding and reading ------------------------------------------------------------------
def _pointer_targets(latest: Path) -> list[Path]:
    """The directories ``latest`` names, each checked to lie inside its folder."""
    out = []
    for line in latest.read_text().splitlines():
        name = line.strip()
        if not name:
            continue
        if os.path.isabs(name) or "/" in name or "\\" in name or name in (".", ".."):
            raise DataError(
                f"{latest}: the pointer names {name!r}; expected the name of a step directory inside {latest.parent}"
            )
        out.append(latest.parent / name)
    return out


def _is_checkpoint(d: Path) -> bool:
    return (d / MODEL_FILE).is_file() or (d / DCP_DIR).is_dir()


def find_checkpoint(path: str | Path) -> Path:
    """Resolve a checkpoint dir, a ``checkpoints`` dir (its ``latest``) or a run dir."""
    p = Path(path)
    for cand in (p, p / "checkpoints"):
        if _is_checkpoint(cand):
            return cand
        latest = cand / "latest"
        if latest.is_file():
            for target in _pointer_targets(latest):
                if _is_checkpoint(target):
                    return target
    raise DataError(
        f"{p}: no checkpoint found (expected {MODEL_FILE}, or a 'latest' pointer in it or in {p / 'checkpoints'})"
    )


def latest_checkpoint(ckpt_root: Path) -> Path | None:
    """The checkpoint ``latest`` names, or None when there is none yet (a bad pointer still
    raises: it is never silently read as 'start from step 0')."""
    ckpt_root = Path(ckpt_root)
    if not (ckpt_root / "latest").is_file() and not _is_checkpoint(ckpt_root):
        return None
    return find_checkpoint(ckpt_root)


def load_model_weights(model: nn.Module, path: str | Path, strict: bool = True) -> Path:
    """Load weights from a checkpoint dir / run dir / .safetensors file into ``model``."""
    p = Path(path)
    file = p if p.suffix == ".safetensors" else find_checkpoint(p) / MODEL_FILE
    if not file.is_file():
        raise DataError(f"{file}: checkpoint weights not found")
    try:
        missing, unexpected = load_model(model, str(file), strict=strict)
    except RuntimeError as e:
        first = str(e).strip().splitlines()[0]
        raise DataError(f"{file}: weights do not fit this model ({first})") from None
    return file


def load_trainer_state(ckpt: Path) -> dict[str, Any]:
    """Read ``trainer.pt`` with ``weights_only=True``: tensors and plain data only."""
    file = Path(ckpt) / STATE_FILE
    if not file.is_file():
        raise DataError(f"{file}: trainer state missing (cannot resume from this checkpoint)")
    try:
        return torch.load(file, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise DataError(
            f"{file}: refused to load: it holds objects other than tensors and plain data, which could run "
            f"code when unpickled (a checkpoint from an older vlx or a tampered file; {first[:160]})"
        ) from None
