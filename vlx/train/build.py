"""What ``Trainer._setup`` builds, one function each: the optimizer, the data loader, the
DDP wrapper, the CUDA math settings, and the check that every trainable parameter gets a
gradient (a parameter that never does makes DDP fail at its second step)."""

from __future__ import annotations

import warnings
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader

from vlx.train.recipe import Task, TrainConfig
from vlx.train.sampler import ResumableSampler


def default_param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """No weight decay on biases, norms, embeddings of rank < 2 and temperatures."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (no_decay if p.ndim < 2 or "logit_scale" in name or "logit_bias" in name else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def make_optimizer(task: Task, model: nn.Module, cfg: TrainConfig, device: torch.device) -> torch.optim.Optimizer:
    """AdamW; the fused CUDA kernel on a GPU (one launch for all parameters)."""
    params = task.optimizer_params(model) if task.optimizer_params else default_param_groups(model, cfg.weight_decay)
    kw = {"fused": True} if device.type == "cuda" else {}
    return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay, **kw)


def cuda_math(device: torch.device) -> None:
    """TF32 matmuls and convolutions on CUDA (Ampere and later); fp32 elsewhere. Process-wide,
    set when training starts."""
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        torch.set_float32_matmul_precision("high")


def make_loader(task: Task, cfg: TrainConfig, sampler: ResumableSampler, device: torch.device) -> DataLoader:
    """One loader for the whole run: with workers they persist across epochs (the epoch
    reaches them through the sampler's indices, see ``EpochIndex``) and prefetch."""
    workers = cfg.num_workers > 0
    return DataLoader(
        task.train_dataset,
        batch_size=cfg.batch_size,
        sampler=sampler,
        collate_fn=task.collate_fn,
        num_workers=cfg.num_workers,
        drop_last=cfg.drop_last,
        pin_memory=device.type == "cuda",
        persistent_workers=workers,
        prefetch_factor=cfg.prefetch_factor if workers else None,
        # Its own generator, reseeded each epoch, so iterating never draws from the global
        # RNG (a resumed run starts its loader at a different moment).
        generator=torch.Generator(),
    )


def wrap_ddp(model: nn.Module, device: torch.device, find_unused_parameters: bool) -> nn.Module:
    # No BatchNorm-style buffers to keep in sync here, and gradients can live in DDP's
    # buckets (no extra copy per step).
    return nn.parallel.DistributedDataParallel(
        model,
        device_ids=[device.index] if device.type == "cuda" else None,
        broadcast_buffers=False,
        gradient_as_bucket_view=True,
        find_unused_parameters=find_unused_parameters,
    )


class GradientCheck:
    """Records which trainable parameters receive a gradient during the first backward.

    ``report(distributed)`` after it: under DDP (without the Task's
    ``find_unused_parameters`` opt-in) a parameter without a gradient is an error naming it,
    since DDP would otherwise fail one step later with "Expected to have finished
    reduction"; in one process it is a warning."""

    def __init__(self, model: nn.Module):
        self.names = {p: n for n, p in model.named_parameters() if p.requires_grad}
        self.seen: set[str] = set()
        self.handles = [
            p.register_post_accumulate_grad_hook(lambda p, n=n: self.seen.add(n)) for p, n in self.names.items()
        ]

    def report(self, distributed: bool, opted_in: bool) -> None:
        for h in self.handles:
            h.remove()
        unused = [n for n in self.names.values() if n not in self.seen]
        if not unused:
            return
        shown = ", ".join(unused[:8]) + (f" and {len(unused) - 8} more" if len(unused) > 8 else "")
        msg = (
            f"{len(unused)} trainable parameter(s) got no gradient in the first step: {shown}. Freeze them "
            f"(requires_grad_(False)) or do not build them; a model whose used parameters change from step to "
            f"step sets Task.find_unused_parameters=True"
        )
        if distributed and not opted_in:
            raise RuntimeError(f"DDP: {msg}")
        if not opted_in:
            warnings.warn(msg, stacklevel=2)


def freeze_unused(model: nn.Module, patterns: list[str]) -> list[str]:
    """Freeze (``requires_grad_(False)``) the parameters whose names match one of the
    ``fnmatch`` patterns: the parts of a model the recipe's objective never uses, so DDP sees
    no parameter without a gradient. Frozen parameters still load and save with the
    checkpoint. Returns the names frozen."""
    from fnmatch import fnmatchcase

    frozen = []
    for name, p in model.named_parameters():
        if any(fnmatchcase(name, pat) for pat in patterns):
            p.requires_grad_(False)
            frozen.append(name)
    return frozen
