"""``vlx embodied collect | policy-eval | export-rgbd | export-video | export-scanrefer``:
demonstrations, the plan-conditioned policy's evaluation, and simulation data for the other
siblings. ``add_data_parsers(sub)`` adds them to the ``vlx embodied`` sub-command group
(``extend_embodied_parser(subparsers)`` finds that group from the top-level subparsers)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def _csv(s: str | None) -> list[str] | None:
    return [x.strip() for x in s.split(",") if x.strip()] if s else None


def run_collect(args: argparse.Namespace) -> int:
    from embodied.collect import CollectConfig, collect

    cfg = CollectConfig(
        benchmark=args.benchmark,
        episodes=args.episodes,
        out=args.out,
        tasks=_csv(args.tasks),
        seed=args.seed,
        skills=args.skills,
        cameras=_csv(args.cameras) or [],
        width=args.size,
        height=args.size,
        shadows=not args.no_shadows,
        depth=args.depth,
        max_steps=args.max_steps,
        progress=not args.no_progress,
        format=args.format,
        fps=args.fps,
    )
    written = collect(cfg)
    print(f"wrote {len(written)} episode file(s) under {args.out}/episodes (layout: {args.out}/README.md)")
    if args.format == "lerobot" and (Path(args.out) / "meta" / "info.json").is_file():
        print(f"LeRobotDataset v3.0 at {args.out} (meta/, data/, videos/; see embodied/lerobot.py)")
    return 0


def run_policy_eval(args: argparse.Namespace) -> int:
    from embodied.policy.evaluate import MODES, evaluate_policy
    from embodied.policy.recipe import PolicyConfig
    from embodied.policy.skill import PolicyRunner
    from vlx.config import ConfigError, from_dict, read_yaml_with_extends

    modes = _csv(args.modes) or list(MODES)
    cfg = from_dict(PolicyConfig, read_yaml_with_extends(f"{args.run}/config.yaml"), where=f"{args.run}/config.yaml")
    if args.episodes < 1:
        raise ConfigError(f"--episodes: expected >= 1, got {args.episodes}")
    runner = PolicyRunner.from_run(args.run, args.ckpt, execute=args.execute)
    out = args.out or f"{args.run}/policy_eval"
    res = evaluate_policy(
        runner,
        args.benchmark or cfg.data.benchmark,
        _csv(args.tasks) or cfg.data.tasks,
        args.episodes,
        modes,
        out,
        seed=args.seed,
        max_steps=args.max_steps,
        progress=not args.no_progress,
        train_dir=args.run,
    )
    for m, r in res["modes"].items():
        o = r["overall"]
        print(
            f"{m:12s} success {100 * o['success_rate']:.1f}% ({o['successes']}/{o['episodes']}, 95% CI "
            f"{100 * o['ci95_low']:.1f}-{100 * o['ci95_high']:.1f})"
        )
    print(f"wrote {out}/policy_report.md and policy_report.json")
    return 0


def run_export_rgbd(args: argparse.Namespace) -> int:
    from embodied.export import export_rgbd

    root = export_rgbd(
        args.benchmark,
        args.task,
        args.out,
        cameras=_csv(args.cameras) or ["corner"],
        frames=args.frames,
        stride=args.stride,
        width=args.size,
        height=args.size,
        seed=args.seed,
    )
    print(f"wrote ScanNet-layout frames to {root}")
    return 0


def run_export_video(args: argparse.Namespace) -> int:
    from embodied.export import export_videos

    p = export_videos(
        args.benchmark,
        _csv(args.tasks),
        args.out,
        episodes=args.episodes,
        camera=args.camera,
        size=args.size,
        stride=args.stride,
        fps=args.fps,
        seed=args.seed,
        max_steps=args.max_steps,
    )
    print(f"wrote {p} and {args.out}/videos/")
    return 0


def run_export_scanrefer(args: argparse.Namespace) -> int:
    from embodied.export import export_scanrefer

    for task in _csv(args.tasks) or []:
        for s in range(args.scenes):
            export_scanrefer(args.benchmark, task, args.out, seed=args.seed + s)
    print(f"wrote {args.out}/scanrefer.json")
    return 0


def add_data_parsers(sub: Any) -> None:
    c = sub.add_parser("collect", help="scripted-expert demonstrations to disk (resumable, sharded by RANK/WORLD_SIZE)")
    c.add_argument("--benchmark", default="metaworld-mt10")
    c.add_argument("--episodes", type=int, default=10, help="per task")
    c.add_argument("--out", required=True)
    c.add_argument("--tasks", default=None, help="comma-separated subset")
    c.add_argument("--seed", type=int, default=0)
    c.add_argument("--skills", default="scripted")
    c.add_argument("--cameras", default="", help="comma-separated camera names to render (none: state only)")
    c.add_argument("--size", type=int, default=64, help="rendered frame width = height")
    c.add_argument("--depth", action="store_true", help="also store depth (uint16 mm) per camera")
    c.add_argument("--no-shadows", action="store_true", help="render without shadows and reflections (~6x faster)")
    c.add_argument("--max-steps", type=int, default=None)
    c.add_argument("--no-progress", action="store_true")
    c.add_argument(
        "--format",
        choices=["npz", "lerobot"],
        default="npz",
        help="lerobot: also write a LeRobotDataset v3.0 (meta/, data/, videos/) at --out",
    )
    c.add_argument("--fps", type=int, default=None, help="lerobot fps (default: the env's control rate)")
    c.set_defaults(func=run_collect)

    e = sub.add_parser(
        "policy-eval", help="the trained plan-conditioned policy through the harness: plan vs instruction vs no text"
    )
    e.add_argument("--run", required=True, help="output_dir of a `vlx train` run of embodied_policy")
    e.add_argument("--ckpt", default=None, help="checkpoint dir (default: the run's latest)")
    e.add_argument("--benchmark", default=None)
    e.add_argument("--tasks", default=None)
    e.add_argument("--episodes", type=int, default=20, help="per task and mode")
    e.add_argument("--modes", default="plan,instruction,none")
    e.add_argument("--seed", type=int, default=0)
    e.add_argument("--max-steps", type=int, default=None)
    e.add_argument("--execute", type=int, default=1, help="actions of each predicted chunk to execute")
    e.add_argument("--out", default=None)
    e.add_argument("--no-progress", action="store_true")
    e.set_defaults(func=run_policy_eval)

    r = sub.add_parser(
        "export-rgbd", help="RGB-D + instance masks in ScanNet's exported layout (for pointcloud/, scene_graph/)"
    )
    r.add_argument("--benchmark", default="metaworld-mt10")
    r.add_argument("--task", required=True)
    r.add_argument("--out", required=True)
    r.add_argument("--cameras", default="corner")
    r.add_argument("--frames", type=int, default=4, help="time steps")
    r.add_argument("--stride", type=int, default=10, help="env steps between time steps")
    r.add_argument("--size", type=int, default=96)
    r.add_argument("--seed", type=int, default=0)
    r.set_defaults(func=run_export_rgbd)

    v = sub.add_parser("export-video", help="rollout mp4s + MSR-VTT-style captions narrating the plan (for video/)")
    v.add_argument("--benchmark", default="metaworld-mt10")
    v.add_argument("--tasks", default=None)
    v.add_argument("--out", required=True)
    v.add_argument("--episodes", type=int, default=1)
    v.add_argument("--camera", default="corner")
    v.add_argument("--size", type=int, default=96)
    v.add_argument("--stride", type=int, default=2)
    v.add_argument("--fps", type=int, default=15)
    v.add_argument("--seed", type=int, default=0)
    v.add_argument("--max-steps", type=int, default=None)
    v.set_defaults(func=run_export_video)

    s = sub.add_parser(
        "export-scanrefer", help="ScanRefer-style referring expressions from simulator state (for scene_graph/)"
    )
    s.add_argument("--benchmark", default="metaworld-mt10")
    s.add_argument("--tasks", required=True)
    s.add_argument("--out", required=True)
    s.add_argument("--scenes", type=int, default=1, help="scenes (seeds) per task")
    s.add_argument("--seed", type=int, default=0)
    s.set_defaults(func=run_export_scanrefer)


def extend_embodied_parser(subparsers: Any) -> None:
    """Add the data commands to the existing ``vlx embodied`` group in ``subparsers``."""
    parser = subparsers.choices["embodied"]
    for action in parser._actions:  # argparse keeps the group's sub-command action here
        if isinstance(action, argparse._SubParsersAction):
            add_data_parsers(action)
            return
    raise RuntimeError("vlx embodied has no sub-command group to extend")


__all__ = ["add_data_parsers", "extend_embodied_parser"]
