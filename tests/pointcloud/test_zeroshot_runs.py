"""Zero-shot from a clip2point run (its depth encoder), a tiny HF CLIP on both benchmark formats
and both methods, and the primitives written as a ModelNet40-format h5 split."""

import argparse
import json

import numpy as np
import pytest
import torch
import yaml

from pointcloud.data.benchmarks import Z_UP_TO_Y_UP, read_benchmark, read_modelnet40_h5, write_modelnet40_h5
from pointcloud.data.primitives import SHAPES
from tests.pointcloud.test_zeroshot import tiny_teacher_run, write_modelnet40, write_scanobjectnn


def tiny_clip2point_run(path, render=None):
    """A clip2point run directory (config.yaml + model.safetensors) with random weights; its
    config names ``render`` when given (runs from before that key have none)."""
    from safetensors.torch import save_model

    from pointcloud.models.clip2point import Clip2PointPretrainer, DepthEncoder
    from pointcloud.recipes import _default_dual
    from vlx.config import to_dict
    from vlx.encoders.base import EncoderConfig
    from vlx.models.dual_encoder import build_dual_encoder
    from vlx.tokenizers import TokenizerConfig

    torch.manual_seed(0)
    path.mkdir()
    teacher = build_dual_encoder(_default_dual())
    enc = EncoderConfig(name="vit", preset="tiny")
    model = Clip2PointPretrainer(teacher, DepthEncoder(enc, teacher.embed_dim), 32)
    save_model(model, str(path / "model.safetensors"))
    cfg = {
        "recipe": "clip2point",
        "teacher": {
            "model": to_dict(_default_dual()),
            "ckpt": "no/such/teacher",
            "tokenizer": to_dict(TokenizerConfig()),
        },
        "depth_encoder": to_dict(enc),
        "image_size": 32,
    }
    if render is not None:
        cfg["render"] = render
    (path / "config.yaml").write_text(yaml.safe_dump(cfg))
    return path, model


@pytest.mark.slow  # ~100 s at load ~19 on 2 cores
def test_zeroshot_from_clip2point_run_uses_its_depth_encoder(tmp_path):
    from pointcloud.models.clip2point import class_text_embeddings, multiview_depth_embeddings
    from pointcloud.zeroshot import DepthTower, load_run_teacher, prompt_templates, run_zeroshot

    run, model = tiny_clip2point_run(tmp_path / "c2p")
    _, lab = write_modelnet40(tmp_path / "mn", sizes=(3, 2))
    rep = run_zeroshot(str(run), str(tmp_path / "mn"), str(tmp_path / "out"), method="clip2point")
    tower, tok, size = load_run_teacher(run)  # teacher weights from the run itself, not teacher.ckpt
    assert isinstance(tower, DepthTower) and size == 32
    b = read_modelnet40_h5(tmp_path / "mn")
    text = class_text_embeddings(
        model.teacher, tok, [c.replace("_", " ") for c in b.class_names], prompt_templates("clip2point")
    )
    # CLIP2Point's zero-shot: per-view depth-encoder features against the class texts, summed
    # a run without a ``render`` key was pre-trained on vlx's depth maps, and zero-shot uses them
    feats = multiview_depth_embeddings(
        model.depth.eval(), torch.from_numpy(b.points), "clip2point_6", 32, render="vlx_depth"
    )
    logits = (feats @ text.T).sum(1)
    assert rep["top1"] == pytest.approx(float((logits.argmax(1).numpy() == lab[:, 0]).mean() * 100))
    assert rep["n"] == 5 and rep["views"] == "clip2point_6" and rep["render"] == "vlx_depth"


def test_clip2point_run_zeroshot_renders_as_it_was_pretrained(tmp_path):
    from pointcloud.zeroshot import default_render, load_zeroshot_teacher

    for render, want in [(None, "vlx_depth"), ("vlx_depth", "vlx_depth"), ("clip2point", "clip2point")]:
        run, _ = tiny_clip2point_run(tmp_path / f"run_{render}", render)
        assert default_render(load_zeroshot_teacher(run)[0]) == want
    assert default_render(load_zeroshot_teacher(tiny_teacher_run(tmp_path / "t"))[0]) == "clip2point"


@pytest.mark.slow  # 75-120 s each at load ~19 on 2 cores
@pytest.mark.parametrize("method", ["pointclip_v2", "clip2point"])
def test_tiny_hf_clip_on_both_benchmark_formats(tmp_path, method):
    """A tiny random CLIPModel saved with save_pretrained, through run_zeroshot on ModelNet40 h5
    and ScanObjectNN h5 with and without background: eval.json written, sizes right (the
    ModelNet40 logits are also recomputed in-process in test_zeroshot.py)."""
    from pointcloud.zeroshot import run_zeroshot
    from tests.vlx._hf_ckpt import save_tiny_clip

    ckpt = save_tiny_clip(tmp_path / "clip")
    write_modelnet40(tmp_path / "mn", sizes=(2, 1))
    write_scanobjectnn(tmp_path / "h5_files", n=3)
    for data, variant, n, bench in [
        (tmp_path / "mn", "main_split", 3, "modelnet40"),
        (tmp_path / "h5_files", "main_split", 3, "scanobjectnn"),
        (tmp_path / "h5_files", "main_split_nobg", 3, "scanobjectnn"),
    ]:
        out = tmp_path / f"out_{bench}_{variant}"
        rep = run_zeroshot(str(ckpt), str(data), str(out), method=method, variant=variant)
        on_disk = json.loads((out / "eval.json").read_text())
        assert on_disk["benchmark"] == bench and on_disk["n"] == n and on_disk["method"] == method
        assert on_disk["top1"] == rep["top1"] and 0 <= rep["top1"] <= 100
        assert on_disk["chance"] == pytest.approx(100 / (40 if bench == "modelnet40" else 15))
        # CLIP2Point's zeroshot.py FPS-samples ScanObjectNN to 1024 points; everything else keeps 2048
        assert on_disk["points_per_cloud"] == (1024 if method == "clip2point" and bench == "scanobjectnn" else 2048)


def test_run_teachers_get_the_normalisation_they_were_trained_with(tmp_path):
    # a pc_image_text teacher learned from renders loaded by vlx's image loader (CLIP mean/std);
    # a clip2point run's depth encoder from depth_maps' raw [0, 1] images
    from pointcloud.zeroshot import load_zeroshot_teacher
    from vlx.data.transforms import IMAGE_MEAN, IMAGE_STD, load_image

    *_, mean, std = load_zeroshot_teacher(tiny_teacher_run(tmp_path / "t"))
    assert (mean, std) == (IMAGE_MEAN, IMAGE_STD)
    from PIL import Image

    Image.new("RGB", (4, 4), (255, 0, 0)).save(tmp_path / "red.png")  # what training saw for pure red
    red = torch.tensor([1.0, 0.0, 0.0]).view(3, 1, 1)
    m, s = torch.tensor(mean).view(3, 1, 1), torch.tensor(std).view(3, 1, 1)
    torch.testing.assert_close(load_image(tmp_path / "red.png")[:, :1, :1], (red - m) / s)
    *_, mean, std = load_zeroshot_teacher(tiny_clip2point_run(tmp_path / "c")[0])
    assert mean is None and std is None


def test_modelnet40_writer_round_trips_through_the_reader(tmp_path):
    rng = np.random.default_rng(0)
    pts = rng.normal(size=(4, 64, 3)).astype(np.float32)
    write_modelnet40_h5(tmp_path / "mn", pts, np.array([0, 2, 1, 2]), ["a", "b", "c"])
    b = read_benchmark(tmp_path / "mn")
    np.testing.assert_array_equal(b.points, pts)
    assert b.labels.tolist() == [0, 2, 1, 2] and b.class_names == ["a", "b", "c"]
    assert (tmp_path / "mn" / "test_files.txt").read_text() == "data/modelnet40_ply_hdf5_2048/ply_data_test0.h5\n"


def test_primitives_h5_is_y_up_and_its_own_seed(tmp_path):
    from pointcloud.cli import run_primitives_h5

    # z up -> y up: the top (+z) goes to +y, +y goes to -z, a proper rotation
    np.testing.assert_array_equal(np.array([0, 0, 1.0]) @ Z_UP_TO_Y_UP.T, [0, 1, 0])
    np.testing.assert_array_equal(np.array([0, 1.0, 0]) @ Z_UP_TO_Y_UP.T, [0, 0, -1])
    assert np.linalg.det(Z_UP_TO_Y_UP) == pytest.approx(1.0)
    args = argparse.Namespace(out=str(tmp_path / "h"), seed=5, per_class=1, points=64)
    assert run_primitives_h5(args) == 0
    b = read_modelnet40_h5(tmp_path / "h")
    with np.load(tmp_path / "h" / "primitives" / "test.npz") as z:
        np.testing.assert_allclose(b.points, z["points"] @ Z_UP_TO_Y_UP.T, atol=1e-6)
        assert b.labels.tolist() == z["labels"].tolist()
    assert b.points.shape == (8, 64, 3) and sorted(b.labels.tolist()) == list(range(8))
    assert b.class_names == list(SHAPES)
