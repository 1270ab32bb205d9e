import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from vlx.config import ConfigError
from vlx.train import TrainConfig, Trainer
from vlx.train.checkpoint import find_checkpoint, load_model_weights
from vlx.train.logging import read_jsonl
from vlx.train.schedule import warmup_cosine_factor

sys.path.insert(0, str(Path(__file__).parent))
from _toy import ToyModel, toy_task  # noqa: E402


def losses(run: Path) -> dict[int, float]:
    return {r["step"]: r["loss"] for r in read_jsonl(run / "metrics.jsonl") if "loss" in r}


def cfg(out: Path, **kw) -> TrainConfig:
    base = dict(
        output_dir=str(out),
        batch_size=8,
        epochs=3,
        lr=1e-2,
        log_every=1,
        progress=False,
        tensorboard=False,
        warmup_steps=2,
    )
    base.update(kw)
    return TrainConfig(**base)


def test_trains_and_writes_run_files(tmp_path):
    result = Trainer(cfg(tmp_path / "a"), toy_task()).fit()
    assert result == {"mse": 1.0}
    l = losses(tmp_path / "a")
    assert len(l) == 24  # 64 samples / 8 per batch * 3 epochs
    first, last = sum(l[s] for s in range(1, 5)) / 4, sum(l[s] for s in range(21, 25)) / 4
    assert last < 0.6 * first  # it learns
    for f in ("metrics.jsonl", "eval.json", "train_curve.png", "checkpoints/latest"):
        assert (tmp_path / "a" / f).exists(), f
    assert find_checkpoint(tmp_path / "a").name == "step_0000024"
    assert len(list((tmp_path / "a" / "checkpoints").glob("step_*"))) == 2  # keep_last


def test_resume_after_crash_continues_same_step_same_data(tmp_path):
    Trainer(cfg(tmp_path / "ref"), toy_task()).fit()
    ref = losses(tmp_path / "ref")
    # 8 samples per step; crash while fetching step 11's data; checkpoints every 4 steps
    # (so the last one is mid-epoch 2: step 8 = epoch 1, batch 0; use save_every=5 for mid-epoch).
    crashed = cfg(tmp_path / "run", save_every=5)
    with pytest.raises(RuntimeError, match="simulated crash"):
        Trainer(crashed, toy_task(crash_at=8 * 12)).fit()
    assert find_checkpoint(tmp_path / "run").name == "step_0000010"
    Trainer(crashed, toy_task()).fit()
    got = losses(tmp_path / "run")
    for s in range(11, 25):
        assert got[s] == pytest.approx(ref[s], rel=1e-6, abs=1e-7), s
    # the untouched steps before the crash agree too
    for s in range(1, 11):
        assert got[s] == pytest.approx(ref[s], rel=1e-6, abs=1e-7), s


KILL_SCRIPT = r"""
import sys
sys.path.insert(0, {testdir!r})
from _toy import toy_task
from vlx.train import Trainer, TrainConfig
cfg = TrainConfig(output_dir={out!r}, batch_size=8, epochs=3, lr=1e-2, log_every=1, progress=False,
                  tensorboard=False, warmup_steps=2, save_every=3)
Trainer(cfg, toy_task(sleep={sleep})).fit()
"""


@pytest.mark.slow
def test_resume_after_sigkill_matches_uninterrupted(tmp_path):
    Trainer(cfg(tmp_path / "ref"), toy_task()).fit()
    ref = losses(tmp_path / "ref")
    out = tmp_path / "killed"
    script = KILL_SCRIPT.format(testdir=str(Path(__file__).parent), out=str(out), sleep=0.01)
    proc = subprocess.Popen([sys.executable, "-c", script])
    deadline = time.time() + 120
    latest = out / "checkpoints" / "latest"

    def latest_step() -> int:
        # the pointer is replaced atomically after the checkpoint dir is renamed into place
        try:
            return int(latest.read_text().strip().split("_")[1])
        except (FileNotFoundError, ValueError, IndexError):
            return 0

    while latest_step() < 6:
        assert proc.poll() is None, "training finished before it could be killed"
        assert time.time() < deadline
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    last = find_checkpoint(out)
    k = int(last.name.split("_")[1])
    assert 6 <= k < 24
    result = Trainer(cfg(out, save_every=3), toy_task()).fit()
    assert result == {"mse": 1.0}
    got = losses(out)
    assert got[k + 1] == pytest.approx(ref[k + 1], rel=1e-6, abs=1e-7)
    assert got[24] == pytest.approx(ref[24], rel=1e-6, abs=1e-7)


def test_sigterm_checkpoints_then_resume(tmp_path):
    """A polite stop (SIGTERM/Ctrl-C) finishes the step, checkpoints, and resumes exactly."""
    ref_dir = tmp_path / "ref"
    Trainer(cfg(ref_dir), toy_task()).fit()
    ref = losses(ref_dir)
    trainer = Trainer(cfg(tmp_path / "t"), toy_task())

    import vlx.train.trainer as tr

    class StopAfter7(tr.RunLogger):
        def log(self, record, step, prefix="train"):
            super().log(record, step, prefix)
            if step == 7 and "loss" in record:
                os.kill(os.getpid(), signal.SIGTERM)

    orig = tr.RunLogger
    tr.RunLogger = StopAfter7
    try:
        assert trainer.fit() == {}
    finally:
        tr.RunLogger = orig
    assert find_checkpoint(tmp_path / "t").name == "step_0000007"
    Trainer(cfg(tmp_path / "t"), toy_task()).fit()
    got = losses(tmp_path / "t")
    assert got[8] == pytest.approx(ref[8], rel=1e-6, abs=1e-7)


def test_grad_accum_matches_big_batch(tmp_path):
    def run(out, bs, ga):
        task = toy_task()
        task.model = ToyModel(dropout=0.0)
        Trainer(cfg(out, batch_size=bs, grad_accum=ga, epochs=1, max_steps=3, grad_clip=None), task).fit()
        return task.model.state_dict()

    a = run(tmp_path / "a", 16, 1)
    b = run(tmp_path / "b", 8, 2)
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-5, atol=1e-6)


def test_crash_during_save_keeps_finished_checkpoint(tmp_path, monkeypatch):
    import vlx.train.checkpoint as ck

    out = tmp_path / "r"
    Trainer(cfg(out, epochs=1, max_steps=4), toy_task()).fit()
    good = find_checkpoint(out)
    before = (good / "model.safetensors").read_bytes()

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(ck, "save_model", boom)
    with pytest.raises(OSError):
        Trainer(cfg(out, epochs=1, max_steps=8, save_every=6), toy_task()).fit()
    assert find_checkpoint(out) == good
    assert (good / "model.safetensors").read_bytes() == before
    assert not list((out / "checkpoints").glob(".tmp*"))


def test_too_small_dataset_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="batch_size=128"):
        Trainer(cfg(tmp_path, batch_size=128), toy_task()).fit()


def test_load_weights_errors_name_the_file(tmp_path):
    from vlx.data.errors import DataError

    with pytest.raises(DataError, match="no checkpoint found"):
        load_model_weights(ToyModel(), tmp_path)
    Trainer(cfg(tmp_path / "r", epochs=1, max_steps=1), toy_task()).fit()
    with pytest.raises(DataError, match="do not fit"):
        load_model_weights(torch.nn.Linear(3, 3), tmp_path / "r")


def test_warmup_cosine_schedule():
    f = [warmup_cosine_factor(s, 4, 20, 0.1) for s in range(21)]
    assert f[0] == pytest.approx(0.25) and f[3] == pytest.approx(1.0)
    assert f[4] == pytest.approx(1.0)
    assert f[12] == pytest.approx(0.1 + 0.9 * 0.5)
    assert f[20] == pytest.approx(0.1)
    assert all(a >= b for a, b in zip(f[4:], f[5:]))
