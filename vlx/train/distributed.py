"""The process group, set up from torchrun's environment (RANK, WORLD_SIZE, LOCAL_RANK)."""

from __future__ import annotations

import contextlib
import datetime
import os
from collections.abc import Iterator

import torch
import torch.distributed as dist


def world_info() -> tuple[int, int]:
    """(rank, world_size) from an initialised group, else from torchrun's environment."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))


def init_distributed(device: torch.device, timeout_min: float | None = None) -> bool:
    """Join the process group when launched by torchrun with WORLD_SIZE > 1; returns whether
    this run is distributed. NCCL on CUDA, gloo on the CPU. ``timeout_min`` bounds every
    collective and barrier (the other ranks wait at one while rank 0 evaluates, so it must
    outlast the longest evaluation; NCCL's own default is 10 minutes)."""
    if int(os.environ.get("WORLD_SIZE", 1)) <= 1:
        return False
    if not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        if device.type == "cuda":
            torch.cuda.set_device(device)
        kw = {} if timeout_min is None else {"timeout": datetime.timedelta(minutes=timeout_min)}
        dist.init_process_group(backend=backend, **kw)
    return True


def is_main_process() -> bool:
    return world_info()[0] == 0


def barrier() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


@contextlib.contextmanager
def hidden_process_group() -> Iterator[None]:
    """Run a block on one rank as if there were no process group: inside it
    ``torch.distributed.is_initialized()`` reads False, so code that gathers only when
    distributed (the contrastive losses' all-gather, ``world_info``) runs locally instead of
    starting a collective the other ranks never join (a hang). Used for rank-0 evaluation
    while the other ranks wait at a barrier; the process group itself is untouched."""
    if not (dist.is_available() and dist.is_initialized()):
        yield
        return
    real = dist.is_initialized
    dist.is_initialized = lambda: False  # type: ignore[assignment]
    try:
        yield
    finally:
        dist.is_initialized = real  # type: ignore[assignment]
