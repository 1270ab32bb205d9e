"""FSDP2 (train.strategy: fsdp) fine-tuning the tiny LLaVA with 2 gloo processes: each rank
holds about half the parameters, the losses equal the single-process run's, a run killed
mid-way resumes to the same next-step loss, and the exported HF directory reloads."""

from __future__ import annotations

import json
import socket
import subprocess
import sys

import pytest
import torch

SCRIPT = r"""
import json, os, sys, torch, torch.distributed as dist
from vlx.cli import load_recipe_config
from vlx.train import Trainer
from video.recipes_llava import build_video_llava

def task(out, crash_at=None, **over):
    sets = ["train.output_dir=" + out, "train.strategy=fsdp"] + {sets!r}
    _, cfg = load_recipe_config("configs/video/llava_tiny.yaml", sets)
    t = build_video_llava(cfg)
    if crash_at is not None:
        base, n = t.train_dataset, [0]
        class Crash(torch.utils.data.Dataset):
            def __len__(self): return len(base)
            def __getitem__(self, i):
                n[0] += 1
                if n[0] > crash_at: raise RuntimeError("simulated crash")
                return base[i]
        t.train_dataset = Crash()
    return cfg, t

out = {out!r}
cfg, t = task(out + "/ref")
Trainer(cfg.train, t).fit()
local = sum(p.to_local().numel() for p in t.model.parameters())
total = sum(p.numel() for p in t.model.parameters())
try:
    cfg, t = task(out + "/killed", crash_at=2 * 3 + 1)  # dies fetching step 4's data (2 per rank per step)
    Trainer(cfg.train, t).fit()
    crashed = False
except RuntimeError as e:
    crashed = "simulated crash" in str(e)
cfg, t = task(out + "/killed")
Trainer(cfg.train, t).fit()
json.dump({{"local": local, "total": total, "crashed": crashed}}, open(out + f"/rank{{dist.get_rank()}}.json", "w"))
dist.barrier()
dist.destroy_process_group()
os._exit(0)
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _losses(run) -> dict[int, float]:
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return {r["step"]: r["loss"] for r in rows if "loss" in r}


@pytest.mark.slow
def test_fsdp_two_gloo_processes_tiny_llava(tmp_path, shapes_dir):
    from safetensors.torch import load_file
    from transformers import LlavaForConditionalGeneration

    from video.recipes_llava import build_model, moving_shapes_instructions
    from vlx.cli import load_recipe_config
    from vlx.train import Trainer
    from vlx.train.checkpoint import find_checkpoint, load_model_weights
    from vlx.train.recipe import RECIPES

    ckpt_dir = tmp_path / "base"
    sets = [
        f"data.shapes_root={shapes_dir}",
        f"model.path={ckpt_dir}",
        "train.max_steps=6",
        "train.save_every=3",
        "train.batch_size=2",
        "train.lr=0.01",
        "train.warmup_steps=0",
        "train.log_every=1",
        "model.loss_reduction=sample",  # the same loss however the batch is split over ranks
        "train.progress=false",
        "data.max_test=1",
        "max_new_tokens=2",
        "tiny_size={width: 32, hidden: 64}",
    ]
    # built once here, so that the two ranks do not race to write them
    _, cfg0 = load_recipe_config("configs/video/llava_tiny.yaml", [*sets, "model.path=''"])
    cfg0.train.output_dir = str(tmp_path / "build")
    moving_shapes_instructions(cfg0.data)
    from video.instruct import load_instructions

    words = [
        t
        for r in load_instructions(shapes_dir / "instruct_train.json", shapes_dir / "videos")
        for qa in r["turns"]
        for t in qa
    ]
    build_model(cfg0, [cfg0.data.caption_prompt, *words])
    (tmp_path / "build" / "tiny_checkpoint").rename(ckpt_dir)

    out = tmp_path / "fsdp"
    out.mkdir()
    script = tmp_path / "fsdp.py"
    script.write_text(SCRIPT.format(out=str(out), sets=sets))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_addr=127.0.0.1"]
    proc = subprocess.run(
        [*cmd, f"--master_port={_free_port()}", str(script)], capture_output=True, text=True, timeout=900
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    for r in (0, 1):
        info = json.loads((out / f"rank{r}.json").read_text())
        assert 0.4 < info["local"] / info["total"] < 0.6, info  # each rank holds about half
        assert info["crashed"]
    # one process, the same 4 samples per step (2 ranks x 2)
    _, cfg = load_recipe_config("configs/video/llava_tiny.yaml", [*sets, "train.batch_size=4"])
    cfg.train.output_dir = str(tmp_path / "single")
    Trainer(cfg.train, RECIPES.get("video_llava").build(cfg)).fit()
    want, got = _losses(tmp_path / "single"), _losses(out / "ref")
    assert sorted(got) == list(range(1, 7))
    for s in (1, 2, 3):
        assert got[s] == pytest.approx(want[s], rel=1e-5, abs=1e-6), s
    resumed = _losses(out / "killed")  # killed after the step-3 checkpoint
    assert resumed[4] == pytest.approx(got[4], rel=1e-5, abs=1e-6)
    ckpt = find_checkpoint(out / "ref")
    plain = LlavaForConditionalGeneration.from_pretrained(str(ckpt / "hf"), local_files_only=True)
    exported = load_file(str(ckpt / "model.safetensors"))  # the gathered full weights
    for k, v in plain.state_dict().items():
        assert torch.equal(v, exported["hf." + k]), k
    single = build_model(cfg)
    load_model_weights(single, tmp_path / "single")
    diff = max((v - single.hf.state_dict()[k]).abs().max().item() for k, v in plain.state_dict().items())
    assert diff < 1e-3  # 6 AdamW steps apart from the single-process run
