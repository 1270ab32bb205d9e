"""``vlx pointcloud zeroshot --method clip2point`` with CLIP2Point's renderer (the default, and
what CLIP2Point's released weights get) and with vlx's depth maps (``--render vlx_depth``), on a
tiny random CLIP checkpoint; CLIP2Point's released-weight layout through ``--depth-weights``."""

import json

import pytest
import torch
import torch.nn.functional as F

from tests.pointcloud.test_clip2point_weights import as_openai
from tests.pointcloud.test_zeroshot import run_cli, tiny_teacher_run, write_modelnet40
from vlx.config import ConfigError


def released_checkpoint(src_dir, path):
    """CLIP2Point's layout (``module.point_model.<OpenAI visual key>``) of a CLIP's vision tower."""
    from transformers import CLIPModel, CLIPVisionModelWithProjection

    clip = CLIPModel.from_pretrained(str(src_dir), local_files_only=True)
    cfg = clip.config.vision_config
    cfg.projection_dim = clip.config.projection_dim
    vm = CLIPVisionModelWithProjection(cfg)
    sd = {k: v for k, v in clip.state_dict().items() if k.startswith(("vision_model.", "visual_projection."))}
    missing, unexpected = vm.load_state_dict(sd, strict=False)
    assert not unexpected and all(k.endswith("position_ids") for k in missing)
    torch.save({f"module.point_model.{k}": v for k, v in as_openai(vm).items()}, path)
    return vm.eval()


@pytest.mark.slow  # two CLI subprocesses (~40 s each on a loaded 2-core machine)
def test_zeroshot_cli_clip2point_renderer_and_vlx_name(tmp_path):
    from pointcloud.data.benchmarks import read_modelnet40_h5
    from pointcloud.models.clip2point import class_text_embeddings
    from pointcloud.zeroshot import load_zeroshot_teacher, prompt_templates, zero_shot_logits
    from tests.vlx._hf_ckpt import save_tiny_clip

    ckpt = save_tiny_clip(tmp_path / "clip")
    src = released_checkpoint(save_tiny_clip(tmp_path / "src", seed=1), tmp_path / "best_eval.pth")
    _, lab = write_modelnet40(tmp_path / "mn", sizes=(3, 3))
    b = read_modelnet40_h5(tmp_path / "mn")
    pts = torch.from_numpy(b.points)
    names = [c.replace("_", " ") for c in b.class_names]

    def in_process(weights, render):
        dual, tok, size, mean, std = load_zeroshot_teacher(ckpt, weights)
        text = class_text_embeddings(dual, tok, names, prompt_templates("clip2point"))
        return dual, zero_shot_logits(
            dual, text, pts, "clip2point", "clip2point_6", size, mean=mean, std=std, render=render
        )

    def top1(logits):
        return float((logits.argmax(1).numpy() == lab[:, 0]).mean() * 100)

    # released weights, no --render: CLIP2Point's renderer
    pth = str(tmp_path / "best_eval.pth")
    run_cli("--model", str(ckpt), "--data", str(tmp_path / "mn"), "--method", "clip2point", "--depth-weights", pth,
            "--out", str(tmp_path / "o1"))  # fmt: skip
    rep = json.loads((tmp_path / "o1" / "eval.json").read_text())
    assert rep["render"] == "clip2point" and rep["depth_weights"] == pth and rep["n"] == 6
    dual, logits = in_process(pth, "clip2point")
    assert rep["top1"] == pytest.approx(top1(logits))
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():  # the image tower is now the released one (seed 1), the text tower the checkpoint's
        want = F.normalize(src(pixel_values=x).image_embeds, dim=-1)
        torch.testing.assert_close(dual.encode_image(x), want, atol=1e-5, rtol=1e-5)
    _, vlx_logits = in_process(pth, "vlx_depth")
    assert not torch.allclose(logits, vlx_logits)  # the two renderers give other images

    # vlx's depth maps by name, the checkpoint's own tower
    run_cli("--model", str(ckpt), "--data", str(tmp_path / "mn"), "--method", "clip2point", "--render", "vlx_depth",
            "--out", str(tmp_path / "o2"))  # fmt: skip
    rep = json.loads((tmp_path / "o2" / "eval.json").read_text())
    assert rep["render"] == "vlx_depth" and rep["depth_weights"] is None
    assert rep["top1"] == pytest.approx(top1(in_process(None, "vlx_depth")[1]))


def test_render_and_depth_weights_bad_input(tmp_path):
    from pointcloud.zeroshot import run_zeroshot

    write_modelnet40(tmp_path / "mn", sizes=(1,))
    run = tiny_teacher_run(tmp_path / "t")
    with pytest.raises(ConfigError, match="render: only for method 'clip2point'"):
        run_zeroshot(str(run), str(tmp_path / "mn"), str(tmp_path / "o"), "pointclip_v2", render="clip2point")
    with pytest.raises(ConfigError, match=r"render: expected one of \['clip2point', 'vlx_depth'\]"):
        run_zeroshot(str(run), str(tmp_path / "mn"), str(tmp_path / "o"), "clip2point", render="disc")
    with pytest.raises(ConfigError, match="depth_weights: .* not one"):
        run_zeroshot(str(run), str(tmp_path / "mn"), str(tmp_path / "o"), "clip2point", depth_weights="x.pth")
