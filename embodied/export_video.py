"""Rollout videos for the video sibling: mp4s of the scripted plan with captions narrating
the executed steps, in an MSR-VTT-style json (``videos``/``sentences``, plus ``vlx_steps``
with each step's start/end). See ``embodied.export`` for the other exports."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from embodied.cameras import env_rig, sim_handles


def scripted_rollout(bench: Any, task: str, seed: int):
    """Env + a generator that steps the task's ground-truth plan with the scripted skills;
    yields (step number, plan step index, info) after each env step."""
    from embodied.skills import build_skills

    env = bench.make_env(task)
    skills = build_skills(bench, "scripted")
    spec = bench.task(task)
    obs, info = env.reset(seed=seed)

    def run():
        nonlocal obs
        t = 0
        for si, step in enumerate(spec.ground_truth):
            skill = skills.get(step)
            skill.reset(env, step.arg_dict)
            while t < spec.max_episode_steps:
                obs, _, term, _, info = env.step(skill.act(obs))
                t += 1
                yield t, si, info
                if skill.success(info) or term:
                    break

    return env, run()


def narrate(steps: Sequence[dict], success: bool) -> str:
    """One caption for the executed plan: ``first, ...; then, ... . the task succeeded.``"""
    parts = []
    for k, s in enumerate(steps):
        what = s["description"].rstrip(".").lower()
        verdict = "" if s["success"] else " but does not finish it"
        parts.append(f"{'first' if k == 0 else 'then'}, it does this: {what}{verdict}")
    return (
        "the robot arm follows a plan: "
        + "; ".join(parts)
        + (". the task succeeded." if success else ". the task failed.")
    )


def export_videos(
    benchmark: str,
    tasks: Sequence[str] | None,
    out: str | Path,
    episodes: int = 1,
    camera: str = "corner",
    size: int = 96,
    stride: int = 2,
    fps: int = 15,
    seed: int = 0,
    max_steps: int | None = None,
    split: str = "train",
) -> Path:
    """Scripted rollouts as ``out/videos/<video_id>.mp4`` (every ``stride``-th env step) and
    ``out/msrvtt.json`` with, per video, the narration of the executed plan, the instruction
    and one sentence per step (``vlx_steps`` gives each step's start/end in seconds)."""
    from embodied.envs import build_benchmark
    from embodied.envs.base import seeds_for
    from embodied.planners import step_text
    from vlx.io.mp4 import write_mp4

    bench = build_benchmark(benchmark)
    out = Path(out)
    all_tasks = [t.name for t in bench.tasks()]
    videos, sentences = [], []
    specs = {s.name: s for s in bench.skill_specs()}
    for task in tasks or all_tasks:
        spec = bench.task(task)
        for e in range(episodes):
            s = seeds_for(all_tasks.index(task), e, seed)
            env, steps = scripted_rollout(bench, task, s)
            data = sim_handles(env)[1]
            rig = env_rig(env, [camera], size, size, where=f"{bench.name} {task}")  # free cameras too
            frames, step_log, success = [rig.render(data, camera)], [], False
            limit = min(max_steps or spec.max_episode_steps, spec.max_episode_steps)
            cur, start = None, 0
            for t, si, info in steps:
                if si != cur:
                    cur, start = si, t - 1
                    step = spec.ground_truth[si]
                    step_log.append(
                        dict(
                            step=step_text(step),
                            description=specs[step.skill].description if step.skill in specs else str(step),
                            start_step=start,
                            end_step=t,
                            success=False,
                        )
                    )
                step_log[-1]["end_step"] = t
                step_log[-1]["success"] = bool(step_log[-1]["success"] or _skill_done(env, info))
                success = success or env.success(info)
                if t % stride == 0:
                    frames.append(rig.render(data, camera))
                if t >= limit:
                    break
            rig.close()
            env.close()
            vid = f"{task}_{e}"
            (out / "videos").mkdir(parents=True, exist_ok=True)
            write_mp4(out / "videos" / f"{vid}.mp4", frames, fps=fps)
            for st in step_log:  # one video frame per `stride` env steps
                st["start_s"], st["end_s"] = (
                    round(st["start_step"] / stride / fps, 3),
                    round(st["end_step"] / stride / fps, 3),
                )
            videos.append(
                {
                    "video_id": vid,
                    "split": split,
                    "category": 0,
                    "url": "",
                    "id": len(videos),
                    "start time": 0.0,
                    "end time": round(len(frames) / fps, 3),
                    "vlx_steps": step_log,
                    "task": task,
                    "success": success,
                    "seed": s,
                }
            )
            phr = bench.instructions(task)
            caps = [narrate(step_log, success), phr[e % len(phr)]] + [
                f"step {k + 1}: the robot arm does this: {st['description'].rstrip('.').lower()}"
                for k, st in enumerate(step_log)
            ]
            for c in caps:
                sentences.append({"video_id": vid, "caption": c, "sen_id": len(sentences)})
    out.mkdir(parents=True, exist_ok=True)
    path = out / "msrvtt.json"
    path.write_text(
        json.dumps(
            {
                "info": {"description": f"vlx embodied rollouts of {bench.name}", "protocol": bench.protocol},
                "videos": videos,
                "sentences": sentences,
            },
            indent=1,
        )
    )
    return path


def _skill_done(env: Any, info: dict) -> bool:
    return bool(env.success(info))


# ----------------------------------------------------------------------------- ScanRefer


__all__ = ["export_videos", "narrate", "scripted_rollout"]
