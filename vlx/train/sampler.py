"""A seeded, resumable, rank-aware sampler: the same (seed, epoch) gives the same order on
every run, and a resumed run starts mid-epoch exactly where the killed one stopped.

Each index it yields is an ``EpochIndex``: an ``int`` that also carries the epoch. Loader
workers (persistent or not) hold their own copy of the dataset, so a ``set_epoch`` call in the
main process never reaches them; a dataset whose items depend on the epoch (a resampled clip,
a masking schedule) reads ``getattr(index, "epoch", 0)`` instead. Plain datasets see an int.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch.utils.data import Sampler


class EpochIndex(int):
    """A dataset index that knows its epoch (pickles to loader workers with it)."""

    epoch: int

    def __new__(cls, value: int, epoch: int) -> EpochIndex:
        obj = super().__new__(cls, value)
        obj.epoch = epoch
        return obj

    def __reduce__(self):
        return (EpochIndex, (int(self), self.epoch))


class ResumableSampler(Sampler[int]):
    def __init__(self, num_samples: int, seed: int, shuffle: bool = True, rank: int = 0, world_size: int = 1):
        self.n = num_samples
        self.seed = seed
        self.shuffle = shuffle
        self.rank = rank
        self.world_size = world_size
        self.epoch = 0
        self.start = 0  # index (in this rank's order) to start from

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        self.epoch = epoch
        self.start = start

    def order(self) -> list[int]:
        if self.shuffle:
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
            idx = torch.randperm(self.n, generator=g).tolist()
        else:
            idx = list(range(self.n))
        per_rank = self.n // self.world_size  # equal shards so ranks step together
        return idx[self.rank : per_rank * self.world_size : self.world_size]

    def __iter__(self) -> Iterator[int]:
        epoch = self.epoch
        return (EpochIndex(i, epoch) for i in self.order()[self.start :])

    def __len__(self) -> int:
        return max(0, self.n // self.world_size - self.start)
