"""Rollout-video frames/s: the old path (gymnasium's renderer with shadows and reflections,
every frame kept in memory, then encoded in the calling thread with libx264's default preset)
vs the current one (``embodied.report.replay_episode`` into ``vlx.io.mp4.Mp4Writer``: one
``mujoco.Renderer`` per env at the requested size, shadows and reflections off by default,
frames encoded in the writer's thread while the next one renders).

    python benchmarks/bench_embodied_video.py [--frames 20] [--rounds 3] [--size 128]

Set-up (env, renderer and first frame) is timed apart from the frames after it (steps,
renders and encoding, up to the closed file); a 227-frame video (the issue's Kitchen example)
is projected from both. Both sides replay the same seeded episode (a Franka Kitchen rollout
of the scripted controller, and a Meta-World reach one) and write an mp4 of it; rounds
alternate old/new (order flipping each round) and the medians are compared, with the spread
over rounds.
Target (issue 15): >= 4x frames/s.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
warnings.filterwarnings("ignore", message="Constant")


def old_write_mp4(frames, path, fps=30) -> None:
    """The encoder as it was: synchronous, libx264 defaults (preset medium)."""
    import av

    h, w = frames[0].shape[:2]
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height = w - w % 2, h - h % 2
        stream.pix_fmt = "yuv420p"
        for f in frames:
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(f[: stream.height, : stream.width]), format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def old_replay(bench, record: dict, size: int, path: Path) -> int:
    """The old replay: the env's gymnasium ``MujocoRenderer`` (what ``render_mode="rgb_array"``
    made inside the env), made current and asked for every frame; frames kept, then encoded."""
    from gymnasium.envs.mujoco.mujoco_rendering import MujocoRenderer

    env = bench.make_env(record["task"])
    if bench.name.startswith("kitchen"):
        robot = env.env.unwrapped.robot_env
        renderer = MujocoRenderer(robot.model, robot.data, robot.mujoco_renderer.default_cam_config, size, size)
        flip = False
    else:
        renderer = MujocoRenderer(env.env.model, env.env.data, None, size, size, camera_name="corner")
        flip = True  # as MetaWorldEnv.render did

    def render():
        v = renderer._get_viewer(render_mode="rgb_array")
        v.make_context_current()
        f = renderer.render("rgb_array")
        return np.ascontiguousarray(f[::-1] if flip else f)

    env.reset(seed=record["seed"])
    frames = [render()]
    t_first = time.perf_counter()
    for a in record["actions"]:
        env.step(np.asarray(a, np.float32))
        frames.append(render())
    renderer.close()
    env.close()
    old_write_mp4(frames, path)
    return len(frames), t_first


class _Stamp:
    """A writer proxy that notes when the first frame arrives (the end of the set-up)."""

    def __init__(self, w):
        self.w, self.t_first = w, None

    def write(self, f):
        self.w.write(f)
        if self.t_first is None:
            self.t_first = time.perf_counter()


def new_replay(bench, record: dict, size: int, path: Path) -> tuple[int, float]:
    from embodied.report import replay_episode
    from vlx.io.mp4 import Mp4Writer

    with Mp4Writer(path, fps=30, preset="veryfast") as w:
        stamp = _Stamp(w)
        replay_episode(bench, record, size=size, shadows=False, writer=stamp)
    return w.frames, stamp.t_first


def record_actions(bench, task: str, n: int, seed: int = 0) -> dict:
    """A seeded rollout of the task's scripted skill, ``n`` actions long."""
    from embodied.skills import build_skills

    skills = build_skills(bench, "scripted")
    t = bench.task(task)
    env = bench.make_env(task)
    obs, _ = env.reset(seed=seed)
    skill = skills.get(t.ground_truth[0])
    skill.reset(env, t.ground_truth[0].arg_dict)
    actions = []
    for _ in range(n):
        a = np.asarray(skill.act(obs), np.float32)
        actions.append(a.tolist())
        obs, *_ = env.step(a)
    env.close()
    return dict(task=task, seed=seed, actions=actions)


def main() -> None:
    from embodied.envs.base import ensure_gl

    ensure_gl()
    ap = argparse.ArgumentParser()
    ap.add_argument("--frames", type=int, default=20, help="actions per replayed episode (frames = actions + 1)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--benchmarks", default="kitchen,metaworld-mt10")
    args = ap.parse_args()
    from embodied.envs import build_benchmark

    tmp = Path(tempfile.mkdtemp(prefix="bench_video_"))
    print(
        f"{os.cpu_count()} CPUs (load average {os.getloadavg()[0]:.1f}), MUJOCO_GL={os.environ.get('MUJOCO_GL')}, "
        f"{args.size}x{args.size}, {args.frames + 1} frames per video, {args.rounds} interleaved rounds (+1 warm-up)"
    )
    print(
        f"{'benchmark':<16}{'path':<6}{'set-up s':>10}{'frames/s after set-up':>23}{'min':>7}{'max':>7}"
        f"{'227-frame video s':>19}"
    )
    for name in args.benchmarks.split(","):
        bench = build_benchmark(name)
        task = bench.tasks()[0].name if name == "kitchen" else "reach-v3"
        rec = record_actions(bench, task, args.frames)
        sides = {
            "old": lambda p: old_replay(bench, rec, args.size, p),
            "new": lambda p: new_replay(bench, rec, args.size, p),
        }
        for k, fn in sides.items():  # warm-up: first GL context, codec start
            fn(tmp / f"{name}_{k}_warm.mp4")
        rates: dict[str, list[float]] = {k: [] for k in sides}
        setups: dict[str, list[float]] = {k: [] for k in sides}
        for r in range(args.rounds):
            for k in list(sides) if r % 2 == 0 else list(sides)[::-1]:
                t0 = time.perf_counter()
                n, t_first = sides[k](tmp / f"{name}_{k}_{r}.mp4")
                t1 = time.perf_counter()
                setups[k].append(t_first - t0)
                rates[k].append((n - 1) / (t1 - t_first))  # steps, renders and encoding of the rest
        med = {k: statistics.median(v) for k, v in rates.items()}
        setup = {k: statistics.median(v) for k, v in setups.items()}
        video = {k: setup[k] + 226 / med[k] for k in sides}  # the 227-frame Kitchen video
        for k, v in rates.items():
            print(f"{name:<16}{k:<6}{setup[k]:>10.2f}{med[k]:>23.2f}{min(v):>7.2f}{max(v):>7.2f}{video[k]:>19.1f}")
        ratios = [b / a for a, b in zip(rates["old"], rates["new"])]
        print(
            f"{name:<16}speed-up new/old: frames/s after set-up {med['new'] / med['old']:.1f}x (per round "
            f"{min(ratios):.1f}-{max(ratios):.1f}x); a 227-frame video {video['old'] / video['new']:.1f}x "
            "(target >= 4x)"
        )


if __name__ == "__main__":
    main()
