"""Image preprocessing as a checkpoint's ``preprocessor_config.json`` specifies it, on PIL
images, returning tensors: resize (shortest edge, or straight to height x width as SigLIP's
processor does) -> centre crop -> rescale -> normalise.

Written here rather than calling the HF image processor because torchvision does not import
beside this torch build (HF then falls back to a per-image NumPy float64 path that is several
times slower than doing the uint8 work in PIL and the float work once per batch in torch) and
because vlx's training needs the random-resized-crop variant of the same transform. The
geometry follows ``transformers``' PIL backend step for step (same output sizes, same crop
offsets, zero padding when the image is smaller than the crop), so tensors agree with
``CLIPImageProcessor`` / ``SiglipImageProcessor`` to float rounding.
"""

from __future__ import annotations

import json
import math
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from vlx.config import ConfigError

PREPROCESSOR_FILE = "preprocessor_config.json"


@dataclass(frozen=True)
class ImagePreprocess:
    """``__call__(img: PIL.Image) -> (3, H, W) float32``; ``batch(list) -> (B, 3, H, W)``.

    resize: "shortest" (short side -> ``shortest_edge``, long side scaled and truncated to an
    int, as HF and torchvision do), "exact" (straight to ``size`` = (H, W)) or None.
    crop: (H, W) centre crop (offsets ``(h - H) // 2``), or None. ``train``: a random crop of
    ``train_scale`` of the area at aspect ratio 3/4..4/3 (open_clip's RandomResizedCrop) resized
    to the output size, in place of resize + crop."""

    resize: str | None = "shortest"
    shortest_edge: int | None = 224
    size: tuple[int, int] | None = None
    crop: tuple[int, int] | None = (224, 224)
    resample: int = Image.BICUBIC
    rescale_factor: float | None = 1 / 255
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    convert_rgb: bool = True
    train: bool = False
    train_scale: tuple[float, float] = (0.9, 1.0)

    @property
    def output_size(self) -> tuple[int, int]:
        """(H, W) of every output tensor (the crop, else the exact size)."""
        if self.crop is not None:
            return self.crop
        if self.resize == "exact" and self.size is not None:
            return self.size
        raise ValueError("ImagePreprocess: output size depends on the input (no crop and no exact size)")

    def with_train(self, train: bool = True) -> ImagePreprocess:
        return ImagePreprocess(**{**self.__dict__, "train": train})

    def _geometry(self, img: Image.Image) -> Image.Image:
        w, h = img.size
        if self.resize == "shortest":
            short, long = (w, h) if w <= h else (h, w)
            new_long = int(self.shortest_edge * long / short)
            nw, nh = (self.shortest_edge, new_long) if w <= h else (new_long, self.shortest_edge)
            return img.resize((nw, nh), resample=self.resample)
        if self.resize == "exact":
            return img.resize((self.size[1], self.size[0]), resample=self.resample)
        return img

    def _random_resized_crop(self, img: Image.Image) -> Image.Image | np.ndarray:
        w, h = img.size
        out_h, out_w = self.output_size
        area = w * h
        for _ in range(10):
            target = area * float(torch.empty(1).uniform_(*self.train_scale))
            log_r = torch.empty(1).uniform_(math.log(3 / 4), math.log(4 / 3))
            ratio = math.exp(float(log_r))
            cw, ch = round(math.sqrt(target * ratio)), round(math.sqrt(target / ratio))
            if 0 < cw <= w and 0 < ch <= h:
                top = int(torch.randint(0, h - ch + 1, (1,)))
                left = int(torch.randint(0, w - cw + 1, (1,)))
                return img.resize((out_w, out_h), resample=self.resample, box=(left, top, left + cw, top + ch))
        return self._crop(self._geometry(img))  # fallback: the eval geometry

    def _crop(self, img: Image.Image) -> np.ndarray:
        """PIL -> (H, W, C) uint8, centre-cropped (zero-padded when smaller, as HF does)."""
        a = np.array(img)  # a writable copy: torch.from_numpy refuses read-only buffers
        if a.ndim == 2:
            a = a[:, :, None]
        if self.crop is None:
            return a
        h, w = a.shape[:2]
        ch, cw = self.crop
        top, left = (h - ch) // 2, (w - cw) // 2
        if top >= 0 and left >= 0:
            return a[top : top + ch, left : left + cw]
        # Smaller than the crop: pad to at least the crop with zeros centred as HF does, then crop.
        ph, pw = max(ch, h), max(cw, w)
        padded = np.zeros((ph, pw, a.shape[2]), dtype=a.dtype)
        tp, lp = math.ceil((ph - h) / 2), math.ceil((pw - w) / 2)
        padded[tp : tp + h, lp : lp + w] = a
        top, left = top + tp, left + lp
        return padded[max(0, top) : top + ch, max(0, left) : left + cw]

    def uint8(self, img: Image.Image) -> torch.Tensor:
        """The geometric part only: PIL -> (3, H, W) uint8 (for loaders that batch the float work)."""
        if self.convert_rgb and img.mode != "RGB":
            img = img.convert("RGB")
        if self.train and self.crop is not None:
            a = self._random_resized_crop(img)
            a = np.array(a) if isinstance(a, Image.Image) else a
        else:
            a = self._crop(self._geometry(img))
        return torch.from_numpy(np.ascontiguousarray(a)).permute(2, 0, 1)

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """(…, C, H, W) uint8 -> float32 rescaled and normalised."""
        x = x.float()
        if self.rescale_factor is not None:
            x = x * self.rescale_factor
        if self.mean is not None and self.std is not None:
            mean = torch.tensor(self.mean, dtype=x.dtype, device=x.device).view(-1, 1, 1)
            std = torch.tensor(self.std, dtype=x.dtype, device=x.device).view(-1, 1, 1)
            x = (x - mean) / std
        return x

    def __call__(self, img: Image.Image) -> torch.Tensor:
        return self.normalize(self.uint8(img))

    def batch(self, images: list[Image.Image], threads: int | None = None) -> torch.Tensor:
        """list of PIL images -> (B, 3, H, W) float32: the per-image geometry in a thread pool
        (PIL releases the GIL while resizing; ``threads`` default: the CPU count, 1 = serial),
        then one float pass for the whole batch. Same result as calling it image by image."""
        n = min(len(images), threads or os.cpu_count() or 1)
        if n <= 1 or self.train:  # random crops draw from torch's RNG: keep their order fixed
            return self.normalize(torch.stack([self.uint8(im) for im in images]))
        with ThreadPoolExecutor(max_workers=n) as pool:
            return self.normalize(torch.stack(list(pool.map(self.uint8, images))))

    @classmethod
    def from_hf_config(cls, cfg: dict[str, Any], where: str = PREPROCESSOR_FILE) -> ImagePreprocess:
        """From the dict in a ``preprocessor_config.json`` (CLIPImageProcessor /
        SiglipImageProcessor keys); unsupported size keys are a one-line ConfigError."""
        resize, shortest, size = None, None, None
        if cfg.get("do_resize", True):
            s = cfg.get("size", {"shortest_edge": 224})
            if isinstance(s, int):  # old configs: an int means the shortest edge
                s = {"shortest_edge": s}
            if "shortest_edge" in s and not s.get("longest_edge"):
                resize, shortest = "shortest", int(s["shortest_edge"])
            elif "height" in s and "width" in s:
                resize, size = "exact", (int(s["height"]), int(s["width"]))
            else:
                raise ConfigError(f"{where}: key 'size': expected shortest_edge or height+width, got {s}")
        crop = None
        if cfg.get("do_center_crop", False):
            c = cfg.get("crop_size", {"height": 224, "width": 224})
            crop = (int(c), int(c)) if isinstance(c, int) else (int(c["height"]), int(c["width"]))
        mean = std = None
        if cfg.get("do_normalize", True):
            if "image_mean" not in cfg or "image_std" not in cfg:
                raise ConfigError(f"{where}: do_normalize is set but image_mean/image_std are missing")
            mean, std = tuple(float(v) for v in cfg["image_mean"]), tuple(float(v) for v in cfg["image_std"])
        return cls(
            resize=resize,
            shortest_edge=shortest,
            size=size,
            crop=crop,
            resample=int(cfg.get("resample", Image.BICUBIC)),
            rescale_factor=float(cfg.get("rescale_factor", 1 / 255)) if cfg.get("do_rescale", True) else None,
            mean=mean,
            std=std,
            convert_rgb=bool(cfg.get("do_convert_rgb", True)),
        )

    @classmethod
    def from_pretrained(cls, path: str | Path) -> ImagePreprocess:
        """From ``path/preprocessor_config.json``; a missing or unreadable file is a one-line
        ConfigError."""
        f = Path(path) / PREPROCESSOR_FILE
        if not f.is_file():
            raise ConfigError(f"{f}: not found; a CLIP/SigLIP checkpoint dir needs its image processor config")
        try:
            cfg = json.loads(f.read_text())
        except json.JSONDecodeError as e:
            raise ConfigError(f"{f}: not valid JSON ({e.msg}, line {e.lineno})") from None
        if not isinstance(cfg, dict):
            raise ConfigError(f"{f}: expected a JSON object")
        return cls.from_hf_config(cfg, where=str(f))
