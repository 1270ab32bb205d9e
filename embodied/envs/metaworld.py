"""Meta-World (Yu et al., 2019) behind the ``Benchmark`` interface: MT1/MT10/MT50 tasks,
their language descriptions and paraphrases, seeded reproducible episodes and renders.

Why not ``gym.make('Meta-World/MT1', ...)`` as is: its envs ignore ``reset(seed=)`` and, with
frozen task vectors, reuse one goal; object/goal positions come from the *global* numpy RNG
unless the env's ``seeded_rand_vec`` path is on. We build the raw task env with the goal
observable (as MT10/MT50 do), switch that path on, and reseed the env's own ``np_random`` on
``reset(seed)``, so the same seed gives the same episode regardless of global state.

Evaluation protocol (Meta-World's own): an episode succeeds if ``info['success']`` is 1 at
any step within ``max_path_length`` (500) steps; one episode per goal (each seed draws one
goal/object placement).
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from embodied.envs.base import Benchmark, TaskEnv, TaskSpec, ensure_gl
from embodied.types import PlanStep, SkillSpec

INSTRUCTIONS_FILE = Path(__file__).resolve().parent.parent / "data" / "instructions" / "metaworld.json"

MT10 = (
    "reach-v3",
    "push-v3",
    "pick-place-v3",
    "door-open-v3",
    "drawer-open-v3",
    "drawer-close-v3",
    "button-press-topdown-v3",
    "peg-insert-side-v3",
    "window-open-v3",
    "window-close-v3",
)

PROTOCOL = (
    "Meta-World protocol: an episode succeeds if info['success'] is 1 at any step within "
    "500 steps; one episode per goal (each seed draws one object/goal placement)."
)


def skill_name(task: str) -> str:
    """``pick-place-v3`` -> ``pick-place`` (the version is no part of what a planner names)."""
    return task[:-3] if task.endswith("-v3") else task


@lru_cache(maxsize=1)
def load_instructions(path: str | None = None) -> dict[str, dict[str, Any]]:
    """task -> {"description": str, "paraphrases": [str, ...]} from the paraphrase set."""
    from vlx.data.errors import DataError

    p = Path(path) if path else INSTRUCTIONS_FILE
    try:
        data = json.loads(p.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise DataError(f"{p}: cannot read the instruction set ({e})") from None
    for task, entry in data.items():
        if not isinstance(entry, dict) or not isinstance(entry.get("description"), str):
            raise DataError(f"{p}: key {task!r}: expected {{'description': str, 'paraphrases': [str]}}")
        if not all(isinstance(s, str) and s.strip() for s in entry.get("paraphrases", [])):
            raise DataError(f"{p}: key {task!r}.paraphrases: expected non-empty strings")
    return data


class MetaWorldEnv(TaskEnv):
    """One Meta-World task with the goal observable (39-dim obs, 4-dim action in [-1, 1]).

    ``reset(seed)`` reseeds the env's own RNG and draws a fresh object/goal placement from
    it; ``reset()`` without a seed continues that RNG. Renders (H, W, 3) uint8 frames from
    ``camera`` (default ``corner``) when made with ``render=True``.
    """

    def __init__(
        self, task: TaskSpec, render: bool = False, camera: str | None = None, width: int = 128, height: int = 128
    ):
        ensure_gl()
        from metaworld.env_dict import ALL_V3_ENVIRONMENTS

        if task.name not in ALL_V3_ENVIRONMENTS:
            raise KeyError(f"Meta-World has no task {task.name!r}")
        self.task = task
        self.max_episode_steps = task.max_episode_steps
        self.camera = camera or "corner"
        env = ALL_V3_ENVIRONMENTS[task.name]()
        env._partially_observable = False  # MT10/MT50 observe the goal; scripted experts need it
        del env.sawyer_observation_space  # cached property; recomputed for the new observability
        env._set_task_called = True
        env._freeze_rand_vec = False
        env.seeded_rand_vec = True  # draw placements from env.np_random, not the global RNG
        env.seed(0)
        self.env = env
        self.observation_space = env.observation_space
        self.action_space = env.action_space
        self._render = render
        self._size = (int(width), int(height))
        self._frames: Any = None  # FrameRenderer, made on the first render()
        self.shadows = True  # shadows and reflections in render() (see embodied.envs.render)
        self._steps = 0

    def reset(self, seed: int | None = None) -> tuple[np.ndarray, dict]:
        if seed is not None:
            self.env.seed(int(seed) % (2**32))
        self._steps = 0
        obs, info = self.env.reset()
        return obs, info

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict]:
        if self._steps >= self.max_episode_steps:
            # Meta-World itself raises a bare ValueError past its path length; say why.
            raise RuntimeError(f"{self.task.name}: step {self._steps} past max_episode_steps; call reset()")
        obs, reward, terminated, truncated, info = self.env.step(np.asarray(action, dtype=np.float32))
        self._steps += 1
        truncated = bool(truncated) or self._steps >= self.max_episode_steps
        return obs, float(reward), bool(terminated), truncated, info

    def success(self, info: dict) -> bool:
        return bool(info.get("success", 0.0) >= 1.0)

    def completed_subgoals(self, info: dict) -> set[str]:
        return set(self.task.subgoals) if self.success(info) else set()

    @property
    def rand_vec(self) -> np.ndarray:
        """The object/goal placement of the current episode."""
        return np.array(self.env._last_rand_vec)

    def render(self) -> np.ndarray:
        if not self._render:
            raise RuntimeError(f"{self.task.name}: env was made with render=False")
        if self._frames is None:
            from embodied.envs.render import FrameRenderer

            w, h = self._size
            self._frames = FrameRenderer(self.env.model, self.env.data, w, h, camera=self.camera)
        self._frames.shadows = self.shadows
        # Meta-World's cameras come out upside down (as through gymnasium's renderer, which
        # vlx flipped the same way before); the frame is flipped to stand upright.
        return np.ascontiguousarray(self._frames.render()[::-1])

    def close(self) -> None:
        if self._frames is not None:
            self._frames.close()
            self._frames = None
        self.env.close()


class MetaWorldBenchmark(Benchmark):
    """``metaworld-mt10``, ``metaworld-mt50`` or ``metaworld-mt1:<task>`` (e.g. ``pick-place-v3``).

    Skills are the same for every task of the suite: one per task of the suite, named by
    ``skill_name`` and described by the task's language description.
    """

    protocol = PROTOCOL
    success_measures_planning = False  # a wrong expert often still succeeds (push also reaches)

    def __init__(self, suite: str = "mt10", instructions_path: str | None = None):
        from metaworld.env_dict import ALL_V3_ENVIRONMENTS

        suite = suite.lower()
        if suite == "mt10":
            names = list(MT10)
        elif suite == "mt50":
            names = list(ALL_V3_ENVIRONMENTS)
        elif suite.startswith("mt1:"):
            names = [suite[4:]]
            if names[0] not in ALL_V3_ENVIRONMENTS:
                raise KeyError(f"metaworld-mt1: unknown task {names[0]!r}; known: {', '.join(ALL_V3_ENVIRONMENTS)}")
        else:
            raise KeyError(f"unknown Meta-World suite {suite!r}; expected mt10, mt50 or mt1:<task>")
        self.name = f"metaworld-{suite}"
        self._instr = load_instructions(instructions_path)
        missing = [n for n in names if n not in self._instr]
        if missing:
            raise KeyError(f"{instructions_path or INSTRUCTIONS_FILE}: no instructions for {missing}")
        self._tasks = [
            TaskSpec(
                name=n,
                instruction=self._instr[n]["description"],
                ground_truth=(PlanStep(skill=skill_name(n), raw=skill_name(n)),),
                subgoals=(skill_name(n),),
                max_episode_steps=500,
            )
            for n in names
        ]

    def tasks(self) -> list[TaskSpec]:
        return list(self._tasks)

    def instructions(self, task: str) -> list[str]:
        entry = self._instr[self.task(task).name]
        return [entry["description"]] + list(entry.get("paraphrases", []))

    def skill_specs(self) -> list[SkillSpec]:
        return [SkillSpec(name=skill_name(t.name), description=t.instruction) for t in self._tasks]

    def make_env(
        self, task: str, render: bool = False, camera: str | None = None, width: int = 128, height: int = 128
    ) -> MetaWorldEnv:
        return MetaWorldEnv(self.task(task), render=render, camera=camera, width=width, height=height)
