"""The oracle planner: returns the benchmark's ground-truth plan, the upper bound that
isolates skill execution from planning.

How the ground truth reaches it (the contract with the harness): before each episode the
harness calls ``planner.set_ground_truth(steps)`` with the task's ground-truth steps
(``PlanStep``s, skill names, ``{"skill": .., "args": {..}}`` dicts or (name, args) pairs).
A fixed plan can instead be given once at construction (``ground_truth_plan=[...]``).
``plan()`` without any ground truth raises, so a harness that forgot to pass it fails loudly
instead of scoring an empty plan.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from embodied.planners.base import coerce_step, step_text
from embodied.types import Plan, PlanStep, SkillSpec


class OraclePlanner:
    """``plan()`` returns a copy of the ground-truth steps; they are not filtered against
    ``skills`` so that a skill registry missing a ground-truth skill shows up as an error."""

    def __init__(self, ground_truth_plan: Sequence[Any] | None = None):
        self._steps: list[PlanStep] | None = None
        if ground_truth_plan is not None:
            self.set_ground_truth(ground_truth_plan)

    def set_ground_truth(self, steps: Sequence[Any]) -> None:
        self._steps = [coerce_step(s) for s in steps]

    def plan(self, instruction: str, observation: Any, skills: Sequence[SkillSpec]) -> Plan:
        if self._steps is None:
            raise RuntimeError(
                "OraclePlanner has no ground truth: call set_ground_truth(steps) before plan() "
                "or pass ground_truth_plan= at construction"
            )
        t0 = time.perf_counter()
        steps = list(self._steps)
        text = "\n".join(step_text(s) for s in steps)
        return Plan(steps=steps, raw_text=text, latency_s=time.perf_counter() - t0)

    def __repr__(self) -> str:
        n = "unset" if self._steps is None else f"{len(self._steps)} steps"
        return f"OraclePlanner(ground_truth={n})"
