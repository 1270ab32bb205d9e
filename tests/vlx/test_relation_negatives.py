"""The mirrored-image relation hard negative of the clip_shapes recipe."""

import math

import torch

from vlx.quickstart import quickstart_config
from vlx.recipes.clip_shapes import build_clip_shapes


def test_mirrored_image_negative(tmp_path):
    torch.set_num_threads(1)
    cfg = quickstart_config(tmp_path, fast=True)
    cfg.data.n_train, cfg.data.n_test = 64, 8
    cfg.objective.image_hard_negative_weight = 1.0
    task = build_clip_shapes(cfg)
    items = [task.train_dataset[i] for i in range(32)]
    rels = [task.train_dataset.base.records[i]["relation"] for i in range(32)]
    assert [it["flip_axis"] for it in items] == [3 if r in ("left of", "right of") else 2 for r in rels]
    batch = task.collate_fn(items)
    out = task.model(batch)
    # at init the image cannot tell a scene from its mirror: the term starts at ln 2
    assert abs(float(out["image_hard_negative"]) - math.log(2)) < 0.05
    out["loss"].backward()
    g = task.model.dual.image_encoder.pos_embed.grad
    assert g is not None and float(g.abs().sum()) > 0
    # off by default: no term, no extra image forward
    task.model.objective.image_hard_negative_weight = 0.0
    assert "image_hard_negative" not in task.model(batch)


def test_relation_config_loads():
    from vlx.config import load_yaml_config
    from vlx.recipes.clip_shapes import ClipShapesConfig

    cfg = load_yaml_config(ClipShapesConfig, "configs/vlx/clip_shapes_relation_tiny.yaml")
    assert (cfg.model.text.name, cfg.model.text.preset, cfg.model.text.freeze) == ("minilm", None, True)
    assert cfg.objective.image_hard_negative_weight == 2.0 and cfg.train.epochs == 24
