"""Demo collection: layout, determinism, resume after a lost file, sharding, and the loader's
errors for a truncated file, another benchmark's demo and an unknown camera."""

from __future__ import annotations

import json

import numpy as np
import pytest

from embodied.collect import CameraRig, CollectConfig, collect, episode_path, load_demos, load_episode, sim_handles
from vlx.data.errors import DataError

TASKS = ["reach-v3", "pick-place-v3"]


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    out = tmp_path_factory.mktemp("demos")
    cfg = CollectConfig(
        benchmark="metaworld-mt10",
        tasks=TASKS,
        episodes=1,
        out=str(out),
        cameras=["corner"],
        depth=True,
        width=32,
        height=32,
        max_steps=6,
        progress=False,
    )
    return cfg, collect(cfg)


def test_layout_and_contents(rendered):
    cfg, written = rendered
    assert [p.parent.name for p in written] == TASKS
    ep = load_episode(written[1], benchmark="metaworld-mt10", cameras=["corner"])
    T = len(ep)
    assert T == 6 and ep.obs.shape == (7, 39) and ep.actions.shape == (6, 4)
    assert ep.rgb["corner"].shape == (7, 32, 32, 3) and ep.rgb["corner"].dtype == np.uint8
    assert ep.depth["corner"].dtype == np.uint16 and ep.depth["corner"].shape == (7, 32, 32)
    # the corner camera sees the table about 1-2 m away: depth in mm in that range
    d = ep.depth["corner"][0]
    assert 500 < np.median(d[d > 0]) < 3000
    assert ep.rgb["corner"][0].std() > 5  # a real image, not a blank buffer
    m = ep.meta
    assert m["task"] == "pick-place-v3" and m["plan"] == ["pick-place"]
    assert m["plan_texts"][0].startswith("pick-place: ") and ep.text_at(0) == m["plan_texts"][0]
    assert m["instruction"] and m["benchmark"] == "metaworld-mt10"
    doc = json.loads((cfg_out := episode_path(cfg.out, "reach-v3", 0).parents[2] / "dataset.json").read_text())
    assert doc["settings"]["cameras"] == ["corner"] and cfg_out.with_name("README.md").exists()
    # actions replay: the scripted expert is a function of the observation
    from embodied.skills.metaworld import expert_policy_class

    expert = expert_policy_class("pick-place-v3")()
    np.testing.assert_allclose(np.clip(expert.get_action(ep.obs[0]), -1, 1), ep.actions[0], atol=1e-6)


def test_resume_rewrites_only_missing_and_is_deterministic(rendered):
    cfg, written = rendered
    before = load_episode(written[0], images=False)
    assert collect(cfg) == []  # nothing missing
    written[0].unlink()
    again = collect(cfg)
    assert again == [written[0]]
    after = load_episode(written[0], images=False)
    np.testing.assert_array_equal(before.actions, after.actions)
    np.testing.assert_array_equal(before.obs, after.obs)


def test_sharding_partitions_the_episodes(tmp_path):
    cfg = CollectConfig(
        benchmark="metaworld-mt10", tasks=TASKS, episodes=3, out=str(tmp_path), max_steps=3, progress=False
    )
    r0 = collect(cfg, rank=0, world_size=2)
    r1 = collect(cfg, rank=1, world_size=2)
    assert len(r0) == 3 and len(r1) == 3 and not set(r0) & set(r1)
    eps = load_demos(tmp_path, benchmark="metaworld-mt10", images=False)
    assert len(eps) == 6 and len({e.meta["seed"] for e in eps}) == 6


def test_full_state_demo_succeeds(tmp_path):
    cfg = CollectConfig(benchmark="metaworld-mt10", tasks=["reach-v3"], episodes=1, out=str(tmp_path), progress=False)
    ep = load_episode(collect(cfg)[0])
    assert ep.meta["success"] and ep.success[-1] and ep.meta["first_success_step"] == len(ep)


def test_truncated_file_names_it(rendered, tmp_path):
    _, written = rendered
    bad = tmp_path / "ep_00000.npz"
    data = written[0].read_bytes()
    bad.write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match=r"ep_00000\.npz: truncated or corrupt"):
        load_episode(bad)


def test_other_benchmark_and_unknown_camera(rendered, tmp_path):
    _, written = rendered
    with np.load(written[0]) as z:
        arrays = {k: z[k] for k in z.files}
    meta = json.loads(str(arrays["meta"]))
    meta["benchmark"] = "kitchen"
    arrays["meta"] = np.array(json.dumps(meta))
    other = tmp_path / "kitchen_demo.npz"
    np.savez(other, **arrays)
    with pytest.raises(DataError, match=r"kitchen_demo\.npz: demo from benchmark 'kitchen', expected 'metaworld-mt10'"):
        load_episode(other, benchmark="metaworld-mt10")
    with pytest.raises(DataError, match=r"ep_00000\.npz: camera 'topview' not in this demo; recorded cameras: corner"):
        load_episode(written[0], cameras=["topview"])


def test_nonexistent_camera_at_collection(tmp_path):
    from embodied.envs import build_benchmark

    env = build_benchmark("metaworld-mt10").make_env("reach-v3")
    with pytest.raises(DataError, match=r"camera 'frontcam' does not exist; known cameras: topview, corner"):
        CameraRig(sim_handles(env)[0], ["frontcam"], 32, 32, where="metaworld-mt10 reach-v3")
    env.close()
    cfg = CollectConfig(
        benchmark="metaworld-mt10",
        tasks=["reach-v3"],
        episodes=1,
        out=str(tmp_path),
        cameras=["frontcam"],
        progress=False,
    )
    with pytest.raises(DataError, match="frontcam"):
        collect(cfg)
