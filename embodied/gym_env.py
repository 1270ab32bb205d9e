"""A ``TaskEnv`` as a plain ``gymnasium.Env`` for gymnasium's vector envs (the harness's
lockstep driver, ``num_envs > 1``), its picklable constructor, and helpers for batched
observations and infos."""

from __future__ import annotations

from typing import Any

import numpy as np


def tree_index(x: Any, i: int) -> Any:
    """Element ``i`` of a batched observation: arrays are indexed, dicts and tuples/lists
    (gymnasium's Dict / Tuple spaces batch per leaf) are indexed leaf by leaf."""
    if isinstance(x, dict):
        return {k: tree_index(v, i) for k, v in x.items()}
    if isinstance(x, (tuple, list)):
        return type(x)(tree_index(v, i) for v in x)
    return x[i]


def _zeros_like_tree(x: Any) -> Any:
    if isinstance(x, dict):
        return {k: _zeros_like_tree(v) for k, v in x.items()}
    if isinstance(x, (tuple, list)):
        return type(x)(_zeros_like_tree(v) for v in x)
    return np.zeros_like(np.asarray(x))


def unbatch_info(infos: dict, i: int) -> dict:
    """Env ``i``'s info from a vector env's batched info dict."""
    out = {}
    for k, v in infos.items():
        if k.startswith("_"):
            continue
        mask = infos.get("_" + k)
        if mask is not None and not mask[i]:
            continue
        out[k] = v[i]
    if isinstance(out.get("vlx_subgoals"), str):
        out["vlx_subgoals"] = [g for g in out["vlx_subgoals"].split("|") if g]
    return out


class EnvFactory:
    """Picklable constructor of a vector worker's env (by benchmark and task name)."""

    def __init__(self, benchmark: str, task: str):
        self.benchmark, self.task = benchmark, task

    def __call__(self) -> Any:
        from embodied.envs import build_benchmark

        bench = build_benchmark(self.benchmark)
        return GymTaskEnv(bench.make_env(self.task), make_env=bench.make_env)


def _gym_env_base() -> type:
    import gymnasium as gym

    return gym.Env


class GymTaskEnv(_gym_env_base()):  # type: ignore[misc]
    """A ``TaskEnv`` as a plain ``gymnasium.Env`` for vector workers: success and sub-goals
    travel in ``info`` (``vlx_success``, ``vlx_subgoals`` as "a|b"), errors as ``vlx_error``
    instead of killing the worker, and steps after the episode's end are ignored (lockstep
    envs whose episode finished idle until reset). ``set_task(name)`` switches to another
    task of the same benchmark (envs are cached; spaces must match)."""

    def __init__(self, env: Any, make_env: Any = None):
        self.env = env
        self._make_env = make_env
        self._envs = {env.task.name: env}
        self.observation_space = env.observation_space
        self.action_space = env.action_space
        self._last: tuple | None = None
        self._steps = 0

    def set_task(self, task: str) -> None:
        if task not in self._envs:
            self._envs[task] = self._make_env(task)
        self.env, self._last = self._envs[task], None

    def close(self) -> None:
        for e in self._envs.values():
            e.close()

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        try:
            obs, info = self.env.reset(seed=seed)
        except Exception as e:  # noqa: BLE001
            return _zeros_like_tree(self.observation_space.sample()), {"vlx_error": f"{type(e).__name__}: {e}"}
        self._last, self._steps = (obs, 0.0, False, False, {}), 0
        return obs, dict(info)

    def step(self, action):
        if self._last is not None and self._steps >= self.env.max_episode_steps:
            return self._last
        self._steps += 1
        try:
            obs, r, term, trunc, info = self.env.step(action)
        except Exception as e:  # noqa: BLE001
            obs = self._last[0] if self._last else _zeros_like_tree(self.observation_space.sample())
            return obs, 0.0, True, True, {"vlx_error": f"{type(e).__name__}: {e}"}
        info = dict(info)
        info["vlx_success"] = bool(self.env.success(info))
        info["vlx_subgoals"] = "|".join(sorted(self.env.completed_subgoals(info)))
        info["vlx_chain"] = int(self.env.chain_length(info))
        self._last = (obs, r, term, trunc, {k: v for k, v in info.items()})
        return obs, r, term, trunc, info


__all__ = ["EnvFactory", "GymTaskEnv", "tree_index", "unbatch_info"]
