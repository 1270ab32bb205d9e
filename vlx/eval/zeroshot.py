"""Zero-shot classification (Radford et al. 2021, Sec. 3.1.4): each class is the text
embedding of its name in prompt templates; with several templates the per-template
embeddings are L2-normalised, averaged and normalised again (CLIP's prompt ensembling).
Logits are scale * cos (+ SigLIP's bias): the ranking is the cosine's."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch

from vlx.data.errors import DataError
from vlx.data.image_folder import read_image_folder
from vlx.eval.loader import encode_image_batch, encode_texts, image_batches
from vlx.metrics import topk_accuracy

DEFAULT_TEMPLATES = ("a photo of a {}.",)


def read_templates(path: str | Path) -> list[str]:
    """One template per line with ``{}`` (or ``{c}``) where the class name goes."""
    p = Path(path)
    if not p.is_file():
        raise DataError(f"{p}: templates file not found")
    out = [ln.strip().replace("{c}", "{}") for ln in p.read_text().splitlines() if ln.strip()]
    bad = [t for t in out if "{}" not in t]
    if not out or bad:
        raise DataError(f"{p}: every line must be a template with {{}} for the class name (got {bad[:1] or 'none'})")
    return out


def zero_shot_weights(
    model, tokenizer, classnames: Sequence[str], templates: Sequence[str], device: torch.device
) -> torch.Tensor:
    """(E, C): column c = the normalised mean of the normalised embeddings of templates x class c."""
    texts = [t.format(c) for c in classnames for t in templates]
    emb = encode_texts(model, tokenizer, texts, device).view(len(classnames), len(templates), -1)
    w = emb.mean(dim=1)
    return (w / w.norm(dim=-1, keepdim=True)).T


def evaluate_zeroshot(
    model,
    preprocess,
    tokenizer,
    root: str | Path,
    classnames: str | Path | None = None,
    templates: Sequence[str] = DEFAULT_TEMPLATES,
    device: torch.device | str = "cpu",
    batch_size: int = 64,
    num_workers: int = 2,
) -> dict:
    """Top-1/top-5 and mean per-class top-1 on an ImageFolder; also the predictions."""
    device = torch.device(device)
    data = read_image_folder(root, classnames)
    w = zero_shot_weights(model, tokenizer, data.classnames, templates, device)
    paths = [p for p, _ in data.samples]
    labels = torch.tensor([y for _, y in data.samples])
    img = torch.cat(
        [
            encode_image_batch(model, preprocess, x, device)
            for x, _ in image_batches(paths, preprocess, batch_size, num_workers)
        ]
    )
    logits = img @ w
    acc = topk_accuracy(logits, labels, ks=(1, 5))
    pred = logits.argmax(dim=1)
    per_class = [
        float((pred[labels == c] == c).float().mean() * 100) for c in range(len(data.classnames)) if (labels == c).any()
    ]
    return {
        "task": "zeroshot_classification",
        "top1": acc["top1"],
        "top5": acc["top5"],
        "mean_per_class_top1": sum(per_class) / len(per_class),
        "n_images": len(paths),
        "n_classes": len(data.classnames),
        "classnames": data.classnames,
        "templates": list(templates),
        "predictions": [data.classnames[i] for i in pred.tolist()],
        "files": [str(p.relative_to(data.root)) for p in paths],
    }
