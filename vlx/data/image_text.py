"""Image-caption datasets read from a JSONL file (one ``{"image": path, "caption": text}``
per line, paths relative to the file), validated on load so that bad input fails early
with the file and line."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

import torch
from PIL import Image
from torch.utils.data import Dataset

from vlx.data.errors import DataError
from vlx.data.transforms import load_image, load_image_with


def read_caption_jsonl(path: str | Path, require: tuple[str, ...] = ("image", "caption"), check_files: bool = True) -> list[dict[str, Any]]:
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: caption file not found")
    records = []
    for lineno, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as e:
            raise DataError(f"{path}:{lineno}: not valid JSON ({e.msg})") from None
        if not isinstance(rec, dict):
            raise DataError(f"{path}:{lineno}: expected a JSON object, got {type(rec).__name__}")
        for key in require:
            if key not in rec:
                raise DataError(f"{path}:{lineno}: missing key '{key}'")
        cap = rec.get("caption")
        if "caption" in require and (not isinstance(cap, str) or not cap.strip()):
            raise DataError(f"{path}:{lineno}: empty caption")
        if check_files and "image" in rec:
            img = path.parent / rec["image"]
            if not img.is_file():
                raise DataError(f"{path}:{lineno}: image file not found: {img}")
        rec["_line"] = lineno
        records.append(rec)
    if not records:
        raise DataError(f"{path}: caption file is empty (expected one JSON object per line with 'image' and 'caption')")
    return records


class ImageTextDataset(Dataset):
    """Items: ``{"image": (3, S, S) float, "caption": str, "negative": str | None, "index": int}``.

    Decoded images are cached in memory when ``cache`` (small datasets such as shapes world:
    decoding PNGs every epoch would dominate a tiny model's step time). ``transform`` (PIL ->
    (3, H, W), e.g. a checkpoint's ``ImagePreprocess``) replaces the default square resize to
    ``image_size`` with OpenAI CLIP's mean/std."""

    def __init__(
        self,
        jsonl: str | Path,
        image_size: int,
        cache: bool = False,
        transform: Callable[[Image.Image], torch.Tensor] | None = None,
    ):
        self.path = Path(jsonl)
        self.records = read_caption_jsonl(self.path)
        self.image_size = image_size
        self.transform = transform
        self.cache: dict[int, torch.Tensor] | None = {} if cache else None

    def __len__(self) -> int:
        return len(self.records)

    def image(self, i: int) -> torch.Tensor:
        if self.cache is not None and i in self.cache:
            return self.cache[i]
        f = self.path.parent / self.records[i]["image"]
        x = load_image(f, self.image_size) if self.transform is None else load_image_with(f, self.transform)
        if self.cache is not None:
            self.cache[i] = x
        return x

    def __getitem__(self, i: int) -> dict[str, Any]:
        r = self.records[i]
        return {"image": self.image(i), "caption": r["caption"], "negative": r.get("negative"), "index": i}


def make_image_text_collate(tokenizer: Callable[[list[str]], dict[str, torch.Tensor]]) -> Callable[[list[dict]], dict[str, torch.Tensor]]:
    """Stack images, tokenize captions (and hard negatives when every item has one)."""

    def collate(items: list[dict]) -> dict[str, torch.Tensor]:
        batch = {"images": torch.stack([it["image"] for it in items]), "index": torch.tensor([it["index"] for it in items])}
        tok = tokenizer([it["caption"] for it in items])
        batch["input_ids"], batch["attention_mask"] = tok["input_ids"], tok["attention_mask"]
        if all(it.get("negative") for it in items):
            neg = tokenizer([it["negative"] for it in items])
            batch["neg_input_ids"], batch["neg_attention_mask"] = neg["input_ids"], neg["attention_mask"]
        return batch

    return collate
