"""CLIP-style dual encoder (Radford et al. 2021): an image and a text encoder, linear
projections into one embedding space, and a learnable temperature. Token-level projected
outputs are kept for fine-grained losses (FILIP's late interaction)."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import cached_property

import torch
import torch.nn.functional as F
from torch import nn

from vlx.encoders import EncoderConfig, build_image_encoder, build_text_encoder

MAX_LOGIT_SCALE = 100.0  # CLIP clamps exp(t) at 100 so training stays stable


@dataclass(eq=False)
class DualEncoderOutput:
    """image_embeds (B, E), text_embeds (B, E): projected and L2-normalised pooled vectors;
    image_tokens (B, Li, E), text_tokens (B, Lt, E): projected, L2-normalised tokens;
    text_mask (B, Lt) bool; logit_scale: 0-dim, exp'd and clamped to 100.

    The token fields are computed on first access (and kept), so that losses that use only
    the pooled embeddings (CLIP, SigLIP) do not pay for projecting every token; gradients
    flow through them all the same. Iterating yields the six fields in the order above.
    """

    image_embeds: torch.Tensor
    text_embeds: torch.Tensor
    text_mask: torch.Tensor | None
    logit_scale: torch.Tensor
    _image_tokens_fn: Callable[[], torch.Tensor] = field(repr=False)
    _text_tokens_fn: Callable[[], torch.Tensor] = field(repr=False)

    @cached_property
    def image_tokens(self) -> torch.Tensor:
        return self._image_tokens_fn()

    @cached_property
    def text_tokens(self) -> torch.Tensor:
        return self._text_tokens_fn()

    def __iter__(self) -> Iterator[torch.Tensor | None]:
        yield from (
            self.image_embeds,
            self.text_embeds,
            self.image_tokens,
            self.text_tokens,
            self.text_mask,
            self.logit_scale,
        )


@dataclass
class DualEncoderConfig:
    image: EncoderConfig = field(default_factory=lambda: EncoderConfig(name="vit", preset="tiny"))
    text: EncoderConfig = field(default_factory=lambda: EncoderConfig(name="transformer", preset="tiny"))
    embed_dim: int = 64
    init_temperature: float = 0.07
    learn_temperature: bool = True

    def __post_init__(self) -> None:
        if self.embed_dim < 1:
            raise ValueError(f"embed_dim must be >= 1, got {self.embed_dim}")
        if not self.init_temperature > 0:
            raise ValueError(f"init_temperature must be > 0, got {self.init_temperature}")


def _is_frozen(module: nn.Module) -> bool:
    return bool(getattr(module, "is_frozen", False))


class DualEncoder(nn.Module):
    """``forward(images (B, C, H, W), input_ids (B, L), attention_mask (B, L)) ->
    DualEncoderOutput``. Encoders built with ``freeze=True`` stay in eval mode and run without
    autograd; their projections still train."""

    def __init__(
        self,
        image_encoder: nn.Module,
        text_encoder: nn.Module,
        embed_dim: int,
        init_temperature: float = 0.07,
        learn_temperature: bool = True,
    ):
        super().__init__()
        self.image_encoder, self.text_encoder = image_encoder, text_encoder
        self.embed_dim = embed_dim
        self.image_proj = nn.Linear(image_encoder.output_dim, embed_dim, bias=False)
        self.text_proj = nn.Linear(text_encoder.output_dim, embed_dim, bias=False)
        nn.init.normal_(self.image_proj.weight, std=image_encoder.output_dim**-0.5)
        nn.init.normal_(self.text_proj.weight, std=text_encoder.output_dim**-0.5)
        # A parameter either way (state dicts look the same); fixed when not learned.
        self.log_logit_scale = nn.Parameter(
            torch.tensor(math.log(1.0 / init_temperature)), requires_grad=learn_temperature
        )

    def train(self, mode: bool = True) -> DualEncoder:
        super().train(mode)
        for enc in (self.image_encoder, self.text_encoder):
            if _is_frozen(enc):
                enc.eval()  # no dropout in a frozen tower
        return self

    @property
    def logit_scale(self) -> torch.Tensor:
        """0-dim: exp(log scale) clamped to 100."""
        return self.log_logit_scale.exp().clamp(max=MAX_LOGIT_SCALE)

    def _run(self, encoder: nn.Module, *args: torch.Tensor):
        if _is_frozen(encoder):
            with torch.no_grad():
                return encoder(*args)
        return encoder(*args)

    def encode_image(self, images: torch.Tensor, normalize: bool = True) -> torch.Tensor:
        """images (B, C, H, W) -> (B, E)."""
        x = self.image_proj(self._run(self.image_encoder, images).pooled)
        return F.normalize(x, dim=-1) if normalize else x

    def encode_text(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None, normalize: bool = True
    ) -> torch.Tensor:
        """input_ids (B, L), attention_mask (B, L) -> (B, E)."""
        x = self.text_proj(self._run(self.text_encoder, input_ids, attention_mask).pooled)
        return F.normalize(x, dim=-1) if normalize else x

    def forward(
        self, images: torch.Tensor, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None
    ) -> DualEncoderOutput:
        img = self._run(self.image_encoder, images)
        txt = self._run(self.text_encoder, input_ids, attention_mask)
        # Project the pooled vectors on their own (not by slicing projected tokens): pooling
        # may be a mean or a post-norm CLS that is not one of the tokens.
        return DualEncoderOutput(
            image_embeds=F.normalize(self.image_proj(img.pooled), dim=-1),
            text_embeds=F.normalize(self.text_proj(txt.pooled), dim=-1),
            text_mask=txt.mask,
            logit_scale=self.logit_scale,
            _image_tokens_fn=lambda: F.normalize(self.image_proj(img.tokens), dim=-1),
            _text_tokens_fn=lambda: F.normalize(self.text_proj(txt.tokens), dim=-1),
        )


def build_dual_encoder(cfg: DualEncoderConfig) -> DualEncoder:
    """DualEncoder from a config: both encoders through their factories (freeze honoured)."""
    return DualEncoder(
        build_image_encoder(cfg.image),
        build_text_encoder(cfg.text),
        cfg.embed_dim,
        init_temperature=cfg.init_temperature,
        learn_temperature=cfg.learn_temperature,
    )
