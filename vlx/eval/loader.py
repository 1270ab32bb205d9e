"""Batched image and text encoding for evaluation: decoding and the geometric part of the
preprocessing run in DataLoader workers (uint8), the float rescale/normalise once per batch
on the model's device, the model under inference mode (bf16 autocast on CUDA)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import torch
from PIL import Image, UnidentifiedImageError
from torch.utils.data import DataLoader, Dataset

from vlx.data.errors import DataError
from vlx.data.preprocess import ImagePreprocess
from vlx.utils import autocast_context

Box = tuple[float, float, float, float]


class ImagePaths(Dataset):
    """Items ``(uint8 (3, H, W) or None, index)``: None for an unreadable file, so the main
    process can name it in a one-line error instead of a worker traceback. ``boxes``: an
    optional (left, top, right, bottom) crop per image, applied before the preprocessing."""

    def __init__(
        self, paths: Sequence[str | Path], preprocess: ImagePreprocess, boxes: Sequence[Box | None] | None = None
    ):
        self.paths, self.preprocess = [Path(p) for p in paths], preprocess
        self.boxes = list(boxes) if boxes is not None else None

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int):
        try:
            with Image.open(self.paths[i]) as img:
                if self.boxes is not None and self.boxes[i] is not None:
                    img = img.convert("RGB").crop(self.boxes[i])
                return self.preprocess.uint8(img), i
        except (OSError, UnidentifiedImageError, SyntaxError, ValueError):
            return None, i


def _collate(items):
    bad = [i for x, i in items if x is None]
    if bad:
        return None, bad
    return torch.stack([x for x, _ in items]), [i for _, i in items]


def image_batches(
    paths: Sequence[str | Path],
    preprocess: ImagePreprocess,
    batch_size: int = 64,
    num_workers: int = 2,
    start: int = 0,
    boxes: Sequence[Box | None] | None = None,
) -> Iterator[tuple[torch.Tensor, list[int]]]:
    """Yields (uint8 (B, 3, H, W), indices) in order from ``start``; an unreadable image is a
    DataError naming it."""
    ds = ImagePaths(list(paths)[start:], preprocess, None if boxes is None else list(boxes)[start:])
    dl = DataLoader(ds, batch_size=batch_size, num_workers=num_workers, collate_fn=_collate)
    for x, idx in dl:
        if x is None:
            raise DataError(f"{ds.paths[idx[0]]}: not a readable image")
        yield x, [start + i for i in idx]


@torch.inference_mode()
def encode_image_batch(model, preprocess: ImagePreprocess, x: torch.Tensor, device: torch.device) -> torch.Tensor:
    """uint8 (B, 3, H, W) -> normalised embeddings (B, E) float32 on the CPU."""
    x = preprocess.normalize(x.to(device, non_blocking=True))
    with autocast_context(device):
        return model.encode_image(x, normalize=True).float().cpu()


@torch.inference_mode()
def encode_texts(model, tokenizer, texts: Sequence[str], device: torch.device, batch_size: int = 256) -> torch.Tensor:
    """texts -> normalised embeddings (N, E) float32 on the CPU."""
    out = []
    for s in range(0, len(texts), batch_size):
        tok = tokenizer(list(texts[s : s + batch_size]))
        tok = {k: v.to(device) for k, v in tok.items()}
        with autocast_context(device):
            out.append(model.encode_text(tok, normalize=True).float().cpu())
    return torch.cat(out) if out else torch.zeros(0)


def encode_images(
    model, preprocess: ImagePreprocess, paths: Sequence[str | Path], device: torch.device, **kw
) -> torch.Tensor:
    return torch.cat(
        [encode_image_batch(model, preprocess, x, device) for x, _ in image_batches(paths, preprocess, **kw)]
    )
