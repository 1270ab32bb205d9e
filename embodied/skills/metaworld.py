"""Meta-World skills: the scripted expert policy Meta-World ships for each task
(``metaworld.policies``), one skill per task of the suite, done by ``info['success']``."""

from __future__ import annotations

from typing import Any

import numpy as np

from embodied.envs.metaworld import skill_name
from embodied.skills import LearnedPolicySkill, Policy, register_skills
from embodied.types import SkillSpec


def expert_policy_class(task: str) -> type:
    """The scripted expert class for ``task`` (Meta-World's own task -> policy map)."""
    from metaworld.policies import ENV_POLICY_MAP

    if task not in ENV_POLICY_MAP:
        raise KeyError(f"metaworld.policies has no scripted expert for {task!r}")
    return ENV_POLICY_MAP[task]


class ScriptedExpertSkill:
    """Meta-World's hand-written expert for ``task``: reads the full (goal-observable) 39-dim
    observation, outputs a 4-dim action in [-1, 1]. Success is the env's ``info['success']``,
    which only means this skill's sub-goal in this skill's own task env."""

    def __init__(self, spec: SkillSpec, task: str):
        self.spec = spec
        self.task = task
        self.policy = expert_policy_class(task)()
        self._env_task: str | None = None

    def reset(self, env: Any, args: dict[str, str]) -> None:
        # env is None in vectorised rollouts (the env lives in a worker); that is fine here.
        self._env_task = getattr(getattr(env, "task", None), "name", None)

    def act(self, obs: np.ndarray) -> np.ndarray:
        return np.clip(self.policy.get_action(obs), -1.0, 1.0).astype(np.float32)

    def success(self, info: dict) -> bool:
        # Meta-World reports success for the env's task only; another task's skill cannot
        # be credited with it (when the env is known).
        if self._env_task is not None and self._env_task != self.task:
            return False
        return bool(info.get("success", 0.0) >= 1.0)


@register_skills("metaworld", "scripted")
def scripted_skills(benchmark: Any) -> dict[str, ScriptedExpertSkill]:
    specs = {s.name: s for s in benchmark.skill_specs()}
    return {skill_name(t.name): ScriptedExpertSkill(specs[skill_name(t.name)], t.name) for t in benchmark.tasks()}


@register_skills("metaworld", "learned")
def learned_skills(benchmark: Any, policy: Policy | None = None) -> dict[str, LearnedPolicySkill]:
    """Every task's skill runs the same text-conditioned ``policy``."""
    if policy is None:
        from vlx.config import ConfigError

        raise ConfigError(
            "skills 'learned': needs policy= (an object with act(obs, text) -> action); from the CLI, "
            "--policy RUN_DIR (a `vlx train` run of embodied_policy)"
        )
    ok = lambda info: bool(info.get("success", 0.0) >= 1.0)  # noqa: E731
    return {s.name: LearnedPolicySkill(s, policy, ok) for s in benchmark.skill_specs()}
