"""The evaluation harness: planner -> validated plan -> skills in the env, one JSONL record per
episode written as it goes, resumable, sharded across ``torchrun`` ranks.

Each episode: reset the task env with a seed derived from (run seed, task, episode); ask the
planner for a plan (exceptions, timeouts and non-``Plan`` answers become a counted failed
plan, never a crash; each failed plan's ``error_kind`` is one of timeout / http_error /
connection / parse_error / hallucination, from ``Plan.error_kind`` when the planner sets it);
classify the plan's errors in the Embodied Agent Interface taxonomy against the ground truth
(the task's, or the expected plan of an instruction file); run only the steps that validate
against the skill specs (plan text is never executed as code), each until its skill reports
success by the benchmark's own signal, the skill reports it has finished
(``skill.finished``), or its per-step budget (``max_skill_steps``) is spent; a step that ended
without success and is not in the ground truth is recorded as an ``extra_step`` and the plan
goes on (an env that does not track that subtask can never credit it), any other failed step
ends the plan; optionally re-plan from execution feedback, up to ``max_replans``.
An env that raises mid-episode ends that episode as ``status: env_error`` (counted, reported).
After ``max_planner_failures`` consecutive connection failures the run stops
(``PlannerUnavailable``, naming the endpoint); the episode in progress is not recorded.
Planner calls (deadline, failure kinds, the failure count) are ``embodied.planner_calls``.

A record (one JSON line): episode_id ("task/episode"), task, task_index, episode, seed,
instruction, instruction_index, ground_truth and subgoals, plans (one per planning call:
steps, raw_text, status ok|timeout|exception|garbage, error_kind, executable, exact,
latency_s, tokens, errors [{kind, step, detail}]), executed ([{step, success, env_steps,
stop, extra}]: stop is success | skill_finished | step_budget | episode_limit | terminated |
task_success; extra: the step is not in the ground truth), success, first_success_step,
env_steps, completed_subgoals, chain_length, replans, status (ok|env_error), error, wall_s,
rank, and for video episodes the actions.

Resume: records go to ``episodes.rank<R>.jsonl`` (``embodied.records``); finished episode ids
are skipped, so a killed run resumed neither repeats nor loses episodes (whatever WORLD_SIZE
it resumes with). The run folder holds the run's fingerprint (``embodied.run_identity``): a
folder of another configuration is refused. Rank 0 writes the merged report once every
episode of the run is recorded, by whichever rank. The envs are driven by
``embodied.drivers`` (one local env, or gymnasium vector workers in lockstep).
"""

from __future__ import annotations

import time
from collections.abc import Generator
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from embodied.envs.base import Benchmark, TaskSpec, seeds_for
from embodied.eval_config import INSTRUCTION_MODES, HarnessConfig
from embodied.instructions import (
    InstructionSet,
    builtin_instructions,
    check_tasks,
    expected_plans,
    load_instruction_file,
)
from embodied.planner_calls import PlannerCaller, PlannerUnavailable, plan_error_kind
from embodied.records import RecordWriter, episode_chosen, load_all_records, parse_episode_ids, rank_file, read_records
from embodied.run_identity import claim_run_folder, default_out, fingerprint, is_secret_option
from embodied.types import Plan, PlanErrorKind, PlanStep
from vlx.config import ConfigError
from vlx.data.errors import DataError

Request = tuple[str, Any]  # ("reset", seed) | ("step", action)


@dataclass(frozen=True)
class EpisodeUnit:
    task_index: int
    task: TaskSpec
    episode: int
    seed: int
    instruction: str
    instruction_index: int
    ground_truth: tuple[PlanStep, ...] = ()

    @property
    def id(self) -> str:
        return f"{self.task.name}/{self.episode}"


def _dist() -> tuple[int, int]:
    from vlx.runtime import world_info

    w = world_info()  # refuses a leftover WORLD_SIZE without torchrun
    return w.rank, w.world_size


def _planner_identity(cfg: HarnessConfig, planner: Any, built: bool) -> str:
    if built:
        return cfg.planner
    t = type(planner)
    return f"{t.__module__}.{t.__qualname__}"


class Harness:
    """Runs ``cfg``; ``benchmark``, ``planner`` and ``skills`` may be passed in (tests,
    custom planners); otherwise they are built from the config by name. Constructing it
    claims the run folder (``self.out``): see ``embodied.run_identity``."""

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
        built = planner is None
        if built:
            from embodied.planners import build_planner

            planner = build_planner(cfg.planner, **cfg.planner_args)
        caller_planner = planner
        if skills is None and cfg.skills == "learned" and cfg.policy is not None:
            from embodied.policy.skill import skills_from_run

            skills, caller_planner = skills_from_run(self.benchmark, cfg.policy, cfg.policy_mode, planner)
        elif skills is None:
            skills = build_skills(self.benchmark, cfg.skills)
        self.skills = skills if isinstance(skills, SkillLibrary) else SkillLibrary(skills)
        self.specs = self.skills.specs()
        self.planner = planner
        r, w = _dist()
        self.rank = r if rank is None else rank
        self.world_size = w if world_size is None else world_size
        self.max_skill_steps = cfg.max_skill_steps or getattr(self.benchmark, "skill_max_steps", None)
        self.video_ids = parse_episode_ids(cfg.video_episodes)
        self.tasks = self._resolve_tasks()
        self.instruction_set = self._resolve_instructions()
        self.ground_truths = expected_plans(self.instruction_set, self.specs)
        self.fingerprint = fingerprint(
            dict(
                benchmark=self.benchmark.name,
                tasks=[t.name for t in self.tasks],
                instructions=dict(name=self.instruction_set.name, sha256=self.instruction_set.sha256),
                planner=_planner_identity(cfg, planner, built),
                planner_args={k: v for k, v in cfg.planner_args.items() if not is_secret_option(k)},
                skills=dict(kind=cfg.skills, names=sorted(s.name for s in self.specs))
                | ({"policy": str(cfg.policy), "policy_mode": cfg.policy_mode} if cfg.policy else {}),
                seed=cfg.seed,
                episodes=cfg.episodes,
                max_steps=cfg.max_steps,
                max_skill_steps=self.max_skill_steps,
                max_replans=cfg.max_replans,
                planner_timeout_s=cfg.planner_timeout_s,
            )
        )
        digest = self.fingerprint["sha256"]
        out = cfg.out or default_out(self.benchmark.name, self.fingerprint["fields"]["planner"], digest)
        self.out = claim_run_folder(out, self.fingerprint, new=cfg.new)
        endpoint = getattr(planner, "url", None) or cfg.planner_args.get("base_url") or cfg.planner
        self.caller = PlannerCaller(
            caller_planner, self.specs, cfg.planner_timeout_s, cfg.max_planner_failures, endpoint, where=str(self.out)
        )

    # -- what to run
    def _resolve_tasks(self) -> list[TaskSpec]:
        tasks = self.benchmark.tasks()
        if self.cfg.tasks:
            known = {t.name for t in tasks}
            bad = [t for t in self.cfg.tasks if t not in known]
            if bad:
                raise ConfigError(f"tasks: {bad} not in benchmark {self.benchmark.name!r}; known: {sorted(known)}")
            tasks = [t for t in tasks if t.name in self.cfg.tasks]
        return tasks

    def _resolve_instructions(self) -> InstructionSet:
        names = [t.name for t in self.tasks]
        if self.cfg.instructions in INSTRUCTION_MODES:
            return builtin_instructions(self.benchmark, self.cfg.instructions, names)
        instr = load_instruction_file(self.cfg.instructions)
        check_tasks(instr, [t.name for t in self.benchmark.tasks()])
        missing = [t for t in (self.cfg.tasks or []) if t not in instr.by_task]
        if missing:
            raise DataError(f"{instr.path}: no instructions for task(s) {missing} chosen by 'tasks'")
        self.tasks = [t for t in self.tasks if t.name in instr.by_task]
        return instr

    def units(self) -> list[EpisodeUnit]:
        """Every episode of the run (all ranks), in a fixed order."""
        all_tasks = [t.name for t in self.benchmark.tasks()]
        out = []
        for t in self.tasks:
            ti = all_tasks.index(t.name)
            phrasings = self.instruction_set.by_task[t.name]
            for e in range(self.cfg.episodes):
                k = e % len(phrasings)
                gt = self.ground_truths.get((t.name, k), tuple(t.ground_truth))
                out.append(EpisodeUnit(ti, t, e, seeds_for(ti, e, self.cfg.seed), phrasings[k].text, k, gt))
        return out

    def my_units(self) -> list[EpisodeUnit]:
        done = {r["episode_id"] for r in load_all_records(self.out)}
        return [u for i, u in enumerate(self.units()) if i % self.world_size == self.rank and u.id not in done]

    # -- planner calls: every failure is a counted plan, never a crash
    def call_planner(self, unit: EpisodeUnit, observation: Any) -> tuple[Plan, str]:
        return self.caller.call(unit.instruction, observation, list(unit.ground_truth))

    # -- one episode, as a generator of env requests
    def episode(self, unit: EpisodeUnit, env: Any, skills: Any = None) -> Generator[Request, Any, dict]:
        """One episode as a generator of env requests; ``skills``: the library to run (default
        ``self.skills``; lockstep vector slots each get their own, skills keep state)."""
        from embodied.planners import classify_plan_errors, step_text, validate_step

        task = unit.task
        max_steps = min(self.cfg.max_steps or task.max_episode_steps, task.max_episode_steps)
        keep_actions = (self.cfg.videos > 0 and unit.episode == 0) or episode_chosen(unit.id, self.video_ids)
        rec: dict[str, Any] = dict(
            episode_id=unit.id,
            task=task.name,
            task_index=unit.task_index,
            episode=unit.episode,
            seed=unit.seed,
            instruction=unit.instruction,
            instruction_index=unit.instruction_index,
            ground_truth=[step_text(s) for s in unit.ground_truth],
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
        chain_seen: int | None = None
        try:
            obs, info = yield ("reset", unit.seed)
            feedback: list[str] = []
            for _attempt in range(self.cfg.max_replans + 1):
                state = self.benchmark.observation_for_planner(env, obs, info)
                pobs = {"state": state, "completed_skills": sorted(completed), "feedback": list(feedback)}
                plan, pstatus = self.call_planner(unit, pobs)
                errors = classify_plan_errors(plan, self.specs, ground_truth=list(unit.ground_truth))
                kind = plan_error_kind(plan, errors)
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
                        error_kind=kind,
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
                budget = self.max_skill_steps
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
                        if "vlx_chain" in info:  # the env's (order-sensitive) chain length
                            chain_seen = max(chain_seen or 0, int(info["vlx_chain"]))
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
        except PlannerUnavailable:
            raise  # stops the run; this episode is not recorded, so a resume runs it
        except Exception as e:  # noqa: BLE001  an env (or skill) that raises ends this episode only
            rec["status"], rec["error"] = "env_error", f"{type(e).__name__}: {str(e)[:300]}"
        chain = 0
        for g in task.subgoals:
            if g not in completed:
                break
            chain += 1
        if chain_seen is not None:
            chain = chain_seen
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

    def run(self) -> list[dict]:
        """Run this rank's remaining episodes; returns the records it wrote."""
        from tqdm import tqdm

        from embodied.drivers import drive_local, drive_vector

        todo = self.my_units()
        path = rank_file(self.out, self.rank)
        writer = RecordWriter(path)  # quarantines bad lines first
        before = len(read_records(path))
        bar = tqdm(total=len(todo), desc=f"eval rank {self.rank}", disable=not self.cfg.progress, unit="ep")
        try:
            if self.cfg.num_envs > 1:
                drive_vector(self, todo, writer, bar)
            else:
                drive_local(self, todo, writer, bar)
        finally:
            writer.close()
            bar.close()
        return read_records(path)[before:]

    def report_meta(self) -> dict[str, Any]:
        """What the report says about the run (secrets in the planner options redacted)."""
        from embodied.run_identity import public_options

        config = asdict(self.cfg)
        config["planner_args"] = public_options(self.cfg.planner_args)
        config["out"] = str(self.out)
        return dict(
            config=config,
            benchmark=self.benchmark.name,
            protocol=self.benchmark.protocol,
            success_measures_planning=getattr(self.benchmark, "success_measures_planning", True),
            world_size=self.world_size,
            skills=[s.name for s in self.specs],
            instruction_set=self.instruction_set.describe(),
            caps=dict(
                max_steps=self.cfg.max_steps,
                max_skill_steps=self.max_skill_steps,
                max_replans=self.cfg.max_replans,
                planner_timeout_s=self.cfg.planner_timeout_s,
            ),
            fingerprint=self.fingerprint["sha256"],
            packages=self.fingerprint["fields"]["packages"],
        )

    def close(self) -> None:
        self.caller.close()


def evaluate(
    cfg: HarnessConfig, benchmark: Benchmark | None = None, planner: Any = None, skills: Any = None
) -> dict | None:
    """Run this rank's share; rank 0 then waits for every episode of the run and merges all
    ranks' records into the report (``summary.json``, ``summary.md``, ``per_task.csv``,
    ``success.png``, ``videos/``) and returns the summary (other ranks return None). Videos:
    the first ``cfg.videos`` episodes that kept their actions, plus every episode chosen by
    ``cfg.video_episodes``."""
    from embodied.records import wait_for_records
    from embodied.report import write_report

    h = Harness(cfg, benchmark, planner, skills)
    try:
        h.run()
    finally:
        h.close()
    if h.rank != 0:
        return None
    records = wait_for_records(h.out, {u.id for u in h.units()})
    ids = h.video_ids if (h.video_ids[0] or h.video_ids[1]) else None
    return write_report(
        h.out,
        records,
        h.report_meta(),
        benchmark=h.benchmark,
        videos=cfg.videos,
        video_ids=ids,
        video_size=cfg.video_size,
        video_shadows=cfg.video_shadows,
    )


__all__ = [
    "EpisodeUnit",
    "Harness",
    "HarnessConfig",
    "PlannerUnavailable",
    "evaluate",
]
