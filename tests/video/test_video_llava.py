"""The video_llava recipe end to end on a few moving-shapes clips: LoRA fine-tune through
``vlx train``, ``vlx video merge-lora``, the merged directory reloads with
``from_pretrained`` and generates the same tokens as base + adapter."""

import pytest
import torch

from video.models.hf_vlm import HFVideoLLMConfig, load_hf_video_llm
from vlx.cli import main

TINY = [
    "--set",
    "train.max_steps=4",
    "--set",
    "train.batch_size=4",
    "--set",
    "train.lr=0.02",
    "--set",
    "train.warmup_steps=0",
    "--set",
    "data.max_test=2",
    "--set",
    "tiny_size={width: 32, hidden: 64}",
    "--set",
    "max_new_tokens=4",
]


@pytest.fixture(scope="module")
def lora_run(tmp_path_factory, shapes_dir):
    out = tmp_path_factory.mktemp("run") / "lora"
    args = ["train", "configs/video/llava_tiny.yaml", "--set", f"train.output_dir={out}"]
    args += [
        "--set",
        f"data.shapes_root={shapes_dir}",
        "--set",
        "model.lora={enabled: true, r: 4, alpha: 8, dropout: 0.0}",
    ]
    assert main(args + TINY) == 0
    return out


@pytest.mark.slow
def test_merge_lora_reloads_and_generates_same_tokens(lora_run, tmp_path):
    from transformers import LlavaForConditionalGeneration

    from video.recipes_llava import build_model
    from vlx.cli import load_recipe_config
    from vlx.train.checkpoint import load_model_weights

    out = tmp_path / "merged"
    assert main(["video", "merge-lora", str(lora_run), "--out", str(out)]) == 0
    plain = LlavaForConditionalGeneration.from_pretrained(str(out), local_files_only=True)
    assert not any("lora" in k for k in plain.state_dict())

    _, cfg = load_recipe_config(str(lora_run / "config.yaml"), [])
    adapted = build_model(cfg).eval()
    load_model_weights(adapted, lora_run)
    base = load_hf_video_llm(HFVideoLLMConfig(path=cfg.model.path, pool_shape=cfg.model.pool_shape)).eval()
    merged = load_hf_video_llm(HFVideoLLMConfig(path=str(out), pool_shape=cfg.model.pool_shape)).eval()
    torch.manual_seed(0)
    frames = torch.randint(0, 256, (3, 4, 32, 32, 3), dtype=torch.uint8)
    prompts = ["describe the video.", "which shape moves first?", "describe the video."]
    with torch.no_grad():
        a = adapted.generate_ids(frames, prompts, max_new_tokens=8)
        m = merged.generate_ids(frames, prompts, max_new_tokens=8)
        ids = torch.tensor([adapted.encode_prompt(prompts[0])] * 3)
        mask = torch.ones_like(ids)
        la, lb = adapted.logits(frames, ids, mask), base.logits(frames, ids, mask)
    assert torch.equal(a, m)
    assert (la - lb).abs().max() > 1e-3  # the adapter changed the model
    assert (la - merged.logits(frames, ids, mask)).abs().max() < 1e-4
    assert main(["video", "merge-lora", str(tmp_path / "nope"), "--out", str(out)]) == 2  # one-line error


@pytest.mark.slow
def test_accelerate_entry_point_cpu(tmp_path, shapes_dir):
    """The accelerate loop (DeepSpeed's entry point; plain accelerate on the CPU here)."""
    from transformers import LlavaForConditionalGeneration

    from video.train_accelerate import main as acc_main

    out = tmp_path / "acc"
    sets = [f"train.output_dir={out}", f"data.shapes_root={shapes_dir}", "train.max_steps=2", "train.device=cpu"]
    sets += ["train.batch_size=4", "tiny_size={width: 32, hidden: 64}"]
    assert acc_main(["configs/video/llava_tiny.yaml", *[a for s in sets for a in ("--set", s)]]) == 0
    m = LlavaForConditionalGeneration.from_pretrained(str(out / "hf"), local_files_only=True)
    assert m.config.text_config.vocab_size > 10
