"""Contrastive losses shared by the core and the siblings; ``build_loss(name, **kw)`` over the
``LOSSES`` registry. All of them all-gather across ranks (see vlx/losses/clip.py for the
gradient scaling convention)."""

from __future__ import annotations

import torch.nn as nn

from vlx.losses.clip import ClipLoss, gather_batch
from vlx.losses.filip import FilipLoss, token_max_similarity
from vlx.losses.intra import IntraModalLoss, nt_xent
from vlx.losses.siglip import SigLipLoss
from vlx.losses.soft import SoftLabelClipLoss
from vlx.registry import Registry

LOSSES: Registry = Registry("loss")
LOSSES.register("clip", ClipLoss)
LOSSES.register("siglip", SigLipLoss)
LOSSES.register("filip", FilipLoss)
LOSSES.register("intra", IntraModalLoss)
LOSSES.register("soft_clip", SoftLabelClipLoss)


def build_loss(name: str, **kwargs) -> nn.Module:
    """A loss module by registry name ("clip", "siglip", "filip", "intra", "soft_clip")."""
    return LOSSES.get(name)(**kwargs)


__all__ = [
    "LOSSES",
    "build_loss",
    "ClipLoss",
    "SigLipLoss",
    "FilipLoss",
    "IntraModalLoss",
    "SoftLabelClipLoss",
    "nt_xent",
    "gather_batch",
    "token_max_similarity",
]
