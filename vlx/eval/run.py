"""``vlx eval --model NAME_OR_PATH --data PATH`` and ``vlx embed``: load the model with
``vlx.create_model_and_transforms`` and run the task that the data's layout implies
(a directory of class folders -> zero-shot classification; a .jsonl/.csv/.tsv of pairs ->
retrieval) or the one named by ``task``."""

from __future__ import annotations

from pathlib import Path

from vlx.config import ConfigError
from vlx.data.errors import DataError
from vlx.factory import create_model_and_transforms, get_tokenizer
from vlx.utils import pick_device

TASKS = ("auto", "zeroshot", "retrieval", "sugarcrepe", "aro")


def infer_task(data: str | Path) -> str:
    p = Path(data)
    if p.is_dir():
        return "zeroshot"
    if p.suffix in (".jsonl", ".csv", ".tsv"):
        return "retrieval"
    raise DataError(
        f"{p}: cannot tell the task; expected a directory of class folders (zero-shot) or a .jsonl/.csv/.tsv "
        "of image-caption pairs (retrieval), or pass --task"
    )


def load(name_or_path: str, device: str = "auto"):
    dev = pick_device(device)
    model, _, preprocess = create_model_and_transforms(name_or_path, device=dev)
    return model, preprocess, get_tokenizer(name_or_path), dev


def run_eval(
    name_or_path: str,
    data: str,
    task: str = "auto",
    classnames: str | None = None,
    templates: str | None = None,
    device: str = "auto",
    batch_size: int = 64,
    num_workers: int = 2,
    images: str | None = None,
) -> dict:
    """``images``: the image root for sugarcrepe (COCO val2017, required) and aro (default:
    ``images/`` beside the JSON)."""
    from vlx.eval.compositional import evaluate_aro, evaluate_sugarcrepe
    from vlx.eval.retrieval import evaluate_retrieval_pairs
    from vlx.eval.zeroshot import DEFAULT_TEMPLATES, evaluate_zeroshot, read_templates

    if task not in TASKS:
        raise ConfigError(f"eval: unknown task {task!r}; known: {', '.join(TASKS)}")
    task = infer_task(data) if task == "auto" else task
    if not Path(data).exists():
        raise DataError(f"{data}: not found")
    model, pre, tok, dev = load(name_or_path, device)
    kw = dict(device=dev, batch_size=batch_size, num_workers=num_workers)
    if task == "zeroshot":
        tmpl = read_templates(templates) if templates else list(DEFAULT_TEMPLATES)
        result = evaluate_zeroshot(model, pre, tok, data, classnames=classnames, templates=tmpl, **kw)
    elif task == "sugarcrepe":
        if images is None:
            raise ConfigError("eval --task sugarcrepe: --images (the COCO val2017 image directory) is required")
        result = evaluate_sugarcrepe(model, pre, tok, data, images, **kw)
    elif task == "aro":
        result = evaluate_aro(model, pre, tok, data, images, **kw)
    else:
        result = evaluate_retrieval_pairs(model, pre, tok, data, **kw)
    return {"model": str(name_or_path), "data": str(data), **result}


def run_embed(
    name_or_path: str,
    data: str,
    out: str,
    shard_size: int = 4096,
    classnames: str | None = None,
    device: str = "auto",
    batch_size: int = 64,
    num_workers: int = 2,
) -> dict:
    from vlx.eval.embed import embed_dataset

    model, pre, tok, dev = load(name_or_path, device)
    return embed_dataset(
        model, pre, tok, data, out, str(name_or_path), shard_size, dev, batch_size, num_workers, classnames
    )
