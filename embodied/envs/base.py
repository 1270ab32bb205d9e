"""The benchmark / task-suite interface every embodied benchmark implements (Meta-World,
Franka Kitchen), so the harness, planners and skills never name a simulator.

A ``Benchmark`` lists its tasks (``TaskSpec``: name, default instruction, ground-truth plan,
sub-goals in order), their paraphrased instructions, the ``SkillSpec``s a planner may choose
from, and makes ``TaskEnv``s. A ``TaskEnv`` is a gymnasium-style env whose ``reset(seed)`` is
reproducible (the same seed gives the same episode) and that reports success by the
benchmark's own signal: ``success(info)`` for the whole task and ``completed_subgoals(info)``
for the sub-goals (Meta-World: the single task; Kitchen: the subtasks completed so far).
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from embodied.types import PlanStep, SkillSpec


@dataclass(frozen=True)
class TaskSpec:
    """One task of a benchmark.

    name: the benchmark's task id (``pick-place-v3``, ``microwave+light``).
    instruction: the canonical one-line instruction (the task's language description).
    ground_truth: the oracle plan, in order.
    subgoals: sub-goal names in order; ``completed_subgoals`` reports names from this list.
        For a single-step task, one sub-goal. Average completed chain length (CALVIN) counts
        the leading run of these that were completed.
    """

    name: str
    instruction: str
    ground_truth: tuple[PlanStep, ...]
    subgoals: tuple[str, ...]
    max_episode_steps: int = 500
    meta: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)


class TaskEnv(ABC):
    """A single task's env. Gymnasium's step/reset signature plus benchmark success signals."""

    task: TaskSpec
    max_episode_steps: int

    @abstractmethod
    def reset(self, seed: int | None = None) -> tuple[Any, dict]:
        """Start an episode. The same ``seed`` must give the same initial state."""

    @abstractmethod
    def step(self, action: np.ndarray) -> tuple[Any, float, bool, bool, dict]:
        """Gymnasium step: (obs, reward, terminated, truncated, info)."""

    @abstractmethod
    def success(self, info: dict) -> bool:
        """Whether the whole task is solved at this step (the benchmark's own signal)."""

    @abstractmethod
    def completed_subgoals(self, info: dict) -> set[str]:
        """Names (from ``task.subgoals``) of the sub-goals completed so far in this episode."""

    def chain_length(self, info: dict) -> int:
        """CALVIN chain length so far: sub-goals completed in order from the start. Default:
        the leading run of ``task.subgoals`` in ``completed_subgoals`` (an env that can tell
        completion order, such as Franka Kitchen, makes it order-sensitive)."""
        done = self.completed_subgoals(info)
        n = 0
        for g in self.task.subgoals:
            if g not in done:
                break
            n += 1
        return n

    @abstractmethod
    def render(self) -> np.ndarray:
        """(H, W, 3) uint8 RGB frame of the current state (env made with ``render=True``)."""

    def close(self) -> None:
        pass


class Benchmark(ABC):
    """A named suite of tasks (``metaworld-mt10``, ``kitchen``)."""

    name: str
    protocol: str = ""  # one sentence for reports: how success is decided, episodes per goal
    # False where a wrong plan often still succeeds (Meta-World's experts overlap): the report
    # then leads with skill choice and plan errors instead of success.
    success_measures_planning: bool = True
    # Env steps one plan step may use before the harness stops it (None: only the episode's
    # limit). Keeps an extra plan step from idling away the episode.
    skill_max_steps: int | None = None

    @abstractmethod
    def tasks(self) -> list[TaskSpec]:
        """The suite's tasks, in a fixed order."""

    def task(self, name: str) -> TaskSpec:
        for t in self.tasks():
            if t.name == name:
                return t
        known = ", ".join(t.name for t in self.tasks())
        raise KeyError(f"benchmark {self.name!r}: unknown task {name!r}; known: {known}")

    def instructions(self, task: str) -> list[str]:
        """Paraphrased instructions for ``task`` (the canonical one first)."""
        return [self.task(task).instruction]

    @abstractmethod
    def skill_specs(self) -> list[SkillSpec]:
        """Every skill a planner may choose from in this benchmark (same for all its tasks)."""

    @abstractmethod
    def make_env(
        self, task: str, render: bool = False, camera: str | None = None, width: int = 128, height: int = 128
    ) -> TaskEnv:
        """A fresh env for ``task``; ``render=True`` makes ``render()`` return RGB frames."""

    def observation_for_planner(self, env: TaskEnv, obs: Any, info: dict) -> Any:
        """What planners see as ``observation["state"]`` (default: the raw observation;
        ``env`` is None in vectorised rollouts); see ``embodied.types``."""
        return obs


def seeds_for(task_index: int, episode: int, seed: int) -> int:
    """The env seed of episode ``episode`` of task number ``task_index`` in a run seeded
    ``seed``: distinct per (task, episode) and stable across shards and resumes."""
    return int(np.random.SeedSequence([seed, task_index, episode]).generate_state(1)[0])


__all__ = ["Benchmark", "TaskEnv", "TaskSpec", "seeds_for"]


def ensure_gl() -> None:
    """Pick MuJoCo's GL backend before ``mujoco`` is first imported: OSMesa (software) unless
    ``MUJOCO_GL`` is already set (an explicit choice wins). Called by the envs and the camera
    rig when they are built, never at import time."""
    if "MUJOCO_GL" not in os.environ:
        os.environ["MUJOCO_GL"] = "osmesa"
        os.environ.setdefault("PYOPENGL_PLATFORM", "osmesa")
