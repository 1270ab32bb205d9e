"""The report: Wilson intervals against a naive formula, CALVIN chain length, taxonomy counts,
markdown/CSV/PNG files, mp4 writing and replay of recorded episodes."""

from __future__ import annotations

import csv
import math

import numpy as np
import pytest

from embodied.report import replay_episode, summarize, wilson_interval, write_report


def naive_wilson(k, n, z=1.959963984540054):
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return centre - half, centre + half


@pytest.mark.parametrize("k,n", [(0, 10), (8, 10), (10, 10), (49, 100), (1, 3)])
def test_wilson_matches_reference(k, n):
    assert np.allclose(wilson_interval(k, n), naive_wilson(k, n), atol=1e-9)


def test_wilson_known_value_and_empty():
    lo, hi = wilson_interval(8, 10)
    assert round(lo, 3) == 0.490 and round(hi, 3) == 0.943
    assert wilson_interval(0, 0) == (0.0, 1.0)


def _rec(task, ep, success, completed, subgoals, plan_steps, errors=(), status="ok", latency=0.1, executable=True):
    return dict(
        episode_id=f"{task}/{ep}",
        task=task,
        task_index=0,
        episode=ep,
        seed=ep,
        success=success,
        status=status,
        subgoals=list(subgoals),
        completed_subgoals=list(completed),
        chain_length=next((i for i, g in enumerate(subgoals) if g not in completed), len(subgoals)),
        replans=0,
        env_steps=10,
        error="boom" if status != "ok" else None,
        plans=[
            dict(
                steps=list(plan_steps),
                executable=executable,
                exact=list(plan_steps) == list(subgoals),
                latency_s=latency,
                prompt_tokens=7,
                completion_tokens=3,
                status="ok",
                errors=[dict(kind=k, step=None, detail="") for k in errors],
            )
        ],
    )


RECORDS = [
    # multi-step instructions (CALVIN): chain counts the leading completed sub-goals
    _rec("kit", 0, True, ["a", "b", "c"], ["a", "b", "c"], ["a", "b", "c"], latency=0.1),
    _rec("kit", 1, False, ["a", "c"], ["a", "b", "c"], ["a", "c"], errors=["missing_step"], latency=0.3),
    _rec("kit", 2, False, ["b"], ["a", "b", "c"], ["b", "a"], errors=["wrong_order", "missing_step"], latency=0.2),
    _rec("mw", 0, True, ["x"], ["x"], ["x"]),
    _rec("mw", 1, False, [], ["x"], ["fly"], errors=["hallucinated_skill", "missing_step"], executable=False),
    _rec("mw", 2, False, [], ["x"], [], status="env_error"),
]


def test_summary_numbers():
    s = summarize(RECORDS, {"benchmark": "toy"})
    o, kit, mw = s["overall"], s["per_task"]["kit"], s["per_task"]["mw"]
    assert o["episodes"] == 6 and o["successes"] == 2 and o["success_rate"] == pytest.approx(2 / 6)
    assert kit["avg_chain_length"] == pytest.approx((3 + 1 + 0) / 3)
    assert kit["subgoal_success"] == pytest.approx((3 + 2 + 1) / 9)
    assert o["avg_chain_length_multistep"] == pytest.approx(4 / 3)
    assert o["error_taxonomy"]["missing_step"] == 3 and o["error_taxonomy"]["wrong_order"] == 1
    assert o["error_taxonomy"]["hallucinated_skill"] == 1 and o["error_taxonomy"]["parse_error"] == 0
    assert mw["plan_executability"] == pytest.approx(2 / 3) and o["errored"] == 1
    assert kit["skill_choice_accuracy"] == pytest.approx(1 / 3)
    assert o["plan_length"] == pytest.approx((3 + 2 + 2 + 1 + 1 + 0) / 6)
    assert o["prompt_tokens"] == 42 and o["completion_tokens"] == 18
    assert o["planner_latency_s"]["p50"] == pytest.approx(0.1)
    assert (kit["ci95_low"], kit["ci95_high"]) == pytest.approx(wilson_interval(1, 3))


def test_report_files(tmp_path):
    meta = {"benchmark": "toy", "protocol": "success if info['success'] at any step", "config": {"planner": "p"}}
    write_report(tmp_path, RECORDS, meta)
    md = (tmp_path / "summary.md").read_text()
    assert "33.3%" in md and "info['success'] at any step" in md and "| kit | 3 | 33.3 |" in md
    assert "`mw/2`: boom" in md
    rows = list(csv.DictReader(open(tmp_path / "per_task.csv")))
    assert [r["task"] for r in rows] == ["kit", "mw"] and float(rows[0]["avg_chain_length"]) == pytest.approx(4 / 3)
    png = (tmp_path / "success.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 1000


@pytest.mark.slow
def test_replay_reproduces_recorded_episode(tmp_path):
    """Videos are replayed from seed + actions: the replay must reach the recorded outcome."""
    from embodied.envs.metaworld import MetaWorldBenchmark
    from embodied.harness import Harness, HarnessConfig
    from embodied.planners import build_planner

    b = MetaWorldBenchmark("mt1:reach-v3")
    c = HarnessConfig(benchmark=b.name, planner="oracle", episodes=1, out=str(tmp_path), videos=1, progress=False)
    h = Harness(c, benchmark=b, planner=build_planner("oracle"))
    (rec,) = h.run()
    h.close()
    assert rec["success"] and len(rec["actions"]) == rec["env_steps"]
    frames, ok = replay_episode(b, rec, size=48)
    assert ok and len(frames) == rec["env_steps"] + 1 and frames[0].shape == (48, 48, 3)
    assert not np.array_equal(frames[0], frames[-1])
