"""``vlx embodied eval|quickstart``: planner evaluations through the harness.

``vlx embodied eval [CONFIG.yaml] --benchmark metaworld-mt10 --planner saycan --skills scripted
--episodes 10 --seed 0 [--set key=value]`` writes per-episode JSONL (resumable: run the same
command again after a kill) and the report into a folder named after the run's fingerprint
(or ``--out``); under ``torchrun`` each rank runs a shard and rank 0 writes the merged report.
Flags map 1:1 to ``HarnessConfig`` fields (``embodied/eval_config.py``).
"""

from __future__ import annotations

import argparse
import sys
from typing import Any


def add_eval_arguments(p: argparse.ArgumentParser) -> None:
    """``[CONFIG] [--set k=v]`` and one flag per ``HarnessConfig`` field (see eval_config)."""
    from embodied.eval_config import add_config_arguments

    add_config_arguments(p)


def _print_summary(summary: dict, out: str) -> None:
    o = summary["overall"]
    print(
        f"success {100 * o['success_rate']:.1f}% (95% CI {100 * o['ci95_low']:.1f}-{100 * o['ci95_high']:.1f}) "
        f"over {o['episodes']} episodes; executability {100 * (o['plan_executability'] or 0):.1f}%; "
        f"skill choice accuracy {100 * (o['skill_choice_accuracy'] or 0):.1f}%; errored {o['errored']}"
    )
    print(f"wrote {out}/summary.md, per_task.csv, success.png, summary.json")


def run_eval(args: argparse.Namespace) -> int:
    from embodied.eval_config import config_from_args
    from embodied.harness import PlannerUnavailable, evaluate

    cfg = config_from_args(args)
    try:
        summary = evaluate(cfg)
    except PlannerUnavailable as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    if summary is not None:
        _print_summary(summary, summary["meta"]["config"]["out"])
    return 0


def run_quickstart(args: argparse.Namespace) -> int:
    """The embedded default: SayCan-MiniLM planner + scripted experts on Meta-World MT10
    (paraphrased instructions), a few minutes on 2 CPU cores; writes the report."""
    from embodied.eval_config import HarnessConfig
    from embodied.harness import evaluate

    fast = bool(getattr(args, "fast", False))
    out = getattr(args, "out", None) or ("runs/embodied/quickstart-fast" if fast else "runs/embodied/quickstart")
    cfg = HarnessConfig(
        benchmark="metaworld-mt10",
        planner="saycan",
        skills="scripted",
        episodes=1 if fast else 3,
        seed=int(getattr(args, "seed", 0) or 0),
        out=out,
        tasks=["reach-v3", "push-v3", "drawer-open-v3"] if fast else None,
        max_steps=200 if fast else None,
        videos=0 if fast else 1,
        new=True,  # never refused: another vlx version or setting starts a fresh folder
    )
    print(
        "[embodied] SayCan-MiniLM planner + Meta-World scripted skills on "
        f"{cfg.benchmark} ({cfg.episodes} episode(s) per task) -> {out}"
    )
    summary = evaluate(cfg)
    if summary is not None:
        _print_summary(summary, summary["meta"]["config"]["out"])
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
