"""ScanQA predicted answers in the layout of ScanQA's ``scripts/predict.py``, the file the
ScanQA benchmark server takes (``pred.test_w_obj.json`` / ``pred.test_wo_obj.json``): a JSON
list with one entry per question,

    {"scene_id": str, "question_id": str, "answer_top10": [str, ...], "bbox": [[x, y, z] x 8]}

``answer_top10``: the model's answers, best first (10, or the whole answer vocabulary when it
has fewer); ``bbox``: the 8 corners of the object the model grounds, in the corner order of
ScanRefer's / ScanQA's ``get_3d_box`` with heading 0 (vlx's boxes are axis-aligned).

``vlx scene-graph predict-scanqa CONFIG --ckpt RUN --questions FILE --out FILE`` runs a trained
``sg_qa`` checkpoint on a ScanQA question file (test splits have no answers or object ids).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

from vlx.data.errors import DataError

# get_3d_box's corner offsets in units of the half size (l, w, h along x, y, z): four at +h, then four at -h
_CORNERS = np.array(
    [[1, 1, 1], [1, -1, 1], [-1, -1, 1], [-1, 1, 1], [1, 1, -1], [1, -1, -1], [-1, -1, -1], [-1, 1, -1]], float
)


def box_corners(box) -> np.ndarray:
    """``(6,)`` centre + size -> ``(8, 3)`` corners in ScanQA's ``get_3d_box`` order (heading 0)."""
    b = np.asarray(box, dtype=float)[:6]
    return b[:3] + _CORNERS * b[3:6] / 2


def scanqa_predictions(model, dataset, collate, device, batch_size: int, answer_names: list[str]) -> list[dict]:
    """One ScanQA prediction entry per item of ``dataset`` (a ``ReferralDataset``, in order)."""
    from scene_graph.models import predict_objects
    from vlx.utils import to_device

    out: list[dict] = []
    k = min(10, len(answer_names))
    model.eval()
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, collate_fn=collate)
    items = iter(dataset.items)
    with torch.no_grad():
        for batch in loader:
            batch = to_device(batch, device)
            res = model(batch)
            if "answer_logits" not in res:
                raise DataError("predict-scanqa: the model gives no answers (an sg_qa checkpoint is needed)")
            boxes = batch["box"][predict_objects(res["scores"], batch["node_batch"])][:, :6].cpu()
            top = res["answer_logits"].topk(k, -1).indices.tolist()
            for box, idx in zip(boxes, top):
                item = next(items)
                out.append(
                    {
                        "scene_id": item["scene_id"],
                        "question_id": item["ann_id"],
                        "answer_top10": [answer_names[j] for j in idx],
                        "bbox": box_corners(box.numpy()).tolist(),
                    }
                )
    return out


def write_scanqa_predictions(path: str | Path, predictions: list[dict]) -> Path:
    """Write the list as ScanQA's predict.py does (``json.dump(..., indent=4)``)."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_name(p.name + ".tmp")
    tmp.write_text(json.dumps(predictions, indent=4))
    tmp.replace(p)
    return p


def predict_scanqa(
    config: str, ckpt: str, questions: str, out: str, overrides: list[str] | None = None
) -> tuple[Path, int, list[str]]:
    """Answer every question of a ScanQA json with an ``sg_qa`` checkpoint; -> the file written,
    how many entries it holds and the questions skipped (``data.skip_bad``), one line each.

    The answer classes are the config's train answers (as in training); the scenes are read
    from ``data.root``/``data.scans`` (``--set data.root=...`` for another copy)."""
    import scene_graph.recipes as R
    from scene_graph.data.annotations import read_scanqa
    from scene_graph.data.dataset import ReferralDataset, collate_referrals
    from scene_graph.models import build_scene_model
    from vlx.config import ConfigError
    from vlx.tokenizers import build_tokenizer
    from vlx.train.checkpoint import load_model_weights
    from vlx.train.recipe import load_recipe_config
    from vlx.utils import pick_device

    recipe, cfg = load_recipe_config(config, list(overrides or []))
    if recipe.name != "sg_qa":
        raise ConfigError(f"{config}: predict-scanqa needs an sg_qa config, got recipe {recipe.name!r}")
    R._prepare(cfg.data)
    names = R.answer_names(cfg.data)
    cfg.model.num_answers = len(names)
    model = build_scene_model(cfg.model)
    load_model_weights(model, ckpt)
    device = pick_device(cfg.train.device)
    model.to(device)
    vocab = {a: k for k, a in enumerate(names)}
    ds = ReferralDataset(
        read_scanqa(questions), R.make_store(cfg.data), answer_vocab=vocab, skip_bad=cfg.data.skip_bad,
        unique_rule=cfg.data.unique_rule, prediction_only=True,
    )  # fmt: skip
    tok = build_tokenizer(cfg.tokenizer)
    preds = scanqa_predictions(
        model, ds, lambda s: collate_referrals(s, tok), device, cfg.eval_batch_size, names
    )  # fmt: skip
    return write_scanqa_predictions(out, preds), len(preds), list(ds.skipped)
