"""open_clip's entry points for vlx: ``create_model_and_transforms(name_or_path)`` and
``get_tokenizer(name_or_path)``.

``name_or_path`` is a vlx preset (``vlx/model_configs/*.json``: ``tiny``, ``B-32``, ``B-16``;
random init, vlx's own defaults: direct resize to the preset's square size, OpenAI CLIP
mean/std, the MiniLM tokenizer) or a local Hugging Face ``CLIPModel`` / ``SiglipModel``
directory (the checkpoint's weights, its ``preprocessor_config.json`` and its tokenizer).

    model, preprocess_train, preprocess_val = vlx.create_model_and_transforms("path/to/clip")
    tokenizer = vlx.get_tokenizer("path/to/clip")
    logits_per_image, _ = model.get_logits(preprocess_val.batch(images), tokenizer(texts))
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import torch

from vlx.config import ConfigError, from_dict
from vlx.data.preprocess import ImagePreprocess
from vlx.models.clip import CLIP
from vlx.models.dual_encoder import DualEncoderConfig, build_dual_encoder, load_dual_encoder, preset_preprocess
from vlx.models.presets import is_preset, list_presets, read_preset
from vlx.models.pretrained import checkpoint_kind, text_max_length
from vlx.tokenizers import HFTokenizer, TokenizerConfig, build_tokenizer

PREPROCESS_OVERRIDES = ("image_size", "image_mean", "image_std")


def list_models() -> list[str]:
    """The preset names (any local CLIP/SigLIP directory works as well)."""
    return list_presets()


def _with_overrides(pre: ImagePreprocess, kw: dict[str, Any]) -> ImagePreprocess:
    d = dict(pre.__dict__)
    if kw.get("image_size") is not None:
        s = int(kw["image_size"])
        if pre.crop is not None:
            d["crop"] = (s, s)
            if pre.resize == "shortest":
                d["shortest_edge"] = s
        else:
            d["size"] = (s, s)
    if kw.get("image_mean") is not None:
        d["mean"] = tuple(float(v) for v in kw["image_mean"])
    if kw.get("image_std") is not None:
        d["std"] = tuple(float(v) for v in kw["image_std"])
    return ImagePreprocess(**d)


def create_model_and_transforms(
    name_or_path: str | Path, device: str | torch.device | None = None, **overrides: Any
) -> tuple[CLIP, ImagePreprocess, ImagePreprocess]:
    """(model, preprocess_train, preprocess_val); the model is in eval mode.

    ``overrides``: ``image_size``, ``image_mean``, ``image_std`` change the transforms; for a
    preset, any ``DualEncoderConfig`` field (``embed_dim``, ``init_temperature``, ...) changes
    the model. A checkpoint's model is what it is: a model override there is a ConfigError.
    ``preprocess_train`` is ``preprocess_val`` with open_clip's random resized crop (90-100% of
    the area) in place of resize + centre crop."""
    pre_kw = {k: overrides.pop(k) for k in PREPROCESS_OVERRIDES if k in overrides}
    name = str(name_or_path)
    if is_preset(name):
        data = read_preset(name)
        model_data = dict(data["model"])
        known = {f.name for f in dataclasses.fields(DualEncoderConfig)} - {"name_or_path"}
        bad = [k for k in overrides if k not in known]
        if bad:
            raise ConfigError(
                f"create_model_and_transforms: unknown override {bad[0]!r}; known: "
                f"{', '.join(sorted(known) + list(PREPROCESS_OVERRIDES))}"
            )
        model_data.update(overrides)
        cfg = from_dict(DualEncoderConfig, model_data, where=f"vlx/model_configs/{name}.json", prefix="model")
        dual = build_dual_encoder(cfg)
        dual.source = ("preset", name)
        val = dual.preprocess = preset_preprocess(data["preprocess"])
    else:
        if overrides:
            raise ConfigError(
                f"create_model_and_transforms: {name} is a checkpoint; it defines the model, so "
                f"{sorted(overrides)} cannot be overridden (only {', '.join(PREPROCESS_OVERRIDES)})"
            )
        dual = load_dual_encoder(name)  # checks the directory first: one-line errors
        val = dual.preprocess
    val = _with_overrides(val, pre_kw)
    model = CLIP(dual).eval()
    if device is not None:
        model.to(device)
    return model, val.with_train(True), val


def get_transforms(name_or_path: str | Path, **overrides: Any) -> tuple[ImagePreprocess, ImagePreprocess]:
    """(preprocess_train, preprocess_val) of a preset or checkpoint, without building the model."""
    name = str(name_or_path)
    if is_preset(name):
        val = preset_preprocess(read_preset(name)["preprocess"])
    else:
        checkpoint_kind(name)
        val = ImagePreprocess.from_pretrained(name)
    val = _with_overrides(val, overrides)
    return val.with_train(True), val


def get_tokenizer(name_or_path: str | Path, **kwargs: Any) -> HFTokenizer:
    """The tokenizer that goes with ``name_or_path``: a preset's own (MiniLM, its max length),
    or the checkpoint's, keeping its max length (``model_max_length``, capped at the text
    tower's positions: CLIP 77, SigLIP 64), padding side and end token; SigLIP checkpoints pad
    to the max length as SigLIP was trained. ``kwargs`` (``max_length``, ``padding``) override."""
    name = str(name_or_path)
    if is_preset(name):
        cfg = from_dict(TokenizerConfig, {**read_preset(name)["tokenizer"], **kwargs}, where=f"preset {name}")
        return build_tokenizer(cfg)
    kind = checkpoint_kind(name)
    tok = HFTokenizer(name, max_length=None, padding="max_length" if kind == "siglip" else "longest")
    tok.max_length = min(tok.max_length, text_max_length(name, tok.max_length))
    for k, v in kwargs.items():
        if k not in ("max_length", "padding"):
            raise ConfigError(f"get_tokenizer: unknown option {k!r}; known: max_length, padding")
        setattr(tok, k, v)
    return tok
