"""Image and text encoders behind one factory: ``build_image_encoder(EncoderConfig(...))``.

Registered names: image ``vit``, ``hf_clip_vision``; text ``transformer``, ``hf_text``,
``minilm``, ``hf_clip_text``. Every encoder returns ``EncoderOutput(pooled, tokens, mask)``
and has ``.output_dim``.
"""

from __future__ import annotations

from torch import nn

from vlx.config import ConfigError
from vlx.encoders import hf, text, vit  # noqa: F401  (importing registers the constructors)
from vlx.encoders.base import IMAGE_ENCODERS, TEXT_ENCODERS, EncoderConfig, EncoderOutput
from vlx.encoders.cache import FrozenTextCache, cache_if_frozen
from vlx.encoders.text import TextTransformer
from vlx.encoders.vit import Attention, Block, Mlp, VisionTransformer
from vlx.registry import Registry

__all__ = [
    "EncoderOutput",
    "EncoderConfig",
    "IMAGE_ENCODERS",
    "TEXT_ENCODERS",
    "build_image_encoder",
    "build_text_encoder",
    "freeze_module",
    "VisionTransformer",
    "TextTransformer",
    "Block",
    "Attention",
    "Mlp",
    "FrozenTextCache",
    "cache_if_frozen",
]


def freeze_module(module: nn.Module) -> nn.Module:
    """Stop gradients into ``module`` and mark it frozen; DualEncoder keeps frozen encoders in
    eval mode (no dropout) and runs them under no_grad."""
    module.requires_grad_(False)
    module.is_frozen = True
    return module


def _build(registry: Registry, cfg: EncoderConfig) -> nn.Module:
    if cfg.name not in registry:
        known = ", ".join(registry.names())  # names() loads plugins, which may register more
        if cfg.name not in registry:
            raise ConfigError(f"{registry.kind} name {cfg.name!r} is not registered; known: {known}")
    ctor = registry.get(cfg.name)
    encoder = ctor(preset=cfg.preset, path=cfg.path, **dict(cfg.kwargs))
    if cfg.freeze:
        freeze_module(encoder)
    return encoder


def build_image_encoder(cfg: EncoderConfig) -> nn.Module:
    """The image encoder named by ``cfg`` (ConfigError for an unknown name/preset/bad path)."""
    return _build(IMAGE_ENCODERS, cfg)


def build_text_encoder(cfg: EncoderConfig) -> nn.Module:
    """The text encoder named by ``cfg`` (ConfigError for an unknown name/preset/bad path)."""
    return _build(TEXT_ENCODERS, cfg)
