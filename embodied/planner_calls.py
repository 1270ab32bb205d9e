"""Planner calls for the harness: each call runs in a worker thread under the run's deadline
(``planner_timeout_s``), and every failure becomes a counted plan with an ``error_kind``
column (``PLANNER_ERROR_KINDS``): the planner's own ``Plan.error_kind`` (or the
``error_kind`` attribute of the exception it raised) when it sets one, else timeout (the
deadline passed), connection (``ConnectionError``), hallucination (the plan names a skill or
object that does not exist) or parse_error (anything else unreadable). After
``max_failures`` consecutive connection failures the caller raises ``PlannerUnavailable``
naming the endpoint, so a run against a server that is down stops instead of recording
failures for every remaining episode."""

from __future__ import annotations

import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any

from embodied.types import PLANNER_ERROR_KINDS, Plan, PlanError, PlanErrorKind, PlanStep, SkillSpec

_HALLUCINATED = {PlanErrorKind.HALLUCINATED_SKILL, PlanErrorKind.HALLUCINATED_OBJECT}


class PlannerUnavailable(RuntimeError):
    """The planner's endpoint failed ``max_planner_failures`` connections in a row."""


def exception_kind(e: BaseException) -> str:
    """The failure column of a planner exception: its own ``error_kind`` attribute when it
    has a known one, else by type (timeouts, refused/reset connections), else parse_error."""
    kind = getattr(e, "error_kind", None)
    if kind in PLANNER_ERROR_KINDS:
        return kind
    if isinstance(e, TimeoutError):
        return "timeout"
    if isinstance(e, ConnectionError):
        return "connection"
    return "parse_error"


def plan_error_kind(plan: Plan, errors: Sequence[PlanError]) -> str | None:
    """A plan's failure column: the planner's own ``error_kind``, else hallucination or
    parse_error from the classified ``errors``, else None (no failure)."""
    kind = getattr(plan, "error_kind", None)
    if kind is not None:
        return kind if kind in PLANNER_ERROR_KINDS else "parse_error"
    kinds = {e.kind for e in errors}
    if kinds & _HALLUCINATED:
        return "hallucination"
    if PlanErrorKind.PARSE in kinds:
        return "parse_error"
    return None


def failed_plan(detail: str, t0: float, kind: str) -> Plan:
    return Plan(
        steps=[],
        raw_text="",
        errors=[PlanError(PlanErrorKind.PARSE, None, detail)],
        latency_s=time.perf_counter() - t0,
        error_kind=kind,
    )


class PlannerCaller:
    """Calls ``planner.plan`` with a deadline; see the module docstring."""

    def __init__(
        self,
        planner: Any,
        specs: Sequence[SkillSpec],
        timeout_s: float,
        max_failures: int | None = None,
        endpoint: str = "",
        where: str = "",
    ):
        self.planner, self.specs, self.timeout_s = planner, list(specs), timeout_s
        self.max_failures, self.endpoint, self.where = max_failures, endpoint, where
        self.connection_failures = 0
        self._pool = ThreadPoolExecutor(max_workers=1)
        if hasattr(planner, "set_call_deadline"):  # remote planners stop by themselves at the deadline
            planner.set_call_deadline(timeout_s)

    def call(self, instruction: str, observation: Any, ground_truth: list[PlanStep]) -> tuple[Plan, str]:
        """(plan, status): status ok | timeout | exception | garbage."""
        if hasattr(self.planner, "set_ground_truth"):
            self.planner.set_ground_truth(list(ground_truth))
        t0 = time.perf_counter()
        fut = self._pool.submit(self.planner.plan, instruction, observation, self.specs)
        try:
            plan = fut.result(timeout=self.timeout_s)
        except FutureTimeout:
            # Planners with ``cancel`` (remote ones) cut their requests so the thread ends now;
            # others keep their thread, and a fresh pool keeps the run going.
            if hasattr(self.planner, "cancel"):
                self.planner.cancel()
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = ThreadPoolExecutor(max_workers=1)
            plan, status = failed_plan(f"planner timed out after {self.timeout_s}s", t0, "timeout"), "timeout"
        except Exception as e:  # noqa: BLE001  any planner failure is data, not a crash
            detail = f"planner raised {type(e).__name__}: {str(e)[:200]}"
            plan, status = failed_plan(detail, t0, exception_kind(e)), "exception"
        else:
            if not isinstance(plan, Plan) or not all(isinstance(s, PlanStep) for s in getattr(plan, "steps", [None])):
                detail = f"planner returned {type(plan).__name__}, not a Plan of PlanSteps"
                plan, status = failed_plan(detail, t0, "parse_error"), "garbage"
            else:
                status = "ok"
                if not plan.latency_s:
                    plan.latency_s = time.perf_counter() - t0
        self._count(plan)
        return plan, status

    def _count(self, plan: Plan) -> None:
        if getattr(plan, "error_kind", None) != "connection":
            self.connection_failures = 0
            return
        self.connection_failures += 1
        n = self.max_failures
        if n is not None and self.connection_failures >= n:
            raise PlannerUnavailable(
                f"planner endpoint {self.endpoint}: {n} consecutive connection failures; run stopped "
                f"(episodes recorded so far are kept in {self.where}; rerun the same command to resume)"
            )

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


__all__ = ["PlannerCaller", "PlannerUnavailable", "exception_kind", "failed_plan", "plan_error_kind"]
