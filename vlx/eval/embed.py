"""Embedding export: image (and caption) embeddings of a dataset written to safetensors
shards, resumable.

Layout of ``out_dir``: ``manifest.json`` (model, data, row count, shard size, embedding
dim) and ``embeddings-00000.safetensors`` ... each holding rows ``[k * shard_size, (k + 1) *
shard_size)``: ``image_embeds`` (n, E) float32 L2-normalised, ``index`` (n,) int64 row, and
``text_embeds`` (n, E) for caption pairs or ``label`` (n,) int64 for an ImageFolder.
A shard is written to a temporary file and renamed, so a killed run leaves only whole
shards; rerunning the same command skips them and computes the rest, giving the same files
as an uninterrupted run. A different model, data or shard size in an existing manifest is
an error rather than a silent mix."""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from safetensors.torch import save_file

from vlx.data.errors import DataError
from vlx.data.image_folder import read_image_folder, read_pairs
from vlx.eval.loader import encode_image_batch, encode_texts, image_batches

MANIFEST = "manifest.json"


def shard_name(k: int) -> str:
    return f"embeddings-{k:05d}.safetensors"


def read_rows(
    data: str | Path, classnames: str | Path | None = None
) -> tuple[list[Path], list[str] | None, list[int] | None]:
    """(image paths, captions or None, labels or None) of an ImageFolder dir or a pairs file."""
    p = Path(data)
    if p.is_dir():
        folder = read_image_folder(p, classnames)
        return [s for s, _ in folder.samples], None, [y for _, y in folder.samples]
    pairs = read_pairs(p)
    return [r["image"] for r in pairs], [r["caption"] for r in pairs], None


def embed_dataset(
    model,
    preprocess,
    tokenizer,
    data: str | Path,
    out_dir: str | Path,
    model_name: str,
    shard_size: int = 4096,
    device: torch.device | str = "cpu",
    batch_size: int = 64,
    num_workers: int = 2,
    classnames: str | Path | None = None,
) -> dict:
    """Write the missing shards; returns the manifest (with ``written``/``skipped`` counts)."""
    if shard_size < 1:
        raise DataError(f"embed: shard_size must be >= 1, got {shard_size}")
    device = torch.device(device)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths, captions, labels = read_rows(data, classnames)
    n = len(paths)
    manifest = {
        "model": str(model_name),
        "data": str(Path(data).resolve()),
        "rows": n,
        "shard_size": shard_size,
        "shards": [shard_name(k) for k in range((n + shard_size - 1) // shard_size)],
        "fields": ["image_embeds", "index"] + (["text_embeds"] if captions else ["label"]),
    }
    mpath = out / MANIFEST
    if mpath.is_file():
        old = json.loads(mpath.read_text())
        diff = [k for k in ("model", "data", "rows", "shard_size") if old.get(k) != manifest[k]]
        if diff:
            raise DataError(
                f"{mpath}: written for another run ({diff[0]}: {old.get(diff[0])!r} != {manifest[diff[0]]!r}); "
                "use a new output directory"
            )
    else:
        mpath.write_text(json.dumps(manifest, indent=2))
    written = skipped = 0
    for k, name in enumerate(manifest["shards"]):
        if (out / name).is_file():
            skipped += 1
            continue
        lo, hi = k * shard_size, min(n, (k + 1) * shard_size)
        embs = [
            encode_image_batch(model, preprocess, x, device)
            for x, _ in image_batches(paths[lo:hi], preprocess, batch_size, num_workers)
        ]
        tensors = {"image_embeds": torch.cat(embs).contiguous(), "index": torch.arange(lo, hi, dtype=torch.long)}
        if captions is not None:
            tensors["text_embeds"] = encode_texts(model, tokenizer, captions[lo:hi], device).contiguous()
        else:
            tensors["label"] = torch.tensor(labels[lo:hi], dtype=torch.long)
        tmp = out / f".{name}.tmp"
        save_file(tensors, str(tmp), metadata={"model": str(model_name), "rows": f"{lo}:{hi}"})
        os.replace(tmp, out / name)  # whole shards only, even if killed mid-write
        written += 1
    for stray in out.glob(".embeddings-*.tmp"):  # left by a killed run; its shard is now complete
        stray.unlink()
    return {**manifest, "written": written, "skipped": skipped}
