"""Behaviour-cloning samples from collected demos (``embodied.collect``): one sample per
action, with the observation before it, the next K actions (a chunk, masked past the
episode's end) and the plan step's conditioning text (an index into a text bank)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from embodied.collect import Episode


class DemoFrames(Dataset):
    """``episodes`` -> samples ``{"state" (D,), "actions" (K, A), "action_mask" (K,),
    "text_id" int[, "image" (3, H, W) float in [0, 1]]}``; ``texts`` lists the bank's strings
    (index = text_id), plan-step texts in order of first appearance. With ``frames`` F > 1 the
    image is the history (F, 3, H, W), oldest first, the episode's first frame repeated before
    its start (as the runner does at the start of a rollout). ``camera`` may list several
    cameras: the image is then (F*V, 3, H, W), each time step's V views in that order."""

    def __init__(
        self, episodes: Sequence[Episode], chunk: int = 1, camera: str | Sequence[str] | None = None, frames: int = 1
    ):
        self.episodes, self.chunk, self.frames = list(episodes), int(chunk), int(frames)
        self.camera = [camera] if isinstance(camera, str) else (list(camera) if camera else None)
        self.texts: list[str] = []
        ids: dict[str, int] = {}
        self.index: list[tuple[int, int, int]] = []  # (episode, t, text id)
        for ei, ep in enumerate(self.episodes):
            for t in range(len(ep)):
                text = ep.text_at(t)
                if text not in ids:
                    ids[text] = len(self.texts)
                    self.texts.append(text)
                self.index.append((ei, t, ids[text]))

    def __len__(self) -> int:
        return len(self.index)

    def state_stats(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and std (D,) of the states the policy is trained on."""
        x = np.concatenate([ep.obs[:-1] for ep in self.episodes]).astype(np.float64)
        return torch.tensor(x.mean(0), dtype=torch.float32), torch.tensor(x.std(0), dtype=torch.float32)

    def __getitem__(self, i: int) -> dict[str, Any]:
        ei, t, tid = self.index[i]
        ep = self.episodes[ei]
        T, A = ep.actions.shape
        acts = np.zeros((self.chunk, A), np.float32)
        n = min(self.chunk, T - t)
        acts[:n] = ep.actions[t : t + n]
        mask = np.zeros(self.chunk, bool)
        mask[:n] = True
        item = {
            "state": torch.from_numpy(ep.obs[t].astype(np.float32)),
            "actions": torch.from_numpy(acts),
            "action_mask": torch.from_numpy(mask),
            "text_id": tid,
        }
        if self.camera is not None:
            idx = [max(0, t - self.frames + 1 + i) for i in range(self.frames)]
            views = np.stack([ep.rgb[c][j] for j in idx for c in self.camera])  # (F*V, H, W, 3)
            image = torch.from_numpy(views).permute(0, 3, 1, 2).float() / 255.0
            item["image"] = image if len(views) > 1 else image[0]
        return item


def make_collate(text_tokens: torch.Tensor, text_mask: torch.Tensor):
    """Collate that looks up each sample's text features in the bank ``(T, L, Dt)``/``(T, L)``."""

    def collate(items: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        ids = torch.tensor([it["text_id"] for it in items])
        # Trailing all-padding columns are cut: the models ignore padded tokens (tested), so
        # this changes nothing but the cost.
        length = max(1, int(text_mask[ids].any(0).nonzero().max()) + 1) if text_mask[ids].any() else 1
        batch = {
            "state": torch.stack([it["state"] for it in items]),
            "actions": torch.stack([it["actions"] for it in items]),
            "action_mask": torch.stack([it["action_mask"] for it in items]),
            "text_tokens": text_tokens[ids, :length],
            "text_mask": text_mask[ids, :length],
        }
        if "image" in items[0]:
            batch["images"] = torch.stack([it["image"] for it in items])
        return batch

    return collate


__all__ = ["DemoFrames", "make_collate"]
