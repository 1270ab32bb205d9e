"""Image loading into normalised tensors with PIL and torch (torchvision does not import
beside the CPU torch build used here, see ../shared/DEPS.md)."""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from vlx.data.errors import DataError

# CLIP's normalisation constants (OpenAI CLIP preprocessing).
IMAGE_MEAN = (0.48145466, 0.4578275, 0.40821073)
IMAGE_STD = (0.26862954, 0.26130258, 0.27577711)


def pil_to_tensor(img: Image.Image, size: int | tuple[int, int] | None = None) -> torch.Tensor:
    """PIL image -> normalised float tensor (3, H, W)."""
    img = img.convert("RGB")
    if size is not None:
        hw = (size, size) if isinstance(size, int) else size
        if img.size != (hw[1], hw[0]):
            img = img.resize((hw[1], hw[0]), Image.BICUBIC)
    x = torch.from_numpy(np.asarray(img, dtype=np.uint8).copy()).permute(2, 0, 1).float().div_(255.0)
    return normalize(x)


def normalize(x: torch.Tensor) -> torch.Tensor:
    """(…, 3, H, W) in [0, 1] -> CLIP-normalised."""
    mean = torch.tensor(IMAGE_MEAN, dtype=x.dtype, device=x.device).view(3, 1, 1)
    std = torch.tensor(IMAGE_STD, dtype=x.dtype, device=x.device).view(3, 1, 1)
    return (x - mean) / std


def load_image(path: str | Path, size: int | tuple[int, int] | None = None) -> torch.Tensor:
    """Read an image file -> (3, H, W) normalised; a missing or corrupt file is a DataError."""
    return load_image_with(path, lambda img: pil_to_tensor(img, size))


def load_image_with(path: str | Path, transform: Callable[[Image.Image], torch.Tensor]) -> torch.Tensor:
    """Read an image file and apply ``transform`` (PIL -> tensor); a missing or corrupt file is
    a DataError."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: image file not found")
    try:
        with Image.open(path) as img:
            img.load()
            return transform(img)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise DataError(f"{path}: not a readable image ({type(e).__name__}: {e})") from None
