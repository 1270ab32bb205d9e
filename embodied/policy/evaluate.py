"""``evaluate_policy``: the harness (oracle planner, the benchmark's own protocol) run once per text
mode with the trained policy as every skill, writing ``policy_report.md``/``.json`` that
compare the modes and point at the training curve. Separate from ``embodied.policy.skill``
because the harness imports that module (``--skills learned``) and this one imports the
harness."""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from embodied.policy.skill import MODES, InstructionRecorder, PolicyRunner, policy_skills


def evaluate_policy(
    runner: PolicyRunner,
    benchmark: str,
    tasks: Sequence[str] | None,
    episodes: int,
    modes: Sequence[str],
    out: str | Path,
    seed: int = 0,
    max_steps: int | None = None,
    fresh: bool = False,
    progress: bool = True,
    train_dir: str | Path | None = None,
) -> dict[str, Any]:
    """Harness runs (oracle planner + the policy as every skill) for each mode into
    ``out/<mode>/``; returns and writes ``out/policy_report.{json,md}``. Resumable unless
    ``fresh`` (which clears ``out/<mode>`` first)."""
    from embodied.envs import build_benchmark
    from embodied.harness import HarnessConfig, evaluate
    from embodied.planners import build_planner

    bench = build_benchmark(benchmark)
    out = Path(out)
    result: dict[str, Any] = {
        "benchmark": bench.name,
        "protocol": bench.protocol,
        "episodes_per_task": episodes,
        "seed": seed,
        "max_steps": max_steps,
        "tasks": list(tasks or [t.name for t in bench.tasks()]),
        "modes": {},
    }
    for mode in modes:
        recorder = InstructionRecorder(build_planner("oracle"))
        skills = policy_skills(bench, runner, mode, recorder)
        cfg = HarnessConfig(
            benchmark=bench.name,
            planner="oracle",
            skills="learned",
            episodes=episodes,
            seed=seed,
            out=str(out / mode),
            tasks=list(tasks) if tasks else None,
            max_steps=max_steps,
            instructions="paraphrases",
            progress=progress,
        )
        if fresh and (out / mode).exists():
            shutil.rmtree(out / mode)
        summary = evaluate(cfg, benchmark=bench, planner=recorder, skills=skills)
        result["modes"][mode] = {"overall": summary["overall"], "per_task": summary.get("per_task", {})}
    if train_dir is not None:
        result["train_dir"] = str(train_dir)
        # the Trainer writes it at the end of fit(), after its final evaluation calls us
        result["train_curve"] = str(Path(train_dir) / "train_curve.png")
    out.mkdir(parents=True, exist_ok=True)
    (out / "policy_report.json").write_text(json.dumps(result, indent=2, default=str))
    (out / "policy_report.md").write_text(report_markdown(result))
    return result


def report_markdown(result: dict[str, Any]) -> str:
    modes = list(result["modes"])
    lines = [
        f"# Plan-conditioned policy on {result['benchmark']}",
        "",
        f"{result['protocol']} Oracle planner; the learned policy executes every plan step. "
        f"{result['episodes_per_task']} episodes per task (seed {result['seed']}), instructions cycle the "
        "paraphrase set.",
        "Modes: **plan** = conditioned on the plan step's text (as trained); **instruction** = the bare "
        "instruction instead; **none** = the empty text.",
        "",
    ]
    if result.get("max_steps"):
        lines += [
            f"Episodes were capped at {result['max_steps']} steps in this run, stricter than the protocol's limit.",
            "",
        ]
    if result.get("train_curve"):
        lines += [f"Training curve: `{result['train_curve']}`", ""]
    lines += ["| task | " + " | ".join(modes) + " |", "|---|" + "---|" * len(modes)]

    def cell(s: dict) -> str:
        if not s or s.get("success_rate") is None:
            return "-"
        lo, hi = 100 * s["ci95_low"], 100 * s["ci95_high"]
        return f"{100 * s['success_rate']:.0f}% ({s['successes']}/{s['episodes']}, CI {lo:.0f}-{hi:.0f})"

    for task in result["tasks"]:
        lines.append(
            f"| {task} | " + " | ".join(cell(result["modes"][m]["per_task"].get(task, {})) for m in modes) + " |"
        )
    lines.append("| **all** | " + " | ".join(cell(result["modes"][m]["overall"]) for m in modes) + " |")
    return "\n".join(lines) + "\n"


__all__ = ["MODES", "evaluate_policy", "report_markdown"]
