"""One demonstration episode in memory, apart from its readers (``embodied.demos`` for the npz
layout, ``embodied.lerobot_read`` for LeRobot's), so that neither reader imports the other."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np


@dataclass
class Episode:
    """One demonstration: arrays as in the module docstring, ``meta`` as a dict."""

    path: Path
    meta: dict[str, Any]
    obs: np.ndarray
    actions: np.ndarray
    rewards: np.ndarray
    success: np.ndarray
    step_index: np.ndarray
    rgb: dict[str, np.ndarray] = field(default_factory=dict)
    depth: dict[str, np.ndarray] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.actions)

    def text_at(self, t: int) -> str:
        """The plan-step conditioning text of action ``t``."""
        texts = self.meta["plan_texts"]
        return texts[min(int(self.step_index[t]), len(texts) - 1)] if texts else ""
