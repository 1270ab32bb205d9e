"""Env steps/s of the embodied harness vs a bare loop over the same Meta-World episodes and
scripted policies (the limit), and optionally of 2 lockstep vector envs.

    python benchmarks/bench_embodied_harness.py [--episodes 4] [--rounds 5] [--vector]

Target: harness overhead under 10% (harness steps/s >= 0.9 x bare). Both sides execute the
same episodes (same seeds, same policy, stop at the benchmark's success, checked by the env
step counts), make and close their envs the same way, and are warmed up the same way (one
untimed run each); then rounds alternate bare/harness (the order flipping every round) and
the medians are compared, with each side's spread (min-max over rounds).

Why the old version printed -22.8% (the harness faster than the loop it is compared with):
the bare loop ran first, cold (first env construction, imports and caches paid by it alone),
best-of-2 blocks one after the other rather than interleaved, and it never closed its envs.
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

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
warnings.filterwarnings("ignore", message="Constant")


def bare_loop(bench, skills, units) -> int:
    """Plain reset/act/step over the harness's episodes: no planner, no records."""
    steps, env, env_task = 0, None, None
    for u in units:
        if env_task != u.task.name:
            if env is not None:
                env.close()
            env, env_task = bench.make_env(u.task.name), u.task.name
        skill = skills.get(u.task.ground_truth[0])
        obs, _ = env.reset(seed=u.seed)
        skill.reset(env, {})
        for _ in range(u.task.max_episode_steps):
            obs, _, _, _, info = env.step(skill.act(obs))
            steps += 1
            if env.success(info):
                break
    if env is not None:
        env.close()
    return steps


def harness_run(cfg, bench, skills) -> tuple[int, float]:
    from embodied.harness import Harness
    from embodied.planners import build_planner

    h = Harness(cfg, benchmark=bench, planner=build_planner("oracle"), skills=skills)
    t0 = time.perf_counter()
    recs = h.run()
    dt = time.perf_counter() - t0
    h.close()
    return sum(r["env_steps"] for r in recs), dt


def main() -> None:
    from embodied.envs.base import ensure_gl

    ensure_gl()
    ap = argparse.ArgumentParser()
    ap.add_argument("--episodes", type=int, default=4)
    ap.add_argument("--tasks", default="reach-v3,push-v3,drawer-open-v3")
    ap.add_argument("--rounds", type=int, default=5, help="timed rounds per side (after one warm-up each)")
    ap.add_argument("--vector", action="store_true", help="also time 2 lockstep vector envs (one run)")
    args = ap.parse_args()

    from embodied.envs.metaworld import MetaWorldBenchmark
    from embodied.harness import Harness, HarnessConfig
    from embodied.planners import build_planner
    from embodied.skills import build_skills

    bench = MetaWorldBenchmark("mt10")
    skills = build_skills(bench, "scripted")
    tasks = args.tasks.split(",")
    tmp = tempfile.mkdtemp(prefix="bench_embodied_")

    def cfg(tag, num_envs=1):
        return HarnessConfig(
            benchmark=bench.name,
            planner="oracle",
            episodes=args.episodes,
            tasks=tasks,
            out=f"{tmp}/{tag}",
            num_envs=num_envs,
            progress=False,
        )

    h = Harness(cfg("units"), benchmark=bench, planner=build_planner("oracle"), skills=skills)
    units = h.units()
    h.close()

    def bare(i):
        t0 = time.perf_counter()
        n = bare_loop(bench, skills, units)
        return n, time.perf_counter() - t0

    def harness(i):
        return harness_run(cfg(f"h1_{i}"), bench, skills)

    sides = {"bare loop": bare, "harness, 1 env": harness}
    for fn in sides.values():  # the same warm-up for both
        fn("warm")
    rates: dict[str, list[float]] = {k: [] for k in sides}
    steps: dict[str, set[int]] = {k: set() for k in sides}
    for r in range(args.rounds):
        order = list(sides) if r % 2 == 0 else list(sides)[::-1]
        for name in order:
            n, dt = sides[name](r)
            rates[name].append(n / dt)
            steps[name].add(n)
    print(
        f"Meta-World {','.join(tasks)}: {len(units)} episodes, oracle planner + scripted experts, "
        f"{os.cpu_count()} CPUs (load average {os.getloadavg()[0]:.1f}); 1 warm-up + {args.rounds} interleaved rounds"
    )
    print(f"{'run':<18}{'env steps':>10}{'median steps/s':>16}{'min':>9}{'max':>9}")
    med = {k: statistics.median(v) for k, v in rates.items()}
    for name, v in rates.items():
        print(f"{name:<18}{min(steps[name]):>10d}{med[name]:>16.1f}{min(v):>9.1f}{max(v):>9.1f}")
    ratios = [h_ / b for h_, b in zip(rates["harness, 1 env"], rates["bare loop"])]
    overhead = 1 - med["harness, 1 env"] / med["bare loop"]
    print(
        f"harness overhead vs bare loop (medians): {100 * overhead:.1f}%; per-round harness/bare "
        f"{min(ratios):.3f}-{max(ratios):.3f} (target < 10%: {'met' if overhead < 0.10 else 'NOT met'})"
    )
    if len(steps["bare loop"] | steps["harness, 1 env"]) != 1:
        print("WARNING: runs executed different numbers of env steps:", steps)
    if args.vector:
        n2, dt2 = harness_run(cfg("h2", num_envs=2), bench, skills)
        print(
            f"harness, 2 vector envs: {n2} steps, {n2 / dt2:.1f} steps/s (worker start-up included; pays off "
            "only with free cores)"
        )


if __name__ == "__main__":
    main()
