"""A user's CLIP or SigLIP checkpoint as the captioner's frame encoder, the way LLaVA (Liu et al.
2023) and PLLaVA (Xu et al. 2024) use one: the vision transformer's hidden states at
``feature_layer`` (their default -2, the second-to-last layer, without the post-layernorm),
patch tokens only ("default" feature selection drops CLIP's CLS token; SigLIP has none), and
the checkpoint's own image preprocessing (``preprocessor_config.json``: resize, centre crop,
rescale, mean/std, through :func:`vlx.create_model_and_transforms`).

The checkpoint is a local ``CLIPModel`` / ``SiglipModel`` directory, as
``vlx.create_model_and_transforms`` reads it (the text tower is loaded with it and dropped).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn

from vlx.config import ConfigError
from vlx.data.preprocess import ImagePreprocess
from vlx.encoders.base import EncoderOutput


class HFVisionTower(nn.Module):
    """``forward(images (B, 3, H, W)) -> EncoderOutput(pooled (B, D), tokens (B, [1+]N, D))``:
    ``tokens`` = the HF vision model's ``hidden_states[feature_layer]`` (CLIP: CLS first, then
    the N patches; SigLIP: the N patches), ``pooled`` = CLIP's CLS token at that layer or
    SigLIP's patch mean. ``has_cls`` says whether ``tokens[:, 0]`` is a CLS token.

    Layers after ``feature_layer``, the post-layernorm and SigLIP's attention-pooling head do
    not reach the output: they are frozen (no gradient would come; DDP and FSDP's sharded
    resume need every trainable parameter to get one)."""

    def __init__(self, vision_model: nn.Module, kind: str, feature_layer: int = -2):
        super().__init__()
        self.vision_model, self.kind = vision_model, kind
        self.has_cls = kind == "clip"
        self.output_dim = int(vision_model.config.hidden_size)
        n = len(vision_model.encoder.layers)
        # hidden_states has n + 1 entries: the embeddings' output, then each layer's.
        if not -(n + 1) <= feature_layer <= n:
            raise ConfigError(
                f"model.vision_feature_layer: {feature_layer} is outside the tower's {n} layers "
                f"(hidden states {-(n + 1)}..{n})"
            )
        self.feature_layer = feature_layer
        used = feature_layer if feature_layer >= 0 else n + 1 + feature_layer  # layers that run into it
        for blk in list(vision_model.encoder.layers)[used:]:
            blk.requires_grad_(False)
        for name in ("post_layernorm", "head"):
            if getattr(vision_model, name, None) is not None:
                getattr(vision_model, name).requires_grad_(False)

    def forward(self, images: torch.Tensor) -> EncoderOutput:
        out = self.vision_model(pixel_values=images, output_hidden_states=True)
        tokens = out.hidden_states[self.feature_layer]
        pooled = tokens[:, 0] if self.has_cls else tokens.mean(1)
        return EncoderOutput(pooled=pooled, tokens=tokens, mask=None)


def load_vision_tower(name_or_path: str | Path, feature_layer: int = -2) -> tuple[HFVisionTower, ImagePreprocess]:
    """(tower, the checkpoint's evaluation preprocessing) from a local CLIP/SigLIP directory;
    anything else is a one-line ConfigError."""
    from vlx.factory import create_model_and_transforms
    from vlx.models.presets import is_preset

    if is_preset(str(name_or_path)):
        raise ConfigError(
            f"model.vision_name_or_path: {name_or_path!r} is a vlx preset; give a local CLIPModel/SiglipModel "
            "directory here, or use model.vision for vlx's own towers"
        )
    model, _, preprocess_val = create_model_and_transforms(name_or_path)
    kind = model.dual.source[0]
    return HFVisionTower(model.dual.image_encoder.vision_model, kind, feature_layer), preprocess_val


def preprocess_frames(frames: torch.Tensor, pre: ImagePreprocess) -> torch.Tensor:
    """uint8 (B, T, H, W, 3) -> float (B, T, 3, h, w) by ``pre`` frame by frame (its PIL
    geometry, as the checkpoint's HF image processor does it, then rescale and normalise),
    on the CPU; returned on ``frames``' device."""
    B, T = frames.shape[:2]
    flat = frames.reshape(B * T, *frames.shape[2:]).cpu().numpy()
    geo = torch.stack([pre.uint8(Image.fromarray(np.ascontiguousarray(f))) for f in flat])
    x = pre.normalize(geo)
    return x.reshape(B, T, *x.shape[1:]).to(frames.device)
