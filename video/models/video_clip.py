"""VideoCLIP: CLIP4Clip-style video-text retrieval (Luo et al. 2021) on the core's DualEncoder.
Frames go through the image tower one by one, the projected frame embeddings are pooled over
time (meanP, seqTransf, attention), and a symmetric InfoNCE with ``ids`` lets several
captions of one video in a batch all count as positives."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from video.io import frames_to_model
from video.pooling import TemporalPoolingConfig, build_temporal_pooling
from vlx.data.transforms import IMAGE_MEAN, IMAGE_STD
from vlx.models.dual_encoder import DualEncoder, DualEncoderConfig, build_dual_encoder


@dataclass
class VideoCLIPConfig:
    dual: DualEncoderConfig = field(default_factory=DualEncoderConfig)
    pooling: TemporalPoolingConfig = field(default_factory=TemporalPoolingConfig)


class VideoCLIP(nn.Module):
    """``encode_video(frames uint8 (B, T, H, W, 3) | float (B, T, 3, H, W), mask (B, T)) ->
    (B, E)``; ``encode_text(input_ids, attention_mask) -> (B, E)``; ``forward(batch) ->
    {"loss", ...}`` with batch keys frames, input_ids, attention_mask, ids (B,) video ids."""

    def __init__(self, dual: DualEncoder, pooling: nn.Module):
        super().__init__()
        self.dual, self.pooling = dual, pooling
        self._loss = None

    @property
    def loss_fn(self):
        if self._loss is None:  # built lazily: the loss module has no parameters of its own
            from vlx.losses import ClipLoss

            self._loss = ClipLoss()
        return self._loss

    def frame_embeddings(self, frames: torch.Tensor) -> torch.Tensor:
        """-> (B, T, E) L2-normalised projected per-frame embeddings."""
        if frames.dtype == torch.uint8:
            pre = getattr(self.dual, "preprocess", None)  # a checkpoint's own mean/std
            mean, std = (pre.mean, pre.std) if pre is not None and pre.mean is not None else (IMAGE_MEAN, IMAGE_STD)
            frames = frames_to_model(frames, mean, std)
        B, T = frames.shape[:2]
        emb = self.dual.encode_image(frames.flatten(0, 1), normalize=True)
        return emb.view(B, T, -1)

    def feature_embeddings(self, features: torch.Tensor) -> torch.Tensor:
        """Cached image-tower features (B, T, D_img) (video/features.py) -> (B, T, E)."""
        return F.normalize(self.dual.image_proj(features), dim=-1)

    def encode_video(
        self, frames: torch.Tensor, mask: torch.Tensor | None = None, normalize: bool = True
    ) -> torch.Tensor:
        """frames uint8 (B, T, H, W, 3), float (B, T, 3, H, W), or cached features (B, T, D)."""
        emb = self.feature_embeddings(frames) if frames.ndim == 3 else self.frame_embeddings(frames)
        v = self.pooling(emb, mask)
        return F.normalize(v, dim=-1) if normalize else v

    def encode_text(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, normalize: bool = True
    ) -> torch.Tensor:
        return self.dual.encode_text(input_ids, attention_mask, normalize=normalize)

    def forward(self, batch: dict) -> dict:
        v = self.encode_video(batch["features"] if "features" in batch else batch["frames"], batch.get("frame_mask"))
        t = self.encode_text(batch["input_ids"], batch["attention_mask"])
        scale = self.dual.logit_scale
        loss = self.loss_fn(v, t, scale, ids=batch.get("ids"))
        return {"loss": loss, "logit_scale": scale.detach()}


def build_video_clip(cfg: VideoCLIPConfig) -> VideoCLIP:
    """``cfg.dual.name_or_path`` initialises from a vlx preset or a CLIP/SigLIP checkpoint
    (its towers, projections and scale; frames normalised with its mean/std)."""
    dual = build_dual_encoder(cfg.dual)
    return VideoCLIP(dual, build_temporal_pooling(cfg.pooling, dual.embed_dim))
