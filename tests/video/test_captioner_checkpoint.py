"""The LLaVA-style captioner's vision tower from a user's CLIP / SigLIP checkpoint
(``model.vision_name_or_path``, issue 12), on tiny random checkpoints saved with the real
transformers classes: the captioner's frame features are the HF vision model's own hidden
states at the configured layer (patch tokens; CLIP's CLS dropped, SigLIP has none) on the
HF image processor's pixels, and a caption fine-tune from each checkpoint trains and
generates."""

from __future__ import annotations

import json

import pytest
import torch
from PIL import Image

from tests.vlx._hf_ckpt import save_tiny_clip, save_tiny_siglip
from video.models.captioner import LMConfig, VideoCaptionerConfig, build_video_captioner
from vlx.config import ConfigError

TINY_LM = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=2)
CAPS = ["the red square moves left", "the blue circle moves right"]


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory):
    from video.models.captioner import build_tiny_lm

    root = tmp_path_factory.mktemp("towers")
    # 48 px input, 12 px patches: a 4 x 4 patch grid per frame
    return {
        "clip": save_tiny_clip(root / "clip", image_size=48, patch_size=12),
        "siglip": save_tiny_siglip(root / "siglip", image_size=48, patch_size=12),
        "lm": build_tiny_lm(root / "lm", TINY_LM, CAPS + ["describe the video ."]),
    }


def captioner(ckpts, kind, layer=-2, order="project_then_pool", **kw):
    torch.manual_seed(0)
    cfg = VideoCaptionerConfig(
        vision_name_or_path=str(ckpts[kind]),
        vision_feature_layer=layer,
        pool_size=[2, 2, 2],
        pooling_order=order,
        lm=LMConfig(path=str(ckpts["lm"])),
        **kw,
    )
    return build_video_captioner(cfg)


@pytest.mark.parametrize("kind", ["clip", "siglip"])
@pytest.mark.parametrize("layer", [-2, -1, 1])
@torch.no_grad()
def test_vision_features_equal_the_hf_hidden_state(ckpts, kind, layer):
    from transformers import AutoImageProcessor, AutoModel

    m = captioner(ckpts, kind, layer).eval()
    g = torch.Generator().manual_seed(3)
    frames = torch.randint(0, 256, (2, 3, 40, 70, 3), dtype=torch.uint8, generator=g)  # non-square
    ours, cls = m.vision_features(frames)
    hf = AutoModel.from_pretrained(str(ckpts[kind])).eval().vision_model
    proc = AutoImageProcessor.from_pretrained(str(ckpts[kind]))
    px = proc(images=[Image.fromarray(f.numpy()) for f in frames.flatten(0, 1)], return_tensors="pt")["pixel_values"]
    assert px.shape[-2:] == (48, 48)
    hs = hf(pixel_values=px, output_hidden_states=True).hidden_states[layer]
    ref = hs[:, 1:] if kind == "clip" else hs  # LLaVA's "default" selection: CLS dropped
    assert ours.shape == (2, 3, 16, 32)
    assert (ours.flatten(0, 1) - ref).abs().max() < 1e-5
    if kind == "clip":
        assert (cls.flatten(0, 1) - hs[:, 0]).abs().max() < 1e-5
    else:
        assert cls is None
    # the post-layernorm would change every token: it is not applied
    if layer == -1:
        assert (hf.post_layernorm(hs)[:, -16:] - ref[:, -16:]).abs().max() > 1e-2
    # the collate path (frames prepared on the CPU) gives the same tokens as uint8 frames
    torch.testing.assert_close(m.visual_tokens(m.prepare_frames(frames)), m.visual_tokens(frames))


@pytest.mark.parametrize("kind", ["clip", "siglip"])
def test_unused_tower_parts_frozen_and_pooling_orders(ckpts, kind):
    from video.pooling import PLLaVAPooling

    m = captioner(ckpts, kind, -2)
    frozen = {n for n, p in m.vision.named_parameters() if not p.requires_grad}
    trainable = {n for n, p in m.vision.named_parameters() if p.requires_grad}
    assert any("encoder.layers.1." in n for n in frozen) and any("post_layernorm" in n for n in frozen)
    assert any("encoder.layers.0." in n for n in trainable) and not any("encoder.layers.1." in n for n in trainable)
    if kind == "siglip":
        assert any(n.startswith("vision_model.head.") for n in frozen)
    frames = torch.randint(0, 256, (2, 4, 48, 48, 3), dtype=torch.uint8)
    with torch.no_grad():
        feats, _ = m.vision_features(frames)
        for order in ("project_then_pool", "pool_then_project"):
            m.pooling_order = order
            ref = PLLaVAPooling((2, 2, 2), order)(feats, m.projector)
            torch.testing.assert_close(m.visual_tokens(frames), ref)


@pytest.mark.parametrize("kind", ["clip", "siglip"])
def test_caption_finetune_from_a_checkpoint_trains_and_generates(ckpts, kind):
    m = captioner(ckpts, kind).train()
    frames = torch.zeros(2, 4, 40, 56, 3, dtype=torch.uint8)
    frames[0, :, :, :28] = 255
    frames[1, :, :, 28:] = 255
    batch = {"frames": m.prepare_frames(frames), **m.make_targets(["", ""], CAPS)}
    opt = torch.optim.AdamW([p for p in m.parameters() if p.requires_grad], lr=1e-2)
    losses = []
    for _ in range(60):
        loss = m(batch)["loss"]
        loss.backward()
        opt.step()
        opt.zero_grad()
        losses.append(float(loss.detach()))
    m.eval()
    assert losses[-1] < 0.2 * losses[0], losses[::10]
    assert m.generate(frames) == CAPS


def test_bad_vision_sources_are_one_line_errors(ckpts, tmp_path):
    with pytest.raises(ConfigError, match="has no CLS token"):
        captioner(ckpts, "siglip", use_cls=True)
    with pytest.raises(ConfigError, match="vision_feature_layer: 5 is outside"):
        captioner(ckpts, "clip", layer=5)
    with pytest.raises(ConfigError, match="is a vlx preset"):
        build_video_captioner(VideoCaptionerConfig(vision_name_or_path="tiny", lm=LMConfig(path=str(ckpts["lm"]))))
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "bert"}))
    (tmp_path / "model.safetensors").write_bytes(b"")
    with pytest.raises(ConfigError, match="not a CLIP or SigLIP checkpoint"):
        build_video_captioner(
            VideoCaptionerConfig(vision_name_or_path=str(tmp_path), lm=LMConfig(path=str(ckpts["lm"])))
        )
    with pytest.raises(ConfigError, match="both set"):
        captioner(ckpts, "clip", vision_init=str(tmp_path))


def test_recipe_from_a_siglip_tower_trains_evaluates_and_captions(ckpts, tmp_path, capsys):
    """configs/video/captioning_clip_tiny.yaml with a SigLIP checkpoint through `vlx train`
    and `vlx caption` (which rebuilds the tower from the config and loads the run's weights)."""
    from video.synthetic import generate_moving_shapes
    from vlx.cli import main

    shapes = generate_moving_shapes(tmp_path / "ms", n_train=8, n_test=4, size=40, seed=1)
    out = tmp_path / "run"
    sets = [
        f"data.shapes_root={shapes}",
        f"train.output_dir={out}",
        "train.max_steps=3",
        "train.log_every=1",
        "train.batch_size=4",
        "train.progress=false",
        "train.resume=none",
        "data.load.size=40",  # frames resized to the checkpoint's 48 x 48 by its own preprocessing
        "data.load.sampler.num_frames=4",
        "model.pool_size=[4,2,2]",
        f"model.vision_name_or_path={ckpts['siglip']}",
    ]
    assert main(["train", "configs/video/captioning_clip_tiny.yaml", *[a for s in sets for a in ("--set", s)]]) == 0
    losses = [json.loads(line)["loss"] for line in (out / "metrics.jsonl").read_text().splitlines() if '"loss"' in line]
    assert len(losses) == 3 and all(0 < v < 10 for v in losses)  # loss falling: the overfit test above
    res = json.loads((out / "eval.json").read_text())
    assert res["n_test"] == 4 and "CIDEr-D" in res
    capsys.readouterr()
    assert main(["caption", str(shapes / "videos" / "video8.mp4"), "--ckpt", str(out), "--max-new-tokens", "3"]) == 0
    assert 1 <= len(capsys.readouterr().out.strip().splitlines()[-1].split()) <= 3
