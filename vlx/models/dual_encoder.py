"""CLIP-style dual encoder (Radford et al. 2021): an image and a text encoder, linear
projections into one embedding space, and a learnable temperature. Token-level projected
outputs are kept for fine-grained losses (FILIP's late interaction)."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from vlx.config import ConfigError, from_dict
from vlx.data.preprocess import ImagePreprocess
from vlx.encoders import EncoderConfig, build_image_encoder, build_text_encoder
from vlx.models.presets import is_preset, list_presets, read_preset
from vlx.models.pretrained import load_pretrained_parts

MAX_LOGIT_SCALE = 100.0  # CLIP clamps exp(t) at 100 so training stays stable


@dataclass(eq=False)
class DualEncoderOutput:
    """image_embeds (B, E), text_embeds (B, E): projected and L2-normalised pooled vectors;
    image_tokens (B, Li, E), text_tokens (B, Lt, E): projected, L2-normalised tokens;
    text_mask (B, Lt) bool; logit_scale: 0-dim, exp'd (and clamped to the model's maximum);
    logit_bias: 0-dim SigLIP bias, or None for models without one.

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
    logit_bias: torch.Tensor | None = None

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
    # A vlx preset (``tiny``, ``B-32``, ... in vlx/model_configs/) or a local HF CLIPModel /
    # SiglipModel directory. When set it defines the whole model: image, text, embed_dim and
    # the temperature fields above are not used.
    name_or_path: str | None = None

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
    autograd; their projections still train.

    ``log_logit_scale`` is the parameter (log of the scale, open_clip's ``logit_scale``);
    ``logit_scale`` is exp of it, clamped to ``max_logit_scale`` (None: no clamp).
    A pretrained checkpoint passes its own ``image_proj`` / ``text_proj`` modules, scale
    and ``logit_bias`` (see ``vlx.models.pretrained``); by default the projections are new
    bias-free linears initialised with std ``in_dim ** -0.5`` and there is no bias."""

    def __init__(
        self,
        image_encoder: nn.Module,
        text_encoder: nn.Module,
        embed_dim: int,
        init_temperature: float = 0.07,
        learn_temperature: bool = True,
        image_proj: nn.Module | None = None,
        text_proj: nn.Module | None = None,
        logit_bias: float | None = None,
        max_logit_scale: float | None = MAX_LOGIT_SCALE,
    ):
        super().__init__()
        self.image_encoder, self.text_encoder = image_encoder, text_encoder
        self.embed_dim = embed_dim
        self.max_logit_scale = max_logit_scale
        self.source: tuple[str, str | None] = ("config", None)  # set by load_dual_encoder
        # The image transform the model expects (a preset's or the checkpoint's
        # preprocessor_config.json), set by load_dual_encoder; None for config-built models.
        self.preprocess: ImagePreprocess | None = None
        # Both new projections are built, then both initialised: the RNG order of the runs in
        # docs/results, so their numbers reproduce bit for bit.
        new_image, new_text = image_proj is None, text_proj is None
        if new_image:
            image_proj = nn.Linear(image_encoder.output_dim, embed_dim, bias=False)
        if new_text:
            text_proj = nn.Linear(text_encoder.output_dim, embed_dim, bias=False)
        if new_image:
            nn.init.normal_(image_proj.weight, std=image_encoder.output_dim**-0.5)
        if new_text:
            nn.init.normal_(text_proj.weight, std=text_encoder.output_dim**-0.5)
        self.image_proj, self.text_proj = image_proj, text_proj
        # A parameter either way (state dicts look the same); fixed when not learned.
        self.log_logit_scale = nn.Parameter(
            torch.tensor(math.log(1.0 / init_temperature)), requires_grad=learn_temperature
        )
        self.logit_bias = None if logit_bias is None else nn.Parameter(torch.tensor(float(logit_bias)))

    def train(self, mode: bool = True) -> DualEncoder:
        super().train(mode)
        for enc in (self.image_encoder, self.text_encoder):
            if _is_frozen(enc):
                enc.eval()  # no dropout in a frozen tower
        return self

    @property
    def logit_scale(self) -> torch.Tensor:
        """0-dim: exp(log scale), clamped to ``max_logit_scale`` (100, as CLIP) unless None."""
        s = self.log_logit_scale.exp()
        return s if self.max_logit_scale is None else s.clamp(max=self.max_logit_scale)

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
            logit_bias=self.logit_bias,
            _image_tokens_fn=lambda: F.normalize(self.image_proj(img.tokens), dim=-1),
            _text_tokens_fn=lambda: F.normalize(self.text_proj(txt.tokens), dim=-1),
        )


def build_dual_encoder(cfg: DualEncoderConfig) -> DualEncoder:
    """DualEncoder from a config: ``cfg.name_or_path`` (a vlx preset or a local HF CLIP/SigLIP
    checkpoint, see ``vlx.models.pretrained``) when set, else both encoders through their
    factories (freeze honoured)."""
    if cfg.name_or_path is not None:
        return load_dual_encoder(cfg.name_or_path)
    return DualEncoder(
        build_image_encoder(cfg.image),
        build_text_encoder(cfg.text),
        cfg.embed_dim,
        init_temperature=cfg.init_temperature,
        learn_temperature=cfg.learn_temperature,
    )


def load_dual_encoder(name_or_path: str | Path) -> DualEncoder:
    """A vlx preset (random init, its own defaults) or a local HF ``CLIPModel`` /
    ``SiglipModel`` directory (the checkpoint's towers, projections, scale and bias; see
    ``vlx.models.pretrained``). Sets ``.source`` to ``("preset" | "clip" | "siglip", name)`` and
    ``.preprocess`` to the ImagePreprocess the model expects (siblings that feed tensors read
    its ``mean``, ``std`` and ``output_size``); a checkpoint without preprocessor_config.json
    is a one-line ConfigError."""
    name = str(name_or_path)
    if is_preset(name):
        data = read_preset(name)
        cfg = from_dict(DualEncoderConfig, data["model"], where=f"vlx/model_configs/{name}.json", prefix="model")
        model = build_dual_encoder(cfg)
        model.source = ("preset", name)
        model.preprocess = preset_preprocess(data["preprocess"])
        return model
    if not Path(name).expanduser().exists():
        raise ConfigError(
            f"model: {name!r} is neither a vlx preset ({', '.join(list_presets())}) nor a local "
            "CLIP/SigLIP checkpoint directory"
        )
    parts = load_pretrained_parts(name)
    model = DualEncoder(
        parts.image_encoder,
        parts.text_encoder,
        parts.embed_dim,
        image_proj=parts.image_proj,
        text_proj=parts.text_proj,
        logit_bias=parts.logit_bias,
        max_logit_scale=parts.max_logit_scale,
    )
    with torch.no_grad():
        model.log_logit_scale.fill_(parts.log_logit_scale)
    model.source = (parts.kind, name)
    model.preprocess = ImagePreprocess.from_pretrained(name)
    return model


def preset_preprocess(pre: dict) -> ImagePreprocess:
    """vlx's own default for a preset: straight resize to its square size, its mean/std."""
    s = int(pre["image_size"])
    return ImagePreprocess(
        resize="exact", size=(s, s), crop=None, mean=tuple(pre["mean"]), std=tuple(pre["std"]), shortest_edge=None
    )
