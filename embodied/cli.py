"""``vlx embodied eval|quickstart``: planner evaluations through the harness.

``vlx embodied eval --benchmark metaworld-mt10 --planner saycan --skills scripted
--episodes 10 --seed 0 --out runs/embodied/mt10`` writes per-episode JSONL (resumable: run
the same command again after a kill) and the report; under ``torchrun`` each rank runs a
shard and rank 0 writes the merged report.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

import yaml


def _planner_kwargs(pairs: list[str]) -> dict[str, Any]:
    from vlx.config import ConfigError

    out = {}
    for p in pairs:
        if "=" not in p:
            raise ConfigError(f"--planner-arg {p!r}: expected KEY=VALUE")
        k, v = p.split("=", 1)
        out[k.strip()] = yaml.safe_load(v)
    return out


def add_eval_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--benchmark",
        default="metaworld-mt10",
        help="metaworld-mt10 | metaworld-mt50 | metaworld-mt1:<task> | kitchen | kitchen-single | kitchen-multi",
    )
    p.add_argument("--planner", default="saycan", help="oracle | saycan | hf_lm | openai")
    p.add_argument(
        "--planner-arg", action="append", default=[], metavar="KEY=VALUE", help="planner option (YAML value)"
    )
    p.add_argument("--skills", default="scripted", help="skill set kind (scripted | learned)")
    p.add_argument("--episodes", type=int, default=10, help="episodes per task (one goal each)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="runs/embodied/eval")
    p.add_argument("--tasks", default=None, help="comma-separated subset of the benchmark's tasks")
    p.add_argument("--num-envs", type=int, default=1, help="lockstep vector envs (gymnasium AsyncVectorEnv)")
    p.add_argument("--max-replans", type=int, default=0)
    p.add_argument("--planner-timeout", type=float, default=60.0, help="seconds per planner call")
    p.add_argument("--instructions", default="paraphrases", choices=["paraphrases", "canonical"])
    p.add_argument("--max-steps", type=int, default=None, help="env steps per episode (default: the task's limit)")
    p.add_argument(
        "--max-skill-steps",
        type=int,
        default=None,
        help="env steps per plan step (default: the benchmark's, 400 in Franka Kitchen)",
    )
    p.add_argument("--videos", type=int, default=0, help="rollout mp4s to write (first episode of the first tasks)")
    p.add_argument(
        "--video-episodes",
        default=None,
        metavar="IDS",
        help="also film these episodes: numbers (3,7: those episodes of every task) or ids (push-v3/7)",
    )
    p.add_argument("--no-progress", action="store_true")


def config_from_args(args: argparse.Namespace):
    from embodied.harness import HarnessConfig

    return HarnessConfig(
        benchmark=args.benchmark,
        planner=args.planner,
        planner_kwargs=_planner_kwargs(args.planner_arg),
        skills=args.skills,
        episodes=args.episodes,
        seed=args.seed,
        out=args.out,
        tasks=[t.strip() for t in args.tasks.split(",")] if args.tasks else None,
        num_envs=args.num_envs,
        max_replans=args.max_replans,
        planner_timeout_s=args.planner_timeout,
        instructions=args.instructions,
        max_steps=args.max_steps,
        skill_max_steps=args.max_skill_steps,
        video_episodes=1 if args.videos else 0,
        video_episode_ids=[x.strip() for x in args.video_episodes.split(",") if x.strip()]
        if args.video_episodes
        else None,
        progress=not args.no_progress,
    )


def _print_summary(summary: dict, out: str) -> None:
    o = summary["overall"]
    print(
        f"success {100 * o['success_rate']:.1f}% (95% CI {100 * o['ci95_low']:.1f}-{100 * o['ci95_high']:.1f}) "
        f"over {o['episodes']} episodes; executability {100 * (o['plan_executability'] or 0):.1f}%; "
        f"skill choice accuracy {100 * (o['skill_choice_accuracy'] or 0):.1f}%; errored {o['errored']}"
    )
    print(f"wrote {out}/summary.md, per_task.csv, success.png, summary.json")


def run_eval(args: argparse.Namespace) -> int:
    from embodied.harness import evaluate

    if args.episodes < 1:
        from vlx.config import ConfigError

        raise ConfigError(f"--episodes: expected >= 1, got {args.episodes}")
    summary = evaluate(config_from_args(args), videos=args.videos)
    if summary is not None:
        _print_summary(summary, args.out)
    return 0


def run_quickstart(args: argparse.Namespace) -> int:
    """The embedded default: SayCan-MiniLM planner + scripted experts on Meta-World MT10
    (paraphrased instructions), a few minutes on 2 CPU cores; writes the report."""
    from embodied.harness import HarnessConfig, evaluate

    fast = bool(getattr(args, "fast", False))
    out = getattr(args, "out", None) or "runs/embodied/quickstart"
    cfg = HarnessConfig(
        benchmark="metaworld-mt10",
        planner="saycan",
        skills="scripted",
        episodes=1 if fast else 3,
        seed=int(getattr(args, "seed", 0) or 0),
        out=out,
        tasks=["reach-v3", "push-v3", "drawer-open-v3"] if fast else None,
        max_steps=200 if fast else None,
        video_episodes=0 if fast else 1,
    )
    print(
        "[embodied] SayCan-MiniLM planner + Meta-World scripted skills on "
        f"{cfg.benchmark} ({cfg.episodes} episode(s) per task) -> {out}"
    )
    summary = evaluate(cfg, videos=0 if fast else 1)
    if summary is not None:
        _print_summary(summary, out)
    return 0


def add_parser(subparsers: Any) -> None:
    p = subparsers.add_parser("embodied", help="embodied planners in MuJoCo benchmarks (eval, quickstart)")
    sub = p.add_subparsers(dest="embodied_command", required=True)
    e = sub.add_parser("eval", help="evaluate a planner + skills on a benchmark")
    add_eval_arguments(e)
    e.set_defaults(func=run_eval)
    q = sub.add_parser("quickstart", help="SayCan-MiniLM + scripted skills on Meta-World MT10")
    q.add_argument("--out", default=None)
    q.add_argument("--fast", action="store_true")
    q.add_argument("--seed", type=int, default=0)
    q.set_defaults(func=run_quickstart)
    # The data/policy commands (collect, exports, policy eval) live in embodied/cli_data.py.
    try:
        from embodied.cli_data import add_data_parsers
    except ModuleNotFoundError as e:
        if e.name != "embodied.cli_data":
            raise
    else:
        add_data_parsers(sub)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="vlx")
    add_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
