"""Checkpoints: model weights as safetensors, optimizer/scheduler/RNG state beside them.

Every checkpoint is written to a temporary directory and renamed into place, and the
``latest`` pointer is replaced atomically, so a crash never leaves a half-written checkpoint
where a finished one was.
"""

from __future__ import annotations

import json
import os
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

MODEL_FILE = "model.safetensors"
STATE_FILE = "trainer.pt"
META_FILE = "meta.json"


def atomic_write_text(path: Path, text: str) -> None:
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def rng_state() -> dict[str, Any]:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(
    ckpt_root: Path, step: int, model: nn.Module, state: dict[str, Any], meta: dict[str, Any], keep_last: int = 2
) -> Path:
    """Write ``ckpt_root/step_XXXXXXX`` atomically, point ``latest`` at it, prune old ones."""
    ckpt_root = Path(ckpt_root)
    ckpt_root.mkdir(parents=True, exist_ok=True)
    final = ckpt_root / f"step_{step:07d}"
    tmp = Path(tempfile.mkdtemp(dir=ckpt_root, prefix=f".tmp_step_{step:07d}_"))
    try:
        save_model(model, str(tmp / MODEL_FILE))
        torch.save(state, tmp / STATE_FILE)
        (tmp / META_FILE).write_text(json.dumps(meta, indent=2, default=str))
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    atomic_write_text(ckpt_root / "latest", final.name)
    done = sorted(p for p in ckpt_root.glob("step_*") if p.is_dir())
    for old in done[:-keep_last]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def find_checkpoint(path: str | Path) -> Path:
    """Resolve a checkpoint dir, a ``checkpoints`` dir (its ``latest``) or a run dir."""
    p = Path(path)
    for cand in (p, p / "checkpoints"):
        if (cand / MODEL_FILE).is_file():
            return cand
        latest = cand / "latest"
        if latest.is_file():
            target = cand / latest.read_text().strip()
            if (target / MODEL_FILE).is_file():
                return target
    raise DataError(
        f"{p}: no checkpoint found (expected {MODEL_FILE}, or a 'latest' pointer in it or in {p / 'checkpoints'})"
    )


def latest_checkpoint(ckpt_root: Path) -> Path | None:
    try:
        return find_checkpoint(ckpt_root)
    except DataError:
        return None


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
    file = Path(ckpt) / STATE_FILE
    if not file.is_file():
        raise DataError(f"{file}: trainer state missing (cannot resume from this checkpoint)")
    return torch.load(file, map_location="cpu", weights_only=False)
