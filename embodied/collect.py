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

Seeds come from their own stream (``collect_seed``), so demos never share an object/goal
placement with the harness's evaluation episodes of the same run seed.
"""

from __future__ import annotations

import json
import os
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from vlx.data.errors import DataError

FORMAT = "vlx-embodied-demo"
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


# ----------------------------------------------------------------------------- cameras


def sim_handles(env: Any) -> tuple[Any, Any]:
    """The ``(mujoco.MjModel, mujoco.MjData)`` of a ``TaskEnv`` (Meta-World keeps them on the
    raw env, gymnasium-robotics on ``unwrapped``)."""
    inner = getattr(env, "env", env)
    for cand in (inner, getattr(inner, "unwrapped", None)):
        if cand is not None and hasattr(cand, "model") and hasattr(cand, "data"):
            return cand.model, cand.data
    raise TypeError(f"{type(env).__name__}: no MuJoCo model/data found (expected env.env.model and env.env.data)")


def camera_names(model: Any) -> list[str]:
    return [model.camera(i).name for i in range(model.ncam)]


def check_cameras(model: Any, cameras: Sequence[str], where: str) -> None:
    """DataError naming the first camera that the scene does not have, and the known ones."""
    known = camera_names(model)
    for c in cameras:
        if c not in known:
            raise DataError(f"{where}: camera {c!r} does not exist; known cameras: {', '.join(known)}")


class CameraRig:
    """Renders RGB, depth (metres along the optical axis) and segmentation from named cameras
    with ``mujoco.Renderer`` (one per camera and mode, each owning its GL context)."""

    def __init__(self, model: Any, cameras: Sequence[str], width: int, height: int, where: str = "scene"):
        from embodied.envs.base import ensure_gl

        ensure_gl()
        import mujoco

        check_cameras(model, cameras, where)
        self.model, self.cameras, self.width, self.height = model, list(cameras), int(width), int(height)
        off = model.vis.global_
        if width > off.offwidth or height > off.offheight:
            raise DataError(
                f"{where}: {width}x{height} exceeds the scene's offscreen buffer {off.offwidth}x{off.offheight}"
            )
        self._mujoco = mujoco
        self._renderers: dict[str, Any] = {}

    def _renderer(self, mode: str) -> Any:
        if mode not in self._renderers:
            r = self._mujoco.Renderer(self.model, self.height, self.width)
            if mode == "depth":
                r.enable_depth_rendering()
            elif mode == "seg":
                r.enable_segmentation_rendering()
            self._renderers[mode] = r
        return self._renderers[mode]

    def render(self, data: Any, camera: str, mode: str = "rgb") -> np.ndarray:
        """rgb: (H, W, 3) uint8; depth: (H, W) float32 metres (0: nothing hit); seg: (H, W, 2) int32 (id, type)."""
        r = self._renderer(mode)
        r.update_scene(data, camera=camera)
        img = r.render().copy()
        if mode == "depth":  # rays that hit nothing read the far clipping plane: no reading
            far = self.model.vis.map.zfar * self.model.stat.extent
            img[img >= 0.999 * far] = 0.0
        return img

    def close(self) -> None:
        for r in self._renderers.values():
            r.close()
        self._renderers.clear()


def depth_to_mm(depth_m: np.ndarray) -> np.ndarray:
    """Metres -> uint16 millimetres (ScanNet's depth encoding; 0 = no reading)."""
    mm = np.round(np.nan_to_num(depth_m, nan=0.0, posinf=0.0) * 1000.0)
    return np.clip(mm, 0, 65535).astype(np.uint16)


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

    def settings(self) -> dict[str, Any]:
        """What must match between a run and the directory it resumes into."""
        return dict(
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
    kill writes only what is missing (finished files are complete by construction)."""
    from tqdm import tqdm

    from embodied.envs import build_benchmark
    from embodied.skills import build_skills

    rank = int(os.environ.get("RANK", 0)) if rank is None else rank
    world_size = int(os.environ.get("WORLD_SIZE", 1)) if world_size is None else world_size
    if cfg.episodes < 1:
        from vlx.config import ConfigError

        raise ConfigError(f"episodes: expected >= 1, got {cfg.episodes}")
    bench = build_benchmark(cfg.benchmark)
    all_tasks = [t.name for t in bench.tasks()]
    tasks = list(cfg.tasks or all_tasks)
    bad = [t for t in tasks if t not in all_tasks]
    if bad:
        from vlx.config import ConfigError

        raise ConfigError(f"tasks: {bad} not in benchmark {bench.name!r}; known: {', '.join(all_tasks)}")
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    if rank == 0:
        _write_dataset_json(out, cfg, tasks)
    skills = build_skills(bench, cfg.skills)
    specs = {s.name: s for s in bench.skill_specs()}
    units = [(all_tasks.index(t), t, e) for t in tasks for e in range(cfg.episodes)]
    mine = [u for i, u in enumerate(units) if i % world_size == rank and not episode_path(out, u[1], u[2]).exists()]
    for _, t, e in mine:  # temp files a killed writer left for this rank's episodes
        p = episode_path(out, t, e)
        for stale in p.parent.glob(f".{p.stem}.*.tmp.npz"):
            stale.unlink(missing_ok=True)
    written: list[Path] = []
    env, env_task, rig = None, None, None
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
                rig = (
                    CameraRig(
                        sim_handles(env)[0], cfg.cameras, cfg.width, cfg.height, where=f"{bench.name} {task_name}"
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
    return written


# ----------------------------------------------------------------------------- loading


@dataclass
class Episode:
    """One demonstration: arrays as in the module docstring, ``meta`` as a dict."""

    path: Path
    meta: dict[str, Any]
    obs: np.ndarray
    actions: np.ndarray
    rewards: np.ndarray
    success: np.ndarray
    step_index: np.ndarray
    rgb: dict[str, np.ndarray] = field(default_factory=dict)
    depth: dict[str, np.ndarray] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.actions)

    def text_at(self, t: int) -> str:
        """The plan-step conditioning text of action ``t``."""
        texts = self.meta["plan_texts"]
        return texts[min(int(self.step_index[t]), len(texts) - 1)] if texts else ""


def load_episode(
    path: str | Path, benchmark: str | None = None, cameras: Sequence[str] | None = None, images: bool = True
) -> Episode:
    """Read one demo file. ``benchmark``: the benchmark it must come from; ``cameras``: the
    camera streams that must be present (default: all stored; ``images=False`` skips them).
    Every problem is a one-line ``DataError`` naming the file (and the camera)."""
    p = Path(path)
    if not p.is_file():
        raise DataError(f"{p}: demo file not found")
    try:
        with np.load(p, allow_pickle=False) as z:
            names = set(z.files)
            if "meta" not in names:
                raise DataError(f"{p}: not a {FORMAT} file (no 'meta' entry)")
            meta = json.loads(str(z["meta"]))
            if meta.get("format") != FORMAT:
                raise DataError(f"{p}: not a {FORMAT} file (format {meta.get('format')!r})")
            if benchmark is not None and meta.get("benchmark") != benchmark:
                raise DataError(f"{p}: demo from benchmark {meta.get('benchmark')!r}, expected {benchmark!r}")
            stored = list(meta.get("cameras", []))
            want = stored if cameras is None else list(cameras)
            for c in want:
                if c not in stored:
                    raise DataError(
                        f"{p}: camera {c!r} not in this demo; recorded cameras: {', '.join(stored) or 'none'}"
                    )
            missing = [k for k in ("obs", "actions", "rewards", "success", "step_index") if k not in names]
            if missing:
                raise DataError(f"{p}: missing arrays {missing}")
            ep = Episode(p, meta, z["obs"], z["actions"], z["rewards"], z["success"], z["step_index"])
            if images:
                for c in want:
                    ep.rgb[c] = z[f"rgb_{c}"]
                    if meta.get("depth") and f"depth_{c}" in names:
                        ep.depth[c] = z[f"depth_{c}"]
    except DataError:
        raise
    except (zipfile.BadZipFile, EOFError, OSError, ValueError, KeyError, json.JSONDecodeError) as e:
        raise DataError(
            f"{p}: truncated or corrupt demo file ({type(e).__name__}: {str(e)[:120]}); "
            "delete it and re-run `vlx embodied collect` with the same --out"
        ) from None
    T = len(ep.actions)
    if len(ep.obs) != T + 1 or len(ep.step_index) != T:
        raise DataError(
            f"{p}: inconsistent lengths: obs {len(ep.obs)}, actions {T}, step_index {len(ep.step_index)} "
            "(expected T+1, T, T)"
        )
    for c, frames in ep.rgb.items():
        if len(frames) != T + 1:
            raise DataError(f"{p}: camera {c!r} has {len(frames)} frames for {T} actions (expected {T + 1})")
    return ep


def read_dataset_json(root: str | Path) -> dict[str, Any]:
    p = Path(root) / "dataset.json"
    if not p.is_file():
        raise DataError(f"{p}: not found; expected a directory written by `vlx embodied collect`")
    try:
        doc = json.loads(p.read_text())
    except json.JSONDecodeError as e:
        raise DataError(f"{p}: invalid JSON at line {e.lineno}: {e.msg}") from None
    if doc.get("format") != FORMAT:
        raise DataError(f"{p}: not a {FORMAT} dataset (format {doc.get('format')!r})")
    return doc


def list_episodes(root: str | Path, tasks: Sequence[str] | None = None) -> list[Path]:
    """Every episode file under ``root`` (sorted by task, episode); tasks filters."""
    root = Path(root)
    files = sorted(p for p in root.glob("episodes/*/ep_*.npz"))
    if tasks:
        files = [p for p in files if p.parent.name in set(tasks)]
    return files


def load_demos(
    root: str | Path,
    benchmark: str | None = None,
    tasks: Sequence[str] | None = None,
    cameras: Sequence[str] | None = None,
    images: bool = True,
    only_success: bool = False,
) -> list[Episode]:
    """All episodes of a collected directory, checked against ``benchmark`` and ``cameras``."""
    doc = read_dataset_json(root)
    bench = doc.get("settings", {}).get("benchmark")
    if benchmark is not None and bench != benchmark:
        raise DataError(f"{Path(root) / 'dataset.json'}: demos from benchmark {bench!r}, expected {benchmark!r}")
    files = list_episodes(root, tasks)
    if not files:
        raise DataError(f"{root}: no episode files under episodes/<task>/ (tasks: {list(tasks) if tasks else 'all'})")
    eps = [load_episode(f, benchmark=bench, cameras=cameras, images=images) for f in files]
    return [e for e in eps if e.meta.get("success") or not only_success]


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
    "load_demos",
    "load_episode",
    "plan_step_text",
    "read_dataset_json",
    "sim_handles",
]
