"""Small helpers every script needs once: the device decision, seeding, moving batches."""

from __future__ import annotations

import contextlib
import json
import os
import random
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vlx.config import ConfigError


def resolve_device(preference: str, cuda_available: bool, env: dict[str, str] | None = None) -> str:
    """The device string ``preference`` means for this process (pure, so it is testable
    without a GPU). Under torchrun every rank takes its own GPU: "auto" and a bare "cuda"
    mean ``cuda:LOCAL_RANK``. An explicit index ("cuda:0") with several processes on this
    node would put them all on one GPU, so it is refused; one process may name any GPU."""
    env = os.environ if env is None else env
    local = int(env.get("LOCAL_RANK", 0))
    local_world = int(env.get("LOCAL_WORLD_SIZE", env.get("WORLD_SIZE", 1)))
    if preference == "auto":
        return f"cuda:{local}" if cuda_available else "cpu"
    dev = torch.device(preference)
    if dev.type != "cuda":
        return str(dev)
    if not cuda_available:
        raise ConfigError(f"train.device: {preference!r} was asked for but CUDA is not available")
    if dev.index is None:
        return f"cuda:{local}"
    if local_world > 1:
        raise ConfigError(
            f"train.device: {preference!r} under torchrun with {local_world} processes on this node would put "
            f"every rank on that GPU; use 'cuda' (each rank takes cuda:LOCAL_RANK)"
        )
    return str(dev)


def pick_device(preference: str = "auto") -> torch.device:
    """The one device decision, made at the top of a script (see ``resolve_device``)."""
    return torch.device(resolve_device(preference, torch.cuda.is_available()))


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def to_device(batch: Any, device: torch.device) -> Any:
    """Move every tensor in a nested dict/list/tuple to ``device`` (non-blocking on CUDA)."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=device.type == "cuda")
    if isinstance(batch, dict):
        return {k: to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)) and batch and any(isinstance(v, (torch.Tensor, dict)) for v in batch):
        return type(batch)(to_device(v, device) for v in batch)
    return batch


def resolve_precision(device: torch.device, precision: str) -> torch.dtype | None:
    """The autocast dtype for ``precision`` ("auto" -> bf16 on CUDA when supported, else fp32)."""
    if precision == "fp32":
        return None
    if precision == "bf16":
        return torch.bfloat16
    if precision == "fp16":
        return torch.float16
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return None


def autocast_context(device: torch.device, precision: str = "auto"):
    dtype = resolve_precision(device, precision)
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


# -- files that survive a crash and that others can read ---------------------------------
def current_umask() -> int:
    """The process umask (reading it means setting it; set straight back)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def fsync_dir(path: str | os.PathLike) -> None:
    """Flush a directory entry (a rename or a new file inside it) to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_file(path: str | os.PathLike) -> None:
    with open(path, "rb") as f:
        os.fsync(f.fileno())


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` to a temporary file beside ``path``, fsync it, rename it over ``path``
    and fsync the directory: a reader sees the old file or the new one, never a part. The
    file gets the mode a plain ``open(path, "w")`` would (0666 minus the umask), not
    mkstemp's 0600."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fchmod(f.fileno(), 0o666 & ~current_umask())
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    fsync_dir(path.parent)


def atomic_write_json(path: str | os.PathLike, obj: Any, **kw: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, default=str, **kw))
