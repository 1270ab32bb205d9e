"""The skill registry: maps a plan step (skill name + arguments) to a low-level controller.

Skill sets are built by benchmark family and kind: ``build_skills(benchmark, "scripted")``
gives Meta-World's scripted experts for ``metaworld-*`` benchmarks and the Franka Kitchen
subtask controllers for ``kitchen`` (registered by ``embodied.skills.kitchen``).
``LearnedPolicySkill`` wraps any learned policy (the plan-conditioned policy of a later issue)
so the harness evaluates it like any other skill.

A family's module ``embodied.skills.<family>`` is imported on first use and registers its
kinds with ``@register_skills(family, kind)``: the factory gets the ``Benchmark`` plus keyword
options and returns ``{skill name: Skill}``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from importlib import import_module
from typing import Any, Protocol

import numpy as np

from embodied.types import PlanStep, Skill, SkillSpec
from vlx.config import ConfigError
from vlx.registry import Registry

SKILL_SETS: Registry[Callable[..., Mapping[str, Skill]]] = Registry("skill set")


def register_skills(family: str, kind: str) -> Callable:
    """Decorator on ``factory(benchmark, **kw) -> {name: Skill}`` for ``family``/``kind``."""
    return SKILL_SETS.register(f"{family}/{kind}")


def benchmark_family(benchmark_name: str) -> str:
    """``metaworld-mt10`` -> ``metaworld``; ``kitchen`` -> ``kitchen``."""
    return benchmark_name.split("-", 1)[0].split(":", 1)[0]


class SkillLibrary:
    """The skills one evaluation may run, looked up by plan step. Steps are validated by the
    harness (``embodied.planners.validate_step``) before ``get`` is called."""

    def __init__(self, skills: Mapping[str, Skill]):
        self.skills = dict(skills)

    def specs(self) -> list[SkillSpec]:
        return [s.spec for s in self.skills.values()]

    def __contains__(self, name: str) -> bool:
        return name in self.skills

    def get(self, step: PlanStep) -> Skill:
        try:
            return self.skills[step.skill]
        except KeyError:
            raise KeyError(f"no skill {step.skill!r}; known: {', '.join(self.skills)}") from None


def build_skills(benchmark: Any, kind: str = "scripted", **kwargs: Any) -> SkillLibrary:
    """The ``kind`` skill set of ``benchmark``'s family (``ConfigError`` when unknown)."""
    family = benchmark_family(benchmark.name)
    key = f"{family}/{kind}"
    if key not in SKILL_SETS:
        try:
            import_module(f"embodied.skills.{family}")
        except ModuleNotFoundError as e:
            if e.name != f"embodied.skills.{family}":
                raise
    try:
        factory = SKILL_SETS.get(key)
    except KeyError:
        known = ", ".join(SKILL_SETS.names()) or "none"
        raise ConfigError(f"skills: no skill set {kind!r} for benchmark {benchmark.name!r}; known: {known}") from None
    return SkillLibrary(factory(benchmark, **kwargs))


class Policy(Protocol):
    """What a learned policy offers: an action for an observation, conditioned on text
    (the plan step's text, the instruction, or "" to ablate the conditioning)."""

    def act(self, obs: Any, text: str) -> np.ndarray: ...


class LearnedPolicySkill:
    """A plan step executed by a learned policy (filled by the plan-conditioned policy issue).

    ``text_fn(step_args)`` gives the conditioning text (default: the skill description plus
    argument values); ``success_fn(info)`` is the benchmark's own success signal for this
    skill's sub-goal (e.g. ``info['success'] >= 1`` in Meta-World).
    """

    def __init__(
        self,
        spec: SkillSpec,
        policy: Policy,
        success_fn: Callable[[dict], bool],
        text_fn: Callable[[dict[str, str]], str] | None = None,
    ):
        self.spec = spec
        self.policy = policy
        self.success_fn = success_fn
        self.text_fn = text_fn or (lambda args: " ".join([spec.description, *args.values()]).strip())
        self._text = ""

    def reset(self, env: Any, args: dict[str, str]) -> None:
        self._text = self.text_fn(args)
        if hasattr(self.policy, "reset"):
            self.policy.reset()

    def act(self, obs: Any) -> np.ndarray:
        return np.asarray(self.policy.act(obs, self._text))

    def success(self, info: dict) -> bool:
        return bool(self.success_fn(info))


__all__ = [
    "SKILL_SETS",
    "LearnedPolicySkill",
    "Policy",
    "SkillLibrary",
    "benchmark_family",
    "build_skills",
    "register_skills",
]
