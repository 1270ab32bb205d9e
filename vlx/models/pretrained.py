"""Users' own pretrained image-text checkpoints: a local Hugging Face ``CLIPModel`` or
``SiglipModel`` directory taken apart into what a ``DualEncoder`` is made of, keeping the
checkpoint's towers, projections, logit scale and (SigLIP) logit bias, so that vlx's
logits equal the checkpoint's own ``logits_per_image``.

CLIP (Radford et al. 2021): pooled towers -> ``visual_projection`` / ``text_projection``
(bias-free linears), scale = exp(logit_scale) clamped to 100 as CLIP trains it.
SigLIP (Zhai et al. 2023): the towers' heads already map into the joint space (identity
projections), scale = exp(logit_scale) unclamped, plus the learned bias.

Only reads local directories (the hub is never contacted).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from torch import nn

from vlx.config import ConfigError
from vlx.encoders.hf import HFCLIPText, HFCLIPVision, HFSiglipText, HFSiglipVision, _offline, check_hf_dir

Kind = Literal["clip", "siglip"]
SUPPORTED = {"clip": "CLIPModel", "siglip": "SiglipModel"}


def checkpoint_kind(path: str | Path) -> Kind:
    """The kind, "clip" or "siglip", from ``path/config.json``'s ``model_type``; anything else (no dir,
    no config, no weights, another model type) is a one-line ConfigError."""
    p = check_hf_dir(path, "checkpoint")
    try:
        cfg = json.loads((p / "config.json").read_text())
    except json.JSONDecodeError as e:
        raise ConfigError(f"{p / 'config.json'}: not valid JSON ({e.msg}, line {e.lineno})") from None
    kind = cfg.get("model_type") if isinstance(cfg, dict) else None
    if kind not in SUPPORTED:
        raise ConfigError(
            f"{p / 'config.json'}: model_type {kind!r} is not a CLIP or SigLIP checkpoint "
            f"(expected one of {sorted(SUPPORTED)}: a CLIPModel or SiglipModel directory)"
        )
    return kind


@dataclass
class PretrainedParts:
    """The pieces of a DualEncoder taken from a checkpoint (modules shared with the loaded HF
    model); ``log_logit_scale`` is the checkpoint's log scale, ``logit_bias`` its bias or None."""

    kind: Kind
    path: str
    image_encoder: nn.Module
    text_encoder: nn.Module
    image_proj: nn.Module
    text_proj: nn.Module
    embed_dim: int
    log_logit_scale: float
    logit_bias: float | None
    max_logit_scale: float | None
    config: object  # the transformers config, for export and the siblings' use


def load_hf_model(path: str | Path) -> tuple[Kind, nn.Module]:
    """(kind, the transformers ``CLIPModel`` / ``SiglipModel``) from a local directory."""
    kind = checkpoint_kind(path)
    _offline()
    import transformers

    cls = getattr(transformers, SUPPORTED[kind])
    try:
        model = cls.from_pretrained(str(path), local_files_only=True)
    except (OSError, ValueError, KeyError, RuntimeError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ConfigError(f"checkpoint: {path} is not a loadable {SUPPORTED[kind]} directory ({first})") from None
    return kind, model.eval()


def load_pretrained_parts(path: str | Path) -> PretrainedParts:
    kind, model = load_hf_model(path)
    if kind == "clip":
        image_enc, text_enc = HFCLIPVision(model), HFCLIPText(model)
        image_proj, text_proj = model.visual_projection, model.text_projection
        embed_dim, max_scale, bias = int(model.config.projection_dim), 100.0, None
    else:
        image_enc, text_enc = HFSiglipVision(model), HFSiglipText(model)
        image_proj, text_proj = nn.Identity(), nn.Identity()
        embed_dim, max_scale, bias = text_enc.output_dim, None, float(model.logit_bias.detach().reshape(()))
    return PretrainedParts(
        kind=kind,
        path=str(path),
        image_encoder=image_enc,
        text_encoder=text_enc,
        image_proj=image_proj,
        text_proj=text_proj,
        embed_dim=embed_dim,
        log_logit_scale=float(model.logit_scale.detach().reshape(())),
        logit_bias=bias,
        max_logit_scale=max_scale,
        config=model.config,
    )


def text_max_length(path: str | Path, fallback: int = 77) -> int:
    """The checkpoint's text context (``text_config.max_position_embeddings``)."""
    cfg = json.loads((Path(path) / "config.json").read_text())
    return int(cfg.get("text_config", {}).get("max_position_embeddings", fallback))
