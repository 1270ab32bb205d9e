"""The evaluation harness: planner -> validated plan -> skills in the env, one JSONL record per
episode written as it goes, resumable, sharded across ``torchrun`` ranks.

Each episode: reset the task env with a seed derived from (run seed, task, episode); ask the
planner for a plan (exceptions, timeouts and non-``Plan`` answers become a counted
``parse_error`` plan, never a crash); classify the plan's errors in the Embodied Agent
Interface taxonomy against the ground truth; run only the steps that validate against the
skill specs (plan text is never executed as code), each until its skill reports success by the
benchmark's own signal, the skill reports it has finished (``skill.finished``), or its per-step
budget (``skill_max_steps``) is spent; a step that ended without success and is not in the
ground truth is recorded as an ``extra_step`` and the plan goes on (an env that does not track
that subtask can never credit it), any other failed step ends the plan; optionally re-plan
from execution feedback, up to ``max_replans``.
An env that raises mid-episode ends that episode as ``status: env_error`` (counted, reported).

Episodes are generators that yield env requests (``("reset", seed)`` / ``("step", action)``)
and receive the results, so the same episode code runs on one local env or in lockstep over a
gymnasium ``AsyncVectorEnv`` (``num_envs > 1``; skills then get ``env=None`` in ``reset``).

A record (one JSON line): episode_id ("task/episode"), task, task_index, episode, seed,
instruction, instruction_index, ground_truth and subgoals, plans (one per planning call:
steps, raw_text, status ok|timeout|exception|garbage, executable, exact, latency_s, tokens,
errors [{kind, step, detail}]), executed ([{step, success, env_steps, stop, extra}]: stop is
success | skill_finished | step_budget | episode_limit | terminated | task_success; extra: the
step is not in the ground truth), success,
first_success_step, env_steps, completed_subgoals, chain_length, replans, status
(ok|env_error), error, wall_s, rank, and for video episodes the actions.

Resume: records are appended and fsynced per episode to ``episodes.rank<R>.jsonl``; on start
every rank file in the output dir is read, a torn last line is dropped, and finished episode
ids are skipped, so a killed run resumed neither repeats nor loses episodes (whatever
WORLD_SIZE it resumes with). Rank 0 writes the merged report once every episode of the run
is recorded, by whichever rank.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Generator, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from embodied.envs.base import Benchmark, TaskSpec, seeds_for
from embodied.report import episode_chosen
from embodied.types import Plan, PlanError, PlanErrorKind, PlanStep

Request = tuple[str, Any]  # ("reset", seed) | ("step", action)


@dataclass
class HarnessConfig:
    """What one evaluation run varies.

    episodes: per task (Meta-World: one episode per goal, each seed one goal).
    instructions: "paraphrases" cycles each task's [description] + paraphrases over
        episodes; "canonical" always uses the description.
    max_steps: env steps per episode (None: the task's own limit, 500 in Meta-World).
    skill_max_steps: env steps one plan step may use (None: the benchmark's
        ``skill_max_steps``, e.g. 400 in Franka Kitchen; None there too: no cap but the episode's).
    video_episodes: per task, the first k episodes keep their actions so ``report``
        can replay them into mp4s.
    video_episode_ids: more episodes that keep their actions, by id: "7" (episode 7 of every
        task) or "push-v3/7" (one episode); ``evaluate`` writes an mp4 for each of them.
    """

    benchmark: str = "metaworld-mt10"
    planner: str = "oracle"
    planner_kwargs: dict[str, Any] = field(default_factory=dict)
    skills: str = "scripted"
    episodes: int = 10
    seed: int = 0
    out: str = "runs/embodied/eval"
    tasks: list[str] | None = None
    num_envs: int = 1
    max_replans: int = 0
    planner_timeout_s: float = 60.0
    instructions: str = "paraphrases"
    max_steps: int | None = None
    skill_max_steps: int | None = None
    video_episodes: int = 0
    video_episode_ids: list[str] | None = None
    progress: bool = True


@dataclass(frozen=True)
class EpisodeUnit:
    task_index: int
    task: TaskSpec
    episode: int
    seed: int
    instruction: str
    instruction_index: int

    @property
    def id(self) -> str:
        return f"{self.task.name}/{self.episode}"


# ----------------------------------------------------------------------------- JSONL store


def read_records(path: Path, repair: bool = False) -> list[dict]:
    """Complete records of one JSONL file. A torn last line (killed mid-write) is skipped,
    and with ``repair`` cut off the file so appends start on a fresh line."""
    if not path.exists():
        return []
    data = path.read_bytes()
    records, good_end, pos = [], 0, 0
    for line in data.split(b"\n"):
        end = pos + len(line) + 1
        if end > len(data):  # no trailing newline: the last write did not finish
            break
        if line.strip():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                break
        good_end, pos = end, end
    if repair and good_end < len(data):
        with open(path, "r+b") as f:
            f.truncate(good_end)
    return records


def load_all_records(out: Path) -> list[dict]:
    """Every finished episode of every rank in ``out``, deduplicated by episode id, in a
    stable order (task index, episode)."""
    seen: dict[str, dict] = {}
    for p in sorted(Path(out).glob("episodes.rank*.jsonl")):
        for r in read_records(p):
            seen.setdefault(r["episode_id"], r)
    return sorted(seen.values(), key=lambda r: (r["task_index"], r["episode"]))


class RecordWriter:
    def __init__(self, path: Path):
        read_records(path, repair=True)
        self.f = open(path, "a", encoding="utf-8")

    def write(self, record: dict) -> None:
        # One write of a whole line, then fsync: a kill leaves at most a torn last line.
        self.f.write(json.dumps(record, default=_json_default) + "\n")
        self.f.flush()
        os.fsync(self.f.fileno())

    def close(self) -> None:
        self.f.close()


def _json_default(o: Any) -> Any:
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    return str(o)


# ----------------------------------------------------------------------------- harness


def _dist() -> tuple[int, int]:
    from vlx.runtime import world_info

    w = world_info()
    return w.rank, w.world_size


class Harness:
    """Runs ``cfg``; ``benchmark``, ``planner`` and ``skills`` may be passed in (tests,
    custom planners); otherwise they are built from the config by name."""

    def __init__(
        self,
        cfg: HarnessConfig,
        benchmark: Benchmark | None = None,
        planner: Any = None,
        skills: Any = None,
        rank: int | None = None,
        world_size: int | None = None,
    ):
        from embodied.envs import build_benchmark
        from embodied.skills import SkillLibrary, build_skills

        self.cfg = cfg
        self.benchmark = benchmark or build_benchmark(cfg.benchmark)
        if skills is None:
            skills = build_skills(self.benchmark, cfg.skills)
        self.skills = skills if isinstance(skills, SkillLibrary) else SkillLibrary(skills)
        self.specs = self.skills.specs()
        if planner is None:
            from embodied.planners import build_planner

            planner = build_planner(cfg.planner, **cfg.planner_kwargs)
        self.planner = planner
        r, w = _dist()
        self.rank = r if rank is None else rank
        self.world_size = w if world_size is None else world_size
        self.out = Path(cfg.out)
        self._pool = ThreadPoolExecutor(max_workers=1)
        from vlx.config import ConfigError

        if cfg.instructions not in ("paraphrases", "canonical"):
            raise ConfigError(f"instructions: expected 'paraphrases' or 'canonical', got {cfg.instructions!r}")
        for key in ("episodes", "num_envs"):
            if getattr(cfg, key) < 1:
                raise ConfigError(f"{key}: expected >= 1, got {getattr(cfg, key)}")
        if cfg.max_replans < 0 or cfg.planner_timeout_s <= 0:
            raise ConfigError(
                f"max_replans >= 0 and planner_timeout_s > 0 expected, got {cfg.max_replans}, {cfg.planner_timeout_s}"
            )
        if cfg.skill_max_steps is not None and cfg.skill_max_steps < 1:
            raise ConfigError(f"skill_max_steps: expected >= 1 or None, got {cfg.skill_max_steps}")
        self.skill_max_steps = cfg.skill_max_steps or getattr(self.benchmark, "skill_max_steps", None)
        self.video_ids = parse_episode_ids(cfg.video_episode_ids)

    # -- what to run
    def units(self) -> list[EpisodeUnit]:
        """Every episode of the run (all ranks), in a fixed order."""
        tasks = self.benchmark.tasks()
        if self.cfg.tasks:
            known = {t.name for t in tasks}
            bad = [t for t in self.cfg.tasks if t not in known]
            if bad:
                from vlx.config import ConfigError

                raise ConfigError(f"tasks: {bad} not in benchmark {self.benchmark.name!r}; known: {sorted(known)}")
            tasks = [t for t in tasks if t.name in self.cfg.tasks]
        all_tasks = [t.name for t in self.benchmark.tasks()]
        out = []
        for t in tasks:
            ti = all_tasks.index(t.name)
            phrasings = (
                self.benchmark.instructions(t.name) if self.cfg.instructions == "paraphrases" else [t.instruction]
            )
            for e in range(self.cfg.episodes):
                k = e % len(phrasings)
                out.append(EpisodeUnit(ti, t, e, seeds_for(ti, e, self.cfg.seed), phrasings[k], k))
        return out

    def my_units(self) -> list[EpisodeUnit]:
        done = {r["episode_id"] for r in load_all_records(self.out)}
        return [u for i, u in enumerate(self.units()) if i % self.world_size == self.rank and u.id not in done]

    # -- planner calls: every failure is a counted plan, never a crash
    def call_planner(self, unit: EpisodeUnit, observation: Any) -> tuple[Plan, str]:
        if hasattr(self.planner, "set_ground_truth"):
            self.planner.set_ground_truth(list(unit.task.ground_truth))
        t0 = time.perf_counter()
        fut = self._pool.submit(self.planner.plan, unit.instruction, observation, self.specs)
        try:
            plan = fut.result(timeout=self.cfg.planner_timeout_s)
        except FutureTimeout:
            # The stuck call keeps its thread; a fresh pool keeps the run going.
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = ThreadPoolExecutor(max_workers=1)
            return self._failed_plan(f"planner timed out after {self.cfg.planner_timeout_s}s", t0), "timeout"
        except Exception as e:  # noqa: BLE001  any planner failure is data, not a crash
            return self._failed_plan(f"planner raised {type(e).__name__}: {str(e)[:200]}", t0), "exception"
        if not isinstance(plan, Plan) or not all(isinstance(s, PlanStep) for s in getattr(plan, "steps", [None])):
            return self._failed_plan(f"planner returned {type(plan).__name__}, not a Plan of PlanSteps", t0), "garbage"
        if not plan.latency_s:
            plan.latency_s = time.perf_counter() - t0
        return plan, "ok"

    @staticmethod
    def _failed_plan(detail: str, t0: float) -> Plan:
        return Plan(
            steps=[],
            raw_text="",
            errors=[PlanError(PlanErrorKind.PARSE, None, detail)],
            latency_s=time.perf_counter() - t0,
        )

    # -- one episode, as a generator of env requests
    def episode(self, unit: EpisodeUnit, env: Any, skills: Any = None) -> Generator[Request, Any, dict]:
        """One episode as a generator of env requests; ``skills``: the library to run (default
        ``self.skills``; lockstep vector slots each get their own, skills keep state)."""
        from embodied.planners import classify_plan_errors, step_text, validate_step

        task = unit.task
        max_steps = min(self.cfg.max_steps or task.max_episode_steps, task.max_episode_steps)
        keep_actions = unit.episode < self.cfg.video_episodes or episode_chosen(unit.id, self.video_ids)
        rec: dict[str, Any] = dict(
            episode_id=unit.id,
            task=task.name,
            task_index=unit.task_index,
            episode=unit.episode,
            seed=unit.seed,
            instruction=unit.instruction,
            instruction_index=unit.instruction_index,
            ground_truth=[step_text(s) for s in task.ground_truth],
            subgoals=list(task.subgoals),
            rank=self.rank,
            status="ok",
            error=None,
            plans=[],
            executed=[],
        )
        t_start = time.perf_counter()
        actions: list[list[float]] = []
        success, completed, steps_used, first_success = False, set(), 0, None
        try:
            obs, info = yield ("reset", unit.seed)
            feedback: list[str] = []
            for _attempt in range(self.cfg.max_replans + 1):
                state = self.benchmark.observation_for_planner(env, obs, info)
                pobs = {"state": state, "completed_skills": sorted(completed), "feedback": list(feedback)}
                plan, pstatus = self.call_planner(unit, pobs)
                errors = classify_plan_errors(plan, self.specs, ground_truth=task.ground_truth)
                valid = [(i, s) for i, s in enumerate(plan.steps) if not validate_step(s, self.specs, i)]
                executable = (
                    not any(e.kind == PlanErrorKind.PARSE for e in plan.errors)
                    and len(valid) == len(plan.steps)
                    and bool(plan.steps)
                )
                rec["plans"].append(
                    dict(
                        steps=[step_text(s) for s in plan.steps],
                        raw_text=plan.raw_text[:2000],
                        status=pstatus,
                        executable=executable,
                        exact=[step_text(s) for s in plan.steps] == rec["ground_truth"],
                        latency_s=plan.latency_s,
                        prompt_tokens=plan.prompt_tokens,
                        completion_tokens=plan.completion_tokens,
                        errors=[dict(kind=e.kind.value, step=e.step_index, detail=e.detail) for e in errors],
                    )
                )
                step_failed = None
                extra = {e.step_index for e in errors if e.kind == PlanErrorKind.EXTRA_STEP}
                budget = self.skill_max_steps
                for i, step in valid:
                    if success or steps_used >= max_steps:
                        break
                    skill = (skills or self.skills).get(step)
                    skill.reset(env, step.arg_dict)
                    n, ok, stop = 0, False, "episode_limit"
                    while steps_used < max_steps:
                        action = skill.act(obs)
                        if keep_actions:
                            actions.append(np.asarray(action, dtype=np.float32).tolist())
                        obs, reward, terminated, truncated, info = yield ("step", action)
                        steps_used += 1
                        n += 1
                        completed |= set(info.get("vlx_subgoals", ()))
                        if info.get("vlx_success") and not success:
                            success, first_success = True, steps_used
                        if skill.success(info):
                            ok, stop = True, "success"
                            break
                        if terminated or success:
                            stop = "task_success" if success else "terminated"
                            break
                        # A skill that has run its course without success (e.g. a Kitchen
                        # controller back home after a subtask the env does not track) or
                        # has spent its budget would otherwise idle until the episode's end.
                        if getattr(skill, "finished", False):
                            stop = "skill_finished"
                            break
                        if budget is not None and n >= budget:
                            stop = "step_budget"
                            break
                    rec["executed"].append(
                        dict(step=step_text(step), success=ok, env_steps=n, stop=stop, extra=i in extra)
                    )
                    if not ok and not success:
                        if i in extra and stop in ("skill_finished", "step_budget"):
                            continue  # counted as extra_step in the plan's errors; the plan goes on
                        step_failed = step
                        break
                if success or steps_used >= max_steps:
                    break
                if step_failed is not None:
                    feedback.append(f"{step_text(step_failed)} did not succeed")
                elif not executable or not plan.steps:
                    feedback.append("the plan could not be executed")
                else:
                    feedback.append("the plan finished but the task is not done")
        except Exception as e:  # noqa: BLE001  an env (or skill) that raises ends this episode only
            rec["status"], rec["error"] = "env_error", f"{type(e).__name__}: {str(e)[:300]}"
        chain = 0
        for g in task.subgoals:
            if g not in completed:
                break
            chain += 1
        rec.update(
            success=bool(success),
            first_success_step=first_success,
            env_steps=steps_used,
            completed_subgoals=[g for g in task.subgoals if g in completed],
            chain_length=chain,
            replans=max(0, len(rec["plans"]) - 1),
            wall_s=time.perf_counter() - t_start,
        )
        if keep_actions:
            rec["actions"] = actions
        return rec

    # -- drivers
    def _local_env(self, task: TaskSpec) -> Any:
        return self.benchmark.make_env(task.name)

    def _drive_local(self, units: Sequence[EpisodeUnit], writer: RecordWriter, bar: Any) -> None:
        env, env_task = None, None
        for u in units:
            if env_task != u.task.name:
                if env is not None:
                    env.close()
                env, env_task = self._local_env(u.task), u.task.name
            gen = self.episode(u, env)
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
                    except Exception as e:  # noqa: BLE001  handed to the episode, which records it
                        req = gen.throw(e)
                        continue
                    req = gen.send(res)
            except StopIteration as stop:
                rec = stop.value
            writer.write(rec)
            bar.update(1)
            if rec["status"] == "env_error":  # the env may be in a broken state; start afresh
                env.close()
                env, env_task = None, None
        if env is not None:
            env.close()

    def _drive_vector(self, units: Sequence[EpisodeUnit], writer: RecordWriter, bar: Any) -> None:
        from gymnasium.vector import AsyncVectorEnv, AutoresetMode

        by_task: dict[str, list[EpisodeUnit]] = {}
        for u in units:
            by_task.setdefault(u.task.name, []).append(u)
        if not by_task:
            return
        n = min(self.cfg.num_envs, max(len(q) for q in by_task.values()))
        # One set of workers for the whole run (spawning them costs seconds); they switch task.
        fns = [_EnvFactory(self.benchmark.name, next(iter(by_task))) for _ in range(n)]
        venv = AsyncVectorEnv(fns, autoreset_mode=AutoresetMode.DISABLED, shared_memory=False)
        try:
            for task_name, queue in by_task.items():
                venv.call("set_task", task_name)
                self._lockstep(venv, n, list(queue), writer, bar)
        finally:
            venv.close()

    def _slot_skills(self, n: int) -> list[Any]:
        """One skill library per lockstep slot: skills keep per-episode state (a Kitchen
        controller's phase, a learned policy's history), so episodes running side by side must
        not share instances. Copies share nothing with each other (deepcopy)."""
        import copy

        from vlx.config import ConfigError

        try:
            return [self.skills] + [copy.deepcopy(self.skills) for _ in range(n - 1)]
        except Exception as e:  # noqa: BLE001  e.g. a skill holding a lock or a live connection
            raise ConfigError(
                f"num_envs={n}: the skills cannot be copied for parallel episodes "
                f"({type(e).__name__}: {e}); use num_envs=1"
            ) from None

    def _lockstep(self, venv: Any, n: int, queue: list[EpisodeUnit], writer: RecordWriter, bar: Any) -> None:
        gens: list[Any] = [None] * n
        reqs: list[Any] = [None] * n
        libs = self._slot_skills(n)

        def start(i: int) -> None:
            gens[i] = self.episode(queue.pop(0), None, libs[i]) if queue else None
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
                    info = _unbatch(infos, i)
                    feed(i, (tree_index(obs, i), info), info.get("vlx_error"))
                continue
            stepping = [r is not None for r in reqs]
            actions = np.stack(
                [np.asarray(r[1], dtype=np.float32) if r is not None else np.zeros(act_dim, np.float32) for r in reqs]
            )
            obs, rew, term, trunc, infos = venv.step(actions)
            for i in range(n):
                if stepping[i]:
                    info = _unbatch(infos, i)
                    feed(
                        i,
                        (tree_index(obs, i), float(rew[i]), bool(term[i]), bool(trunc[i]), info),
                        info.get("vlx_error"),
                    )

    def run(self) -> list[dict]:
        """Run this rank's remaining episodes; returns the records it wrote."""
        from tqdm import tqdm

        self.out.mkdir(parents=True, exist_ok=True)
        todo = self.my_units()
        path = self.out / f"episodes.rank{self.rank}.jsonl"
        before = len(read_records(path, repair=True))
        writer = RecordWriter(path)
        bar = tqdm(total=len(todo), desc=f"eval rank {self.rank}", disable=not self.cfg.progress, unit="ep")
        try:
            if self.cfg.num_envs > 1:
                self._drive_vector(todo, writer, bar)
            else:
                self._drive_local(todo, writer, bar)
        finally:
            writer.close()
            bar.close()
        return read_records(path)[before:]

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


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


def parse_episode_ids(ids: Iterable[str | int] | str | None) -> tuple[set[int], set[str]]:
    """("3,7" or ["3", "push-v3/7"]) -> (episode numbers chosen in every task, full episode
    ids); ``ConfigError`` for anything else."""
    from vlx.config import ConfigError

    if ids is None:
        return set(), set()
    if isinstance(ids, str):
        ids = [x for x in ids.split(",")]
    numbers, full = set(), set()
    for x in ids:
        t = str(x).strip()
        head, _, tail = t.rpartition("/")
        if t.isdigit():
            numbers.add(int(t))
        elif head and tail.isdigit():
            full.add(f"{head}/{int(tail)}")
        else:
            raise ConfigError(f"video_episode_ids: {t!r} is not an episode number (7) or id (task/7)")
    return numbers, full


def _unbatch(infos: dict, i: int) -> dict:
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


class _EnvFactory:
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
        self._last = (obs, r, term, trunc, {k: v for k, v in info.items()})
        return obs, r, term, trunc, info


def wait_for_records(out: Path, ids: set[str], timeout_s: float = 24 * 3600, poll_s: float = 2.0) -> list[dict]:
    """Every rank's records once all of ``ids`` are recorded (the other ranks' shards are
    done); completeness, not marker files, so a resumed run cannot merge a stale state."""
    t0 = time.time()
    while True:
        records = [r for r in load_all_records(out) if r["episode_id"] in ids]
        if len(records) == len(ids):
            return records
        if time.time() - t0 > timeout_s:
            raise TimeoutError(
                f"{out}: {len(ids) - len(records)} episodes still missing after {timeout_s}s "
                "(did a rank die? rerun the same command to resume)"
            )
        time.sleep(poll_s)


def evaluate(
    cfg: HarnessConfig, benchmark: Benchmark | None = None, planner: Any = None, skills: Any = None, videos: int = 0
) -> dict | None:
    """Run this rank's share; rank 0 then waits for every episode of the run and merges all ranks' records
    into the report
    (``summary.json``, ``summary.md``, ``per_task.csv``, ``success.png``, ``videos/``) and
    returns the summary (other ranks return None). Videos: the first ``videos`` episodes that
    kept their actions, plus every episode chosen by ``cfg.video_episode_ids``."""
    from embodied.report import write_report

    h = Harness(cfg, benchmark, planner, skills)
    try:
        h.run()
    finally:
        h.close()
    if h.rank != 0:
        return None
    records = wait_for_records(h.out, {u.id for u in h.units()})
    meta = dict(
        config=asdict(cfg),
        benchmark=h.benchmark.name,
        protocol=h.benchmark.protocol,
        world_size=h.world_size,
        skills=[s.name for s in h.specs],
    )
    ids = h.video_ids if (h.video_ids[0] or h.video_ids[1]) else None
    return write_report(h.out, records, meta, benchmark=h.benchmark, videos=videos, video_ids=ids)


__all__ = [
    "EpisodeUnit",
    "GymTaskEnv",
    "Harness",
    "HarnessConfig",
    "episode_chosen",
    "evaluate",
    "load_all_records",
    "parse_episode_ids",
    "read_records",
    "tree_index",
]
