"""Harness details on a tiny pure-Python benchmark with dict observations ("dot": move a point
to a goal): extra plan steps stopped early (skill finished / per-step budget) and counted,
vectorised rollouts of dict observations matching local ones, and videos chosen by id."""

from __future__ import annotations

import json

import numpy as np
import pytest

from embodied.envs.base import Benchmark, TaskEnv, TaskSpec
from embodied.gym_env import tree_index
from embodied.harness import Harness, HarnessConfig, evaluate
from embodied.records import parse_episode_ids
from embodied.types import Plan, PlanStep, SkillSpec

SPECS = [
    SkillSpec("go-to-goal", "move the dot to the goal"),
    SkillSpec("wander", "wiggle the dot a little, then stop"),  # never credited: not a sub-goal
    SkillSpec("stuck", "push against the wall forever"),  # never finishes by itself
]


class DotEnv(TaskEnv):
    """obs = {"pos": (2,), "goal": (2,)} float32, action (2,) in [-1, 1] moves pos by 0.1 a;
    success when |pos - goal| < 0.05 (info["success"]). Seeded: pos/goal from the seed."""

    def __init__(self, task: TaskSpec, render: bool = False):
        import gymnasium as gym

        self.task, self.max_episode_steps = task, task.max_episode_steps
        box = gym.spaces.Box(-2.0, 2.0, (2,), np.float32)
        self.observation_space = gym.spaces.Dict({"pos": box, "goal": box})
        self.action_space = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
        self.pos = self.goal = np.zeros(2, np.float32)
        self._done = False

    def _obs(self):
        return {"pos": self.pos.copy(), "goal": self.goal.copy()}

    def reset(self, seed=None):
        rng = np.random.default_rng(seed)
        self.pos = rng.uniform(-1, 1, 2).astype(np.float32)
        self.goal = rng.uniform(-1, 1, 2).astype(np.float32)
        self._done = False
        return self._obs(), {}

    def step(self, action):
        self.pos = np.clip(self.pos + 0.1 * np.clip(np.asarray(action, np.float32), -1, 1), -2, 2).astype(np.float32)
        ok = float(np.linalg.norm(self.pos - self.goal) < 0.05)
        self._done = self._done or bool(ok)
        return self._obs(), ok, False, False, {"success": ok}

    def success(self, info):
        return bool(info.get("success", 0.0) >= 1.0)

    def completed_subgoals(self, info):
        return {"dot"} if self._done else set()

    def render(self):
        img = np.zeros((16, 16, 3), np.uint8)
        x, y = np.clip(((self.pos + 2) / 4 * 15).astype(int), 0, 15)
        img[y, x] = 255
        return img


class DotBenchmark(Benchmark):
    name = "dot"
    protocol = "dot: success when the point is within 0.05 of the goal"

    def __init__(self, variant: str = ""):
        self._tasks = [
            TaskSpec("dot", "move the dot to the goal", (PlanStep("go-to-goal"),), ("dot",), max_episode_steps=200)
        ]

    def tasks(self):
        return list(self._tasks)

    def skill_specs(self):
        return list(SPECS)

    def make_env(self, task, render=False, camera=None, width=128, height=128):
        return DotEnv(self.task(task), render=render)


class GoSkill:
    spec = SPECS[0]

    def reset(self, env, args):
        pass

    def act(self, obs):
        assert isinstance(obs, dict) and obs["pos"].shape == (2,), obs  # one env's dict, not the batch
        return np.clip((obs["goal"] - obs["pos"]) / 0.1, -1, 1).astype(np.float32)

    def success(self, info):
        return bool(info.get("success", 0.0) >= 1.0)


class WanderSkill:
    """Moves for 5 steps, then says it has finished (like a Kitchen controller back home)."""

    spec = SPECS[1]

    def reset(self, env, args):
        self.n, self.finished = 0, False

    def act(self, obs):
        self.n += 1
        self.finished = self.n >= 5
        return np.array([0.3, -0.3], np.float32)

    def success(self, info):
        return False


class StuckSkill:
    spec = SPECS[2]

    def reset(self, env, args):
        pass

    def act(self, obs):
        return np.array([1.0, 1.0], np.float32)

    def success(self, info):
        return False


def skills():
    return {"go-to-goal": GoSkill(), "wander": WanderSkill(), "stuck": StuckSkill()}


class FixedPlanner:
    def __init__(self, names):
        self.names = list(names)

    def plan(self, instruction, observation, skill_specs):
        return Plan(steps=[PlanStep(n) for n in self.names])


def cfg(tmp_path, **kw):
    base = dict(benchmark="dot", episodes=2, seed=0, out=str(tmp_path / "run"), progress=False)
    base.update(kw)
    return HarnessConfig(**base)


def run(c, planner, bench=None):
    h = Harness(c, benchmark=bench or DotBenchmark(), planner=planner, skills=skills())
    try:
        return h.run()
    finally:
        h.close()


# -- extra plan steps


def test_extra_step_that_finishes_is_stopped_counted_and_plan_goes_on(tmp_path):
    recs = run(cfg(tmp_path), FixedPlanner(["wander", "go-to-goal"]))
    for r in recs:
        wander, go = r["executed"]
        assert (wander["step"], wander["stop"], wander["extra"], wander["env_steps"], wander["success"]) == (
            "wander",
            "skill_finished",
            True,
            5,
            False,
        )
        assert go["stop"] == "success" and not go["extra"] and r["success"]
        assert r["env_steps"] == 5 + go["env_steps"] < 200  # not the episode's step limit
        assert [e["kind"] for e in r["plans"][0]["errors"]] == ["extra_step"]
    from embodied.report import summarize

    o = summarize(recs)["overall"]
    assert o["extra_steps_executed"] == 2 and o["error_taxonomy"]["extra_step"] == 2 and o["success_rate"] == 1.0


def test_extra_step_that_never_finishes_is_stopped_by_the_step_budget(tmp_path):
    # Without a budget the stuck step would use the whole episode (and the task fail).
    (r0,) = run(cfg(tmp_path / "nobudget", episodes=1), FixedPlanner(["stuck", "go-to-goal"]))
    assert r0["executed"][0]["stop"] == "episode_limit" and r0["env_steps"] == 200 and not r0["success"]
    # (the budget holds for every step: 60 is enough for go-to-goal from anywhere, <= 57 steps)
    (r,) = run(cfg(tmp_path / "budget", episodes=1, max_skill_steps=60), FixedPlanner(["stuck", "go-to-goal"]))
    stuck, go = r["executed"]
    assert (stuck["stop"], stuck["env_steps"], stuck["extra"]) == ("step_budget", 60, True)
    assert go["success"] and r["success"] and r["env_steps"] < 200
    # A benchmark's own budget applies when the config does not set one.
    b = DotBenchmark()
    b.skill_max_steps = 70
    (rb,) = run(cfg(tmp_path / "bench", episodes=1), FixedPlanner(["stuck", "go-to-goal"]), bench=b)
    assert rb["executed"][0]["env_steps"] == 70 and rb["success"]


def test_ground_truth_step_out_of_budget_ends_the_plan(tmp_path):
    """Only extra steps are skipped over; a needed step that fails ends the attempt."""
    (r,) = run(cfg(tmp_path, episodes=1, max_skill_steps=2), FixedPlanner(["go-to-goal", "wander"]))
    assert [(e["step"], e["stop"], e["extra"]) for e in r["executed"]] == [("go-to-goal", "step_budget", False)]
    assert not r["success"] and r["env_steps"] == 2


def test_bad_budget_is_a_config_error(tmp_path):
    from vlx.config import ConfigError

    with pytest.raises(ConfigError, match="max_skill_steps"):
        Harness(cfg(tmp_path, max_skill_steps=0), benchmark=DotBenchmark(), planner=FixedPlanner([]), skills=skills())


# -- dict observations in vector envs


def test_tree_index_matches_per_leaf_indexing():
    batch = {
        "pos": np.arange(6).reshape(3, 2),
        "nested": {"goal": np.arange(3) * 10, "pair": (np.ones(3), np.zeros((3, 2)))},
    }
    for i in range(3):
        got = tree_index(batch, i)
        assert np.array_equal(got["pos"], batch["pos"][i]) and got["nested"]["goal"] == 10 * i
        assert isinstance(got["nested"]["pair"], tuple) and got["nested"]["pair"][1].shape == (2,)
    assert tree_index(np.arange(4) * 2, 3) == 6


@pytest.mark.slow
def test_vector_envs_with_dict_observations_match_local(tmp_path, monkeypatch):
    import embodied.envs as envs

    # Vector workers rebuild the benchmark by name (forked, so they see the registration).
    # WanderSkill counts its steps: episodes side by side sharing one instance would differ.
    monkeypatch.setitem(envs.BENCHMARKS._items, "dot", DotBenchmark)
    key = lambda r: (r["episode_id"], r["seed"], r["success"], r["env_steps"], [e["step"] for e in r["executed"]])  # noqa: E731
    one = run(cfg(tmp_path / "one", episodes=3), FixedPlanner(["wander", "go-to-goal"]))
    two = run(cfg(tmp_path / "two", episodes=3, num_envs=2), FixedPlanner(["wander", "go-to-goal"]))
    assert sorted(map(key, one)) == sorted(map(key, two))
    assert all(r["success"] and r["status"] == "ok" for r in two)


# -- videos chosen by episode id


def test_parse_episode_ids():
    assert parse_episode_ids("3, 7") == ({3, 7}, set())
    assert parse_episode_ids(["push-v3/07", "2"]) == ({2}, {"push-v3/7"})
    assert parse_episode_ids(None) == (set(), set())
    from vlx.config import ConfigError

    with pytest.raises(ConfigError, match="'seven'"):
        parse_episode_ids("3,seven")


def test_video_episodes_by_id_keep_actions_and_get_mp4s(tmp_path):
    c = cfg(tmp_path, episodes=4, video_episodes=["1", "dot/3"])
    summary = evaluate(c, benchmark=DotBenchmark(), planner=FixedPlanner(["go-to-goal"]), skills=skills())
    recs = [json.loads(line) for line in (tmp_path / "run" / "episodes.rank0.jsonl").read_text().splitlines()]
    assert [bool(r.get("actions")) for r in recs] == [False, True, False, True]
    names = sorted(p.rsplit("/", 1)[1] for p in summary["videos"])
    assert names == ["dot_ep1_success.mp4", "dot_ep3_success.mp4"] and summary["videos_missing"] == []
    import av

    with av.open(str(tmp_path / "run" / "videos" / "dot_ep3_success.mp4")) as f:
        n_frames = sum(1 for _ in f.decode(video=0))
    assert n_frames == recs[3]["env_steps"] + 1  # the reset frame plus one per recorded action


def test_video_episodes_recorded_without_actions_are_listed_missing(tmp_path):
    evaluate(cfg(tmp_path, episodes=2), benchmark=DotBenchmark(), planner=FixedPlanner(["go-to-goal"]), skills=skills())
    # Asking for a video of an episode that is already recorded (resume) cannot film it.
    s = evaluate(
        cfg(tmp_path, episodes=2, video_episodes=["0"]),
        benchmark=DotBenchmark(),
        planner=FixedPlanner(["go-to-goal"]),
        skills=skills(),
    )
    assert s["videos"] == [] and s["videos_missing"] == ["dot/0"]


def test_cli_video_episodes_and_skill_budget_flags():
    from embodied.eval_config import config_from_args
    from vlx.cli import build_parser

    args = build_parser().parse_args(
        [
            "embodied",
            "eval",
            "--benchmark",
            "kitchen-multi",
            "--planner",
            "oracle",
            "--video-episodes",
            "3,microwave+light/7",
            "--max-skill-steps",
            "250",
        ]
    )
    c = config_from_args(args)
    assert c.video_episodes == ["3", "microwave+light/7"] and c.max_skill_steps == 250 and c.videos == 0
