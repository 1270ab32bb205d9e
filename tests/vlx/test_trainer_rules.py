"""The trainer's device, resume, gradient and loader rules that a CPU can check (issue 18)."""

from __future__ import annotations

import os
import pickle
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
from torch import nn

from vlx.config import ConfigError
from vlx.train import Trainer
from vlx.train.build import GradientCheck, make_loader
from vlx.train.distributed import hidden_process_group
from vlx.train.sampler import EpochIndex, ResumableSampler
from vlx.utils import resolve_device

sys.path.insert(0, str(Path(__file__).parent))
from _toy import toy_task  # noqa: E402
from test_trainer import cfg, losses  # noqa: E402

TORCHRUN = {"LOCAL_RANK": "1", "LOCAL_WORLD_SIZE": "2", "WORLD_SIZE": "2", "RANK": "1"}


def test_device_strings_map_to_the_local_rank():
    assert resolve_device("auto", True, TORCHRUN) == "cuda:1"
    assert resolve_device("cuda", True, TORCHRUN) == "cuda:1"
    assert resolve_device("cuda", True, {}) == "cuda:0"
    assert resolve_device("cuda:1", True, {}) == "cuda:1"  # one process may name any GPU
    assert resolve_device("auto", False, TORCHRUN) == "cpu"
    assert resolve_device("cpu", True, TORCHRUN) == "cpu"
    with pytest.raises(ConfigError, match=r"train.device: 'cuda:0' under torchrun with 2 processes"):
        resolve_device("cuda:0", True, TORCHRUN)
    with pytest.raises(ConfigError, match="CUDA is not available"):
        resolve_device("cuda", False, {})


def test_fp16_resume_from_a_checkpoint_without_scaler_state(tmp_path, capsys):
    """A CPU/bf16 run saves a disabled GradScaler's empty state; resuming it with an enabled
    scaler (fp16 on a GPU) starts the scale afresh instead of raising."""
    from vlx.train.trainer import Trainer as T

    class Run:
        scaler = torch.amp.GradScaler("cpu", enabled=True)
        main = True

    with pytest.raises(RuntimeError):  # what the old resume did
        Run.scaler.load_state_dict({})
    T._load_scaler(Run, {})
    assert Run.scaler.get_scale() == 65536.0 and "starting the scale afresh" in capsys.readouterr().out
    T._load_scaler(Run, {"scale": 8.0, "growth_factor": 2.0, "backoff_factor": 0.5, "growth_interval": 10,
                         "_growth_tracker": 0})  # fmt: skip
    assert Run.scaler.get_scale() == 8.0


class _Partly(nn.Module):
    def __init__(self):
        super().__init__()
        self.used = nn.Linear(4, 1)
        self.unused_head = nn.Linear(4, 4)

    def forward(self, batch):
        return {"loss": self.used(batch["x"][:, :4]).pow(2).mean()}


def test_parameters_without_gradient_are_named():
    m = _Partly()
    check = GradientCheck(m)
    m({"x": torch.randn(3, 8)})["loss"].backward()
    with pytest.raises(RuntimeError, match=r"DDP: 2 trainable parameter\(s\) got no gradient.*unused_head.weight"):
        check.report(distributed=True, opted_in=False)
    check = GradientCheck(m)
    m({"x": torch.randn(3, 8)})["loss"].backward()
    with pytest.warns(UserWarning, match="unused_head.bias"):
        check.report(distributed=False, opted_in=False)
    check = GradientCheck(m)
    m({"x": torch.randn(3, 8)})["loss"].backward()
    check.report(distributed=True, opted_in=True)  # the documented opt-in: DDP searches itself
    m.unused_head.requires_grad_(False)  # the fix the message suggests
    check = GradientCheck(m)
    m({"x": torch.randn(3, 8)})["loss"].backward()
    check.report(distributed=True, opted_in=False)


class _EpochData(torch.utils.data.Dataset):
    def __len__(self):
        return 8

    def __getitem__(self, i):
        return torch.tensor([int(i), getattr(i, "epoch", -1)])


def test_epoch_reaches_persistent_workers():
    i = pickle.loads(pickle.dumps(EpochIndex(5, 3)))
    assert i == 5 and i.epoch == 3 and [0, 1, 2][EpochIndex(1, 0)] == 1
    task = toy_task()
    task.train_dataset = _EpochData()
    sampler = ResumableSampler(8, seed=0)
    loader = make_loader(task, cfg(Path("/tmp"), batch_size=4, num_workers=1), sampler, torch.device("cpu"))
    assert loader.persistent_workers and loader.prefetch_factor == 2
    seen = []
    for epoch in range(3):
        sampler.set_epoch(epoch)
        seen.append({int(e) for b in loader for e in b[:, 1]})
    assert seen == [{0}, {1}, {2}]
    assert loader._iterator is not None  # the same workers served every epoch


def test_workers_train_like_no_workers(tmp_path):
    Trainer(cfg(tmp_path / "a", epochs=2), toy_task()).fit()
    Trainer(cfg(tmp_path / "b", epochs=2, num_workers=1), toy_task()).fit()
    a, b = losses(tmp_path / "a"), losses(tmp_path / "b")
    assert a.keys() == b.keys() and all(a[s] == pytest.approx(b[s], rel=1e-6) for s in a)


def test_nonfinite_loss_is_caught_at_the_log_step_before_any_checkpoint(tmp_path):
    task = toy_task()
    task.train_dataset.y[20] = float("nan")  # reaches the loss in epoch 0
    with pytest.raises(FloatingPointError, match="non-finite at or before step"):
        Trainer(cfg(tmp_path, log_every=4, save_every=2), task).fit()
    from vlx.train.checkpoint import find_checkpoint, load_model_weights

    model = toy_task().model
    load_model_weights(model, find_checkpoint(tmp_path))
    assert all(torch.isfinite(p).all() for p in model.parameters())  # the last checkpoint is good


def test_hidden_process_group_keeps_collectives_local(tmp_path):
    from vlx.losses.clip import world

    dist.init_process_group("gloo", init_method=f"file://{tmp_path}/store", rank=0, world_size=1)
    try:
        assert world() == (0, 1) and dist.is_initialized()
        with hidden_process_group():
            assert not dist.is_initialized() and world() == (0, 1)
        assert dist.is_initialized()
    finally:
        dist.destroy_process_group()


def test_host_syncs_only_at_log_steps(tmp_path, monkeypatch):
    """Steps keep their numbers on the device: the trainer reads a tensor on the host (item,
    float, bool, tolist) at log steps and checkpoints, not per micro-step. (Counted where
    the trainer's own code calls them; the CPU AdamW reads its step counters itself.)"""
    import sys as _sys

    calls = []
    for name in ("item", "tolist", "__float__", "__bool__"):
        real = getattr(torch.Tensor, name)

        def counted(self, *a, _real=real, _name=name, **k):
            caller = _sys._getframe(1).f_code.co_filename
            if caller.endswith(f"vlx{os.sep}train{os.sep}trainer.py"):
                calls.append((_name, Path(caller).name, _sys._getframe(1).f_code.co_name))
            return _real(self, *a, **k)

        monkeypatch.setattr(torch.Tensor, name, counted)
    task = toy_task()
    task.evaluate = None
    Trainer(cfg(tmp_path, epochs=2, log_every=8, grad_accum=2, batch_size=4), task).fit()  # 16 steps, 32 micro
    monkeypatch.undo()
    assert len(losses(tmp_path)) == 2  # two log steps
    # per log step: the non-finite flag and the window's one transfer; each of the 2 saves
    # reads the flag once (the sampler's CPU permutation is no device sync and not counted);
    # the old trainer read 3 values per micro-step (96 here)
    assert len(calls) <= 2 * 2 + 2, calls


def test_train_bar_is_closed_before_the_eval_bar_starts(tmp_path, capsys):
    """One line per stage, in order: the train bar's final state is printed before the eval
    bar's first (an open train bar used to be redrawn below the eval bar)."""
    Trainer(cfg(tmp_path / "run", epochs=1, progress=True), toy_task()).fit()
    err = capsys.readouterr().err
    train, ev = err.rfind("train[run]"), err.find("eval[run]")
    assert 0 <= train < ev and "8/8" in err[:ev], err[-400:]
