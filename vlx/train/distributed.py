"""The process group, set up from torchrun's environment (RANK, WORLD_SIZE, LOCAL_RANK)."""

from __future__ import annotations

import torch
import torch.distributed as dist

from vlx import runtime


def world_info() -> tuple[int, int]:
    """(rank, world_size) from an initialised group, else from torchrun's environment
    (``vlx.runtime.world_info``, which refuses a leftover WORLD_SIZE)."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    w = runtime.world_info()
    return w.rank, w.world_size


def init_distributed(device: torch.device) -> bool:
    """Join the process group when launched by torchrun with WORLD_SIZE > 1; returns whether
    this run is distributed. NCCL on CUDA, gloo on the CPU."""
    if runtime.world_info().world_size <= 1:
        return False
    if not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group(backend=backend)
    return True


def is_main_process() -> bool:
    return world_info()[0] == 0


def barrier() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
