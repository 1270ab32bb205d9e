"""A toy regression task whose loss depends on data order and on dropout's RNG, so that an
inexact resume shows up as a different loss."""

from __future__ import annotations

import time

import torch
from torch import nn
from torch.utils.data import Dataset

from vlx.train import Task


class ToyData(Dataset):
    def __init__(self, n: int = 64, dim: int = 8, seed: int = 0, crash_at: int | None = None, sleep: float = 0.0):
        g = torch.Generator().manual_seed(seed)
        self.x = torch.randn(n, dim, generator=g)
        self.y = self.x @ torch.randn(dim, 1, generator=g) + 0.1 * torch.randn(n, 1, generator=g)
        self.crash_at = crash_at
        self.sleep = sleep
        self.fetches = 0

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int):
        self.fetches += 1
        if self.crash_at is not None and self.fetches > self.crash_at:
            raise RuntimeError("simulated crash")
        if self.sleep:
            time.sleep(self.sleep)
        return {"x": self.x[i], "y": self.y[i]}


class ToyModel(nn.Module):
    def __init__(self, dim: int = 8, dropout: float = 0.2):
        super().__init__()
        torch.manual_seed(0)
        self.net = nn.Sequential(nn.Linear(dim, 16), nn.Dropout(dropout), nn.GELU(), nn.Linear(16, 1))

    def forward(self, batch):
        pred = self.net(batch["x"])
        loss = nn.functional.mse_loss(pred, batch["y"])
        return {"loss": loss, "pred_mean": pred.mean()}


def toy_task(**data_kw) -> Task:
    return Task(model=ToyModel(), train_dataset=ToyData(**data_kw), evaluate=lambda m, d: {"mse": 1.0})
