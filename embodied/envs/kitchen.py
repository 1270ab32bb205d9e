"""Franka Kitchen (Gupta et al., 2019, "Relay Policy Learning"; gymnasium-robotics
``FrankaKitchen-v1``) behind the ``Benchmark`` interface: single-subtask tasks and
multi-subtask instructions ("open the microwave, then turn on the light") with ground-truth
ordered plans, read from ``embodied/data/kitchen_tasks.yaml``.

Success uses the env's own completion rule: a subtask is complete when its object joints are
within 0.3 of the goal (``BONUS_THRESH``; ``info['episode_task_completions']`` lists the
task's own subtasks in completion order). ``KitchenEnv`` applies the same rule to all seven
subtasks (``info['vlx_all_completions']``, first-completion order), so that a task is an
order-sensitive chain (``embodied.chains``): it succeeds when its subtasks are completed in
the instructed order with no other subtask completed in between or before (a wrong step);
``chain_length`` is CALVIN's count of instructed subtasks done in order from the start.
``completed_subgoals`` reports every completed subtask of the task, whatever the order.

Randomness: FrankaKitchen-v1 starts every episode in the same state; ``reset(seed)`` seeds
only the observation noise (robot joints 1% and objects 0.05% of their noise amplitude).
The same seed gives the same episode.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from embodied.chains import chain_progress, chain_success
from embodied.envs import register_benchmark
from embodied.envs.base import Benchmark, TaskEnv, TaskSpec, ensure_gl
from embodied.types import PlanStep, SkillSpec

TASKS_FILE = Path(__file__).resolve().parent.parent / "data" / "kitchen_tasks.yaml"
# The env's subtasks (gymnasium_robotics ... kitchen_env.OBS_ELEMENT_GOALS keys).
ENV_SUBTASKS = ("bottom burner", "top burner", "light switch", "slide cabinet", "hinge cabinet", "microwave", "kettle")
STEPS_PER_SUBTASK = 400  # a controller takes 150-350 steps including its return home

PROTOCOL = (
    "Franka Kitchen protocol: a subtask is complete when the env's completion signal "
    "(info['episode_task_completions'], object joints within 0.3 of the goal) lists it; a task "
    "succeeds when all its subtasks complete in the instructed order within "
    f"{STEPS_PER_SUBTASK} steps per subtask, with no other subtask completed before the chain is done "
    "(order-sensitive chains; chain length = instructed subtasks done in order from the start); "
    "the start state is fixed, seeds vary the observation noise."
)


@dataclass(frozen=True)
class KitchenSubtask:
    name: str  # env task name, e.g. "light switch"
    skill: str
    description: str
    paraphrases: tuple[str, ...]


@dataclass(frozen=True)
class KitchenInstruction:
    name: str
    instruction: str
    plan: tuple[str, ...]  # skill names, in order
    paraphrases: tuple[str, ...]


@dataclass(frozen=True)
class KitchenTaskSet:
    subtasks: dict[str, KitchenSubtask]
    instructions: tuple[KitchenInstruction, ...]

    def subtask_of_skill(self, skill: str) -> str:
        for s in self.subtasks.values():
            if s.skill == skill:
                return s.name
        raise KeyError(skill)


TASK_NAME = re.compile(r"[A-Za-z0-9_.+-]+")


def _strs(value: Any, where: str) -> tuple[str, ...]:
    from vlx.data.errors import DataError

    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        raise DataError(f"{where}: expected a list of non-empty strings, got {value!r}")
    return tuple(value)


def load_kitchen_tasks(path: str | Path | None = None) -> KitchenTaskSet:
    """Read and validate the subtask/instruction file (``DataError`` naming file and key)."""
    import yaml

    from vlx.data.errors import DataError

    p = Path(path) if path else TASKS_FILE
    try:
        data = yaml.safe_load(p.read_text())
    except (OSError, yaml.YAMLError) as e:
        raise DataError(f"{p}: cannot read the kitchen task file ({e})") from None
    if not isinstance(data, dict) or not isinstance(data.get("subtasks"), dict):
        raise DataError(f"{p}: expected a mapping with 'subtasks' (mapping) and 'instructions' (list)")
    subtasks: dict[str, KitchenSubtask] = {}
    skills: dict[str, str] = {}
    for name, entry in data["subtasks"].items():
        where = f"{p}: subtasks.{name}"
        if name not in ENV_SUBTASKS:
            raise DataError(f"{where}: unknown subtask {name!r}; FrankaKitchen-v1 has {', '.join(ENV_SUBTASKS)}")
        if (
            not isinstance(entry, dict)
            or not isinstance(entry.get("skill"), str)
            or not isinstance(entry.get("description"), str)
        ):
            raise DataError(f"{where}: expected {{skill: str, description: str, paraphrases: [str]}}")
        if entry["skill"] in skills:
            raise DataError(f"{where}.skill: {entry['skill']!r} is already the skill of {skills[entry['skill']]!r}")
        skills[entry["skill"]] = name
        subtasks[name] = KitchenSubtask(
            name, entry["skill"], entry["description"], _strs(entry.get("paraphrases"), f"{where}.paraphrases")
        )
    instructions = []
    seen: set[str] = set(s.replace(" ", "-") for s in subtasks)
    for i, entry in enumerate(data.get("instructions") or []):
        where = f"{p}: instructions[{i}]"
        if not isinstance(entry, dict) or not all(isinstance(entry.get(k), str) for k in ("name", "instruction")):
            raise DataError(
                f"{where}: expected {{name: str, instruction: str, plan: [skill, ...], paraphrases: [str]}}"
            )
        if entry["name"] in seen:
            raise DataError(f"{where}.name: duplicate task name {entry['name']!r}")
        if not TASK_NAME.fullmatch(entry["name"]) or entry["name"] in (".", ".."):
            # Task names become episode ids ("task/7") and video file names: no path parts.
            raise DataError(
                f"{where}.name: {entry['name']!r} is not a task name; expected letters, digits and . _ + - "
                "(no path separators)"
            )
        seen.add(entry["name"])
        plan = _strs(entry.get("plan"), f"{where}.plan")
        if not plan:
            raise DataError(f"{where}.plan: empty; expected the ground-truth skills in order")
        for j, s in enumerate(plan):
            if s not in skills:
                raise DataError(f"{where}.plan[{j}]: unknown skill {s!r}; known: {', '.join(skills)}")
        if len(set(plan)) != len(plan):
            raise DataError(f"{where}.plan: a subtask is repeated ({list(plan)}); the env completes each once")
        if "subtasks" in entry:  # optional explicit subgoal order: must match the plan's
            order = _strs(entry["subtasks"], f"{where}.subtasks")
            want = tuple(skills[s] for s in plan)
            if order != want:
                raise DataError(
                    f"{where}: plan {list(plan)} does the subtasks in the order {list(want)}, "
                    f"but subtasks lists {list(order)}; the ground truth must follow the instructed order"
                )
        instructions.append(
            KitchenInstruction(
                entry["name"], entry["instruction"], plan, _strs(entry.get("paraphrases"), f"{where}.paraphrases")
            )
        )
    return KitchenTaskSet(subtasks, tuple(instructions))


def all_completions(qpos: np.ndarray, done: list[str]) -> list[str]:
    """Append to ``done`` (in place, and return it) every subtask whose object joints in the
    true ``qpos`` are within the env's threshold of its goal and that is not listed yet: the
    env's own rule (``compute_reward``), applied to all seven subtasks."""
    from gymnasium_robotics.envs.franka_kitchen.kitchen_env import (
        BONUS_THRESH,
        OBS_ELEMENT_GOALS,
        OBS_ELEMENT_INDICES,
    )

    for g in ENV_SUBTASKS:
        if g not in done and np.linalg.norm(qpos[OBS_ELEMENT_INDICES[g]] - OBS_ELEMENT_GOALS[g]) < BONUS_THRESH:
            done.append(g)
    return done


def ordered_completion(subgoals: tuple[str, ...], completions: list[str]) -> bool:
    """Whether every subgoal is in ``completions`` and they were completed in ``subgoals``' order
    (other subtasks completed in between do not matter)."""
    order = [g for g in completions if g in subgoals]
    return order == list(subgoals)


class KitchenEnv(TaskEnv):
    """One Franka Kitchen task: ``FrankaKitchen-v1`` made with ``tasks_to_complete`` = the
    task's subgoals. Observations are the env's ``observation`` array (59,): robot qpos (9),
    qvel (9), object qpos (21), qvel (20); the env's ``achieved_goal``/``desired_goal`` dicts
    are dropped (they repeat object qpos and fixed goals) so that observations batch like
    Meta-World's in vector envs. Actions (9,): joint velocities in [-1, 1]."""

    def __init__(
        self,
        task: TaskSpec,
        render: bool = False,
        camera: str | None = None,
        width: int = 128,
        height: int = 128,
        init_noise: float = 0.0,
    ):
        """init_noise: half-width (rad) of a uniform perturbation of the 7 arm joints at reset,
        drawn from the reset seed: FrankaKitchen-v1 itself always starts in one state, so
        this is how controllers are measured from varied starts (0 = the env as published)."""
        ensure_gl()
        import gymnasium as gym
        import gymnasium_robotics

        gym.register_envs(gymnasium_robotics)
        unknown = [g for g in task.subgoals if g not in ENV_SUBTASKS]
        if unknown:
            raise KeyError(f"Franka Kitchen: unknown subtask(s) {unknown}; known: {', '.join(ENV_SUBTASKS)}")
        self.task = task
        self.max_episode_steps = task.max_episode_steps
        self.env = gym.make(
            "FrankaKitchen-v1",
            tasks_to_complete=list(task.subgoals),
            max_episode_steps=task.max_episode_steps,
            disable_env_checker=True,
        )
        self.observation_space = self.env.observation_space["observation"]
        self.action_space = self.env.action_space
        self._render = render
        self._camera, self._size = camera, (int(width), int(height))
        self._frames: Any = None  # FrameRenderer, made on the first render()
        self.shadows = True  # shadows and reflections in render() (see embodied.envs.render)
        self._steps = 0
        self.init_noise = float(init_noise)
        self._all_done: list[str] = []

    def reset(self, seed: int | None = None) -> tuple[np.ndarray, dict]:
        self._steps = 0
        obs, info = self.env.reset(seed=None if seed is None else int(seed) % (2**32))
        if self.init_noise > 0:
            u = self.env.unwrapped
            rng = u.robot_env.np_random  # seeded by this reset: the same seed, the same start
            qpos, qvel = u.data.qpos.copy(), u.data.qvel.copy()
            qpos[:7] += rng.uniform(-self.init_noise, self.init_noise, size=7)
            u.robot_env.set_state(qpos, qvel)
            obs = u._get_obs(u.robot_env._get_obs())
        self._all_done = all_completions(self.env.unwrapped.data.qpos, [])
        return obs["observation"], info

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict]:
        if self._steps >= self.max_episode_steps:
            raise RuntimeError(f"kitchen {self.task.name}: step {self._steps} past max_episode_steps; call reset()")
        obs, reward, terminated, truncated, info = self.env.step(np.asarray(action, dtype=np.float64))
        self._steps += 1
        info = dict(info)
        info["episode_task_completions"] = list(info.get("episode_task_completions", []))
        info["vlx_all_completions"] = list(all_completions(self.env.unwrapped.data.qpos, self._all_done))
        truncated = bool(truncated) or self._steps >= self.max_episode_steps
        return obs["observation"], float(reward), bool(terminated), truncated, info

    def _log(self, info: dict) -> list[str]:
        if "vlx_all_completions" in info:
            return list(info["vlx_all_completions"])
        return list(info.get("episode_task_completions", []))  # an info from elsewhere: the env's own

    def success(self, info: dict) -> bool:
        return chain_success(self.task.subgoals, self._log(info))

    def chain_length(self, info: dict) -> int:
        """Instructed subtasks completed in order from the start, before any wrong step."""
        return chain_progress(self.task.subgoals, self._log(info))

    def completed_subgoals(self, info: dict) -> set[str]:
        return set(info.get("episode_task_completions", [])) & set(self.task.subgoals)

    def free_cameras(self) -> dict[str, dict[str, Any]]:
        """``default``: the env's own viewpoint (gymnasium's default camera config, what
        ``render()`` shows: the arm, the microwave, the stove and the cabinets); the scene's
        named cameras ``left_cap``/``right_cap`` look at a counter top from close by."""
        free = getattr(self.env.unwrapped.robot_env.mujoco_renderer, "default_cam_config", None)
        return {"default": dict(free)} if free else {}

    @property
    def state(self) -> np.ndarray:
        """(30,) true joint positions (robot 9, objects 21), without observation noise."""
        return self.env.unwrapped.data.qpos.copy()

    def render(self) -> np.ndarray:
        if not self._render:
            raise RuntimeError(f"kitchen {self.task.name}: env was made with render=False")
        if self._frames is None:
            from embodied.envs.render import FrameRenderer

            robot = self.env.unwrapped.robot_env
            # The env's own viewpoint: its named camera, else gymnasium's free camera config.
            free = getattr(robot.mujoco_renderer, "default_cam_config", None)
            w, h = self._size
            self._frames = FrameRenderer(robot.model, robot.data, w, h, camera=self._camera, free_camera=free)
        self._frames.shadows = self.shadows
        return self._frames.render()

    def close(self) -> None:
        if self._frames is not None:
            self._frames.close()
            self._frames = None
        self.env.close()


class KitchenBenchmark(Benchmark):
    """``kitchen`` (every single-subtask task, then the multi-subtask instructions),
    ``kitchen-single`` or ``kitchen-multi``. Single-subtask tasks are named by the subtask
    with "-" for spaces (``light-switch``); their subgoal is the env's name (``light switch``)."""

    protocol = PROTOCOL
    skill_max_steps = STEPS_PER_SUBTASK

    def __init__(self, variant: str = "", tasks_path: str | Path | None = None):
        variant = variant.lower()
        if variant not in ("", "all", "single", "multi"):
            raise KeyError(
                f"unknown Franka Kitchen variant {variant!r}; expected kitchen, kitchen-single or kitchen-multi"
            )
        self.name = "kitchen" + (f"-{variant}" if variant else "")
        self.taskset = load_kitchen_tasks(tasks_path)
        ts = self.taskset
        single = [
            TaskSpec(
                name=s.name.replace(" ", "-"),
                instruction=s.description,
                ground_truth=(PlanStep(skill=s.skill, raw=s.skill),),
                subgoals=(s.name,),
                max_episode_steps=STEPS_PER_SUBTASK,
                meta={"paraphrases": s.paraphrases},
            )
            for s in ts.subtasks.values()
        ]
        multi = [
            TaskSpec(
                name=i.name,
                instruction=i.instruction,
                ground_truth=tuple(PlanStep(skill=s, raw=s) for s in i.plan),
                subgoals=tuple(ts.subtask_of_skill(s) for s in i.plan),
                max_episode_steps=STEPS_PER_SUBTASK * len(i.plan),
                meta={"paraphrases": i.paraphrases},
            )
            for i in ts.instructions
        ]
        self._tasks = {"": single + multi, "all": single + multi, "single": single, "multi": multi}[variant]

    def tasks(self) -> list[TaskSpec]:
        return list(self._tasks)

    def instructions(self, task: str) -> list[str]:
        t = self.task(task)
        return [t.instruction, *t.meta.get("paraphrases", ())]

    def skill_specs(self) -> list[SkillSpec]:
        return [SkillSpec(name=s.skill, description=s.description) for s in self.taskset.subtasks.values()]

    def make_env(
        self, task: str, render: bool = False, camera: str | None = None, width: int = 128, height: int = 128
    ) -> KitchenEnv:
        return KitchenEnv(self.task(task), render=render, camera=camera, width=width, height=height)

    def make_subtask_env(self, subtasks: list[str] | tuple[str, ...], render: bool = False) -> KitchenEnv:
        """An env for any ordered list of subtasks (env names), not only the listed tasks."""
        ts = self.taskset
        for s in subtasks:
            if s not in ts.subtasks:
                raise KeyError(f"Franka Kitchen: unknown subtask {s!r}; known: {', '.join(ts.subtasks)}")
        plan = tuple(PlanStep(skill=ts.subtasks[s].skill, raw=ts.subtasks[s].skill) for s in subtasks)
        spec = TaskSpec(
            name="+".join(s.replace(" ", "-") for s in subtasks),
            instruction=", then ".join(ts.subtasks[s].description for s in subtasks),
            ground_truth=plan,
            subgoals=tuple(subtasks),
            max_episode_steps=STEPS_PER_SUBTASK * len(subtasks),
        )
        return KitchenEnv(spec, render=render)


@register_benchmark("kitchen")
def _kitchen(variant: str) -> KitchenBenchmark:
    return KitchenBenchmark(variant)


__all__ = ["KitchenBenchmark", "KitchenEnv", "all_completions", "load_kitchen_tasks", "ordered_completion"]
