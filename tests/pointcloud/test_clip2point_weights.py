"""CLIP2Point checkpoint keys (``module.point_model.<OpenAI CLIP visual key>``) load into a tiny
HF CLIP vision tower; the OpenAI-layout dict is built here from OpenAI CLIP's definitions."""

import pytest
import torch
from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

from pointcloud.models.clip2point_weights import clip2point_depth_state_dict, load_clip2point_depth_encoder
from vlx.data.errors import DataError


def tiny():
    cfg = CLIPVisionConfig(
        hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
        image_size=32, patch_size=8, projection_dim=16, hidden_act="quick_gelu",
    )  # fmt: skip
    return CLIPVisionModelWithProjection(cfg).eval()


def as_openai(m) -> dict:
    """OpenAI CLIP VisionTransformer layout: conv1, class_embedding, positional_embedding
    (a tensor, not an Embedding), ln_pre, transformer.resblocks.i.{attn.in_proj_* (q;k;v
    stacked), attn.out_proj, ln_1, mlp.c_fc, mlp.c_proj, ln_2}, ln_post, proj (width, embed)."""
    sd = m.state_dict()
    vm = "vision_model."
    out = {
        "conv1.weight": sd[vm + "embeddings.patch_embedding.weight"],
        "class_embedding": sd[vm + "embeddings.class_embedding"],
        "positional_embedding": sd[vm + "embeddings.position_embedding.weight"],
        "ln_pre.weight": sd[vm + "pre_layrnorm.weight"],
        "ln_pre.bias": sd[vm + "pre_layrnorm.bias"],
        "ln_post.weight": sd[vm + "post_layernorm.weight"],
        "ln_post.bias": sd[vm + "post_layernorm.bias"],
        "proj": sd["visual_projection.weight"].T,
    }
    for i in range(m.config.num_hidden_layers):
        L, R = f"{vm}encoder.layers.{i}.", f"transformer.resblocks.{i}."
        for kind in ("weight", "bias"):
            out[R + f"attn.in_proj_{kind}"] = torch.cat([sd[L + f"self_attn.{n}_proj.{kind}"] for n in "qkv"])
            out[R + f"attn.out_proj.{kind}"] = sd[L + f"self_attn.out_proj.{kind}"]
            out[R + f"ln_1.{kind}"] = sd[L + f"layer_norm1.{kind}"]
            out[R + f"ln_2.{kind}"] = sd[L + f"layer_norm2.{kind}"]
            out[R + f"mlp.c_fc.{kind}"] = sd[L + f"mlp.fc1.{kind}"]
            out[R + f"mlp.c_proj.{kind}"] = sd[L + f"mlp.fc2.{kind}"]
    return {k: v.clone() for k, v in out.items()}


def test_released_checkpoint_keys_load(tmp_path):
    torch.manual_seed(0)
    src = tiny()
    # CLIP2Point saves the whole CLIP2Point module from DataParallel: point_model (the depth
    # encoder), image_model (frozen CLIP visual) and the loss weight, all under "module."
    ckpt = {f"module.point_model.{k}": v for k, v in as_openai(src).items()}
    ckpt.update({f"module.image_model.{k}": torch.zeros_like(v) for k, v in as_openai(src).items()})
    ckpt["module.weights"] = torch.ones([])
    torch.save(ckpt, tmp_path / "best_eval.pth")
    assert set(clip2point_depth_state_dict(tmp_path / "best_eval.pth")) == set(as_openai(src))
    dst = tiny()
    x = torch.randn(2, 3, 32, 32)
    assert not torch.allclose(dst(pixel_values=x).image_embeds, src(pixel_values=x).image_embeds)
    load_clip2point_depth_encoder(dst, tmp_path / "best_eval.pth")
    torch.testing.assert_close(dst(pixel_values=x).image_embeds, src(pixel_values=x).image_embeds)


def test_wrong_checkpoint_is_one_line_error(tmp_path):
    with pytest.raises(DataError, match="not a CLIP2Point depth-encoder checkpoint"):
        clip2point_depth_state_dict({"module.encoder.weight": torch.zeros(1)})
    sd = {f"point_model.{k}": v for k, v in as_openai(tiny()).items()}
    sd["point_model.conv1.weight"] = torch.zeros(32, 3, 16, 16)
    with pytest.raises(DataError, match=r"patch_embedding.weight has shape \(32, 3, 16, 16\)"):
        load_clip2point_depth_encoder(tiny(), sd)
