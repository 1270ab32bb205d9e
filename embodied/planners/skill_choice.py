"""Skill-choice accuracy of a planner on single-skill instructions, without running the env:
for each (task, instruction) the planner's first step must be the task's skill.

``python -m embodied.planners.skill_choice --benchmark metaworld-mt10 --instructions FILE``
prints per-task and overall accuracy (FILE: task -> instructions, JSON/JSONL/YAML, as
``--instructions`` of ``vlx embodied eval``; ``paraphrases`` = the repo's paraphrases of the
benchmark, descriptions excluded since they are the skills' own texts; ``descriptions`` = the
canonical descriptions alone, the quickstart's first instruction of each task).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Mapping, Sequence
from typing import Any


def instruction_queries(benchmark: Any, source: str) -> dict[str, list[str]]:
    """task -> instructions: ``descriptions`` (each task's canonical description),
    ``paraphrases`` (the benchmark's own, its canonical description left out) or an
    instruction file."""
    if source == "descriptions":
        return {t.name: [t.instruction] for t in benchmark.tasks()}
    if source == "paraphrases":
        out = {}
        for t in benchmark.tasks():
            phr = list(benchmark.instructions(t.name))
            out[t.name] = [p for p in phr if p != t.instruction]
        return out
    from embodied.instructions import load_instruction_file

    instr = load_instruction_file(source)
    return {task: [i.text for i in items] for task, items in instr.by_task.items()}


def skill_choice_accuracy(
    planner: Any, queries: Mapping[str, Sequence[str]], skills: Sequence[Any], expected: Mapping[str, str]
) -> dict[str, Any]:
    """{"accuracy", "n", "per_task": {task: accuracy}, "mistakes": [(task, text, chosen)],
    "exact_plan": fraction of plans that are exactly the one expected step (an extra step from
    a mis-split clause counts against it, not against ``accuracy``), "extra_steps": [(task,
    text, plan)]}."""
    per_task, mistakes, extra, hits, exact, n = {}, [], [], 0, 0, 0
    for task, texts in queries.items():
        ok = 0
        for q in texts:
            plan = planner.plan(q, None, skills)
            chosen = plan.steps[0].skill if plan.steps else None
            if chosen == expected[task]:
                ok += 1
            else:
                mistakes.append((task, q, chosen))
            if [s.skill for s in plan.steps] == [expected[task]]:
                exact += 1
            elif len(plan.steps) > 1:
                extra.append((task, q, [s.skill for s in plan.steps]))
        per_task[task] = ok / max(len(texts), 1)
        hits, n = hits + ok, n + len(texts)
    return {
        "accuracy": hits / max(n, 1),
        "n": n,
        "per_task": per_task,
        "mistakes": mistakes,
        "exact_plan": exact / max(n, 1),
        "extra_steps": extra,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m embodied.planners.skill_choice")
    p.add_argument("--benchmark", default="metaworld-mt10")
    p.add_argument(
        "--instructions", action="append", required=True, help="descriptions | paraphrases | FILE (repeatable)"
    )
    p.add_argument("--planner", default="saycan")
    p.add_argument("--planner-arg", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--show-mistakes", action="store_true")
    args = p.parse_args(argv)
    import yaml

    from embodied.envs import build_benchmark
    from embodied.planners import build_planner

    bench = build_benchmark(args.benchmark)
    specs = bench.skill_specs()
    expected = {t.name: t.ground_truth[0].skill for t in bench.tasks()}
    kwargs = {k: yaml.safe_load(v) for k, v in (a.split("=", 1) for a in args.planner_arg)}
    planner = build_planner(args.planner, **{"max_steps": 1, **kwargs} if args.planner == "saycan" else kwargs)
    results = {}
    for src in args.instructions:
        r = skill_choice_accuracy(planner, instruction_queries(bench, src), specs, expected)
        results[src] = {k: r[k] for k in ("accuracy", "exact_plan", "n", "per_task")}
        print(
            f"{src}: skill choice {100 * r['accuracy']:.1f}%, exact one-step plan "
            f"{100 * r['exact_plan']:.1f}% over {r['n']} instructions"
        )
        if args.show_mistakes:
            for task, q, chosen in r["mistakes"]:
                print(f"   {task}: {q!r} -> {chosen}")
            for task, q, steps in r["extra_steps"]:
                print(f"   {task}: {q!r} -> plan {steps}")
    print(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
