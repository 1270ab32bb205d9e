"""What a released checkpoint directory says about its inputs (image-processor settings,
placeholder tokens, chat template) and how frames become its visual tokens: the
``"native"`` path through the checkpoint's own transformers functions, and the per-frame
vision features the PLLaVA path pools. Used by :mod:`video.models.hf_vlm`.

Frames are resized/normalised here with torch (the transformers video processors need
torchvision, which does not install beside the CPU torch); LLaVA-NeXT's any-resolution
tiles come from its own image processor (PIL backend).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from vlx.data.errors import DataError

# architectures[0] -> family
ARCHITECTURES = {
    "LlavaForConditionalGeneration": "llava",
    "PllavaForConditionalGeneration": "llava",
    "LlavaNextForConditionalGeneration": "llava_next",
    "LlavaNextVideoForConditionalGeneration": "llava_next_video",
    "LlavaOnevisionForConditionalGeneration": "llava_onevision",
    "Qwen2VLForConditionalGeneration": "qwen2_vl",
}
IMAGE_FAMILIES = ("llava", "llava_next")

# LLaVA-1.5's conversation format, for checkpoints that ship no chat template.
VICUNA_TEMPLATE = (
    "{% for m in messages %}{% if m['role'] == 'user' %}USER: {{ m['content'] }} "
    "{% else %}ASSISTANT: {{ m['content'] }}</s>{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}ASSISTANT:{% endif %}"
)


@dataclass
class MediaSettings:
    mean: list[float]
    std: list[float]
    resize: int | tuple[int, int]  # shortest edge, or (height, width)
    crop: tuple[int, int] | None
    placeholder: str  # what replaces "<video>" in the user text
    placeholder_id: int  # the token expanded to the visual tokens
    template: str
    tokenizer: Any
    processor_dir: Path
    qwen: dict[str, int] | None = None  # patch_size, merge_size, temporal_patch_size

    def placeholder_text(self, text: str) -> str:
        return text.replace("<video>", self.placeholder)

    def render(self, messages: list[dict], add_generation_prompt: bool = False) -> str:
        return self.tokenizer.apply_chat_template(
            messages, chat_template=self.template, tokenize=False, add_generation_prompt=add_generation_prompt
        )


def _chat_template(path: Path, tokenizer) -> str:
    if (path / "chat_template.jinja").is_file():
        return (path / "chat_template.jinja").read_text()
    if (path / "chat_template.json").is_file():
        return json.loads((path / "chat_template.json").read_text())["chat_template"]
    return getattr(tokenizer, "chat_template", None) or VICUNA_TEMPLATE


def load_media_settings(path: Path, config, family: str, tokenizer) -> MediaSettings:
    pp = path / "preprocessor_config.json"
    if not pp.is_file():
        raise DataError(f"{path}: no preprocessor_config.json (the checkpoint's image processor settings)")
    p = json.loads(pp.read_text())
    size = p.get("size", {})
    resize: int | tuple[int, int] = (
        (size["height"], size["width"])
        if "height" in size
        else size.get("shortest_edge", getattr(config.vision_config, "image_size", 224))
    )
    crop = (p["crop_size"]["height"], p["crop_size"]["width"]) if p.get("do_center_crop") and "crop_size" in p else None
    qwen = None
    if family == "qwen2_vl":
        placeholder, ph_id = "<|vision_start|><|video_pad|><|vision_end|>", config.video_token_id
        qwen = {k: p.get(k, d) for k, d in (("patch_size", 14), ("merge_size", 2), ("temporal_patch_size", 2))}
        qwen["min_pixels"] = size.get("shortest_edge", 56 * 56)
        qwen["max_pixels"] = size.get("longest_edge", 28 * 28 * 1280)
    elif family in IMAGE_FAMILIES:
        ph_id = config.image_token_id
        placeholder = tokenizer.convert_ids_to_tokens(ph_id)
    else:
        ph_id = config.video_token_id
        placeholder = tokenizer.convert_ids_to_tokens(ph_id)
    return MediaSettings(
        p.get("image_mean", [0.5] * 3),
        p.get("image_std", [0.5] * 3),
        resize,
        crop,
        placeholder,
        int(ph_id),
        _chat_template(path, tokenizer),
        tokenizer,
        path,
        qwen,
    )


def qwen_smart_resize(h: int, w: int, factor: int, min_pixels: int, max_pixels: int) -> tuple[int, int]:
    """Qwen2-VL's target size: each side rounded to a multiple of ``factor``, the area kept
    within [min_pixels, max_pixels] (the rule of its image processor's ``smart_resize``)."""
    hb, wb = max(factor, round(h / factor) * factor), max(factor, round(w / factor) * factor)
    if hb * wb > max_pixels:
        beta = math.sqrt(h * w / max_pixels)
        hb, wb = (
            max(factor, math.floor(h / beta / factor) * factor),
            max(factor, math.floor(w / beta / factor) * factor),
        )
    elif hb * wb < min_pixels:
        beta = math.sqrt(min_pixels / (h * w))
        hb, wb = math.ceil(h * beta / factor) * factor, math.ceil(w * beta / factor) * factor
    return hb, wb


def preprocess_frames(frames: torch.Tensor, m: MediaSettings) -> torch.Tensor:
    """uint8 (B, T, H, W, 3) -> float (B, T, 3, h, w): resize (shortest edge, bicubic, or to
    (height, width)), center crop, rescale to [0, 1], normalise with the processor's mean/std."""
    B, T, H, W, _ = frames.shape
    x = frames.flatten(0, 1).permute(0, 3, 1, 2).float()
    if m.qwen is not None:
        q = m.qwen
        out_hw = qwen_smart_resize(H, W, q["patch_size"] * q["merge_size"], q["min_pixels"], q["max_pixels"])
    elif isinstance(m.resize, tuple):
        out_hw = m.resize
    else:
        s = m.resize / min(H, W)
        out_hw = (max(m.resize, round(H * s)), max(m.resize, round(W * s)))
    if (H, W) != tuple(out_hw):
        x = F.interpolate(x, size=out_hw, mode="bicubic", align_corners=False, antialias=True).clamp(0, 255)
    if m.crop is not None and tuple(x.shape[-2:]) != m.crop:
        top, left = (x.shape[-2] - m.crop[0]) // 2, (x.shape[-1] - m.crop[1]) // 2
        x = x[..., top : top + m.crop[0], left : left + m.crop[1]]
    mean = torch.tensor(m.mean, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(m.std, device=x.device).view(1, 3, 1, 1)
    x = (x / 255.0 - mean) / std
    return x.reshape(B, T, *x.shape[1:])


def qwen_patchify(x: torch.Tensor, patch: int, merge: int, tp: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Qwen2-VL's patch layout for one clip: (T, C, H, W) -> (t*h*w, C*tp*p*p) and grid
    (1, 3) = [t, h, w]; T is padded to a multiple of ``tp`` by repeating the last frame."""
    if x.shape[0] % tp:
        x = torch.cat([x, x[-1:].expand(tp - x.shape[0] % tp, -1, -1, -1)])
    T, C, H, W = x.shape
    gt, gh, gw = T // tp, H // patch, W // patch
    x = x.reshape(gt, tp, C, gh // merge, merge, patch, gw // merge, merge, patch)
    x = x.permute(0, 3, 6, 4, 7, 2, 1, 5, 8).reshape(gt * gh * gw, C * tp * patch * patch)
    return x, torch.tensor([[gt, gh, gw]])


class VisualInputs:
    """Frames -> the checkpoint's visual tokens (``native``) or per-frame features (``select_features``)."""

    def __init__(self, hf, family: str, media: MediaSettings):
        self.hf, self.family, self.media = hf, family, media
        self._grid_thw: torch.Tensor | None = None
        self._anyres = None

    @property
    def cfg(self):
        return self.hf.config

    def _dtype(self) -> torch.dtype:
        return next(self.hf.parameters()).dtype

    def select_features(self, frames: torch.Tensor) -> torch.Tensor:
        """uint8 (B, T, H, W, 3) -> (B, T, N, Dv): the vision tower's hidden states at
        ``vision_feature_layer`` (a list: concatenated), CLS dropped for strategy "default"."""
        x = preprocess_frames(frames, self.media).to(self._dtype())
        B, T = x.shape[:2]
        out = self.hf.model.vision_tower(x.flatten(0, 1), output_hidden_states=True, return_dict=True)
        layer = self.cfg.vision_feature_layer
        layers = [layer] if isinstance(layer, int) else list(layer)
        hs = [out.hidden_states[i] for i in layers]
        if self.cfg.vision_feature_select_strategy == "default":
            hs = [h[:, 1:] for h in hs]
        h = torch.cat(hs, -1)
        return h.reshape(B, T, *h.shape[1:])

    def native(self, frames: torch.Tensor) -> torch.Tensor:
        """uint8 (B, T, H, W, 3) -> (B, V, D_lm) through the checkpoint's own functions."""
        m = self.hf.model
        B, T = frames.shape[:2]
        if self.family == "llava_next":
            return self._anyres_native(frames)
        x = preprocess_frames(frames, self.media).to(self._dtype())
        if self.family == "llava":
            feats = m.get_image_features(pixel_values=x.flatten(0, 1)).pooler_output
            return torch.stack(list(feats)).reshape(B, -1, feats[0].shape[-1])
        if self.family in ("llava_next_video", "llava_onevision"):
            return m.get_video_features(pixel_values_videos=x).pooler_output.reshape(
                B, -1, self.cfg.text_config.hidden_size
            )
        q = self.media.qwen
        patches, grids = zip(*(qwen_patchify(c, q["patch_size"], q["merge_size"], q["temporal_patch_size"]) for c in x))
        grid = torch.cat(grids).to(x.device)
        self._grid_thw = grid
        feats = m.get_video_features(pixel_values_videos=torch.cat(patches), video_grid_thw=grid).pooler_output
        return torch.stack(list(feats))

    def _anyres_native(self, frames: torch.Tensor) -> torch.Tensor:
        # LLaVA-NeXT's any-resolution tiles: its own image processor and packing.
        from transformers import AutoImageProcessor

        if self._anyres is None:
            self._anyres = AutoImageProcessor.from_pretrained(str(self.media.processor_dir), local_files_only=True)
        B, T = frames.shape[:2]
        flat = frames.flatten(0, 1).cpu().numpy()
        proc = self._anyres(images=list(flat), return_tensors="pt")
        pv = proc["pixel_values"].to(frames.device, self._dtype())
        sizes = proc["image_sizes"].to(frames.device)
        packed = self.hf.model.get_image_features(pixel_values=pv, image_sizes=sizes).pooler_output  # tiles packed
        return torch.cat(list(packed)).reshape(B, -1, packed[0].shape[-1])

    def position_kwargs(self, ids: torch.Tensor, mask: torch.Tensor) -> dict[str, Any]:
        """Qwen2-VL: M-RoPE position ids from the expanded ids and the last clip grid."""
        if self.family != "qwen2_vl":
            return {}
        types = (ids == self.cfg.video_token_id).int() * 2
        pos, _ = self.hf.model.get_rope_index(
            ids, mm_token_type_ids=types, video_grid_thw=self._grid_thw, attention_mask=mask
        )
        return {"position_ids": pos}

    def generate_kwargs(self, ids: torch.Tensor) -> dict[str, Any]:
        """Qwen2-VL: the clip grid and token types, so that generation uses M-RoPE positions."""
        if self.family != "qwen2_vl":
            return {}
        return {"video_grid_thw": self._grid_thw, "mm_token_type_ids": (ids == self.cfg.video_token_id).int() * 2}
