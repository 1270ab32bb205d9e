"""Demonstrations on disk: scripted experts (Meta-World) or subtask controllers (Franka
Kitchen) execute the benchmark's ground-truth plan; every episode is written as one ``.npz``
file with observations, actions, rendered RGB (and depth) frames from chosen cameras, the
instruction and the plan. Resumable after a kill and sharded across ``RANK``/``WORLD_SIZE``.

Layout (documented here and in ``<out>/README.md``)::

    <out>/dataset.json                     what was collected (benchmark, cameras, size, seed)
    <out>/episodes/<task>/ep_<NNNNN>.npz   one episode, written atomically (temp + rename)

Each ``.npz`` holds (T = env steps of the episode)::

    obs          float32 (T+1, D)   flattened observation before each action and after the last
    actions      float32 (T, A)
    rewards      float32 (T,)
    success      bool    (T,)       the benchmark's own success signal after each step
    step_index   int16   (T,)       which plan step was executing at each action
    rgb_<cam>    uint8   (T+1, H, W, 3)   one per camera (when cameras were chosen)
    depth_<cam>  uint16  (T+1, H, W)      millimetres (with --depth)
    meta         str (0-d)          JSON: format, version, benchmark, task, episode, seed,
                                    instruction, plan (step texts), plan_texts (conditioning
                                    text per step), cameras, width, height, depth, success

With ``format="lerobot"`` (``--format lerobot``) the same episode files are written and then,
once every episode is there, a LeRobotDataset v3.0 (``meta/``, ``data/``, ``videos/``; mapping in
``embodied/lerobot.py``) in the same folder, which ``load_demos`` and the policy recipe read.

Seeds come from their own stream (``collect_seed``), so demos never share an object/goal
placement with the harness's evaluation episodes of the same run seed.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from embodied.cameras import CameraRig, check_cameras, depth_to_mm, env_rig, sim_handles
from embodied.demos import (
    FORMAT,
    MAX_DEMO_MIB,
    Episode,
    check_npz_size,
    list_episodes,
    load_demos,
    load_episode,
    read_dataset_json,
)

VERSION = 1


# ----------------------------------------------------------------------------- text of a plan


def plan_step_text(step: Any, spec: Any | None = None) -> str:
    """The conditioning text of one plan step: ``"pick-place: pick the puck and place it at
    the goal"`` (step text, then the skill's description). Shared by collection, training and
    the learned skill, so the policy sees the same string at train and test time."""
    from embodied.planners import step_text

    head = step_text(step)
    return f"{head}: {spec.description}" if spec is not None and spec.description else head


def collect_seed(task_index: int, episode: int, seed: int) -> int:
    """Env seed of demo ``episode`` of task ``task_index``: a stream distinct from the
    harness's ``seeds_for`` (the trailing 1 tags it), stable across shards and resumes."""
    return int(np.random.SeedSequence([seed, task_index, episode, 1]).generate_state(1)[0])


def flatten_obs(obs: Any) -> np.ndarray:
    """(D,) float32 from an array observation or a dict of arrays (keys in sorted order)."""
    if isinstance(obs, dict):
        return np.concatenate([flatten_obs(obs[k]) for k in sorted(obs)]) if obs else np.zeros(0, np.float32)
    return np.asarray(obs, dtype=np.float32).reshape(-1)


# ----------------------------------------------------------------------------- collection


@dataclass
class CollectConfig:
    """What one collection run varies. ``episodes`` is per task; ``cameras`` may be empty
    (state-only demos, fastest); ``depth`` adds a depth stream per camera."""

    benchmark: str = "metaworld-mt10"
    episodes: int = 10
    out: str = "data/embodied/demos"
    tasks: list[str] | None = None
    seed: int = 0
    skills: str = "scripted"
    cameras: list[str] = field(default_factory=list)
    width: int = 64
    height: int = 64
    depth: bool = False
    max_steps: int | None = None
    instructions: str = "paraphrases"  # or "canonical"
    progress: bool = True
    format: str = "npz"  # or "lerobot": also a LeRobotDataset v3.0 at ``out`` (embodied.lerobot)
    fps: int | None = None  # lerobot only; None: the env's control rate (1 / env.dt), rounded
    shadows: bool = True  # False: frames without shadows and reflections (CameraRig; ~6x cheaper)

    def settings(self) -> dict[str, Any]:
        """What must match between a run and the directory it resumes into."""
        extra = {"format": self.format} if self.format != "npz" else {}
        if not self.shadows:  # only when off, so folders collected before the option still resume
            extra["shadows"] = False
        return dict(
            **extra,
            benchmark=self.benchmark,
            seed=self.seed,
            skills=self.skills,
            cameras=list(self.cameras),
            width=self.width,
            height=self.height,
            depth=self.depth,
            max_steps=self.max_steps,
            instructions=self.instructions,
        )


def episode_path(out: str | Path, task: str, episode: int) -> Path:
    return Path(out) / "episodes" / task / f"ep_{episode:05d}.npz"


def _atomic_savez(path: Path, arrays: dict[str, np.ndarray]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp.npz")
    np.savez_compressed(tmp, **arrays)
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    os.replace(tmp, path)  # a kill leaves the old state or the whole file, never half of one


def _complete(path: Path) -> bool:
    """Whether an episode file is whole: it exists and its zip directory (written last) lists
    ``meta``. Files are renamed into place only when complete, so this is False only for one
    truncated some other way (a copy cut short, a full disk); such a file is collected again."""
    import zipfile

    if not path.exists():
        return False
    try:
        with zipfile.ZipFile(path) as z:
            return "meta.npy" in z.namelist()
    except (zipfile.BadZipFile, OSError):
        return False


def _write_dataset_json(out: Path, cfg: CollectConfig, tasks: list[str]) -> None:
    meta_path = out / "dataset.json"
    settings = cfg.settings()
    if meta_path.exists():
        try:
            old = json.loads(meta_path.read_text())
        except json.JSONDecodeError:
            old = None
        if old is not None:
            prev = old.get("settings", {})
            diff = [k for k, v in settings.items() if prev.get(k) != v]
            if diff:
                from vlx.config import ConfigError

                raise ConfigError(
                    f"{meta_path}: this directory was collected with different {', '.join(diff)} "
                    f"(was {', '.join(f'{k}={prev.get(k)!r}' for k in diff)}); use another --out"
                )
    doc = dict(
        format=FORMAT,
        version=VERSION,
        settings=settings,
        tasks=tasks,
        episodes_per_task=cfg.episodes,
        layout="episodes/<task>/ep_<NNNNN>.npz; see embodied/collect.py",
    )
    tmp = meta_path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(doc, indent=2))
    os.replace(tmp, meta_path)
    readme = out / "README.md"
    if not readme.exists():
        readme.write_text(__doc__ or "")


def run_episode(
    env: Any,
    skills: Any,
    plan: Sequence[Any],
    specs: dict[str, Any],
    seed: int,
    max_steps: int,
    rig: CameraRig | None = None,
    depth: bool = False,
) -> dict[str, np.ndarray]:
    """Execute ``plan`` with ``skills`` from ``env.reset(seed)``; returns the episode's arrays
    (without ``meta``). Each step runs until its skill reports success by the benchmark's own
    signal; a step that fails ends the episode (like the harness)."""
    model_data = sim_handles(env)[1] if rig is not None else None
    obs, info = env.reset(seed=seed)
    frames: dict[str, list[np.ndarray]] = {}

    def grab() -> None:
        if rig is None:
            return
        for cam in rig.cameras:
            frames.setdefault(f"rgb_{cam}", []).append(rig.render(model_data, cam, "rgb"))
            if depth:
                frames.setdefault(f"depth_{cam}", []).append(depth_to_mm(rig.render(model_data, cam, "depth")))

    obs_l, act_l, rew_l, succ_l, idx_l = [flatten_obs(obs)], [], [], [], []
    grab()
    t, solved = 0, False
    for si, step in enumerate(plan):
        skill = skills.get(step)
        skill.reset(env, step.arg_dict)
        ok = False
        while t < max_steps:
            action = np.asarray(skill.act(obs), dtype=np.float32)
            obs, reward, terminated, truncated, info = env.step(action)
            t += 1
            solved = solved or env.success(info)
            obs_l.append(flatten_obs(obs)), act_l.append(action), rew_l.append(reward)
            succ_l.append(env.success(info)), idx_l.append(si)
            grab()
            if skill.success(info):
                ok = True
                break
            if terminated:
                break
        if not ok or t >= max_steps:
            break
    A = int(np.prod(env.action_space.shape))
    arrays = dict(
        obs=np.stack(obs_l).astype(np.float32),
        actions=np.stack(act_l).astype(np.float32) if act_l else np.zeros((0, A), np.float32),
        rewards=np.asarray(rew_l, np.float32),
        success=np.asarray(succ_l, bool),
        step_index=np.asarray(idx_l, np.int16),
    )
    for k, v in frames.items():
        arrays[k] = np.stack(v)
    return arrays


def collect(cfg: CollectConfig, rank: int | None = None, world_size: int | None = None) -> list[Path]:
    """Write this rank's missing episodes; returns the paths it wrote. Running it again after a
    kill writes only what is missing: episodes without a file, or whose file is truncated."""
    from tqdm import tqdm

    from embodied.envs import build_benchmark
    from embodied.skills import build_skills

    if rank is None or world_size is None:
        from vlx.runtime import world_info

        w = world_info()
        rank, world_size = (w.rank if rank is None else rank), (w.world_size if world_size is None else world_size)
    from vlx.config import ConfigError

    if cfg.episodes < 1:
        raise ConfigError(f"episodes: expected >= 1, got {cfg.episodes}")
    if cfg.format not in ("npz", "lerobot"):
        raise ConfigError(f"format: expected 'npz' or 'lerobot', got {cfg.format!r}")
    if cfg.format == "lerobot" and cfg.depth:
        raise ConfigError("depth: the LeRobot format stores 8-bit video only; collect depth with format 'npz'")
    bench = build_benchmark(cfg.benchmark)
    all_tasks = [t.name for t in bench.tasks()]
    tasks = list(cfg.tasks or all_tasks)
    bad = [t for t in tasks if t not in all_tasks]
    if bad:
        raise ConfigError(f"tasks: {bad} not in benchmark {bench.name!r}; known: {', '.join(all_tasks)}")
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    if rank == 0:
        _write_dataset_json(out, cfg, tasks)
    skills = build_skills(bench, cfg.skills)
    specs = {s.name: s for s in bench.skill_specs()}
    units = [(all_tasks.index(t), t, e) for t in tasks for e in range(cfg.episodes)]
    mine = [u for i, u in enumerate(units) if i % world_size == rank and not _complete(episode_path(out, u[1], u[2]))]
    for _, t, e in mine:  # temp files a killed writer left for this rank's episodes
        p = episode_path(out, t, e)
        for stale in p.parent.glob(f".{p.stem}.*.tmp.npz"):
            stale.unlink(missing_ok=True)
    written: list[Path] = []
    env, env_task, rig = None, None, None
    fps = cfg.fps
    bar = tqdm(total=len(mine), desc=f"collect rank {rank}", unit="ep", disable=not cfg.progress)
    try:
        for ti, task_name, e in mine:
            task = bench.task(task_name)
            if env_task != task_name:
                if rig is not None:
                    rig.close()
                if env is not None:
                    env.close()
                env, env_task = bench.make_env(task_name), task_name
                fps = fps or _env_fps(env)
                rig = (
                    env_rig(
                        env, cfg.cameras, cfg.width, cfg.height, where=f"{bench.name} {task_name}", shadows=cfg.shadows
                    )
                    if cfg.cameras
                    else None
                )
            phrasings = bench.instructions(task_name) if cfg.instructions == "paraphrases" else [task.instruction]
            seed = collect_seed(ti, e, cfg.seed)
            max_steps = min(cfg.max_steps or task.max_episode_steps, task.max_episode_steps)
            arrays = run_episode(env, skills, list(task.ground_truth), specs, seed, max_steps, rig, cfg.depth)
            plan = list(task.ground_truth)
            from embodied.planners import step_text

            meta = dict(
                format=FORMAT,
                version=VERSION,
                benchmark=bench.name,
                task=task_name,
                task_index=ti,
                episode=e,
                seed=seed,
                instruction=phrasings[e % len(phrasings)],
                plan=[step_text(s) for s in plan],
                plan_texts=[plan_step_text(s, specs.get(s.skill)) for s in plan],
                subgoals=list(task.subgoals),
                cameras=list(cfg.cameras),
                width=cfg.width,
                height=cfg.height,
                depth=cfg.depth,
                shadows=cfg.shadows,
                success=bool(arrays["success"].any()),
                length=int(len(arrays["actions"])),
                first_success_step=int(np.argmax(arrays["success"]) + 1) if arrays["success"].any() else None,
            )
            arrays["meta"] = np.array(json.dumps(meta))
            path = episode_path(out, task_name, e)
            _atomic_savez(path, arrays)
            written.append(path)
            bar.update(1)
    finally:
        bar.close()
        if rig is not None:
            rig.close()
        if env is not None:
            env.close()
    if cfg.format == "lerobot" and rank == 0:
        _write_lerobot(cfg, out, tasks, bench, fps)
    return written


def _env_fps(env: Any) -> int | None:
    """The env's control rate, 1 / dt (MuJoCo timestep x frame skip), rounded to an integer as
    LeRobot's ``fps`` is one (Meta-World 80; Franka Kitchen 12.5 -> 12); None if unknown."""
    unwrapped = getattr(getattr(env, "env", None), "unwrapped", None)
    for cand in (env, getattr(env, "env", None), unwrapped, getattr(unwrapped, "robot_env", None)):
        dt = getattr(cand, "dt", None)
        if isinstance(dt, int | float) and dt > 0:
            return max(1, round(1.0 / dt))
    return None


def _write_lerobot(cfg: CollectConfig, out: Path, tasks: list[str], bench: Any, fps: int | None) -> Path | None:
    """The LeRobotDataset v3.0 at ``out`` from every episode file, once all are there (other
    ranks may still be writing theirs: then it says so and a later run writes it)."""
    from embodied.lerobot import write_lerobot

    files = [episode_path(out, t, e) for t in tasks for e in range(cfg.episodes)]
    missing = [p for p in files if not _complete(p)]
    if missing:
        print(f"lerobot: {len(missing)} episode file(s) not written yet (other ranks); rerun to write {out}/meta")
        return None
    if fps is None:
        env = bench.make_env(tasks[0])
        fps = _env_fps(env) or 30
        env.close()
    eps = [load_episode(p, cameras=cfg.cameras) for p in files]
    return write_lerobot(eps, out, fps=fps, robot_type=bench.name)


__all__ = [
    "CameraRig",
    "CollectConfig",
    "Episode",
    "check_cameras",
    "collect",
    "collect_seed",
    "depth_to_mm",
    "episode_path",
    "flatten_obs",
    "list_episodes",
    "MAX_DEMO_MIB",
    "check_npz_size",
    "load_demos",
    "load_episode",
    "plan_step_text",
    "read_dataset_json",
    "sim_handles",
]
