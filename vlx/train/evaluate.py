"""The one evaluation call, shared by in-training evaluation and ``vlx eval``, so both run
the model in the same mode, precision and process-group setting and write the same numbers
for one checkpoint."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from vlx.train.distributed import hidden_process_group
from vlx.train.recipe import Task
from vlx.utils import autocast_context


def evaluate_task(task: Task, model: nn.Module, device: torch.device, precision: str = "auto") -> dict[str, Any]:
    """``task.evaluate(model, device)`` in eval mode, without gradients, under the training
    precision's autocast (``train.precision``: bf16 on CUDA for "auto"), with the process
    group hidden so no collective starts on this one rank. Restores train mode afterwards
    if the model was training."""
    if task.evaluate is None:
        return {}
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), autocast_context(device, precision), hidden_process_group():
            return task.evaluate(model, device)
    finally:
        model.train(was_training)
