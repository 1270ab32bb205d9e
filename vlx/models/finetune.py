"""What a fine-tune trains, from config: LiT's locked towers (Zhai et al. 2022, "LiT:
Zero-Shot Transfer with Locked-image text Tuning": the pretrained image tower and its
projection frozen, the text side trained), open_clip's partial unlocking of a locked tower
(``unlocked_layers``: its last N transformer blocks, what comes after them - final norm,
pooling head - and its projection train again), and freezing any parameters by name.

FLYP (Goyal et al. 2023, "Finetune like you pretrain") is the recipe's choice of loss
(``objective.loss: auto`` = the checkpoint's pre-training loss), not something done here."""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field

from torch import nn

from vlx.config import ConfigError
from vlx.encoders import freeze_module


@dataclass
class FinetuneConfig:
    """``lock_image`` / ``lock_text``: freeze that tower and its projection (LiT locks the image
    tower). ``unlocked_layers``: in a locked tower, the last N blocks and everything after them
    (and the projection) still train. ``freeze``: fnmatch patterns on the DualEncoder's
    parameter names (``image_encoder.*``, ``*.embeddings.*``, ``log_logit_scale``), frozen in
    addition; a pattern that matches nothing is an error (a typo would otherwise train all)."""

    lock_image: bool = False
    lock_text: bool = False
    unlocked_layers: int = 0
    freeze: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.unlocked_layers < 0:
            raise ValueError(f"unlocked_layers must be >= 0, got {self.unlocked_layers}")


def transformer_blocks(tower: nn.Module) -> tuple[str, nn.ModuleList]:
    """(name, blocks): the tower's longest ``nn.ModuleList`` (ViT ``blocks``, HF
    ``encoder.layers``)."""
    lists = [(n, m) for n, m in tower.named_modules() if isinstance(m, nn.ModuleList)]
    if not lists:
        raise ConfigError(f"unlocked_layers: {type(tower).__name__} has no list of transformer blocks")
    return max(lists, key=lambda nm: len(nm[1]))


def unlock_last_layers(tower: nn.Module, n: int) -> list[str]:
    """Make the last ``n`` blocks and every parameter registered after the blocks trainable;
    returns the names made trainable."""
    name, blocks = transformer_blocks(tower)
    if n > len(blocks):
        raise ConfigError(f"unlocked_layers: {n} > the {len(blocks)} blocks of {type(tower).__name__}")
    prefix = f"{name}."
    names = [pn for pn, _ in tower.named_parameters()]
    last_block = max(i for i, pn in enumerate(names) if pn.startswith(prefix))
    keep = {f"{prefix}{i}." for i in range(len(blocks) - n, len(blocks))}
    out = []
    for i, (pn, p) in enumerate(tower.named_parameters()):
        if i > last_block or any(pn.startswith(k) for k in keep):
            p.requires_grad_(True)
            out.append(pn)
    return out


def apply_finetune(dual: nn.Module, cfg: FinetuneConfig) -> dict[str, int]:
    """Freeze what ``cfg`` says in a DualEncoder; returns {"trainable": n, "frozen": n} counts
    of parameter elements."""
    for lock, enc, proj in (
        (cfg.lock_image, dual.image_encoder, dual.image_proj),
        (cfg.lock_text, dual.text_encoder, dual.text_proj),
    ):
        if not lock:
            continue
        proj.requires_grad_(False)
        if cfg.unlocked_layers == 0:
            freeze_module(enc)  # eval mode and no autograd through the whole tower
        else:
            enc.requires_grad_(False)
            unlock_last_layers(enc, cfg.unlocked_layers)
            proj.requires_grad_(True)
    named = dict(dual.named_parameters())
    for pat in cfg.freeze:
        hits = [n for n in named if fnmatch.fnmatchcase(n, pat)]
        if not hits:
            example = ", ".join(list(named)[:3])
            raise ConfigError(f"finetune.freeze: pattern {pat!r} matches no parameter (names look like {example})")
        for n in hits:
            named[n].requires_grad_(False)
    trainable = sum(p.numel() for p in dual.parameters() if p.requires_grad)
    return {"trainable": trainable, "frozen": sum(p.numel() for p in dual.parameters()) - trainable}
