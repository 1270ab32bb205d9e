"""FSDP2 (train.strategy: fsdp) under torchrun with 2 CPU processes (gloo): parameters are
sharded, the loss equals the single-process loss, a run killed mid-way resumes from its DCP
checkpoint to the same losses, and the exported full weights reload into a plain model."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from vlx.train import Trainer
from vlx.train.checkpoint import find_checkpoint, load_model_weights

sys.path.insert(0, str(Path(__file__).parent))
from _toy import ToyModel, toy_task  # noqa: E402
from test_ddp import free_port  # noqa: E402
from test_trainer import cfg, losses  # noqa: E402

SCRIPT = r"""
import json, os, sys, torch, torch.distributed as dist
sys.path.insert(0, {testdir!r})
from _toy import ToyModel, toy_task
from vlx.train import Trainer, TrainConfig

def task(**kw):
    t = toy_task(**kw)
    t.model = ToyModel(dropout=0.0)
    return t

def conf(out, **kw):
    base = dict(output_dir=out, batch_size=8, epochs=2, lr=1e-2, log_every=1, progress=False, tensorboard=False,
                warmup_steps=2, save_every=3, strategy="fsdp")
    base.update(kw)
    return TrainConfig(**base)

out = {out!r}
ref = task()
Trainer(conf(out + "/ref"), ref).fit()
local = sum(p.to_local().numel() for p in ref.model.parameters())
total = sum(p.numel() for p in ref.model.parameters())
# a run that dies while loading step 5's data (8 fetches per rank per step), then resumes
try:
    Trainer(conf(out + "/killed"), task(crash_at=8 * 4)).fit()
    crashed = False
except RuntimeError as e:
    crashed = "simulated crash" in str(e)
Trainer(conf(out + "/killed"), task()).fit()
if dist.get_rank() == 0:
    json.dump({{"local": local, "total": total, "crashed": crashed}}, open(out + "/rank0.json", "w"))
else:
    json.dump({{"local": local, "total": total, "crashed": crashed}}, open(out + "/rank1.json", "w"))
dist.barrier()
dist.destroy_process_group()
os._exit(0)
"""


@pytest.mark.slow
def test_fsdp_two_processes_shard_match_resume_export(tmp_path):
    out = tmp_path / "fsdp"
    out.mkdir()
    script = tmp_path / "fsdp.py"
    script.write_text(SCRIPT.format(testdir=str(Path(__file__).parent), out=str(out)))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_addr=127.0.0.1"]
    proc = subprocess.run(
        [*cmd, f"--master_port={free_port()}", str(script)], capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    for r in (0, 1):
        info = json.loads((out / f"rank{r}.json").read_text())
        assert 0.3 < info["local"] / info["total"] < 0.7, info  # each rank holds about half
        assert info["crashed"]
    # the same 16 samples per step in one process (2 ranks x 8), no dropout: same losses
    single = toy_task()
    single.model = ToyModel(dropout=0.0)
    Trainer(cfg(tmp_path / "single", batch_size=16, epochs=2, save_every=3), single).fit()
    want, got = losses(tmp_path / "single"), losses(out / "ref")
    assert sorted(got) == list(range(1, 9))
    for s in (1, 2, 3, 4):
        assert got[s] == pytest.approx(want[s], rel=1e-5, abs=1e-6), s
    # killed after the step-3 checkpoint: the resumed run continues with the same losses
    resumed = losses(out / "killed")
    for s in range(4, 9):
        assert resumed[s] == pytest.approx(got[s], rel=1e-5, abs=1e-6), s
    ckpt = find_checkpoint(out / "ref")
    assert ckpt.name == "step_0000008" and (ckpt / "dcp").is_dir()
    # the exported full weights reload into a plain model and equal the single-process ones
    plain = ToyModel(dropout=0.0)
    load_model_weights(plain, ckpt)
    for a, b in zip(plain.state_dict().values(), single.model.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
