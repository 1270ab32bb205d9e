"""How the harness feeds its episodes to envs: one local env at a time (``drive_local``), or
gymnasium ``AsyncVectorEnv`` workers in lockstep (``drive_vector``, ``num_envs > 1``). Both
drive the same episode generators (``Harness.episode``), which yield env requests
(``("reset", seed)`` / ``("step", action)``) and receive the results; each finished episode's
record goes to the record writer at once."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from embodied.gym_env import EnvFactory, tree_index, unbatch_info
from embodied.records import RecordWriter


def drive_local(h: Any, units: Sequence[Any], writer: RecordWriter, bar: Any) -> None:
    env, env_task = None, None
    try:
        for u in units:
            if env_task != u.task.name:
                if env is not None:
                    env.close()
                env, env_task = h.benchmark.make_env(u.task.name), u.task.name
            rec = _run_local(h.episode(u, env), env)
            writer.write(rec)
            bar.update(1)
            if rec["status"] == "env_error":  # the env may be in a broken state; start afresh
                env.close()
                env, env_task = None, None
    finally:
        if env is not None:
            env.close()


def _run_local(gen: Any, env: Any) -> dict:
    """Serve one episode generator's requests from ``env``; returns its record."""
    req = next(gen)
    try:
        while True:
            try:
                if req[0] == "reset":
                    res = env.reset(seed=req[1])
                else:
                    res = env.step(req[1])
                    info = res[4]
                    info["vlx_success"] = env.success(info)
                    info["vlx_subgoals"] = env.completed_subgoals(info)
                    info["vlx_chain"] = env.chain_length(info)
            except Exception as e:  # noqa: BLE001  handed to the episode, which records it
                req = gen.throw(e)
                continue
            req = gen.send(res)
    except StopIteration as stop:
        return stop.value


def drive_vector(h: Any, units: Sequence[Any], writer: RecordWriter, bar: Any) -> None:
    from gymnasium.vector import AsyncVectorEnv, AutoresetMode

    by_task: dict[str, list[Any]] = {}
    for u in units:
        by_task.setdefault(u.task.name, []).append(u)
    if not by_task:
        return
    n = min(h.cfg.num_envs, max(len(q) for q in by_task.values()))
    # One set of workers for the whole run (spawning them costs seconds); they switch task.
    fns = [EnvFactory(h.benchmark.name, next(iter(by_task))) for _ in range(n)]
    venv = AsyncVectorEnv(fns, autoreset_mode=AutoresetMode.DISABLED, shared_memory=False)
    try:
        for task_name, queue in by_task.items():
            venv.call("set_task", task_name)
            lockstep(h, venv, n, list(queue), writer, bar)
    finally:
        venv.close()


def slot_skills(h: Any, n: int) -> list[Any]:
    """One skill library per lockstep slot: skills keep per-episode state (a Kitchen
    controller's phase, a learned policy's history), so episodes running side by side must
    not share instances. Copies share nothing with each other (deepcopy)."""
    import copy

    from vlx.config import ConfigError

    try:
        return [h.skills] + [copy.deepcopy(h.skills) for _ in range(n - 1)]
    except Exception as e:  # noqa: BLE001  e.g. a skill holding a lock or a live connection
        raise ConfigError(
            f"num_envs={n}: the skills cannot be copied for parallel episodes ({type(e).__name__}: {e}); use num_envs=1"
        ) from None


def lockstep(h: Any, venv: Any, n: int, queue: list[Any], writer: RecordWriter, bar: Any) -> None:
    gens: list[Any] = [None] * n
    reqs: list[Any] = [None] * n
    libs = slot_skills(h, n)

    def start(i: int) -> None:
        gens[i] = h.episode(queue.pop(0), None, libs[i]) if queue else None
        reqs[i] = next(gens[i]) if gens[i] is not None else None

    def feed(i: int, res: Any, err: str | None) -> None:
        try:
            reqs[i] = gens[i].throw(RuntimeError(err)) if err else gens[i].send(res)
        except StopIteration as stop:
            writer.write(stop.value)
            bar.update(1)
            start(i)

    for i in range(n):
        start(i)
    act_dim = venv.single_action_space.shape
    while any(g is not None for g in gens):
        mask = np.array([r is not None and r[0] == "reset" for r in reqs])
        if mask.any():
            seeds = [int(r[1]) if m else None for r, m in zip(reqs, mask)]
            obs, infos = venv.reset(seed=seeds, options={"reset_mask": mask})
            for i in np.flatnonzero(mask):
                info = unbatch_info(infos, i)
                feed(i, (tree_index(obs, i), info), info.get("vlx_error"))
            continue
        stepping = [r is not None for r in reqs]
        actions = np.stack(
            [np.asarray(r[1], dtype=np.float32) if r is not None else np.zeros(act_dim, np.float32) for r in reqs]
        )
        obs, rew, term, trunc, infos = venv.step(actions)
        for i in range(n):
            if stepping[i]:
                info = unbatch_info(infos, i)
                feed(
                    i,
                    (tree_index(obs, i), float(rew[i]), bool(term[i]), bool(trunc[i]), info),
                    info.get("vlx_error"),
                )


__all__ = ["drive_local", "drive_vector", "lockstep", "slot_skills"]
