"""Image-text retrieval on caption pairs (JSONL/CSV): images that appear on several lines
(COCO/Flickr30k's five captions each) are one gallery item with several correct captions.
Text->image: the caption's image is correct; image->text: any of the image's captions."""

from __future__ import annotations

from pathlib import Path

import torch

from vlx.data.image_folder import read_pairs
from vlx.eval.loader import encode_image_batch, encode_texts, image_batches
from vlx.metrics.retrieval import image_text_retrieval_metrics


def evaluate_retrieval_pairs(
    model,
    preprocess,
    tokenizer,
    path: str | Path,
    device: torch.device | str = "cpu",
    batch_size: int = 64,
    num_workers: int = 2,
) -> dict:
    device = torch.device(device)
    pairs = read_pairs(path)
    images: dict[Path, int] = {}
    text_to_image = [images.setdefault(p["image"], len(images)) for p in pairs]
    paths = list(images)
    img = torch.cat(
        [
            encode_image_batch(model, preprocess, x, device)
            for x, _ in image_batches(paths, preprocess, batch_size, num_workers)
        ]
    )
    txt = encode_texts(model, tokenizer, [p["caption"] for p in pairs], device)
    sim = img @ txt.T  # (N_images, N_captions)
    out = {"task": "retrieval", **image_text_retrieval_metrics(sim, text_to_image)}
    out.update({"n_images": len(paths), "n_captions": len(pairs)})
    out["t2i_top1"] = sim.argmax(dim=0).tolist()
    out["i2t_top1"] = sim.argmax(dim=1).tolist()
    return out
