"""Video retrieval initialised from a user's CLIP checkpoint (`model.dual.name_or_path`): the
frame embeddings are the checkpoint's (HF get_image_features on the frames normalised with its
mean/std), its tokenizer is used, and the recipe trains and evaluates end to end."""

from __future__ import annotations

import json

import pytest
import torch

from tests.vlx._hf_ckpt import save_tiny_clip
from video.synthetic import generate_moving_shapes
from vlx.cli import main
from vlx.config import ConfigError, load_yaml_config


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("vinit")
    return generate_moving_shapes(root / "ms", n_train=8, n_test=4, size=32, seed=2), save_tiny_clip(root / "clip")


def sets(shapes, ckpt, out):
    return [
        f"data.shapes_root={shapes}",
        f"train.output_dir={out}",
        "train.max_steps=2",
        "train.batch_size=4",
        "train.progress=false",
        "train.resume=none",
        f"model.dual.name_or_path={ckpt}",
        "data.hard_negative_groups=false",
    ]


@torch.no_grad()
def test_video_clip_from_a_checkpoint(setup, tmp_path):
    from transformers import CLIPModel

    from video.recipes import VideoRetrievalConfig, build_video_retrieval

    shapes, ckpt = setup
    cfg = load_yaml_config(
        VideoRetrievalConfig, "configs/video/retrieval_tiny.yaml", sets(shapes, ckpt, tmp_path / "a")
    )
    task = build_video_retrieval(cfg)
    model = task.model.eval()
    assert model.dual.source == ("clip", str(ckpt)) and model.dual.embed_dim == 24
    frames = torch.randint(0, 255, (2, 3, 32, 32, 3), dtype=torch.uint8)
    ours = model.frame_embeddings(frames)
    hf = CLIPModel.from_pretrained(str(ckpt)).eval()
    mean, std = torch.tensor([0.4, 0.5, 0.6]).view(3, 1, 1), torch.tensor([0.2, 0.25, 0.3]).view(3, 1, 1)
    px = (frames.flatten(0, 1).permute(0, 3, 1, 2).float() / 255 - mean) / std
    ref = hf.get_image_features(pixel_values=px)
    ref = getattr(ref, "pooler_output", ref)
    assert torch.allclose(ours.flatten(0, 1), ref / ref.norm(dim=-1, keepdim=True), atol=1e-5)
    batch = task.collate_fn([task.train_dataset[0], task.train_dataset[1]])
    assert batch["input_ids"][0, 0] == 583  # the checkpoint's <|startoftext|>, not MiniLM's [CLS]


def test_video_retrieval_trains_from_a_checkpoint(setup, tmp_path):
    shapes, ckpt = setup
    args = [a for s in sets(shapes, ckpt, tmp_path / "run") for a in ("--set", s)]
    assert main(["train", "configs/video/retrieval_tiny.yaml", *args]) == 0
    res = json.loads((tmp_path / "run" / "eval.json").read_text())
    assert res["n_videos"] == 4 and 0 <= res["t2v_R@1"] <= 100
    with pytest.raises(ConfigError, match="data.load.size: 48 px frames"):
        from video.recipes import VideoRetrievalConfig, build_video_retrieval

        bad = sets(shapes, ckpt, tmp_path / "b") + ["data.load.size=48"]
        build_video_retrieval(load_yaml_config(VideoRetrievalConfig, "configs/video/retrieval_tiny.yaml", bad))
