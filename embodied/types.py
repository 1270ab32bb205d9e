"""The contracts between planners, skills and the evaluation harness.

A planner turns (instruction, observation, skill specs) into a ``Plan`` of ``PlanStep``s;
the harness validates each step against the skill specs (never executing text as code),
runs the matching ``Skill`` in the env until the benchmark's own success signal, and records
``PlanError``s in the Embodied Agent Interface taxonomy.

How the harness (embodied/harness.py) calls these, in addition to the signatures below
(additive notes, no signature changed):
- ``Planner.plan``'s ``observation`` is a dict: ``{"state": <the env's observation>,
  "completed_skills": [sub-goal names done so far], "feedback": [one line per failed
  attempt, for re-planning]}``. Planners that ignore it are fine.
- Before each planner call the harness calls ``planner.set_ground_truth(steps)`` when the
  planner has that method (the oracle), with the task's ground-truth ``PlanStep``s.
- A planner call that raises, exceeds the harness's timeout, or returns anything but a
  ``Plan`` of ``PlanStep``s becomes an empty plan with one PARSE error (counted, reported).
- ``Skill.reset(env, args)`` gets the ``TaskEnv`` (embodied/envs/base.py) in local
  rollouts and ``None`` in vectorised ones (the env lives in a worker process); skills
  that need the env (e.g. model-based controllers) require ``num_envs=1``.
- ``Skill.success(info)`` sees the env's ``info`` plus ``info["vlx_success"]`` (whole task
  solved) and ``info["vlx_subgoals"]`` (sub-goals completed so far).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Protocol

import numpy as np


class PlanErrorKind(str, Enum):
    """Embodied Agent Interface error classes (Li et al., 2024)."""

    PARSE = "parse_error"
    HALLUCINATED_SKILL = "hallucinated_skill"
    HALLUCINATED_OBJECT = "hallucinated_object"
    BAD_ARGUMENTS = "bad_arguments"
    MISSING_STEP = "missing_step"
    EXTRA_STEP = "extra_step"
    WRONG_ORDER = "wrong_order"
    AFFORDANCE = "affordance_failure"


# The harness's planner-failure columns (``Plan.error_kind``): the deadline passed, the
# server answered with an HTTP error, no connection, an unreadable answer, or a plan naming a
# skill or object that does not exist.
PLANNER_ERROR_KINDS = ("timeout", "http_error", "connection", "parse_error", "hallucination")


@dataclass(frozen=True)
class PlanError:
    kind: PlanErrorKind
    step_index: int | None
    detail: str


@dataclass(frozen=True)
class PlanStep:
    skill: str
    args: tuple[tuple[str, str], ...] = ()  # sorted (name, value) pairs; hashable
    raw: str = ""  # the text the planner produced for this step

    @property
    def arg_dict(self) -> dict[str, str]:
        return dict(self.args)

    def __str__(self) -> str:
        a = ", ".join(f"{k}={v}" for k, v in self.args)
        return f"{self.skill}({a})"


@dataclass
class Plan:
    steps: list[PlanStep]
    raw_text: str = ""
    errors: list[PlanError] = field(default_factory=list)  # found while parsing
    latency_s: float = 0.0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    reasoning: str = ""  # chain-of-thought text, if the planner produced any
    # Why the planner failed, if it did: one of PLANNER_ERROR_KINDS (set by the planner; the
    # harness fills it in for exceptions, timeouts and plans naming unknown skills/objects).
    error_kind: str | None = None


@dataclass(frozen=True)
class SkillSpec:
    """What a planner may choose: a name, a sentence describing it, admissible arguments."""

    name: str
    description: str
    args: tuple[tuple[str, tuple[str, ...]], ...] = ()  # (arg name, admissible values)

    @property
    def arg_values(self) -> dict[str, tuple[str, ...]]:
        return dict(self.args)


class Skill(Protocol):
    """A low-level controller for one plan step. ``done`` uses the benchmark's own signal."""

    spec: SkillSpec

    def reset(self, env: Any, args: dict[str, str]) -> None: ...

    def act(self, obs: Any) -> np.ndarray: ...

    def success(self, info: dict) -> bool: ...


class Planner(Protocol):
    def plan(self, instruction: str, observation: Any, skills: Sequence[SkillSpec]) -> Plan: ...
