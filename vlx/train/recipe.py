"""What a recipe is: a typed config and a function that builds a trainable ``Task`` from it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn
from torch.utils.data import Dataset

from vlx.registry import Registry


@dataclass
class TrainConfig:
    output_dir: str = "runs/default"
    seed: int = 0
    epochs: int = 1
    max_steps: int | None = None  # optimizer steps; overrides epochs when set
    batch_size: int = 32
    grad_accum: int = 1
    lr: float = 1e-3
    weight_decay: float = 0.05
    warmup_steps: int = 0
    min_lr_ratio: float = 0.0
    grad_clip: float | None = 1.0
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"
    num_workers: int = 0
    log_every: int = 10
    save_every: int | None = None  # optimizer steps; None: at the end of each epoch
    keep_last: int = 2
    eval_every: int = 0  # epochs; 0: only at the end
    device: str = "auto"
    resume: str = "auto"  # "auto" (latest in output_dir, if any), "none", or a checkpoint dir
    tensorboard: bool = True
    progress: bool = True
    drop_last: bool = True
    # Torch CPU threads for this process (None: torch's default). Tiny models on a busy
    # 2-core machine ran 10-20x faster with 1 thread than with 2.
    num_threads: int | None = None
    # Several processes: "ddp" replicates the model; "fsdp" shards parameters, gradients and
    # optimizer state over the ranks (FSDP2, torch.distributed.fsdp.fully_shard).
    strategy: Literal["ddp", "fsdp"] = "ddp"
    # Bound on every collective and barrier; the other ranks wait at a barrier while rank 0
    # evaluates, so this must outlast the longest evaluation (minutes).
    dist_timeout_min: float = 120.0
    prefetch_factor: int = 2  # batches each loader worker prepares ahead (num_workers > 0)
    compile: bool = False  # torch.compile the model
    gradient_checkpointing: bool = False  # calls the Task's gradient_checkpointing hook

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size", "grad_accum", "log_every", "keep_last", "prefetch_factor"):
            if getattr(self, name) < 1:
                raise ValueError(f"train.{name} must be >= 1, got {getattr(self, name)}")
        if self.max_steps is not None and self.max_steps < 1:
            raise ValueError(f"train.max_steps must be >= 1 or null, got {self.max_steps}")
        if self.lr <= 0:
            raise ValueError(f"train.lr must be > 0, got {self.lr}")


@dataclass
class RecipeConfig:
    """Base of every recipe config: which recipe, and how to train it."""

    recipe: str = ""
    train: TrainConfig = field(default_factory=TrainConfig)


@dataclass
class Task:
    """Everything the trainer needs. ``model(batch) -> {"loss": tensor, ...}``.

    Optional hooks: ``evaluate(model, device) -> dict`` (run on rank 0, see
    ``vlx.train.evaluate``); ``optimizer_params(model)`` (param groups);
    ``on_epoch_end(epoch) -> dict | None``; ``gradient_checkpointing(model)`` (turn it on,
    for ``train.gradient_checkpointing``); ``shard_modules(model) -> [modules]`` (what FSDP
    shards as units, default: every child module that holds parameters);
    ``export(state_dict, out_dir)`` (write the full weights after an FSDP run, default: one
    ``model.safetensors``). ``find_unused_parameters``: opt in to DDP's search for
    parameters without a gradient (slower; for models whose used parameters change from
    step to step). A parameter that never gets a gradient should be frozen or not built."""

    model: nn.Module
    train_dataset: Dataset
    collate_fn: Callable[[list], Any] | None = None
    evaluate: Callable[[nn.Module, torch.device], dict] | None = None
    optimizer_params: Callable[[nn.Module], Any] | None = None
    on_epoch_end: Callable[[int], dict | None] | None = None
    gradient_checkpointing: Callable[[nn.Module], None] | None = None
    shard_modules: Callable[[nn.Module], list[nn.Module]] | None = None
    export: Callable[[dict[str, torch.Tensor], Path], None] | None = None
    find_unused_parameters: bool = False


@dataclass
class Recipe:
    name: str
    config_cls: type
    build: Callable[[Any], Task]


RECIPES: Registry[Recipe] = Registry("recipe")


def register_recipe(name: str, config_cls: type) -> Callable:
    """Decorator: ``@register_recipe("clip_shapes", ClipShapesConfig)`` on ``build(cfg) -> Task``."""
    if not issubclass(config_cls, RecipeConfig):
        raise TypeError(f"recipe {name!r}: config class must subclass RecipeConfig")

    def add(fn: Callable[[Any], Task]) -> Callable[[Any], Task]:
        RECIPES.register(name, Recipe(name, config_cls, fn))
        return fn

    return add
