"""The vision policy on a Franka Kitchen subtask: the env's free ``default`` camera, the
policy reading only the robot's joint state besides the image, a learned skill's success by its
own subtask, and the tiny Kitchen recipe end to end (collect, train, closed-loop rollout through
`vlx embodied policy-eval`)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from embodied.policy.vision import VisionPolicy

TINY = "configs/embodied/policy_vision_kitchen_tiny.yaml"
MAIN = "configs/embodied/policy_vision_kitchen.yaml"


def _vlx(argv: list[str], capsys) -> tuple[int, str, str]:
    import embodied.policy.recipe  # noqa: F401  registers the recipe (the plugin does this for `vlx`)
    from vlx.cli import main

    rc = main(argv)
    cap = capsys.readouterr()
    return rc, cap.out, cap.err


def test_kitchen_recipe_reads_joint_state_and_image_only():
    """The recipe's model (9-dim actions, 59-dim observations) reads observation dims 0:18 (robot
    joint positions and velocities) and the image; the object joints (18:59) change nothing, and
    the auxiliary head targets the microwave's joint (dim 31)."""
    from embodied.policy.config import PolicyConfig
    from vlx.config import from_dict, read_yaml_with_extends

    cfg = from_dict(PolicyConfig, read_yaml_with_extends(MAIN), where=MAIN)
    assert cfg.data.benchmark == "kitchen-single" and cfg.data.tasks == ["microwave"]
    assert cfg.model.views() == ["default"] and cfg.model.proprio_dims == 18 and cfg.model.aux_state == [31]
    from gymnasium_robotics.envs.franka_kitchen.kitchen_env import OBS_ELEMENT_INDICES

    # observation = robot qpos (9), robot qvel (9), object qpos (21), ...: env qpos index i -> 18 + (i - 9)
    assert cfg.model.aux_state == [18 + int(OBS_ELEMENT_INDICES["microwave"][0]) - 9]
    torch.manual_seed(0)
    m = VisionPolicy(cfg.model, state_dim=59, action_dim=9, text_dim=16, text_len=4).eval()
    state, images = torch.randn(2, 59), torch.rand(2, 3, 64, 64)
    tok, mask = torch.randn(2, 4, 16), torch.ones(2, 4, dtype=torch.bool)
    with torch.no_grad():
        a = m.predict(state, tok, mask, images)
        assert a.shape == (2, 1, 9)
        objects = state.clone()
        objects[:, 18:] += 5.0
        torch.testing.assert_close(m.predict(objects, tok, mask, images), a)
        joints = state.clone()
        joints[:, :18] += 1.0
        assert (m.predict(joints, tok, mask, images) - a).abs().max() > 1e-4
        assert (m.predict(state, tok, mask, images.flip(-1)) - a).abs().max() > 1e-4


def test_learned_skill_success_is_its_own_subtask_in_kitchen_and_success_in_metaworld():
    from embodied.envs import build_benchmark
    from embodied.policy.skill import policy_skills

    runner = object()
    kitchen = policy_skills(build_benchmark("kitchen-multi"), runner, "plan")
    mw = policy_skills(build_benchmark("metaworld-mt10"), runner, "plan")
    micro = kitchen["open-microwave"]
    assert micro.success({"vlx_subgoals": {"microwave"}, "success": 0.0})
    assert not micro.success({"vlx_subgoals": {"light switch"}})  # another subtask done: not this step
    assert not micro.success({"success": 1.0})  # Kitchen info has no Meta-World success flag
    assert kitchen["flip-light-switch"].success({"vlx_subgoals": ["microwave", "light switch"]})
    assert mw["reach"].success({"success": 1.0}) and not mw["reach"].success({"success": 0.0})


def test_kitchen_default_free_camera_renders_the_envs_view():
    """``default`` is the env's own viewpoint (what ``render()`` shows), usable wherever named
    cameras are; a camera the scene lacks names the known ones, ``default`` included."""
    from embodied.cameras import env_rig, free_cameras
    from embodied.envs import build_benchmark
    from vlx.data.errors import DataError

    env = build_benchmark("kitchen-single").make_env("microwave", render=True, width=32, height=32)
    try:
        env.reset(seed=0)
        assert set(free_cameras(env)) == {"default"}
        rig = env_rig(env, ["default", "left_cap"], 32, 32, where="kitchen-single microwave", shadows=False)
        env.shadows = False  # both without shadows: cheap with software OpenGL
        from embodied.cameras import sim_handles

        data = sim_handles(env)[1]
        img = rig.render(data, "default")
        np.testing.assert_array_equal(img, env.render())
        assert np.abs(img.astype(int) - rig.render(data, "left_cap").astype(int)).mean() > 5
        rig.close()
        with pytest.raises(
            DataError,
            match=r"^kitchen-single microwave: camera 'wrist' does not exist; known cameras: "
            r"left_cap, right_cap, default$",
        ):
            env_rig(env, ["wrist"], 32, 32, where="kitchen-single microwave")
    finally:
        env.close()


def test_kitchen_recipe_wrong_camera_is_one_line_error(tmp_path, capsys):
    argv = ["train", TINY, "--set", f"train.output_dir={tmp_path / 'run'}", "--set", f"data.demos={tmp_path / 'd'}"]
    rc, _, err = _vlx([*argv, "--set", "model.camera=corner"], capsys)
    last = err.strip().split("\n")[-1]  # the collection's progress bar may come first
    assert rc == 2 and "Traceback" not in err
    assert last.startswith("error: ") and "camera 'corner' does not exist" in last
    assert last.endswith("known cameras: left_cap, right_cap, default")


@pytest.mark.slow  # ~40 s on 2 cores: the Kitchen scene loads four times, MiniLM once
def test_tiny_kitchen_vision_recipe_end_to_end(tmp_path, capsys):
    """Collect two tiny microwave demos from the ``default`` camera, train a few BC steps
    (the loss falls), then roll one episode out closed loop through the trained run with
    `vlx embodied policy-eval`."""
    from vlx.train.logging import read_jsonl

    out, demos = tmp_path / "run", tmp_path / "demos"
    sets = [f"train.output_dir={out}", f"data.demos={demos}", "train.progress=false", "train.log_every=1"]
    sets += ["train.max_steps=12", "train.epochs=100", "eval.episodes=0"]
    rc, _, err = _vlx(["train", TINY, *[a for s in sets for a in ("--set", s)]], capsys)
    assert rc == 0, err
    info = json.loads((demos / "dataset.json").read_text())["settings"]
    assert info["benchmark"] == "kitchen-single" and info["cameras"] == ["default"] and info["width"] == 32
    rows = [r for r in read_jsonl(out / "metrics.jsonl") if "loss" in r]
    assert len(rows) == 12
    first, last = np.mean([r["bc_loss"] for r in rows[:3]]), np.mean([r["bc_loss"] for r in rows[-3:]])
    assert last < 0.7 * first, (first, last)
    ev = tmp_path / "eval"
    argv = ["embodied", "policy-eval", "--run", str(out), "--episodes", "1", "--max-steps", "3"]
    rc, _, err = _vlx([*argv, "--modes", "plan,none", "--out", str(ev), "--no-progress"], capsys)
    assert rc == 0, err
    report = json.loads((ev / "policy_report.json").read_text())
    assert report["benchmark"] == "kitchen-single" and report["tasks"] == ["microwave"]
    for mode in ("plan", "none"):
        assert report["modes"][mode]["overall"]["episodes"] == 1
        (rec,) = [json.loads(x) for f in (ev / mode).glob("*.jsonl") for x in f.read_text().splitlines()]
        assert rec["status"] == "ok" and rec["env_steps"] == 3 and not rec["success"]
        assert [e["step"] for e in rec["executed"]] == ["open-microwave"]
