"""The vision policy through the CLI: `vlx train` of the tiny config (BC loss falls), the closed
loop `vlx embodied eval --skills learned --policy RUN` with videos, one-line errors (camera the
env lacks, image size the encoder cannot take, learned skills without a policy), and a
collection killed mid-write redone without duplicates."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from vlx.train.logging import read_jsonl

ROOT = Path(__file__).resolve().parents[2]
TINY = "configs/embodied/policy_vision_tiny.yaml"


def _vlx(argv: list[str], capsys) -> tuple[int, str]:
    import embodied.policy.recipe  # noqa: F401  registers the recipe (the plugin does this for `vlx`)
    from vlx.cli import main

    rc = main(argv)
    return rc, capsys.readouterr().err


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """The tiny vision config trained for 60 steps on freshly collected 32x32 RGB demos."""
    import embodied.policy.recipe  # noqa: F401
    from vlx.cli import main

    d = tmp_path_factory.mktemp("vision")
    out = d / "run"
    rc = main(
        [
            "train",
            TINY,
            *("--set", f"train.output_dir={out}", "--set", f"data.demos={d / 'demos'}"),
            *("--set", "train.epochs=6", "--set", "train.max_steps=60", "--set", "train.log_every=1"),
            *("--set", "train.progress=false", "--set", "eval.episodes=0"),
        ]
    )
    assert rc == 0
    return out


@pytest.mark.slow
def test_bc_loss_falls_through_the_trainer(trained):
    """The BC loss over every demo frame (eval mode: no text dropout, no shift): the trained
    run's is far below the same seed's untrained model's and below predicting the mean action."""
    import numpy as np
    import torch

    from embodied.collect import load_demos
    from embodied.policy.config import PolicyConfig, build_policy_model
    from embodied.policy.data import DemoFrames, make_collate
    from embodied.policy.skill import PolicyRunner
    from vlx.config import from_dict, read_yaml_with_extends

    rows = [r for r in read_jsonl(trained / "metrics.jsonl") if "loss" in r]
    assert len(rows) >= 55  # logged every step
    runner = PolicyRunner.from_run(trained)
    eps = load_demos(trained.parent / "demos", cameras=["corner3"])
    data = DemoFrames(eps, camera="corner3")
    batch = make_collate(*runner.text.features(data.texts))([data[i] for i in range(len(data))])
    cfg = from_dict(PolicyConfig, read_yaml_with_extends(str(trained / "config.yaml")))
    assert cfg.model.obs == "image" and cfg.model.arch == "former"
    untrained, _ = build_policy_model(cfg, None)
    untrained.set_normalization(*data.state_stats())
    with torch.no_grad():
        after = runner.model.eval()(batch)["loss"].item()
        before = untrained.eval()(batch)["loss"].item()
    actions = np.concatenate([e.actions for e in eps])
    mean_pred = float(((actions - actions.mean(0)) ** 2).mean())
    print(f"BC loss over {len(data)} frames: untrained {before:.4f}, trained {after:.4f}, mean action {mean_pred:.4f}")
    assert after < 0.5 * before and after < 0.8 * mean_pred


@pytest.mark.slow
def test_eval_runs_plan_steps_through_the_vision_policy(trained, tmp_path, capsys):
    out = tmp_path / "eval"
    argv = ["embodied", "eval", "--benchmark", "metaworld-mt10", "--planner", "oracle", "--skills", "learned"]
    argv += ["--policy", str(trained), "--tasks", "reach-v3,pick-place-v3", "--episodes", "1", "--max-steps", "6"]
    argv += ["--videos", "1", "--video-size", "32", "--out", str(out), "--no-progress"]
    rc, err = _vlx(argv, capsys)
    assert rc == 0, err
    summary = json.loads((out / "summary.json").read_text())
    assert summary["overall"]["episodes"] == 2
    assert summary["meta"]["config"]["policy"] == str(trained)
    recs = [json.loads(line) for f in sorted(out.glob("*.jsonl")) for line in f.read_text().splitlines()]
    assert sorted(r["task"] for r in recs) == ["pick-place-v3", "reach-v3"]
    assert all(r["env_steps"] <= 6 and r["status"] == "ok" for r in recs)
    # the oracle plan's one step, executed by the policy until the 6-step cap
    assert [[e["step"] for e in r["executed"]] for r in recs] == [r["ground_truth"] for r in recs]
    assert all(r["executed"][0]["stop"] in ("success", "task_success", "episode_limit") for r in recs)
    # the same report as scripted skills: the error taxonomy table, and a video
    o = summary["overall"]
    assert set(o["error_taxonomy"]) and sum(o["error_taxonomy"].values()) == 0  # the oracle's plans are right
    assert "Embodied Agent Interface taxonomy" in (out / "summary.md").read_text()
    assert list((out / "videos").glob("*.mp4"))
    # the instruction mode conditions on the planner's instruction; another fingerprint
    rc, err = _vlx(
        [*argv[:-3], "--out", str(tmp_path / "instr"), "--policy-mode", "instruction", "--videos", "0"], capsys
    )
    assert rc == 0, err


def test_learned_skills_need_a_policy_one_line(tmp_path, capsys):
    base = ["embodied", "eval", "--planner", "oracle", "--tasks", "reach-v3", "--episodes", "1"]
    rc, err = _vlx([*base, "--skills", "learned", "--out", str(tmp_path / "a")], capsys)
    assert rc == 2 and "--policy RUN_DIR" in err and err.count("\n") == 1
    rc, err = _vlx([*base, "--skills", "scripted", "--policy", "x", "--out", str(tmp_path / "b")], capsys)
    assert rc == 2 and "policy:" in err and err.count("\n") == 1
    rc, err = _vlx([*base, "--skills", "learned", "--policy", str(tmp_path), "--out", str(tmp_path / "c")], capsys)
    assert rc == 2 and "config.yaml: not found" in err and err.count("\n") == 1


def test_camera_the_env_lacks_is_one_line_error(tmp_path, capsys):
    argv = ["train", TINY, "--set", f"train.output_dir={tmp_path / 'run'}", "--set", f"data.demos={tmp_path / 'd'}"]
    rc, err = _vlx([*argv, "--set", "model.camera=wrist"], capsys)
    lines = err.strip().split("\n")  # the collection's progress bar may come first
    assert rc == 2 and "Traceback" not in err
    assert lines[-1].startswith("error: ") and "camera 'wrist' does not exist" in lines[-1] and "corner3" in lines[-1]


def test_image_size_the_encoder_cannot_take_fails_before_collecting(tmp_path, capsys):
    demos = tmp_path / "d"
    argv = ["train", TINY, "--set", f"train.output_dir={tmp_path / 'run'}", "--set", f"data.demos={demos}"]
    rc, err = _vlx([*argv, "--set", "model.image_size=36"], capsys)
    assert rc == 2 and err.count("\n") == 1
    assert "model.image_size: 36 is not a multiple of the vit encoder's patch size 8" in err
    assert not demos.exists()


@pytest.mark.slow
def test_collection_killed_mid_write_is_redone_without_duplicates(tmp_path):
    """SIGKILL `vlx embodied collect` while it writes, tear one finished file (a copy cut
    short) and leave a stale temp file; the rerun redoes exactly what is missing or torn."""
    from embodied.collect import CollectConfig, collect, load_demos

    out = tmp_path / "demos"
    args = dict(tasks=["reach-v3"], episodes=3, cameras=["corner3"], width=16, height=16, max_steps=30)
    cmd = [sys.executable, "-m", "vlx.cli", "embodied", "collect", "--tasks", "reach-v3", "--episodes", "3"]
    cmd += ["--cameras", "corner3", "--size", "16", "--max-steps", "30", "--out", str(out), "--no-progress"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ep_dir = out / "episodes" / "reach-v3"
    deadline = time.time() + 600
    while not (ep_dir / "ep_00000.npz").exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert (ep_dir / "ep_00000.npz").exists()
    done_before = sorted(p.name for p in ep_dir.glob("ep_*.npz"))
    assert len(done_before) < 3, "killed too late to test anything"
    data = (ep_dir / "ep_00000.npz").read_bytes()
    (ep_dir / "ep_00000.npz").write_bytes(data[: len(data) // 2])  # torn
    (ep_dir / ".ep_00002.12345.tmp.npz").write_bytes(b"partial")  # a killed writer's temp file
    written = collect(CollectConfig(out=str(out), progress=False, **args))
    assert sorted(p.name for p in written)[0] == "ep_00000.npz"  # the torn one was redone
    assert sorted(p.name for p in ep_dir.iterdir()) == ["ep_00000.npz", "ep_00001.npz", "ep_00002.npz"]
    eps = load_demos(out, benchmark="metaworld-mt10", cameras=["corner3"], only_success=False)
    assert sorted(e.meta["episode"] for e in eps) == [0, 1, 2]
    assert all(e.rgb["corner3"].shape[1:] == (16, 16, 3) and len(e) > 0 for e in eps)
    assert collect(CollectConfig(out=str(out), progress=False, **args)) == []  # nothing left to do
