"""Order-sensitive chain success and CALVIN-style average chain length, worked by hand from
fake completion logs; Franka Kitchen's all-subtask completion log; the indirect instruction set."""

from __future__ import annotations

import os

os.environ.setdefault("MUJOCO_GL", "osmesa")
os.environ.setdefault("PYOPENGL_PLATFORM", "osmesa")

from pathlib import Path

import numpy as np
import pytest

from embodied.chains import average_chain_length, chain_progress, chain_stats, chain_success
from embodied.envs import build_benchmark
from embodied.envs.kitchen import ENV_SUBTASKS, KitchenEnv, all_completions
from embodied.instructions import check_tasks, expected_plans, load_instruction_file

ABC = ("a", "b", "c")


@pytest.mark.parametrize(
    "log, length",
    [
        (["a", "b", "c"], 3),  # in order
        (["a", "c", "b"], 1),  # c out of order: the chain stops after a
        (["b", "a", "c"], 0),  # first completion is not the first instructed subtask
        (["a", "x", "b", "c"], 1),  # wrong step x between a and b
        (["x", "a", "b", "c"], 0),  # wrong step before anything
        (["a", "b"], 2),  # missing last step
        ([], 0),
        (["a", "b", "c", "x"], 3),  # after the chain is done nothing counts
    ],
)
def test_chain_progress_hand_worked(log, length):
    assert chain_progress(ABC, log) == length
    assert chain_success(ABC, log) == (length == 3)


def test_chain_stats_on_a_fake_episode_log():
    # Four episodes: instructed chain, completion log -> chain length (by hand):
    # (a,b,c) a,b,c -> 3 ; (a,b,c) a,c -> 1 ; (a,b) b,a -> 0 ; (a,b,c,d) a,b,x,c,d -> 2
    episodes = [
        (("a", "b", "c"), ["a", "b", "c"]),
        (("a", "b", "c"), ["a", "c"]),
        (("a", "b"), ["b", "a"]),
        (("a", "b", "c", "d"), ["a", "b", "x", "c", "d"]),
    ]
    lengths = [chain_progress(i, log) for i, log in episodes]
    assert lengths == [3, 1, 0, 2]
    s = chain_stats([len(i) for i, _ in episodes], lengths)
    assert s["chains"] == 4 and s["successes"] == 1
    assert s["avg_chain_length"] == pytest.approx(6 / 4)
    # >= 1 in a row: 3 of 4; >= 2: 2 of 4; >= 3: 1 of 4; all four: none
    assert s["at_least"] == {1: 0.75, 2: 0.5, 3: 0.25, 4: 0.0}
    assert average_chain_length([]) is None
    with pytest.raises(ValueError, match="outside 0..2"):
        chain_stats([2], [3])


def _goal_qpos(*subtasks):
    """A (30,) qpos at the env's start with the objects of ``subtasks`` at their goals."""
    from gymnasium_robotics.envs.franka_kitchen.kitchen_env import OBS_ELEMENT_GOALS, OBS_ELEMENT_INDICES

    env = KitchenEnv(build_benchmark("kitchen").task("light-switch"))
    env.reset(seed=0)
    q = env.state
    env.close()
    for s in subtasks:
        q[OBS_ELEMENT_INDICES[s]] = OBS_ELEMENT_GOALS[s]
    return q


def test_all_completions_uses_the_env_threshold_on_every_subtask():
    q0 = _goal_qpos()
    assert all_completions(q0, []) == []  # nothing is done at the start
    q = _goal_qpos("slide cabinet")
    done = all_completions(q, ["microwave"])  # appended after what is already listed, once
    assert done == ["microwave", "slide cabinet"]
    assert all_completions(q, done) == ["microwave", "slide cabinet"]
    # just inside / outside the 0.3 threshold (slide cabinet: one joint, goal 0.37)
    q[19] = 0.37 - 0.29
    assert all_completions(q, []) == ["slide cabinet"]
    q[19] = 0.37 - 0.31
    assert all_completions(q, []) == []


def test_kitchen_env_success_is_order_sensitive_and_counts_wrong_steps():
    bench = build_benchmark("kitchen")
    env = KitchenEnv(bench.task("microwave+light"))
    obs, _ = env.reset(seed=0)
    _, _, _, _, info = env.step(np.zeros(9))
    assert info["vlx_all_completions"] == []  # zero action from the start completes nothing
    assert env.chain_length(info) == 0 and not env.success(info)
    cases = [
        (["microwave", "light switch"], 2, True),
        (["light switch", "microwave"], 0, False),  # out of order
        (["microwave", "kettle", "light switch"], 1, False),  # wrong step in between
        (["microwave"], 1, False),  # missing step
    ]
    for log, length, ok in cases:
        info = {"vlx_all_completions": log, "episode_task_completions": [g for g in log if g != "kettle"]}
        assert env.chain_length(info) == length and env.success(info) is ok
    # The env's own (task-only) log alone cannot see the wrong step: used only without ours.
    assert env.success({"episode_task_completions": ["microwave", "light switch"]})
    env.close()


def test_indirect_instruction_set_covers_every_task_with_its_plan():
    bench = build_benchmark("kitchen")
    path = Path(__file__).resolve().parents[2] / "embodied" / "data" / "kitchen_indirect.yaml"
    instr = load_instruction_file(path)
    assert instr.name == "kitchen_indirect" and len(instr.sha256) == 64
    names = [t.name for t in bench.tasks()]
    check_tasks(instr, names)
    assert sorted(instr.by_task) == sorted(names)
    plans = expected_plans(instr, bench.skill_specs())
    for (task, _), steps in plans.items():
        assert tuple(s.skill for s in steps) == tuple(s.skill for s in bench.task(task).ground_truth)
    # indirect: no instruction names the object it is about
    for task, items in instr.by_task.items():
        for it in items:
            for word in ("light", "switch", "microwave", "burner", "kettle", "cabinet", "knob"):
                assert word not in it.text.lower(), (task, it.text)
    lens = {len(bench.task(t).subgoals) for t in names}
    assert lens == {1, 2, 3, 4}
    # every multi-subtask chain has 5 distinct phrasings (40 over the 8 chains of the results)
    multi = [t for t in names if len(bench.task(t).subgoals) > 1]
    assert len(multi) == 8
    for t in multi:
        texts = [it.text for it in instr.by_task[t]]
        assert len(texts) == 5 and len(set(texts)) == 5, t
    assert set(ENV_SUBTASKS) == {g for t in names for g in bench.task(t).subgoals}


def test_chain_summary_from_records():
    from embodied.chains import chain_summary

    recs = [
        dict(subgoals=["a", "b"], chain_length=2),
        dict(subgoals=["a", "b", "c"], chain_length=1),
        dict(subgoals=["a", "b"], chain_length=0),
        dict(subgoals=["a", "b", "c"], chain_length=3),
    ]
    s = chain_summary(recs)
    assert (s["chains"], s["successes"], s["avg_chain_length"]) == (4, 2, 1.5)
    assert s["at_least"] == {1: 0.75, 2: 0.5, 3: 0.25}
    lo, hi = s["ci95"]  # Wilson 2/4: 0.5 -/+ ... = (0.150, 0.850)
    assert lo == pytest.approx(0.1500, abs=1e-3) and hi == pytest.approx(0.8500, abs=1e-3)
