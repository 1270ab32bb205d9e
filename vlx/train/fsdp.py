"""FSDP2 for the trainer (``train.strategy: fsdp``): parameters, gradients and optimizer
state sharded over the ranks with ``torch.distributed.fsdp.fully_shard``; checkpoints as
``torch.distributed.checkpoint`` (DCP) directories that every rank writes its shards into;
the full weights gathered once at the end and written by the Task's ``export`` hook (default:
one ``model.safetensors`` beside the DCP shards, so ``vlx eval --ckpt`` reads it).

Runs on CUDA with NCCL and on CPUs with gloo (tested with 2 gloo processes)."""

from __future__ import annotations

import copy
import os
from pathlib import Path

import torch
import torch.distributed as dist
import torch.distributed.checkpoint as dcp
from safetensors.torch import save_file
from torch import nn
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_model_state_dict,
    get_state_dict,
    set_state_dict,
)
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.fsdp import fully_shard

from vlx.train.checkpoint import DCP_DIR, MODEL_FILE
from vlx.train.recipe import Task
from vlx.utils import current_umask, fsync_dir


def default_shard_modules(model: nn.Module) -> list[nn.Module]:
    """Every direct child that holds parameters: one all-gather per child in the forward."""
    return [m for m in model.children() if any(True for _ in m.parameters())]


def shard_model(task: Task, model: nn.Module, device: torch.device) -> nn.Module:
    """``fully_shard`` each unit the Task names (``Task.shard_modules``), then the root (which
    keeps the parameters no unit took). Shards in place and returns ``model``."""
    mesh = init_device_mesh(device.type, (dist.get_world_size(),))
    units = task.shard_modules(model) if task.shard_modules is not None else default_shard_modules(model)
    for m in units:
        fully_shard(m, mesh=mesh)
    fully_shard(model, mesh=mesh)
    return model


def unsharded_copy(model: nn.Module) -> nn.Module:
    """A plain copy of the model for rank-0 evaluation, taken before sharding (kept on the
    CPU; costs one copy of the weights in rank 0's host memory)."""
    return copy.deepcopy(model).to("cpu")


def set_gradient_sync(model: nn.Module, sync: bool) -> None:
    """Skip the reduce-scatter on accumulation micro-steps (FSDP2's ``no_sync``)."""
    model.set_requires_gradient_sync(sync)


def full_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """Collective: every rank calls it; rank 0 gets the whole state dict on the CPU, the
    others an empty dict."""
    return get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))


def save_sharded(model: nn.Module, optimizer: torch.optim.Optimizer, ckpt_dir: Path) -> None:
    """Collective: every rank writes its shards of model and optimizer into ``ckpt_dir/dcp``."""
    msd, osd = get_state_dict(model, optimizer)
    dcp.save({"model": msd, "optim": osd}, checkpoint_id=str(Path(ckpt_dir) / DCP_DIR))


def load_sharded(model: nn.Module, optimizer: torch.optim.Optimizer, ckpt_dir: Path) -> None:
    """Collective: every rank reads its shards back (any world size DCP can reshard to)."""
    msd, osd = get_state_dict(model, optimizer)
    state = {"model": msd, "optim": osd}
    dcp.load(state, checkpoint_id=str(Path(ckpt_dir) / DCP_DIR))
    set_state_dict(model, optimizer, model_state_dict=state["model"], optim_state_dict=state["optim"])


def default_export(state_dict: dict[str, torch.Tensor], out_dir: Path) -> None:
    """Write ``out_dir/model.safetensors`` atomically (temp file, fsync, rename)."""
    out_dir = Path(out_dir)
    tmp = out_dir / f".{MODEL_FILE}.tmp{os.getpid()}"
    save_file({k: v.contiguous() for k, v in state_dict.items()}, str(tmp))
    os.chmod(tmp, 0o666 & ~current_umask())
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    os.replace(tmp, out_dir / MODEL_FILE)
    fsync_dir(out_dir)


def export_full(task: Task, model: nn.Module, out_dir: Path, main: bool) -> None:
    """Collective: gather the full weights; rank 0 writes them with the Task's export hook."""
    sd = full_state_dict(model)
    if main:
        (task.export or default_export)(sd, Path(out_dir))
