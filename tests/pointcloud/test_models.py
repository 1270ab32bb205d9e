"""CLIP2Point / Text4Point / adapter pieces on a random teacher; the CLI render command."""

import subprocess
import sys

import numpy as np
import pytest
import torch

from pointcloud import projection
from pointcloud.encoders import PointEncoderConfig, build_point_encoder
from pointcloud.models import Clip2PointPretrainer, DepthEncoder, DualPathAdapter, Text4PointPretrainer
from pointcloud.models.clip2point import train_adapter
from vlx.encoders.base import EncoderConfig
from vlx.models.dual_encoder import DualEncoderConfig, build_dual_encoder


@pytest.fixture(scope="module")
def teacher():
    torch.manual_seed(0)
    return build_dual_encoder(DualEncoderConfig(embed_dim=16)).eval()


def batch(B=4, N=64):
    g = torch.Generator().manual_seed(0)
    return {
        "points": torch.rand(B, N, 3, generator=g) - 0.5,
        "images": torch.rand(B, 3, 32, 32, generator=g),
        "views": torch.tensor([[0.0, 0.0], [90.0, 10.0], [200.0, 20.0], [30.0, 0.0]])[:B],
        "label": torch.arange(B),
    }


def test_clip2point_loss_trains_depth_only(teacher):
    model = Clip2PointPretrainer(teacher, DepthEncoder(EncoderConfig("vit", "tiny"), 16), 32).train()
    out = model(batch())
    assert torch.isfinite(out["loss"]) and out["cross"] > 0 and out["intra"] > 0
    out["loss"].backward()
    assert all(p.grad is None for p in model.teacher.parameters())
    assert model.depth.proj.weight.grad.abs().sum() > 0 and model.log_var.grad is not None
    assert not model.teacher.training


@pytest.mark.parametrize("render", ["clip2point", "vlx_depth"])
def test_clip2point_render_uses_each_samples_camera(teacher, render):
    from pointcloud.render_clip2point import clip2point_depth

    model = Clip2PointPretrainer(teacher, DepthEncoder(EncoderConfig("vit", "tiny"), 16), 32, render=render)
    b = batch()
    d = model.render(b["points"], b["views"], jitter=0.0)
    one = clip2point_depth if render == "clip2point" else projection.depth_maps
    ref = torch.stack([one(b["points"][i : i + 1], [tuple(b["views"][i].tolist())], 32)[0] for i in range(4)])
    torch.testing.assert_close(d, ref)
    if render == "clip2point":  # CLIP2Point's images: white background, the nearest point black
        assert (d == 1).any() and (d.flatten(1).amin(1) == 0).all()


def test_clip2point_recipe_render_default_and_configs(tmp_path):
    import pointcloud.recipes as R
    from vlx.config import ConfigError
    from vlx.train.recipe import load_recipe_config

    assert R.Clip2PointConfig().render == "clip2point"  # CLIP2Point's renderer unless a config says otherwise
    for name in ("clip2point.yaml", "clip2point_tiny.yaml"):  # their documented numbers are on vlx's images
        assert load_recipe_config(f"configs/pointcloud/{name}", [])[1].render == "vlx_depth"
    _, cfg = load_recipe_config("configs/pointcloud/clip2point_tiny.yaml", ["render=disc", f"data.root={tmp_path}/p"])
    with pytest.raises(ConfigError, match=r"render: expected one of \['clip2point', 'vlx_depth'\], got 'disc'"):
        R.build_clip2point(cfg)
    assert not (tmp_path / "p").exists()  # refused before any data is generated


def test_adapter_beats_its_zero_shot_start():
    torch.manual_seed(0)
    C, V, E = 4, 3, 8
    text = torch.nn.functional.normalize(torch.randn(C, E), dim=-1)
    labels = torch.arange(C).repeat(6)
    # View features that point at the wrong class text: zero-shot is poor, a few shots fix it.
    feats = text[(labels + 1) % C].unsqueeze(1).repeat(1, V, 1) + 0.05 * torch.randn(len(labels), V, E)
    zs = (torch.nn.functional.normalize(feats.mean(1), dim=-1) @ text.T).argmax(-1)
    assert (zs == labels).float().mean() < 0.3
    ad = train_adapter(feats, labels, text, steps=150)
    with torch.no_grad():
        assert (ad(feats, text).argmax(-1) == labels).float().mean() > 0.9
    assert DualPathAdapter(V, E)(feats, text).shape == (len(labels), C)


def test_text4point_correspondences_and_loss(teacher):
    enc = build_point_encoder(
        PointEncoderConfig(
            "point_transformer", {"n_patches": 8, "patch_size": 8, "width": 16, "layers": 1, "heads": 2, "out_dim": 16}
        )
    )
    model = Text4PointPretrainer(teacher, enc, image_size=32, patch_size=8)
    centers = torch.tensor([[[-0.9, 0.0, 0.9], [0.9, 0.0, -0.9]]])
    # Front view: image x = world x, image y = world z (up). Top-left and bottom-right patches.
    idx = model.correspondences(centers, torch.tensor([[0.0, 0.0]]))
    assert idx.tolist() == [[1 + 0, 1 + 15]]
    # under bf16 autocast the pixel -> patch map is the float32 one (geometry kept in float32)
    many = torch.rand(4, 64, 3, generator=torch.Generator().manual_seed(2)) * 1.6 - 0.8
    views = batch()["views"]
    ref = model.correspondences(many, views)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert torch.equal(model.correspondences(many, views), ref)
    out = model(batch())
    assert torch.isfinite(out["loss"]) and out["token"] > 0
    out["loss"].backward()
    assert model.token_proj.weight.grad.abs().sum() > 0


def test_cli_render(tmp_path):
    pts = np.random.rand(1, 500, 3).astype(np.float32)
    np.savez(tmp_path / "c.npz", points=pts)
    r = subprocess.run(
        [
            sys.executable,
            "-c",
            "from vlx.cli import main; raise SystemExit(main())",
            "pointcloud",
            "render",
            str(tmp_path / "c.npz"),
            "--out",
            str(tmp_path / "out"),
            "--size",
            "32",
            "--views",
            "clip2point_6",
            "--realistic",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr
    from PIL import Image

    from pointcloud.cli import run_render
    from pointcloud.render_clip2point import clip2point_depth

    img = np.asarray(Image.open(tmp_path / "out" / "c_0_depth.png"))
    assert img.shape == (32, 32 * 6) and img.max() == 255
    # default: CLIP2Point's images (white background), the 6 views side by side
    want = (torch.cat(list(clip2point_depth(torch.from_numpy(pts), "clip2point_6", 32)[0]), 1) * 255).round()
    np.testing.assert_array_equal(img, want.to(torch.uint8).numpy())
    import argparse

    args = argparse.Namespace(input=str(tmp_path / "c.npz"), index=0, out=str(tmp_path / "vlx"), views="clip2point_6",
                              size=32, render="vlx_depth", realistic=False)  # fmt: skip
    assert run_render(args) == 0
    vlx = np.asarray(Image.open(tmp_path / "vlx" / "c_0_depth.png"))
    want = (torch.cat(list(projection.depth_maps(torch.from_numpy(pts), "clip2point_6", 32)[0]), 1) * 255).round()
    np.testing.assert_array_equal(vlx, want.to(torch.uint8).numpy())  # vlx's: black background
    assert (tmp_path / "out" / "c_0_realistic.png").is_file() and (tmp_path / "out" / "c_0_points.png").is_file()
    bad = subprocess.run(
        [
            sys.executable,
            "-c",
            "from vlx.cli import main; raise SystemExit(main())",
            "pointcloud",
            "render",
            str(tmp_path / "c.npz"),
            "--index",
            "3",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert bad.returncode == 2 and "--index 3 out of range" in bad.stderr
