"""Small helpers every script needs once: the device decision, seeding, moving batches."""

from __future__ import annotations

import contextlib
import random
from typing import Any

import numpy as np
import torch


def pick_device(preference: str = "auto") -> torch.device:
    """The one device decision, made at the top of a script ("auto" -> cuda if present)."""
    if preference == "auto":
        if torch.cuda.is_available():
            from vlx.runtime import world_info

            return torch.device("cuda", world_info().local_rank)
        return torch.device("cpu")
    dev = torch.device(preference)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device {preference!r} was asked for but CUDA is not available")
    return dev


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
