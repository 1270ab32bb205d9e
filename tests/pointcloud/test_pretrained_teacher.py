"""CLIP2Point and Text4Point with a user's CLIP checkpoint as the frozen teacher
(`teacher.model.name_or_path`, no `teacher.ckpt`): the teacher is the checkpoint (its scale,
its image features), renders go through its preprocessing, its tokenizer builds the zero-shot
prompts, and both recipes train and evaluate end to end."""

from __future__ import annotations

import math

import pytest
import torch
from PIL import Image

from tests.vlx._hf_ckpt import save_tiny_clip
from vlx.config import load_yaml_config
from vlx.train.trainer import Trainer


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    return save_tiny_clip(tmp_path_factory.mktemp("pcteach") / "clip", seed=11)


def cfg_for(recipe_cls, yaml, ckpt, tmp_path, extra=()):
    sets = [
        *extra,
        f"data.root={tmp_path / 'prims'}",
        "data.n_train_per_class=4",
        "data.n_test_per_class=2",
        "teacher.ckpt=''",
        f"teacher.model.name_or_path={ckpt}",
        f"train.output_dir={tmp_path / 'run'}",
        "train.max_steps=2",
        "train.batch_size=8",
        "train.progress=false",
        "train.tensorboard=false",
        "train.device=cpu",
    ]
    return load_yaml_config(recipe_cls, yaml, sets)


@pytest.mark.parametrize("name", ["clip2point", "text4point"])
def test_checkpoint_teacher_end_to_end(ckpt, tmp_path, name):
    import pointcloud.recipes as R

    cls = R.Clip2PointConfig if name == "clip2point" else R.Text4PointConfig
    build = R.build_clip2point if name == "clip2point" else R.build_text4point
    extra = ["few_shot.shots=2", "few_shot.adapter_steps=2"] if name == "clip2point" else []
    cfg = cfg_for(cls, f"configs/pointcloud/{name}_tiny.yaml", ckpt, tmp_path, extra)
    task = build(cfg)
    teacher = task.model.teacher
    assert teacher.source == ("clip", str(ckpt)) and teacher.logit_scale.item() == pytest.approx(math.exp(3.0))
    assert not any(p.requires_grad for p in teacher.parameters())
    if name == "clip2point":
        ds = task.train_dataset
        root = tmp_path / "prims"
        first = ds.records[0]["image"]
        assert torch.allclose(ds.images[0], teacher.preprocess(Image.open(root / first)), atol=1e-6)
    result = Trainer(cfg.train, task).fit()
    assert any("zero_shot" in k for k in result), sorted(result)
