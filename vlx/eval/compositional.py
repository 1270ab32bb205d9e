"""Compositional evaluation in the benchmarks' own file layouts: an image scores its true
caption above a hard negative, accuracy per category.

- SugarCrepe (Hsieh et al. 2023): a directory of per-category JSON files (``add_att.json``,
  ``replace_rel.json``, ``swap_obj.json``, ...), each ``{id: {"filename", "caption",
  "negative_caption"}}``, images (COCO val2017) under ``image_root``. Correct when
  cos(image, caption) > cos(image, negative_caption), strictly, as its main_eval.py counts.
- ARO (Yuksekgonul et al. 2023) VG-Relation / VG-Attribution: ``visual_genome_relation.json``
  / ``visual_genome_attribution.json``, a list of ``{"image_path", "bbox_x", "bbox_y",
  "bbox_w", "bbox_h", "true_caption", "false_caption", "relation_name"}`` (attribution:
  ``"attributes": [a, b]`` instead of the relation), images under ``image_root`` (default:
  ``images/`` beside the JSON). The image is cropped to the box first; a tie counts as wrong
  (ARO takes the argmax over [false, true]). Categories: the relation, or ``"a_b"``.
  ``macro_accuracy`` is the mean over categories, counting for VG-Attribution only pairs with
  at least 25 cases as ARO's evaluate_scores does; ``accuracy`` is over all cases.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import torch

from vlx.data.errors import DataError, read_json_file
from vlx.eval.loader import encode_image_batch, encode_texts, image_batches

ARO_MIN_ATTRIBUTE_COUNT = 25


def _need(rec: dict, keys: tuple[str, ...], where: str) -> None:
    if not isinstance(rec, dict):
        raise DataError(f"{where}: expected a JSON object, got {type(rec).__name__}")
    missing = [k for k in keys if k not in rec]
    if missing:
        raise DataError(f"{where}: missing key '{missing[0]}'")


def read_sugarcrepe(data_dir: str | Path, image_root: str | Path) -> list[dict]:
    """Cases ``{"image", "box": None, "pos", "neg", "category"}`` from every ``*.json`` in
    ``data_dir`` (category = file stem)."""
    d, root = Path(data_dir), Path(image_root)
    files = sorted(d.glob("*.json")) if d.is_dir() else []
    if not files:
        raise DataError(f"{d}: no SugarCrepe category files (*.json with id -> filename/caption/negative_caption)")
    cases = []
    for f in files:
        data = read_json_file(f)
        if not isinstance(data, dict):
            raise DataError(f"{f}: expected a JSON object keyed by id")
        for key, rec in data.items():
            _need(rec, ("filename", "caption", "negative_caption"), f"{f}: id {key}")
            img = root / rec["filename"]
            if not img.is_file():
                raise DataError(f"{f}: id {key}: image file not found: {img}")
            cases.append(
                {"image": img, "box": None, "pos": rec["caption"], "neg": rec["negative_caption"], "category": f.stem}
            )
    return cases


def read_aro(json_path: str | Path, image_root: str | Path | None = None) -> list[dict]:
    """Cases from a VG-Relation or VG-Attribution JSON (see the module docstring)."""
    p = Path(json_path)
    root = Path(image_root) if image_root else p.parent / "images"
    data = read_json_file(p)
    if not isinstance(data, list):
        raise DataError(f"{p}: expected a JSON list of ARO test cases")
    cases = []
    for i, rec in enumerate(data):
        where = f"{p}: item {i}"
        _need(rec, ("image_path", "bbox_x", "bbox_y", "bbox_w", "bbox_h", "true_caption", "false_caption"), where)
        kind = "relation"
        if "relation_name" in rec:
            cat = rec["relation_name"]
        elif isinstance(rec.get("attributes"), list) and len(rec["attributes"]) == 2:
            cat, kind = f"{rec['attributes'][0]}_{rec['attributes'][1]}", "attribution"
        else:
            raise DataError(f"{where}: needs 'relation_name' (VG-Relation) or 'attributes': [a, b] (VG-Attribution)")
        img = root / rec["image_path"]
        if not img.is_file():
            raise DataError(f"{where}: image file not found: {img}")
        x, y, w, h = (float(rec[k]) for k in ("bbox_x", "bbox_y", "bbox_w", "bbox_h"))
        box = (x, y, x + w, y + h)
        cases.append(
            {
                "image": img,
                "box": box,
                "pos": rec["true_caption"],
                "neg": rec["false_caption"],
                "category": cat,
                "kind": kind,
            }
        )
    return cases


def pairwise_accuracy(
    model,
    preprocess,
    tokenizer,
    cases: list[dict],
    device: torch.device | str = "cpu",
    batch_size: int = 64,
    num_workers: int = 2,
    min_count: int = 0,
) -> dict:
    """{"accuracy", "macro_accuracy", "per_category": {cat: {"accuracy", "count"}}, "correct":
    [bool]} in percent; ``min_count``: categories with fewer cases are left out of the macro
    mean (still listed)."""
    device = torch.device(device)
    paths = [c["image"] for c in cases]
    boxes = [c["box"] for c in cases]
    img = torch.cat(
        [
            encode_image_batch(model, preprocess, x, device)
            for x, _ in image_batches(paths, preprocess, batch_size, num_workers, boxes=boxes)
        ]
    )
    pos = encode_texts(model, tokenizer, [c["pos"] for c in cases], device)
    neg = encode_texts(model, tokenizer, [c["neg"] for c in cases], device)
    correct = ((img * pos).sum(-1) > (img * neg).sum(-1)).tolist()
    by_cat: dict[str, list[bool]] = defaultdict(list)
    for c, ok in zip(cases, correct):
        by_cat[c["category"]].append(ok)
    per = {k: {"accuracy": 100.0 * sum(v) / len(v), "count": len(v)} for k, v in sorted(by_cat.items())}
    counted = [r["accuracy"] for r in per.values() if r["count"] >= min_count]
    return {
        "accuracy": 100.0 * sum(correct) / len(correct),
        "macro_accuracy": sum(counted) / len(counted) if counted else float("nan"),
        "per_category": per,
        "n": len(cases),
        "correct": correct,
    }


def evaluate_sugarcrepe(model, preprocess, tokenizer, data_dir, image_root, **kw) -> dict:
    return {
        "task": "sugarcrepe",
        **pairwise_accuracy(model, preprocess, tokenizer, read_sugarcrepe(data_dir, image_root), **kw),
    }


def evaluate_aro(model, preprocess, tokenizer, json_path, image_root=None, **kw) -> dict:
    cases = read_aro(json_path, image_root)
    attribution = cases[0]["kind"] == "attribution" if cases else False
    min_count = ARO_MIN_ATTRIBUTE_COUNT if attribution else 0
    res = pairwise_accuracy(model, preprocess, tokenizer, cases, min_count=min_count, **kw)
    return {"task": "aro_vg_attribution" if attribution else "aro_vg_relation", **res}
