"""Checkpoint files (issue 19): no code runs from trainer.pt, a re-save survives a kill,
pruning by step number, modes from the umask, the `latest` pointer stays inside its folder."""

from __future__ import annotations

import os
import stat
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import vlx.train.checkpoint as ck
from vlx.data.errors import DataError
from vlx.train import Trainer
from vlx.train.checkpoint import (
    find_checkpoint,
    load_model_weights,
    load_trainer_state,
    rng_state,
    save_checkpoint,
    set_rng_state,
)

sys.path.insert(0, str(Path(__file__).parent))
from _toy import ToyModel, toy_task  # noqa: E402
from test_trainer import cfg, losses  # noqa: E402


class _Evil:
    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (Path.write_text, (Path(self.marker), "pwned"))


def _save(root: Path, step: int, keep_last: int = 2, model: torch.nn.Module | None = None) -> Path:
    model = model or torch.nn.Linear(2, 2)
    state = {"step": step, "rng": [rng_state()]}
    return save_checkpoint(root, step, model, state, {"step": step}, keep_last)


def test_crafted_trainer_state_is_refused_and_runs_nothing(tmp_path):
    ckpt = _save(tmp_path / "checkpoints", 3, model=ToyModel())
    marker = tmp_path / "marker"
    torch.save({"optimizer": _Evil(str(marker))}, ckpt / "trainer.pt")
    with pytest.raises(DataError, match=r"trainer\.pt: refused to load"):
        load_trainer_state(ckpt)
    assert not marker.exists()
    # and through the trainer's resume
    with pytest.raises(DataError, match="refused to load"):
        Trainer(cfg(tmp_path, epochs=1, max_steps=4), toy_task()).fit()
    assert not marker.exists()


def test_rng_state_round_trips_through_weights_only(tmp_path):
    np.random.seed(5)
    torch.manual_seed(5)
    ckpt = _save(tmp_path, 1)
    want = (np.random.rand(3), torch.rand(3))
    np.random.seed(0)
    torch.manual_seed(0)
    set_rng_state(load_trainer_state(ckpt)["rng"][0])
    np.testing.assert_array_equal(np.random.rand(3), want[0])
    torch.testing.assert_close(torch.rand(3), want[1])


def test_kill_between_the_renames_of_a_resave_leaves_a_resumable_checkpoint(tmp_path, monkeypatch):
    root = tmp_path / "checkpoints"
    _save(root, 10)
    real_replace = os.replace
    calls = []

    def replace(src, dst):
        calls.append((Path(src).name, Path(dst).name))
        if Path(src).name == "step_0000010":  # the old dir has just been moved away: die here
            real_replace(src, dst)
            raise KeyboardInterrupt("killed")
        return real_replace(src, dst)

    monkeypatch.setattr(ck.os, "replace", replace)
    with pytest.raises(KeyboardInterrupt):
        _save(root, 10)
    monkeypatch.setattr(ck.os, "replace", real_replace)
    assert any(src == "step_0000010" for src, _ in calls)
    assert not (root / "step_0000010").exists()  # the moment the old code left `latest` dangling
    found = find_checkpoint(root)
    assert found.name.startswith(".tmp_step_0000010") and load_trainer_state(found)["step"] == 10


def test_trainer_resumes_after_kill_in_a_resave(tmp_path, monkeypatch, capsys):
    """The end-of-run save re-saves the step save_every just wrote; a kill between its two
    renames still resumes at that step (not from step 0) with the same weights."""
    Trainer(cfg(tmp_path / "ref", epochs=1, max_steps=8), toy_task()).fit()
    real_replace = os.replace

    def replace(src, dst):
        if Path(src).name == "step_0000008":
            real_replace(src, dst)
            raise KeyboardInterrupt("killed")
        return real_replace(src, dst)

    out = tmp_path / "run"
    monkeypatch.setattr(ck.os, "replace", replace)
    with pytest.raises(KeyboardInterrupt):
        Trainer(cfg(out, epochs=1, max_steps=8, save_every=4), toy_task()).fit()
    monkeypatch.setattr(ck.os, "replace", real_replace)
    capsys.readouterr()
    assert Trainer(cfg(out, epochs=1, max_steps=8), toy_task()).fit() == {"mse": 1.0}
    assert "at step 8" in capsys.readouterr().out
    assert sorted(losses(out)) == list(range(1, 9))  # nothing retrained
    a, b = ToyModel(), ToyModel()
    load_model_weights(a, find_checkpoint(out))
    load_model_weights(b, find_checkpoint(tmp_path / "ref"))
    for x, y in zip(a.parameters(), b.parameters()):
        torch.testing.assert_close(x, y)
    assert find_checkpoint(out).name == "step_0000008"


def test_pruning_keeps_the_newest_by_step_number(tmp_path):
    root = tmp_path / "c"
    _save(root, 9_999_999)
    _save(root, 10_000_000, keep_last=1)
    assert [p.name for p in root.glob("step_*")] == ["step_10000000"]
    assert find_checkpoint(root).name == "step_10000000"


def test_checkpoint_modes_follow_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        ckpt = _save(tmp_path / "c", 1)
    finally:
        os.umask(old)
    assert stat.S_IMODE(ckpt.stat().st_mode) == 0o755
    for f in [*ckpt.iterdir(), tmp_path / "c" / "latest"]:
        assert stat.S_IMODE(f.stat().st_mode) == 0o644, f


@pytest.mark.parametrize("pointer", ["/etc", "../elsewhere", "..", "a/../../b"])
def test_latest_pointer_must_stay_inside(tmp_path, pointer):
    root = tmp_path / "checkpoints"
    _save(root, 1)
    (root / "latest").write_text(pointer)
    with pytest.raises(DataError, match="expected the name of a step directory inside"):
        find_checkpoint(root)
    with pytest.raises(DataError, match="latest: the pointer names"):
        Trainer(cfg(tmp_path, epochs=1, max_steps=2), toy_task()).fit()
