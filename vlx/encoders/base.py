"""The types every encoder shares: its output, its config, and the registries it is built from."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, NamedTuple

import torch

from vlx.registry import Registry


class EncoderOutput(NamedTuple):
    """What every image/text encoder returns.

    pooled: (B, D) one vector per input; tokens: (B, L, D) the token sequence the pooled vector
    came from (CLS first for ViTs); mask: (B, L) bool, True for real tokens, or None (all real).
    """

    pooled: torch.Tensor
    tokens: torch.Tensor
    mask: torch.Tensor | None = None


@dataclass
class EncoderConfig:
    """Which encoder to build: a registered ``name``, an optional size ``preset`` (vit/transformer)
    or local ``path`` (HF dirs), ``freeze`` to train nothing in it, and constructor ``kwargs``
    that override the preset (e.g. ``{in_channels: 1}`` for depth, ``{image_size: 64}``)."""

    name: str = "vit"
    preset: str | None = None
    path: str | None = None
    freeze: bool = False
    kwargs: dict[str, Any] = field(default_factory=dict)


# Constructors are ``fn(preset: str | None, path: str | None, **kwargs) -> nn.Module`` whose
# module has ``.output_dim`` and returns an EncoderOutput.
IMAGE_ENCODERS: Registry = Registry("image encoder")
TEXT_ENCODERS: Registry = Registry("text encoder")


def resolve_preset(
    presets: dict[str, dict[str, Any]], preset: str | None, kwargs: dict[str, Any], kind: str
) -> dict[str, Any]:
    """Preset values overridden by ``kwargs``; ``B-32`` and ``B/32`` name the same preset.
    Unknown preset -> ConfigError listing the known ones."""
    from vlx.config import ConfigError

    if preset is None:
        return dict(kwargs)
    key = preset.replace("-", "/")
    if key not in presets:
        raise ConfigError(f"{kind}: unknown preset {preset!r}; known: {', '.join(presets)}")
    return {**presets[key], **kwargs}


def construct(cls: type, kind: str, values: dict[str, Any]) -> Any:
    """``cls(**values)``, turning a wrong or missing keyword into a one-line ConfigError."""
    from vlx.config import ConfigError

    try:
        return cls(**values)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"{kind}: bad constructor arguments {sorted(values)}: {e}") from None
