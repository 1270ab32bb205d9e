"""The skill registry: scripted experts for every Meta-World task, learned-policy skills."""

from __future__ import annotations

import numpy as np
import pytest

from embodied.envs.metaworld import MetaWorldBenchmark
from embodied.skills import LearnedPolicySkill, SkillLibrary, benchmark_family, build_skills
from embodied.skills.metaworld import ScriptedExpertSkill
from embodied.types import PlanStep
from vlx.config import ConfigError


def _rollout(env, skill, seed, max_steps=500):
    obs, _ = env.reset(seed=seed)
    skill.reset(env, {})
    for t in range(max_steps):
        obs, _, _, _, info = env.step(skill.act(obs))
        if skill.success(info):
            return t + 1
    return None


def test_every_mt50_task_has_a_scripted_expert():
    b = MetaWorldBenchmark("mt50")
    lib = build_skills(b, "scripted")
    assert isinstance(lib, SkillLibrary) and len(lib.skills) == 50
    assert {s.name for s in lib.specs()} == {s.name for s in b.skill_specs()}
    for t in b.tasks():
        sk = lib.get(t.ground_truth[0])
        assert isinstance(sk, ScriptedExpertSkill) and sk.task == t.name
    obs = np.zeros(39)
    a = lib.get(PlanStep("reach")).act(obs)
    assert a.shape == (4,) and a.dtype == np.float32 and np.all(np.abs(a) <= 1)


@pytest.mark.parametrize("task", ["drawer-close-v3", "button-press-topdown-v3"])
def test_scripted_expert_succeeds_by_env_signal(task):
    b = MetaWorldBenchmark("mt10")
    env = b.make_env(task)
    skill = build_skills(b).get(b.task(task).ground_truth[0])
    steps = [_rollout(env, skill, s) for s in (0, 1)]
    assert all(n is not None and n < 200 for n in steps), steps


def test_wrong_task_skill_is_not_credited():
    b = MetaWorldBenchmark("mt10")
    env = b.make_env("reach-v3")
    push = build_skills(b).get(PlanStep("push"))
    push.reset(env, {})
    assert push.success({"success": 1.0}) is False  # the env's success is reach's, not push's
    push.reset(None, {})  # vector rollouts: env unknown -> trust the signal
    assert push.success({"success": 1.0}) is True


def test_unknown_skill_set_and_skill():
    b = MetaWorldBenchmark("mt10")
    with pytest.raises(ConfigError, match="no skill set 'nonsense'.*metaworld-mt10"):
        build_skills(b, "nonsense")
    with pytest.raises(KeyError, match="no skill 'fly'"):
        build_skills(b).get(PlanStep("fly"))
    assert benchmark_family("metaworld-mt1:reach-v3") == "metaworld" and benchmark_family("kitchen") == "kitchen"


class _EchoPolicy:
    """Acts toward the goal in the obs; remembers the conditioning text it was given."""

    def __init__(self):
        self.texts, self.resets = [], 0

    def reset(self):
        self.resets += 1

    def act(self, obs, text):
        self.texts.append(text)
        return np.clip(10 * (obs[36:39] - obs[:3]), -1, 1).tolist() + [0.0]


def test_learned_policy_skill_runs_through_registry():
    b = MetaWorldBenchmark("mt10")
    pol = _EchoPolicy()
    lib = build_skills(b, "learned", policy=pol)
    skill = lib.get(PlanStep("reach"))
    assert isinstance(skill, LearnedPolicySkill)
    env = b.make_env("reach-v3")
    n = _rollout(env, skill, seed=0)
    assert n is not None and pol.resets == 1
    assert set(pol.texts) == {b.task("reach-v3").instruction}  # conditioned on the skill's text
    custom = LearnedPolicySkill(skill.spec, pol, lambda info: info["x"] > 1, text_fn=lambda args: args["obj"])
    custom.reset(None, {"obj": "mug"})
    custom.act(np.zeros(39))
    assert pol.texts[-1] == "mug" and custom.success({"x": 2}) and not custom.success({"x": 0})
